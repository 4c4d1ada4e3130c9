"""Alarm handling as people do it: configure (engineers), acknowledge (operators), shelve and
suppress (supervisors). Every call checks the caller's permission and stays in its tenant;
an action is persisted (state and journal) before it is answered."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from server.alarms import kpis as kpi
from server.alarms.engine import AlarmEngine, Runtime
from server.alarms.repository import AlarmRepository, JournalEntry, StoredCondition
from server.alarms.spec import ConditionConfig
from server.domain import alarms as sm
from server.domain.alarms import PRIORITY_RANK, AlarmState, Priority
from server.domain.errors import DomainError, InvalidInput
from server.domain.namespace import in_subtree
from server.domain.permissions import Permission
from server.domain.principal import Principal
from server.domain.validation import validated
from server.services.commands import NO_MQTT, CommandService
from server.storage.repositories.audit import AuditRepository
from server.storage.repositories.nodes import NodeRepository

SUMMARY_STATES = {AlarmState.UNACK_ACTIVE.value, AlarmState.ACK_ACTIVE.value, AlarmState.UNACK_RTN.value}
"""What the summary shows unless asked otherwise: masked alarms have lists of their own."""


@dataclass(slots=True)
class AlarmFilter:
    area: str | None = None
    """A node id or path: only alarms whose source lies in that subtree."""
    priorities: list[Priority] | None = None
    states: list[str] | None = None
    include_normal: bool = False


@dataclass(slots=True)
class ActionResult:
    id: int
    ok: bool
    state: str | None = None
    detail: str | None = None


class AlarmService:
    def __init__(
        self, engine: AlarmEngine, repo: AlarmRepository, nodes: NodeRepository, audit: AuditRepository,
        commands: CommandService | None = None,
    ) -> None:  # fmt: skip
        self.engine, self.repo, self.nodes, self.audit = engine, repo, nodes, audit
        self.commands = commands

    # -- configuration (engineers) -------------------------------------------------------

    async def conditions(self, who: Principal) -> list[dict[str, Any]]:
        who.require(Permission.ALARMS_READ)
        return [self._condition_out(c) for c in await self.repo.conditions(who.tenant_id)]

    async def condition(self, who: Principal, condition_id: int) -> dict[str, Any]:
        who.require(Permission.ALARMS_READ)
        return self._condition_out(await self.repo.condition(who.tenant_id, condition_id))

    async def create(self, who: Principal, config: ConditionConfig) -> dict[str, Any]:
        who.require(Permission.ALARMS_CONFIGURE)
        await self._check_inputs(who, config)
        doc = config.model_dump(mode="json")
        stored = await self.repo.create(who.tenant_id, config.name, doc, who.subject)
        await self.audit.record(who.tenant_id, who.subject, "alarm.condition.create", str(stored.id),
                                detail={"version": stored.version, "config": doc})  # fmt: skip
        await self.engine.configure(stored)
        return self._condition_out(stored)

    async def update(
        self, who: Principal, condition_id: int, config: ConditionConfig, version: int | None
    ) -> dict[str, Any]:
        who.require(Permission.ALARMS_CONFIGURE)
        await self._check_inputs(who, config)
        doc = config.model_dump(mode="json")
        stored = await self.repo.update(who.tenant_id, condition_id, config.name, doc, who.subject, version)
        await self.audit.record(who.tenant_id, who.subject, "alarm.condition.update", str(stored.id),
                                detail={"version": stored.version, "config": doc})  # fmt: skip
        await self.engine.configure(stored)
        await self.engine.flush()
        return self._condition_out(stored)

    async def delete(self, who: Principal, condition_id: int) -> None:
        who.require(Permission.ALARMS_CONFIGURE)
        stored = await self.repo.condition(who.tenant_id, condition_id)
        await self.engine.flush()
        await self.repo.delete(who.tenant_id, condition_id)
        await self.engine.remove(condition_id)
        await self.audit.record(who.tenant_id, who.subject, "alarm.condition.delete", str(condition_id),
                                detail={"version": stored.version, "name": stored.name})  # fmt: skip

    async def _check_inputs(self, who: Principal, config: ConditionConfig) -> None:
        """Refuse a condition on a node this tenant does not have (another tenant's is not found),
        and an action whose target is not a device of this tenant or that nothing could carry."""
        for ref in config.inputs():
            try:
                await self.nodes.get(who.tenant_id, ref)
            except DomainError:
                raise InvalidInput(f"{ref!r} is not a node of this tenant", field="spec") from None
        for i, action in enumerate(config.actions):
            where = f"actions.{i}.device"
            if self.commands is None or not self.commands.available:
                raise InvalidInput(f"a command action can't run: {NO_MQTT}", field="actions")
            try:
                await self.commands.target(who.tenant_id, action.device, field=where)
            except InvalidInput:
                raise
            except DomainError:
                raise InvalidInput(f"{action.device!r} is not a device of this tenant", field=where) from None

    def _condition_out(self, c: StoredCondition) -> dict[str, Any]:
        rt = self.engine.runtimes.get(c.id)
        return {
            "id": c.id, "name": c.name, "version": c.version, "config": c.config,
            "updated_at": c.updated_at.timestamp() if c.updated_at else None, "updated_by": c.updated_by,
            "problem": rt.problem if rt else None, "state": rt.alarm.state.value if rt else None,
        }  # fmt: skip

    # -- the summary -------------------------------------------------------------------

    async def alarms(self, who: Principal, f: AlarmFilter) -> list[dict[str, Any]]:
        """Sorted by priority, then newest first (what needs attention on top)."""
        who.require(Permission.ALARMS_READ)
        area_path = (await self.nodes.get(who.tenant_id, f.area)).path if f.area else None
        out = [self.engine.view(rt) for rt in self._visible(who, f, area_path)]
        out.sort(key=lambda a: (PRIORITY_RANK[Priority(a["priority"])], -(a["changed_at"] or 0.0), a["id"]))
        return out

    def _visible(self, who: Principal, f: AlarmFilter, area_path: str | None) -> list[Runtime]:
        states = set(f.states or ())
        unknown = states - {s.value for s in AlarmState}
        if unknown:
            raise InvalidInput(f"unknown state(s): {', '.join(sorted(unknown))}", field="state")
        found = []
        for rt in self.engine.runtimes.values():
            if rt.tenant_id != who.tenant_id:
                continue
            state = rt.alarm.state.value
            if states and state not in states:
                continue
            if not states and state not in SUMMARY_STATES and not (f.include_normal and state == AlarmState.NORMAL):
                continue
            if f.priorities and rt.priority not in f.priorities:
                continue
            if area_path is not None and not in_subtree(rt.source_path, area_path):
                continue
            found.append(rt)
        return found

    def engine_stats(self, who: Principal) -> dict[str, Any]:
        """This tenant's share of the engine's work (every tenant's for a system administrator)."""
        who.require(Permission.ALARMS_READ)
        mine = [s for t, s in self.engine.stats.items() if who.is_system_admin or t == who.tenant_id]
        samples = sum(s.samples for s in mine)
        busy = sum(s.busy_s for s in mine)
        conditions = sum(1 for rt in self.engine.runtimes.values()
                         if who.is_system_admin or rt.tenant_id == who.tenant_id)  # fmt: skip
        return {
            "conditions": conditions, "samples": samples, "evaluations": sum(s.evaluations for s in mine),
            "transitions": sum(s.transitions for s in mine), "busy_s": busy,
            "us_per_sample": busy / samples * 1e6 if samples else None,
        }  # fmt: skip

    async def alarm(self, who: Principal, condition_id: int) -> dict[str, Any]:
        who.require(Permission.ALARMS_READ)
        return self.engine.view(self.engine.runtime(who.tenant_id, condition_id))

    # -- handling ----------------------------------------------------------------------

    async def acknowledge(
        self, who: Principal, ids: list[int] | None, comment: str | None, visible: AlarmFilter | None = None
    ) -> list[ActionResult]:
        """Acknowledge the given alarms, or every unacknowledged alarm the filter shows."""
        who.require(Permission.ALARMS_ACK)
        now = time.time()
        if ids is None:
            area_path = (await self.nodes.get(who.tenant_id, visible.area)).path if visible and visible.area else None
            targets = [rt for rt in self._visible(who, visible or AlarmFilter(), area_path) if not rt.alarm.acked]
        else:
            targets = [self.engine.runtime(who.tenant_id, i) for i in dict.fromkeys(ids)]
        results = []
        for rt in targets:
            try:
                self.engine.act(rt, sm.acknowledge(rt.alarm, now, who.subject, comment))
                results.append(ActionResult(rt.id, True, rt.alarm.state.value))
            except DomainError as exc:
                results.append(ActionResult(rt.id, False, rt.alarm.state.value, exc.detail))
        await self.engine.flush()
        return results

    async def comment(self, who: Principal, condition_id: int, text: str) -> dict[str, Any]:
        who.require(Permission.ALARMS_ACK)
        rt = self.engine.runtime(who.tenant_id, condition_id)
        self.engine.act(rt, sm.add_comment(rt.alarm, time.time(), who.subject, text))
        return await self._done(rt)

    async def reset(self, who: Principal, condition_id: int, comment: str | None) -> dict[str, Any]:
        who.require(Permission.ALARMS_ACK)
        rt = self.engine.runtime(who.tenant_id, condition_id)
        self.engine.act(rt, sm.reset(rt.alarm, time.time(), who.subject, comment))
        return await self._done(rt)

    async def shelve(self, who: Principal, condition_id: int, reason: str, duration_s: float | None) -> dict[str, Any]:
        who.require(Permission.ALARMS_SHELVE)
        rt = self.engine.runtime(who.tenant_id, condition_id)
        outcome = sm.shelve(rt.alarm, time.time(), who.subject, reason, duration_s=duration_s,
                            max_shelve_s=rt.config.max_shelve_s)  # fmt: skip
        self.engine.act(rt, outcome)
        await self._audit(who, "alarm.shelve", rt, {"reason": reason, "duration_s": duration_s})
        return await self._done(rt)

    async def unshelve(self, who: Principal, condition_id: int, comment: str | None) -> dict[str, Any]:
        who.require(Permission.ALARMS_SHELVE)
        rt = self.engine.runtime(who.tenant_id, condition_id)
        self.engine.act(rt, sm.unshelve(rt.alarm, time.time(), who.subject, comment))
        await self._audit(who, "alarm.unshelve", rt, {"comment": comment})
        return await self._done(rt)

    async def suppress(self, who: Principal, condition_id: int, on: bool, reason: str | None) -> dict[str, Any]:
        who.require(Permission.ALARMS_MANAGE)
        if on and not (reason or "").strip():
            raise InvalidInput("suppressing an alarm needs a reason", field="reason")
        rt = self.engine.runtime(who.tenant_id, condition_id)
        self.engine.manual_suppress(rt, on, time.time(), who.subject, reason)
        await self._audit(who, "alarm.suppress" if on else "alarm.unsuppress", rt, {"reason": reason})
        return await self._done(rt)

    async def out_of_service(self, who: Principal, condition_id: int, on: bool, reason: str | None) -> dict[str, Any]:
        who.require(Permission.ALARMS_MANAGE)
        rt = self.engine.runtime(who.tenant_id, condition_id)
        now = time.time()
        if on:
            outcome = sm.remove_from_service(rt.alarm, now, who.subject, reason or "")
        else:
            outcome = sm.return_to_service(rt.alarm, now, who.subject, reason)
        self.engine.act(rt, outcome)
        await self._audit(who, "alarm.out_of_service" if on else "alarm.in_service", rt, {"reason": reason})
        return await self._done(rt)

    async def _done(self, rt: Runtime) -> dict[str, Any]:
        await self.engine.flush()
        return self.engine.view(rt)

    async def _audit(self, who: Principal, action: str, rt: Runtime, detail: dict[str, Any]) -> None:
        await self.audit.record(who.tenant_id, who.subject, action, str(rt.id), detail={"name": rt.name, **detail})

    # -- journal -----------------------------------------------------------------------

    async def journal(
        self, who: Principal, *, start: float, end: float, condition_id: int | None = None,
        events: list[str] | None = None, priorities: list[Priority] | None = None, area: str | None = None,
        limit: int = 10_000,
    ) -> list[JournalEntry]:  # fmt: skip
        who.require(Permission.ALARMS_READ)
        if end <= start:
            raise InvalidInput("end must be after start", field="end")
        area_path = (await self.nodes.get(who.tenant_id, area)).path if area else None
        await self.engine.flush()
        return await self.repo.journal(
            who.tenant_id, start=start, end=end, condition_id=condition_id, events=events,
            priorities=[p.value for p in priorities] if priorities else None, source_prefix=area_path, limit=limit,
        )  # fmt: skip

    async def kpis(self, who: Principal, *, start: float, end: float, operators: int) -> dict[str, Any]:
        """ISA-18.2 performance figures over [start, end) for this tenant."""
        who.require(Permission.ALARMS_READ)
        if end <= start:
            raise InvalidInput("end must be after start", field="end")
        await self.engine.flush()
        raised = await self.repo.journal(who.tenant_id, start=start, end=end, events=list(kpi.RAISING),
                                         limit=1_000_000)  # fmt: skip
        shelving = await self.repo.journal(
            who.tenant_id, start=start - MAX_SHELVE_LOOKBACK_S, end=end, events=["shelved", "unshelved", "disabled"],
            limit=1_000_000,
        )  # fmt: skip
        standing = [
            kpi.Standing(rt.id, rt.name, rt.alarm.active_since)
            for rt in self.engine.runtimes.values()
            if rt.tenant_id == who.tenant_id and rt.alarm.active and rt.alarm.active_since is not None
        ]
        return kpi.kpis([*raised, *shelving], start=start, end=end, operators=operators, standing=standing,
                        now=time.time())  # fmt: skip


MAX_SHELVE_LOOKBACK_S = 30 * 86_400.0
"""A shelve that began before the range can still be open in it: the longest shelve allowed."""


def parse_config(doc: dict[str, Any]) -> ConditionConfig:
    """A config from a request body, as a 422 with the field path when it is wrong."""
    return validated(ConditionConfig, doc)
