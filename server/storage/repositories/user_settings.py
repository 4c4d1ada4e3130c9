"""A user's own settings documents (saved trend sets, ...): one JSON value per key.

Every query takes the tenant and the user: a row is only ever found through both, so a user
never reaches another user's documents, nor a tenant another tenant's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from server.domain.errors import Conflict, NotFound
from server.storage.database import Database
from server.storage.repositories.base import now, utc
from server.storage.schema import user_settings

_s = user_settings.c


@dataclass(frozen=True, slots=True)
class UserSetting:
    key: str
    value: Any
    updated_at: datetime


def _owned(tenant_id: int, user_id: int) -> sa.ColumnElement[bool]:
    return sa.and_(_s.tenant_id == tenant_id, _s.user_id == user_id)


def _setting(row: Any) -> UserSetting:
    updated = utc(row.updated_at)
    assert updated is not None
    return UserSetting(row.key, row.value, updated)


class UserSettingsRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def keys(self, tenant_id: int, user_id: int, prefix: str = "", limit: int = 1000) -> list[UserSetting]:
        """The user's keys starting with `prefix`, by key; `value` is None (only the names)."""
        query = sa.select(_s.key, _s.updated_at).where(_owned(tenant_id, user_id))
        if prefix:
            query = query.where(_s.key.startswith(prefix, autoescape=True))
        async with self.db.connect() as conn:
            rows = (await conn.execute(query.order_by(_s.key).limit(limit))).all()
        return [UserSetting(r.key, None, utc(r.updated_at) or now()) for r in rows]

    async def count(self, tenant_id: int, user_id: int) -> int:
        async with self.db.connect() as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).where(_owned(tenant_id, user_id))) or 0)

    async def get(self, tenant_id: int, user_id: int, key: str) -> UserSetting:
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(_s.key, _s.value, _s.updated_at).where(_owned(tenant_id, user_id), _s.key == key)
                )
            ).first()
        if row is None:
            raise NotFound(f"no setting {key!r}", field="key")
        return _setting(row)

    async def exists(self, tenant_id: int, user_id: int, key: str) -> bool:
        async with self.db.connect() as conn:
            found = await conn.scalar(sa.select(_s.id).where(_owned(tenant_id, user_id), _s.key == key))
        return found is not None

    async def put(self, tenant_id: int, user_id: int, key: str, value: Any, *, overwrite: bool = True) -> UserSetting:
        """Insert or replace; with `overwrite=False` an existing key is a Conflict (409)."""
        stamp = now()
        insert = (postgresql.insert if self.db.is_postgres else sqlite.insert)(user_settings)
        stmt = insert.values(tenant_id=tenant_id, user_id=user_id, key=key, value=value, updated_at=stamp)
        if overwrite:
            stmt = stmt.on_conflict_do_update(
                index_elements=[_s.tenant_id, _s.user_id, _s.key],
                set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
            )
        try:
            async with self.db.begin() as conn:
                await conn.execute(stmt)
        except sa.exc.IntegrityError:
            raise Conflict(f"a setting {key!r} exists already", field="key") from None
        return UserSetting(key, value, stamp)

    async def rename(self, tenant_id: int, user_id: int, key: str, new_key: str, *, overwrite: bool = False) -> None:
        """Give a document another key, in one transaction (the old key is gone afterwards)."""
        try:
            async with self.db.begin() as conn:
                if overwrite and new_key != key:
                    await conn.execute(user_settings.delete().where(_owned(tenant_id, user_id), _s.key == new_key))
                result = await conn.execute(
                    user_settings.update()
                    .where(_owned(tenant_id, user_id), _s.key == key)
                    .values(key=new_key, updated_at=now())
                )
                if not result.rowcount:
                    raise NotFound(f"no setting {key!r}", field="key")
        except sa.exc.IntegrityError:
            raise Conflict(f"a setting {new_key!r} exists already", field="to") from None

    async def delete(self, tenant_id: int, user_id: int, key: str) -> None:
        async with self.db.begin() as conn:
            result = await conn.execute(user_settings.delete().where(_owned(tenant_id, user_id), _s.key == key))
        if not result.rowcount:
            raise NotFound(f"no setting {key!r}", field="key")
