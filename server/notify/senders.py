"""Delivery: signed webhooks (httpx) and email (aiosmtplib). Each send returns its attempts,
which the dispatcher writes to the delivery log; nothing here raises for a failed delivery."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiosmtplib
import httpx

from server.domain.errors import InvalidInput
from server.notify import ssrf
from server.notify.spec import EmailChannel, WebhookChannel

MAX_BODY = 1024 * 1024
"""Neither a webhook body we send nor a response we read may exceed 1 MB."""
TIMEOUT_S = 10.0
RETRY_DELAYS_S = (1.0, 2.0, 4.0)
MAX_REDIRECTS = 3
RATE_WAIT_S = 60.0


@dataclass(frozen=True, slots=True)
class Attempt:
    ts: float
    outcome: str
    """sent, failed, refused (SSRF guard, oversized) or rate_limited."""
    status: int | None = None
    detail: str = ""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """What the receiver recomputes: HMAC-SHA256 over `<timestamp>.<body>`, hex."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class _Bucket:
    def __init__(self, per_min: int) -> None:
        self.capacity = float(per_min)
        self.tokens = float(per_min)
        self.rate = per_min / 60.0
        self.at = time.monotonic()

    def wait_s(self) -> float:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class WebhookSender:
    def __init__(self, retry_delays: tuple[float, ...] = RETRY_DELAYS_S) -> None:
        self.retry_delays = retry_delays
        self._buckets: dict[str, _Bucket] = {}

    async def send(self, channel: WebhookChannel, payload: dict[str, Any], allowlist: list[str]) -> list[Attempt]:
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        if len(body) > MAX_BODY:
            return [Attempt(time.time(), "refused", None, f"body of {len(body)} bytes exceeds 1 MB")]
        bucket = self._buckets.setdefault(channel.url, _Bucket(channel.rate_per_min))
        wait = bucket.wait_s()
        if wait > RATE_WAIT_S:
            return [Attempt(time.time(), "rate_limited", None, f"over {channel.rate_per_min}/min to this URL")]
        if wait:
            await asyncio.sleep(wait)
        delivery = uuid.uuid4().hex
        attempts: list[Attempt] = []
        for delay in (0.0, *self.retry_delays):
            if delay:
                await asyncio.sleep(delay)
            result = await self._post(channel, body, delivery, allowlist)
            attempts.append(result)
            if result.outcome in ("sent", "refused") or (result.status is not None and _final(result.status)):
                break
        return attempts

    async def _post(self, channel: WebhookChannel, body: bytes, delivery: str, allowlist: list[str]) -> Attempt:
        url = channel.url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                target = await ssrf.check(url, allowlist)
            except InvalidInput as exc:
                return Attempt(time.time(), "refused", None, exc.detail)
            stamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json", "User-Agent": "iiot-server", "Host": _host_header(target),
                "X-IIoT-Timestamp": stamp, "X-IIoT-Signature": signature(channel.secret, stamp, body),
                "X-IIoT-Delivery": delivery,
            }  # fmt: skip
            pinned = _pinned_url(target)
            extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
            try:
                async with (
                    httpx.AsyncClient(
                        verify=_tls(channel.verify_tls), timeout=TIMEOUT_S, follow_redirects=False, trust_env=False
                    ) as client,  # fmt: skip
                    client.stream("POST", pinned, content=body, headers=headers, extensions=extensions) as response,
                ):
                    read = 0
                    async for chunk in response.aiter_bytes():
                        read += len(chunk)
                        if read > MAX_BODY:
                            break
                    status = response.status_code
                    location = response.headers.get("location")
            except httpx.HTTPError as exc:
                return Attempt(time.time(), "failed", None, f"{type(exc).__name__}: {exc}"[:500])
            if 300 <= status < 400 and location:
                url = urljoin(url, location)  # checked like the first URL on the next turn
                continue
            outcome = "sent" if 200 <= status < 300 else "failed"
            return Attempt(time.time(), outcome, status, "" if outcome == "sent" else f"HTTP {status}")
        return Attempt(time.time(), "failed", None, f"more than {MAX_REDIRECTS} redirects")


def _final(status: int) -> bool:
    """A 4xx other than 408/429 won't get better by retrying."""
    return 400 <= status < 500 and status not in (408, 429)


def _tls(verify: bool) -> ssl.SSLContext | bool:
    return ssl.create_default_context() if verify else False


def _host_header(t: ssrf.Target) -> str:
    default = 443 if t.scheme == "https" else 80
    return t.host if t.port == default else f"{t.host}:{t.port}"


def _pinned_url(t: ssrf.Target) -> str:
    parts = urlsplit(t.url)
    literal = f"[{t.address}]" if t.address.version == 6 else str(t.address)
    return urlunsplit((parts.scheme, f"{literal}:{t.port}", parts.path or "/", parts.query, ""))


class EmailSender:
    def __init__(self, retry_delays: tuple[float, ...] = RETRY_DELAYS_S) -> None:
        self.retry_delays = retry_delays

    async def send(
        self, channel: EmailChannel, recipients: list[str], subject: str, text: str, html: str
    ) -> list[Attempt]:
        message = EmailMessage()
        message["From"] = channel.sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        context = email_tls_context(channel)
        attempts: list[Attempt] = []
        for delay in (0.0, *self.retry_delays):
            if delay:
                await asyncio.sleep(delay)
            try:
                await aiosmtplib.send(
                    message, hostname=channel.host, port=channel.port, use_tls=channel.security == "tls",
                    start_tls=channel.security == "starttls",
                    username=channel.username, password=channel.password, timeout=channel.timeout_s,
                    tls_context=context,
                )  # fmt: skip
                attempts.append(Attempt(time.time(), "sent", None, f"to {len(recipients)} recipient(s)"))
                return attempts
            except (aiosmtplib.SMTPException, OSError) as exc:
                detail, final = _smtp_failure(exc)
                attempts.append(Attempt(time.time(), "failed", None, detail[:500]))
                if final:
                    return attempts
        return attempts


def email_tls_context(channel: EmailChannel) -> ssl.SSLContext | None:
    """What the channel trusts: the system's CAs, only its own `tls_ca_pem`, or (a lab relay,
    `verify_tls` false) anything. None for a plain connection."""
    if channel.security == "none":
        return None
    if channel.tls_ca_pem is not None:
        return ssl.create_default_context(cadata=channel.tls_ca_pem)
    context = ssl.create_default_context()
    if not channel.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _smtp_failure(exc: BaseException) -> tuple[str, bool]:
    """A reason a person can act on, and whether trying again could help. A refused login,
    an untrusted certificate, a server without STARTTLS or a permanent (5xx) answer stay as
    they are: retrying would only repeat them (and a password tried four times may lock the
    account)."""
    cause = exc if isinstance(exc, ssl.SSLCertVerificationError) else exc.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (f"TLS certificate not trusted: {cause.verify_message or cause}; trust the server's CA with "
                "tls_ca_pem (or, for a lab relay only, set verify_tls false)", True)  # fmt: skip
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return f"login refused by the server: {exc.code} {exc.message}", exc.code >= 500
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return f"recipients refused: {exc}", True
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 500:
        return f"refused by the server: {exc.code} {exc.message}", True
    if type(exc) is aiosmtplib.SMTPException:  # what the client checks itself: STARTTLS or AUTH not offered
        return f"{exc}", True
    return f"{type(exc).__name__}: {exc}", False
