"""Real receivers for notifications: an SMTP mailbox (aiosmtpd handler) and a webhook
receiver (http.server on loopback) that checks each request's signature."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = "a-webhook-secret-of-some-length"


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
