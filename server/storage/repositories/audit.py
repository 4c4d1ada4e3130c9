"""The audit trail: who did what, to what, from where, and whether it worked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.storage.database import Database
from server.storage.repositories.base import now, utc
from server.storage.schema import audit_log


@dataclass(slots=True)
class AuditEntry:
    id: int
    ts: datetime
    actor: str
    action: str
    target: str
    success: bool
    address: str | None
    detail: dict[str, Any]


class AuditRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self,
        tenant_id: int | None,
        actor: str,
        action: str,
        target: str = "",
        *,
        success: bool = True,
        address: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                audit_log.insert().values(
                    tenant_id=tenant_id,
                    ts=now(),
                    actor=actor,
                    action=action,
                    target=target[:500],
                    success=success,
                    address=address,
                    detail=detail or {},
                )  # fmt: skip
            )

    async def query(
        self,
        tenant_id: int,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        action: str | None = None,
        limit: int = 500,
    ) -> list[AuditEntry]:
        query = sa.select(audit_log).where(audit_log.c.tenant_id == tenant_id)
        if start is not None:
            query = query.where(audit_log.c.ts >= start)
        if end is not None:
            query = query.where(audit_log.c.ts < end)
        if action:
            query = query.where(audit_log.c.action.startswith(action, autoescape=True))
        query = query.order_by(audit_log.c.ts.desc(), audit_log.c.id.desc()).limit(limit)
        async with self.db.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            AuditEntry(r.id, utc(r.ts) or r.ts, r.actor, r.action, r.target, r.success, r.address, dict(r.detail))
            for r in rows
        ]
