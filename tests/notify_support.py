"""Real receivers for notifications: an SMTP mailbox (aiosmtpd handler), the same behind
STARTTLS or implicit TLS with a login and a throwaway self-signed certificate, and a webhook
receiver (http.server on loopback) that checks each request's signature."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SECRET = "a-webhook-secret-of-some-length"
SMTP_USER, SMTP_PASSWORD = "scada-relay", "relay-pass-1234"


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for rcpt, m in self.messages if address in rcpt]


class Receiver:
    """A webhook receiver: records each request, verifies the signature, answers per plan."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.plan: list[tuple[int, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stamp = self.headers.get("X-IIoT-Timestamp", "")
                expected = "sha256=" + hmac.new(SECRET.encode(), stamp.encode() + b"." + body,
                                                hashlib.sha256).hexdigest()  # fmt: skip
                outer.requests.append({
                    "path": self.path, "host": self.headers.get("Host"), "body": body,
                    "valid": hmac.compare_digest(expected, self.headers.get("X-IIoT-Signature", "")),
                    "fresh": abs(time.time() - int(stamp or 0)) < 300,
                })  # fmt: skip
                status, headers = outer.plan.pop(0) if outer.plan else (200, {})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@dataclass(frozen=True)
class Certificate:
    cert_pem: str
    key_pem: str

    def server_context(self) -> ssl.SSLContext:
        """What the test server presents (ssl loads a chain only from files: a temp dir, gone after)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            cert.write_text(self.cert_pem)
            key.write_text(self.key_pem)
            context.load_cert_chain(cert, key)
        return context


def self_signed(names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Certificate:
    """A throwaway self-signed certificate (its own CA, as `openssl req -x509` makes) for `names`:
    IP addresses and DNS names in the subjectAltName."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"iiot test relay {names[0]}")])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return Certificate(
        cert.public_bytes(serialization.Encoding.PEM).decode(),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()).decode(),
    )  # fmt: skip


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (SMTP_USER.encode(),
                                                                             SMTP_PASSWORD.encode())  # fmt: skip
    return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535 itself


class TlsSmtp:
    """A submission server that insists on TLS and a login, as a real relay does: `starttls`
    (the plain port upgrades; MAIL and AUTH refused before it) or `tls` (implicit TLS, SMTPS)."""

    def __init__(self, mode: Literal["starttls", "tls"], cert: Certificate, port: int) -> None:
        self.mode, self.cert, self.port = mode, cert, port
        self.box = Mailbox()
        self.logins: list[str] = []
        context = cert.server_context()
        options: dict[str, Any] = {"authenticator": self._auth}
        if mode == "starttls":
            options |= {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
        else:
            options |= {"ssl_context": context, "auth_require_tls": False}  # the whole session is TLS
        self.controller = Controller(self.box, hostname="127.0.0.1", port=port, **options)

    def _auth(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        result = _authenticator(server, session, envelope, mechanism, data)
        self.logins.append(f"{mechanism}:{'ok' if result.success else 'refused'}")
        return result

    def start(self) -> TlsSmtp:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
