"""A tenant's notification set-up and the delivery log; every query names its tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from server.domain.errors import NotFound
from server.storage.database import Database
from server.storage.repositories.base import now
from server.storage.schema import notify_deliveries, notify_objects

KINDS = ("channel", "policy", "schedule", "prefs", "settings")


@dataclass(frozen=True, slots=True)
class Delivery:
    ts: float
    condition_id: int | None
    episode: int
    route: str
    step: int
    target: str
    channel: str
    attempt: int
    outcome: str
    status: int | None
    detail: str


class NotifyRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self, tenant_id: int, kind: str) -> dict[str, dict[str, Any]]:
        o = notify_objects.c
        async with self.db.connect() as conn:
            rows = await conn.execute(
                sa.select(o.name, o.config).where(o.tenant_id == tenant_id, o.kind == kind).order_by(o.name)
            )
            return {r.name: dict(r.config) for r in rows}

    async def get(self, tenant_id: int, kind: str, name: str) -> dict[str, Any] | None:
        o = notify_objects.c
        async with self.db.connect() as conn:
            config = await conn.scalar(
                sa.select(o.config).where(o.tenant_id == tenant_id, o.kind == kind, o.name == name)
            )
        return dict(config) if config is not None else None

    async def put(self, tenant_id: int, kind: str, name: str, config: dict[str, Any]) -> None:
        insert = (postgresql.insert if self.db.is_postgres else sqlite.insert)(notify_objects)
        stmt = insert.values(tenant_id=tenant_id, kind=kind, name=name, config=config, updated_at=now())
        async with self.db.begin() as conn:
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[notify_objects.c.tenant_id, notify_objects.c.kind, notify_objects.c.name],
                    set_={"config": stmt.excluded.config, "updated_at": stmt.excluded.updated_at},
                )
            )

    async def delete(self, tenant_id: int, kind: str, name: str) -> None:
        o = notify_objects.c
        async with self.db.begin() as conn:
            result = await conn.execute(
                notify_objects.delete().where(o.tenant_id == tenant_id, o.kind == kind, o.name == name)
            )
        if not result.rowcount:
            raise NotFound(f"{kind} {name!r} not found")

    async def log(self, tenant_id: int, deliveries: list[Delivery]) -> None:
        if not deliveries:
            return
        async with self.db.begin() as conn:
            await conn.execute(
                notify_deliveries.insert(),
                [
                    {
                        "tenant_id": tenant_id,
                        "ts": d.ts,
                        "condition_id": d.condition_id,
                        "episode": d.episode,
                        "route": d.route[:100],
                        "step": d.step,
                        "target": d.target[:400],
                        "channel": d.channel[:100],
                        "attempt": d.attempt,
                        "outcome": d.outcome,
                        "status": d.status,
                        "detail": d.detail[:1000],
                    }  # fmt: skip
                    for d in deliveries
                ],
            )

    async def steps_done(self, tenant_id: int, condition_id: int, episode: int) -> set[tuple[str, int]]:
        """(route, step) pairs of an episode that were attempted: not sent twice after a restart."""
        d = notify_deliveries.c
        async with self.db.connect() as conn:
            rows = await conn.execute(
                sa.select(d.route, d.step)
                .where(d.tenant_id == tenant_id, d.condition_id == condition_id, d.episode == episode)
                .distinct()
            )
            return {(r.route, r.step) for r in rows}

    async def deliveries(
        self, tenant_id: int, *, start: float, end: float, condition_id: int | None = None, limit: int = 10_000
    ) -> list[Delivery]:
        d = notify_deliveries.c
        query = sa.select(notify_deliveries).where(d.tenant_id == tenant_id, d.ts >= start, d.ts < end)
        if condition_id is not None:
            query = query.where(d.condition_id == condition_id)
        async with self.db.connect() as conn:
            rows = await conn.execute(query.order_by(d.ts, d.id).limit(limit))
            return [
                Delivery(
                    r.ts,
                    r.condition_id,
                    r.episode,
                    r.route,
                    r.step,
                    r.target,
                    r.channel,
                    r.attempt,
                    r.outcome,
                    r.status,
                    r.detail,
                )  # fmt: skip
                for r in rows
            ]
