"""Access tokens (short JWTs), opaque refresh tokens and API keys."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from server.domain.errors import Unauthorized

ALGORITHM = "HS256"
ISSUER = "iiot-server"
API_KEY_PREFIX = "iiot"


def digest(secret: str) -> str:
    """Refresh tokens and API keys are long random strings: SHA-256 is the right hash for them."""
    return hashlib.sha256(secret.encode()).hexdigest()


def load_or_create_secret(configured: str, data_dir: Path) -> str:
    """The configured secret, else one generated once and kept (0600) in the data directory."""
    if configured:
        if len(configured) < 32:
            raise ValueError("jwt_secret must be at least 32 characters")
        return configured
    path = data_dir / "jwt_secret"
    if path.exists():
        secret = path.read_text(encoding="utf-8").strip()
        if len(secret) < 32:
            raise ValueError(f"{path} holds fewer than 32 characters; delete it to have a new secret generated")
        return secret
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret)
    return secret


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    tenant_id: int
    username: str
    expires_at: float


class TokenCodec:
    def __init__(self, secret: str, access_ttl_s: int) -> None:
        self._secret = secret
        self.access_ttl_s = access_ttl_s

    def issue(self, user_id: int, tenant_id: int, username: str, tenant_name: str) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": str(user_id),
            "tid": tenant_id,
            "ten": tenant_name,
            "usr": username,
            "iat": now,
            "exp": now + self.access_ttl_s,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), self.access_ttl_s

    def decode(self, token: str) -> AccessClaims:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["exp", "sub", "tid"]}
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("access token expired") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("invalid access token") from None
        return AccessClaims(int(claims["sub"]), int(claims["tid"]), str(claims.get("usr", "")), float(claims["exp"]))


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def new_api_key() -> tuple[str, str]:
    """(full key shown once, public prefix used for lookup)."""
    prefix = secrets.token_hex(6)
    return f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}", prefix


def api_key_prefix(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or len(parts[1]) != 12:
        return None
    return parts[1]
