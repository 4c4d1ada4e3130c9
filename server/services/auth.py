"""Login, token rotation, API keys and turning a credential into a Principal."""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.domain.errors import Forbidden, InvalidInput, Unauthorized
from server.domain.permissions import Permission
from server.domain.principal import Principal
from server.security.limiter import LoginLimiter
from server.security.passwords import verify_password
from server.security.tokens import TokenCodec, api_key_prefix, digest, new_api_key, new_refresh_token
from server.storage.repositories.audit import AuditRepository
from server.storage.repositories.base import now, utc
from server.storage.repositories.credentials import ApiKey, ApiKeyRepository, RefreshTokenRepository
from server.storage.repositories.tenants import TenantRepository
from server.storage.repositories.users import RoleRepository, UserRepository

log = logging.getLogger(__name__)

API_KEY_TOUCH_S = 60.0
"""last_used_at is recorded at most this often: not a database write per request."""

PRINCIPAL_CACHE_S = 5.0
"""A disabled user or a changed role takes effect within this long on every server."""


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


class AuthService:
    def __init__(
        self,
        *,
        tenants: TenantRepository,
        users: UserRepository,
        roles: RoleRepository,
        refresh_tokens: RefreshTokenRepository,
        api_keys: ApiKeyRepository,
        audit: AuditRepository,
        codec: TokenCodec,
        limiter: LoginLimiter,
        refresh_ttl_s: int,
    ) -> None:
        self.tenants, self.users, self.roles = tenants, users, roles
        self.refresh_tokens, self.api_keys, self.audit = refresh_tokens, api_keys, audit
        self.codec, self.limiter, self.refresh_ttl_s = codec, limiter, refresh_ttl_s
        self._cache: dict[tuple[int, int], tuple[float, Principal]] = {}

    async def login(self, tenant_name: str, username: str, password: str, address: str | None) -> TokenPair:
        user_key, addr_key = f"u:{tenant_name}:{username}", f"a:{address}"
        self.limiter.check(user_key, addr_key)
        tenant = await self.tenants.by_name(tenant_name)
        user = await self.users.by_username(tenant.id, username) if tenant and tenant.is_active else None
        valid = await verify_password(password, user.password_hash if user else None)
        if tenant is None or user is None or not valid or not user.is_active:
            self.limiter.failed(user_key, addr_key)
            if tenant is None:
                reason = "unknown tenant"
            elif not tenant.is_active:
                reason = "tenant disabled"
            elif user is None:
                reason = "unknown user"
            else:
                reason = "user disabled" if valid else "wrong password"
            await self.audit.record(
                tenant.id if tenant else None, username, "auth.login", username, success=False, address=address,
                detail={"reason": reason, "tenant": tenant_name},
            )  # fmt: skip
            raise Unauthorized("invalid tenant, username or password")
        self.limiter.succeeded(user_key)
        await self.users.touch_login(tenant.id, user.id)
        await self.audit.record(tenant.id, username, "auth.login", username, address=address)
        return await self._issue(tenant.id, tenant.name, user.id, username, secrets.token_hex(16))

    async def _issue(self, tenant_id: int, tenant_name: str, user_id: int, username: str, family: str) -> TokenPair:
        access, ttl = self.codec.issue(user_id, tenant_id, username, tenant_name)
        refresh = new_refresh_token()
        expires = now() + timedelta(seconds=self.refresh_ttl_s)
        await self.refresh_tokens.add(tenant_id, user_id, digest(refresh), family, expires)
        return TokenPair(access, refresh, ttl)

    async def refresh(self, refresh_token: str, address: str | None) -> TokenPair:
        stored = await self.refresh_tokens.by_hash(digest(refresh_token))
        if stored is None:
            raise Unauthorized("unknown refresh token")
        if stored.revoked_at is not None:
            raise Unauthorized("refresh token revoked; log in again")
        if stored.used_at is not None or not await self.refresh_tokens.mark_used(stored.tenant_id, stored.id):
            # A rotated token came back: someone holds a copy. End the whole session family.
            await self.refresh_tokens.revoke_family(stored.tenant_id, stored.family)
            await self.audit.record(
                stored.tenant_id, f"user:{stored.user_id}", "auth.refresh_reuse", success=False, address=address
            )
            raise Unauthorized("refresh token already used; the session was revoked, log in again")
        if stored.expires_at <= now():
            raise Unauthorized("refresh token expired; log in again")
        tenant = await self.tenants.get(stored.tenant_id)
        user = await self.users.get(stored.tenant_id, stored.user_id)
        if not user.is_active or not tenant.is_active:
            raise Unauthorized("account disabled")
        return await self._issue(tenant.id, tenant.name, user.id, user.username, stored.family)

    async def logout(self, principal: Principal, refresh_token: str | None, address: str | None) -> None:
        if refresh_token:
            stored = await self.refresh_tokens.by_hash(digest(refresh_token))
            if stored is not None and stored.tenant_id == principal.tenant_id and stored.user_id == principal.user_id:
                await self.refresh_tokens.revoke_family(stored.tenant_id, stored.family)
        elif principal.user_id is not None:
            await self.refresh_tokens.revoke_user(principal.tenant_id, principal.user_id)
        await self.audit.record(principal.tenant_id, principal.subject, "auth.logout", address=address)

    async def principal_for_token(self, token: str) -> Principal:
        claims = self.codec.decode(token)
        key = (claims.tenant_id, claims.user_id)
        cached = self._cache.get(key)
        if cached and cached[0] > time.monotonic():
            base = cached[1]
        else:
            tenant = await self.tenants.get(claims.tenant_id)
            try:
                user = await self.users.get(claims.tenant_id, claims.user_id)
            except Exception:
                raise Unauthorized("the token's user no longer exists") from None
            if not user.is_active or not tenant.is_active:
                raise Unauthorized("account disabled")
            base = Principal(
                tenant.id, tenant.name, user.username, user.id, tuple(user.roles), user.permissions,
                user.is_system_admin,
            )  # fmt: skip
            self._cache[key] = (time.monotonic() + PRINCIPAL_CACHE_S, base)
        return Principal(
            base.tenant_id, base.tenant_name, base.subject, base.user_id, base.roles, base.permissions,
            base.is_system_admin, "user", claims.expires_at,
        )  # fmt: skip

    async def principal_for_api_key(self, key: str) -> Principal:
        prefix = api_key_prefix(key)
        stored = await self.api_keys.by_prefix(prefix) if prefix else None
        if stored is None or not hmac.compare_digest(stored.key_hash, digest(key)):
            raise Unauthorized("invalid API key")
        if stored.revoked:
            raise Unauthorized("API key revoked")
        if stored.expires_at is not None and stored.expires_at <= now():
            raise Unauthorized("API key expired")
        tenant = await self.tenants.get(stored.tenant_id)
        if not tenant.is_active:
            raise Unauthorized("tenant disabled")
        if stored.last_used_at is None or (now() - stored.last_used_at).total_seconds() > API_KEY_TOUCH_S:
            await self.api_keys.touch(stored.tenant_id, stored.id)
        roles = [r for r in await self.roles.all(stored.tenant_id) if r.name in stored.roles]
        perms = frozenset(p for r in roles for p in r.permissions)
        return Principal(
            tenant.id, tenant.name, f"apikey:{stored.name}", None, tuple(r.name for r in roles), perms, kind="apikey"
        )

    async def create_api_key(
        self, principal: Principal, name: str, role_names: list[str], expires_at: datetime | None
    ) -> tuple[ApiKey, str]:
        principal.require(Permission.APIKEYS_MANAGE)
        if not name or len(name) > 100:
            raise InvalidInput("API key name must be 1-100 characters", field="name")
        roles = await self.roles.resolve(principal.tenant_id, role_names)
        granted = frozenset(p for r in roles for p in r.permissions)
        if not granted <= principal.permissions:
            extra = sorted(p.value for p in granted - principal.permissions)
            raise Forbidden(f"an API key cannot hold permissions its creator lacks: {', '.join(extra)}")
        expires_at = utc(expires_at)  # a time without zone is UTC, as everywhere in the API
        if expires_at is not None and expires_at <= now():
            raise InvalidInput("expires_at must be in the future", field="expires_at")
        full, prefix = new_api_key()
        stored = await self.api_keys.create(
            principal.tenant_id, name, prefix, digest(full), [r.name for r in roles], principal.subject, expires_at
        )
        await self.audit.record(
            principal.tenant_id, principal.subject, "apikey.create", name, detail={"roles": role_names}
        )
        return stored, full

    def forget(self, tenant_id: int) -> None:
        """Drop cached principals of a tenant after a user or role change."""
        for key in [k for k in self._cache if k[0] == tenant_id]:
            del self._cache[key]
