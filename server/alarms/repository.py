"""Conditions, their persisted alarm states and the journal; every query names its tenant."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from server.domain.alarms import Alarm, Shelving, Transition
from server.domain.errors import Conflict, NotFound
from server.storage.database import Database
from server.storage.repositories.base import now, utc
from server.storage.schema import alarm_conditions, alarm_journal, alarm_states


@dataclass(slots=True)
class StoredCondition:
    id: int
    tenant_id: int
    name: str
    config: dict[str, Any]
    version: int
    updated_at: datetime | None
    updated_by: str


@dataclass(slots=True)
class JournalRecord:
    tenant_id: int
    condition_id: int
    condition_name: str
    source: str
    priority: str
    transition: Transition


@dataclass(slots=True)
class JournalEntry:
    id: int
    condition_id: int
    condition_name: str
    source: str
    ts: float
    event: str
    from_state: str
    to_state: str
    priority: str
    value: float | None
    level: str | None
    user: str
    comment: str | None


def alarm_to_json(alarm: Alarm) -> dict[str, Any]:
    doc = dataclasses.asdict(alarm)
    doc["shelving"] = alarm.shelving.value
    return doc


def alarm_from_json(doc: dict[str, Any]) -> Alarm:
    known = {f.name for f in dataclasses.fields(Alarm)}
    fields = {k: v for k, v in doc.items() if k in known}
    fields["shelving"] = Shelving(fields.get("shelving", Shelving.UNSHELVED.value))
    return Alarm(**fields)


def _condition(row: Any) -> StoredCondition:
    return StoredCondition(row.id, row.tenant_id, row.name, dict(row.config), row.version, utc(row.updated_at),
                           row.updated_by)  # fmt: skip


class AlarmRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- conditions --------------------------------------------------------------------

    async def conditions(self, tenant_id: int | None = None) -> list[StoredCondition]:
        """One tenant's conditions; None: every tenant's (the engine at start-up)."""
        query = sa.select(alarm_conditions).order_by(alarm_conditions.c.id)
        if tenant_id is not None:
            query = query.where(alarm_conditions.c.tenant_id == tenant_id)
        async with self.db.connect() as conn:
            return [_condition(r) for r in await conn.execute(query)]

    async def condition(self, tenant_id: int, condition_id: int) -> StoredCondition:
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(alarm_conditions).where(
                        alarm_conditions.c.tenant_id == tenant_id, alarm_conditions.c.id == condition_id
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"alarm condition {condition_id} not found")
        return _condition(row)

    async def create(self, tenant_id: int, name: str, config: dict[str, Any], user: str) -> StoredCondition:
        async with self.db.begin() as conn:
            await self._name_free(conn, tenant_id, name)
            new_id = await conn.scalar(
                alarm_conditions.insert()
                .values(tenant_id=tenant_id, name=name, config=config, version=1, updated_by=user, updated_at=now())
                .returning(alarm_conditions.c.id)
            )
        return await self.condition(tenant_id, int(new_id))

    async def update(
        self, tenant_id: int, condition_id: int, name: str, config: dict[str, Any], user: str,
        expected_version: int | None,
    ) -> StoredCondition:  # fmt: skip
        async with self.db.begin() as conn:
            current = await conn.scalar(
                sa.select(alarm_conditions.c.version).where(
                    alarm_conditions.c.tenant_id == tenant_id, alarm_conditions.c.id == condition_id
                )
            )
            if current is None:
                raise NotFound(f"alarm condition {condition_id} not found")
            if expected_version is not None and expected_version != current:
                raise Conflict(
                    f"the condition is at version {current}, not {expected_version}: someone changed it meanwhile",
                    field="version",
                )
            await self._name_free(conn, tenant_id, name, condition_id)
            await conn.execute(
                alarm_conditions.update()
                .where(alarm_conditions.c.id == condition_id)
                .values(name=name, config=config, version=current + 1, updated_by=user, updated_at=now())
            )
        return await self.condition(tenant_id, condition_id)

    async def delete(self, tenant_id: int, condition_id: int) -> None:
        async with self.db.begin() as conn:
            result = await conn.execute(
                alarm_conditions.delete().where(
                    alarm_conditions.c.tenant_id == tenant_id, alarm_conditions.c.id == condition_id
                )
            )
            await conn.execute(alarm_states.delete().where(alarm_states.c.condition_id == condition_id))
        if not result.rowcount:
            raise NotFound(f"alarm condition {condition_id} not found")

    @staticmethod
    async def _name_free(conn: Any, tenant_id: int, name: str, other_than: int | None = None) -> None:
        query = sa.select(alarm_conditions.c.id).where(
            alarm_conditions.c.tenant_id == tenant_id, alarm_conditions.c.name == name
        )
        taken = await conn.scalar(query)
        if taken is not None and taken != other_than:
            raise Conflict(f"an alarm condition named {name!r} already exists", field="name")

    # -- states and journal ------------------------------------------------------------

    async def states(self) -> dict[int, Alarm]:
        async with self.db.connect() as conn:
            rows = await conn.execute(sa.select(alarm_states.c.condition_id, alarm_states.c.state))
            return {r.condition_id: alarm_from_json(dict(r.state)) for r in rows}

    async def save(self, states: dict[int, tuple[int, Alarm]], journal: list[JournalRecord]) -> None:
        """States (condition id -> tenant, alarm) and journal records in one transaction."""
        async with self.db.begin() as conn:
            if states:
                rows = [
                    {"condition_id": cid, "tenant_id": tenant_id, "state": alarm_to_json(alarm), "updated_at": now()}
                    for cid, (tenant_id, alarm) in states.items()
                ]
                insert = (postgresql.insert if self.db.is_postgres else sqlite.insert)(alarm_states)
                # a condition deleted meanwhile has no row to refer to: skip it rather than fail the batch
                present = set(
                    await conn.scalars(sa.select(alarm_conditions.c.id).where(alarm_conditions.c.id.in_(list(states))))
                )
                rows = [r for r in rows if r["condition_id"] in present]
                if rows:
                    stmt = insert.values(rows)
                    await conn.execute(
                        stmt.on_conflict_do_update(
                            index_elements=[alarm_states.c.condition_id],
                            set_={"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at},
                        )
                    )
            if journal:
                await conn.execute(
                    alarm_journal.insert(),
                    [
                        {
                            "tenant_id": j.tenant_id, "condition_id": j.condition_id,
                            "condition_name": j.condition_name, "source": j.source[:1000], "ts": j.transition.ts,
                            "event": j.transition.event, "from_state": j.transition.from_state.value,
                            "to_state": j.transition.to_state.value, "priority": j.priority,
                            "value": j.transition.value, "level": j.transition.level, "user": j.transition.user,
                            "comment": j.transition.comment[:2000] if j.transition.comment else None,
                        }
                        for j in journal
                    ],
                )  # fmt: skip

    async def journal(
        self, tenant_id: int, *, start: float, end: float, condition_id: int | None = None,
        events: list[str] | None = None, priorities: list[str] | None = None, source_prefix: str | None = None,
        limit: int = 10_000,
    ) -> list[JournalEntry]:  # fmt: skip
        j = alarm_journal.c
        query = sa.select(alarm_journal).where(j.tenant_id == tenant_id, j.ts >= start, j.ts < end)
        if condition_id is not None:
            query = query.where(j.condition_id == condition_id)
        if events:
            query = query.where(j.event.in_(events))
        if priorities:
            query = query.where(j.priority.in_(priorities))
        if source_prefix:
            escaped = source_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(sa.or_(j.source == source_prefix, j.source.like(escaped + "/%", escape="\\")))
        query = query.order_by(j.ts, j.id).limit(limit)
        async with self.db.connect() as conn:
            return [
                JournalEntry(
                    r.id,
                    r.condition_id,
                    r.condition_name,
                    r.source,
                    r.ts,
                    r.event,
                    r.from_state,
                    r.to_state,
                    r.priority,
                    r.value,
                    r.level,
                    r.user,
                    r.comment,
                )  # fmt: skip
                for r in await conn.execute(query)
            ]
