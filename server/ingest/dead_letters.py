"""Dead letters: what an adapter received but could not use, kept for an engineer to inspect."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.storage.database import Database
from server.storage.repositories.base import now, utc
from server.storage.schema import dead_letters

KEEP_BYTES = 65_536
KEEP_ROWS = 10_000
"""Per tenant (and for unattributed payloads); older ones are pruned as new ones arrive."""


@dataclass(slots=True)
class DeadLetter:
    id: int
    received_at: datetime
    source: str
    origin: str
    reason: str
    detail: str
    payload: bytes
    payload_size: int


PRUNE_EVERY = 100
"""Records of one owner between two prunes: a table may exceed KEEP_ROWS by this much."""


class DeadLetterRepository:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._since_prune: dict[int | None, int] = {}
        """Records per owner since its last prune: every tenant is kept to KEEP_ROWS, not only busy ones."""

    async def record(
        self, tenant_id: int | None, source: str, origin: str, reason: str, detail: str, payload: bytes
    ) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                dead_letters.insert().values(
                    tenant_id=tenant_id,
                    received_at=now(),
                    source=source[:32],
                    origin=origin[:500],
                    reason=reason[:64],
                    detail=detail[:1000],
                    payload=payload[:KEEP_BYTES],
                    payload_size=len(payload),
                )  # fmt: skip
            )
        count = self._since_prune.get(tenant_id, 0) + 1
        self._since_prune[tenant_id] = count
        if count >= PRUNE_EVERY:
            self._since_prune[tenant_id] = 0
            await self.prune(tenant_id)

    async def prune(self, tenant_id: int | None) -> None:
        owner = dead_letters.c.tenant_id == tenant_id if tenant_id is not None else dead_letters.c.tenant_id.is_(None)
        async with self.db.begin() as conn:
            cutoff = await conn.scalar(
                sa.select(dead_letters.c.id).where(owner).order_by(dead_letters.c.id.desc()).offset(KEEP_ROWS).limit(1)
            )
            if cutoff is not None:
                await conn.execute(dead_letters.delete().where(owner, dead_letters.c.id <= cutoff))

    async def query(
        self, tenant_id: int | None, *, source: str | None = None, limit: int = 100, unattributed: bool = False
    ) -> list[DeadLetter]:
        """A tenant's dead letters; `unattributed` (system administrators) those of no tenant."""
        owner: Any = dead_letters.c.tenant_id.is_(None) if unattributed else dead_letters.c.tenant_id == tenant_id
        query = sa.select(dead_letters).where(owner)
        if source:
            query = query.where(dead_letters.c.source == source)
        query = query.order_by(dead_letters.c.id.desc()).limit(limit)
        async with self.db.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            DeadLetter(
                r.id,
                utc(r.received_at) or r.received_at,
                r.source,
                r.origin,
                r.reason,
                r.detail,
                bytes(r.payload),
                r.payload_size,
            )  # fmt: skip
            for r in rows
        ]
