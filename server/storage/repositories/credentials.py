"""API keys and refresh tokens: both stored as SHA-256 digests, never in the clear."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.domain.errors import Conflict, NotFound
from server.storage.database import Database
from server.storage.repositories.base import now, utc
from server.storage.schema import api_keys, refresh_tokens


@dataclass(slots=True)
class ApiKey:
    id: int
    tenant_id: int
    name: str
    prefix: str
    roles: list[str]
    created_by: str
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked: bool
    created_at: datetime | None
    key_hash: str = ""


def _key(row: sa.Row[Any]) -> ApiKey:
    return ApiKey(
        row.id, row.tenant_id, row.name, row.prefix, list(row.roles), row.created_by, utc(row.expires_at),
        utc(row.last_used_at), row.revoked, utc(row.created_at), row.key_hash,
    )  # fmt: skip


class ApiKeyRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, tenant_id: int, name: str, prefix: str, key_hash: str, roles: list[str], created_by: str,
        expires_at: datetime | None,
    ) -> ApiKey:  # fmt: skip
        async with self.db.begin() as conn:
            taken = await conn.scalar(
                sa.select(api_keys.c.id).where(api_keys.c.tenant_id == tenant_id, api_keys.c.name == name)
            )
            if taken:
                raise Conflict(f"API key {name!r} already exists", field="name")
            key_id = await conn.scalar(
                api_keys.insert()
                .values(
                    tenant_id=tenant_id,
                    name=name,
                    prefix=prefix,
                    key_hash=key_hash,
                    roles=roles,
                    created_by=created_by,
                    expires_at=expires_at,
                )  # fmt: skip
                .returning(api_keys.c.id)
            )
        return await self.get(tenant_id, key_id)

    async def get(self, tenant_id: int, key_id: int) -> ApiKey:
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(api_keys).where(api_keys.c.tenant_id == tenant_id, api_keys.c.id == key_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"API key {key_id} not found")
        return _key(row)

    async def all(self, tenant_id: int) -> list[ApiKey]:
        async with self.db.connect() as conn:
            rows = await conn.execute(
                sa.select(api_keys).where(api_keys.c.tenant_id == tenant_id).order_by(api_keys.c.id)
            )
            return [_key(r) for r in rows]

    async def by_prefix(self, prefix: str) -> ApiKey | None:
        """Lookup by the public prefix; the caller then checks the digest and learns the tenant."""
        async with self.db.connect() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.prefix == prefix))).first()
        return _key(row) if row else None

    async def revoke(self, tenant_id: int, key_id: int) -> None:
        async with self.db.begin() as conn:
            result = await conn.execute(
                api_keys.update().where(api_keys.c.tenant_id == tenant_id, api_keys.c.id == key_id).values(revoked=True)
            )
        if result.rowcount == 0:
            raise NotFound(f"API key {key_id} not found")

    async def touch(self, tenant_id: int, key_id: int) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                api_keys.update()
                .where(api_keys.c.tenant_id == tenant_id, api_keys.c.id == key_id)
                .values(last_used_at=now())
            )


@dataclass(slots=True)
class RefreshToken:
    id: int
    tenant_id: int
    user_id: int
    family: str
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


class RefreshTokenRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, tenant_id: int, user_id: int, token_hash: str, family: str, expires_at: datetime) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                refresh_tokens.insert().values(
                    tenant_id=tenant_id, user_id=user_id, token_hash=token_hash, family=family, expires_at=expires_at
                )
            )

    async def by_hash(self, token_hash: str) -> RefreshToken | None:
        async with self.db.connect() as conn:
            row = (
                await conn.execute(sa.select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash))
            ).first()
        if row is None:
            return None
        expires = utc(row.expires_at)
        assert expires is not None
        return RefreshToken(
            row.id, row.tenant_id, row.user_id, row.family, expires, utc(row.used_at), utc(row.revoked_at)
        )

    async def mark_used(self, tenant_id: int, token_id: int) -> bool:
        """Atomically claim a token; False when another request already used it."""
        async with self.db.begin() as conn:
            result = await conn.execute(
                refresh_tokens.update()
                .where(
                    refresh_tokens.c.tenant_id == tenant_id,
                    refresh_tokens.c.id == token_id,
                    refresh_tokens.c.used_at.is_(None),
                    refresh_tokens.c.revoked_at.is_(None),
                )
                .values(used_at=now())
            )
        return bool(result.rowcount)

    async def revoke_family(self, tenant_id: int, family: str) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                refresh_tokens.update()
                .where(
                    refresh_tokens.c.tenant_id == tenant_id,
                    refresh_tokens.c.family == family,
                    refresh_tokens.c.revoked_at.is_(None),
                )
                .values(revoked_at=now())
            )

    async def revoke_user(self, tenant_id: int, user_id: int) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                refresh_tokens.update()
                .where(
                    refresh_tokens.c.tenant_id == tenant_id,
                    refresh_tokens.c.user_id == user_id,
                    refresh_tokens.c.revoked_at.is_(None),
                )
                .values(revoked_at=now())
            )
