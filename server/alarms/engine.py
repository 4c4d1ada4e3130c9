"""The alarm engine: evaluates conditions on each sample the pipeline publishes, runs the
timers (delays, staleness, windows, shelve expiry), persists states and the journal, and
publishes alarm events on the bus.

Event-driven: a sample reaches only the conditions on its own tag (`_by_tag`), so its cost
grows with those, not with the number of conditions. Bus handlers must not block: a
transition changes memory at once, and a flusher task writes states and journal records in
batches (every `flush_interval`, and before an operator's request is answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from pydantic import ValidationError

from server.alarms import evaluators as ev
from server.alarms.repository import AlarmRepository, JournalRecord, StoredCondition
from server.alarms.spec import Anomaly, ConditionConfig, Stale, Window
from server.bus import Bus, Event, Message, ValueBatch
from server.domain import alarms as sm
from server.domain.alarms import SEVERITY, Alarm, Outcome, Priority
from server.domain.errors import DomainError, NotFound
from server.domain.namespace import DeviceStatus, Node, NodeClass
from server.domain.quality import Quality
from server.domain.sample import TagUpdate
from server.storage.repositories.nodes import NodeRepository

log = logging.getLogger(__name__)

SUPPRESS = "suppress"
"""Input role of the tag that suppresses by design (`suppress_when`)."""
OFFLINE, MAINTENANCE, EQUIPMENT, MANUAL = "device offline", "maintenance window", "equipment state", "by hand"


@dataclass(slots=True)
class EngineStats:
    samples: int = 0
    """Samples that reached at least one condition."""
    evaluations: int = 0
    transitions: int = 0
    busy_s: float = 0.0
    """Time spent judging samples (on the event loop, in the publisher's call)."""


@dataclass(slots=True)
class Runtime:
    """One condition as the engine runs it."""

    id: int
    tenant_id: int
    name: str
    version: int
    config: ConditionConfig
    alarm: Alarm
    source: Node | None = None
    device: Node | None = None
    inputs: dict[int, list[str]] = field(default_factory=dict)
    evaluator: ev.Evaluator | None = None
    raw: ev.Verdict | None = None
    """The evaluator's last verdict, before schedule and delays."""
    pending: asyncio.TimerHandle | None = None
    pending_verdict: ev.Verdict | None = None
    stale_timer: asyncio.TimerHandle | None = None
    shelve_timer: asyncio.TimerHandle | None = None
    window_timer: asyncio.TimerHandle | None = None
    suppressions: set[str] = field(default_factory=set)
    problem: str | None = None
    """Why the condition can't run (an input that does not exist), shown by the API."""
    broken: bool = False
    """Its stored configuration does not validate any more: kept visible, never run."""
    stale: bool = False
    live: float | None = None
    """The newest Good value of its main input."""

    @property
    def priority(self) -> Priority:
        return self.config.priority_for(self.alarm.level)

    @property
    def source_path(self) -> str:
        return self.source.path if self.source else ""

    def cancel_timers(self) -> None:
        for handle in (self.pending, self.stale_timer, self.shelve_timer, self.window_timer):
            if handle is not None:
                handle.cancel()
        self.pending = self.stale_timer = self.shelve_timer = self.window_timer = None


class ActionSink(Protocol):
    def fire(self, rt: Runtime, transition: sm.Transition) -> None:
        """Queue the actions a committed transition triggers; must not wait."""


class AlarmEngine:
    def __init__(
        self, repo: AlarmRepository, nodes: NodeRepository, bus: Bus, *, flush_interval: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.repo, self.nodes, self.bus = repo, nodes, bus
        self.flush_interval = flush_interval
        self.clock = clock
        self.runtimes: dict[int, Runtime] = {}
        self._by_tag: dict[int, list[tuple[Runtime, str]]] = {}
        self._by_device: dict[tuple[int, str], list[Runtime]] = {}
        self._dirty: dict[int, tuple[int, Alarm]] = {}
        self._journal: list[JournalRecord] = []
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._subscription: Any = None
        self._resolving: set[int] = set()
        self._changed: set[int] = set()
        self._created: set[int] = set()
        self._nodes_memo: dict[tuple[int, str | int], Node] | None = None
        """Node lookups shared while many conditions resolve at once (start-up)."""
        self.stats: dict[int, EngineStats] = {}
        """Per tenant: what the engine judged and what that cost."""
        self.actions: ActionSink | None = None
        """Runs conditions' actions (server/alarms/actions.py); set while it runs."""

    # -- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        states = await self.repo.states()
        self._nodes_memo = {}
        try:
            for stored in await self.repo.conditions():
                await self._install(stored, states.get(stored.id))
        finally:
            self._nodes_memo = None
        self._subscription = self.bus.subscribe(None, self._on_message)
        self._flusher = asyncio.create_task(self._flush_loop(), name="alarm-flusher")
        log.info("alarm engine: %d conditions", len(self.runtimes))

    async def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        for rt in self.runtimes.values():
            rt.cancel_timers()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()

    async def flush(self) -> None:
        """Write what changed; operator actions (and journal reads) await it before they answer.
        One flush at a time: a caller that arrives during the flusher's write waits for it, so
        what it asks about is stored when it returns."""
        async with self._flush_lock:
            if not self._dirty and not self._journal:
                return
            states, journal = self._dirty, self._journal
            self._dirty, self._journal = {}, []
            try:
                await self.repo.save(states, journal)
            except Exception:
                # keep them for the next attempt (newer states of the same condition win)
                self._dirty = states | self._dirty
                self._journal = journal + self._journal
                raise

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.flush_interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:
                log.error("alarm engine: could not persist states and journal (will retry): %s", exc)
                await asyncio.sleep(1.0)
                self._wake.set()

    # -- configuration -----------------------------------------------------------------

    async def _install(self, stored: StoredCondition, alarm: Alarm | None) -> Runtime:
        problem: str | None = None
        try:
            config = ConditionConfig.model_validate(stored.config)
        except ValidationError as exc:  # stored by an older version: keep it visible, not running
            config = ConditionConfig.model_construct(name=stored.name, enabled=False)  # type: ignore[call-arg]
            problem = f"stored configuration is not valid any more: {exc.errors()[0]['msg']}"
        rt = Runtime(stored.id, stored.tenant_id, stored.name, stored.version, config, alarm or Alarm())
        rt.problem, rt.broken = problem, problem is not None
        self.runtimes[rt.id] = rt
        if problem is None:
            await self._resolve(rt)
        if config.enabled and rt.problem is None:
            self._arm(rt)
        return rt

    async def _resolve(self, rt: Runtime) -> None:
        """Node references -> tag ids; a missing input leaves the condition idle with a reason.

        Everything is looked up first and swapped in without an await in between, so no sample
        falls between the old index and the new one; the evaluator (and its memory) is kept."""
        cfg, spec = rt.config, rt.config.spec
        inputs: dict[int, list[str]] = {}
        source: Node | None = None
        problem: str | None = None
        refs: list[tuple[str, str]] = [(spec.device if isinstance(spec, Anomaly) else spec.tag, ev.MAIN)]
        other = getattr(spec, "setpoint_tag", None) or getattr(spec, "other_tag", None)
        if other:
            refs.append((other, ev.OTHER))
        if cfg.suppress_when is not None:
            refs.append((cfg.suppress_when.tag, SUPPRESS))
        for ref, role in refs:
            try:
                node = await self._node(rt.tenant_id, ref)
            except DomainError:
                problem = f"{ref!r} does not exist"
                break
            if role == ev.MAIN:
                source = node
            wanted = NodeClass.DEVICE if isinstance(spec, Anomaly) and role == ev.MAIN else NodeClass.TAG
            if node.node_class is not wanted:
                problem = f"{ref!r} is a {node.node_class.value}, not a {wanted.value}"
                break
            if wanted is NodeClass.TAG:
                inputs.setdefault(node.id, []).append(role)
        device = None
        if source is not None and problem is None:
            device = source if source.node_class is NodeClass.DEVICE else await self._device_of(source)
        self._unindex(rt)
        rt.source, rt.problem = source, problem
        if problem is not None:
            rt.inputs, rt.device = {}, None
            return
        rt.inputs, rt.device = inputs, device
        if rt.evaluator is None:
            rt.evaluator = ev.evaluator_for(spec)
        rt.stale = isinstance(spec, Stale)
        for tag_id, roles in inputs.items():
            self._by_tag.setdefault(tag_id, []).extend((rt, role) for role in roles)
        if device is not None:
            self._by_device.setdefault((rt.tenant_id, device.node_id), []).append(rt)

    async def _device_of(self, tag: Node) -> Node | None:
        """The device a tag belongs to (its nearest device ancestor), for offline suppression."""
        parent_id = tag.parent_id
        while parent_id is not None:
            memo = self._nodes_memo
            node = memo.get((tag.tenant_id, parent_id)) if memo is not None else None
            if node is None:
                found = await self.nodes.by_ids(tag.tenant_id, [parent_id])
                if not found:
                    return None
                node = found[0]
                if memo is not None:
                    memo[(tag.tenant_id, parent_id)] = node
            if node.node_class is NodeClass.DEVICE:
                return node
            parent_id = node.parent_id
        return None

    async def _node(self, tenant_id: int, ref: str) -> Node:
        memo = self._nodes_memo
        if memo is None:
            return await self.nodes.get(tenant_id, ref)
        node = memo.get((tenant_id, ref))
        if node is None:
            node = memo[(tenant_id, ref)] = await self.nodes.get(tenant_id, ref)
        return node

    def _unindex(self, rt: Runtime) -> None:
        for tag_id in rt.inputs:
            entries = [e for e in self._by_tag.get(tag_id, []) if e[0] is not rt]
            if entries:
                self._by_tag[tag_id] = entries
            else:
                self._by_tag.pop(tag_id, None)
        if rt.device is not None:
            key = (rt.tenant_id, rt.device.node_id)
            left = [r for r in self._by_device.get(key, []) if r is not rt]
            if left:
                self._by_device[key] = left
            else:
                self._by_device.pop(key, None)

    def _arm(self, rt: Runtime) -> None:
        """Timers and suppressions a (re)started condition needs."""
        now = self.clock()
        if rt.device is not None and rt.config.suppress_when_offline and rt.device.status is DeviceStatus.OFFLINE:
            rt.suppressions.add(OFFLINE)
        if rt.alarm.suppressed and MANUAL in (rt.alarm.suppressed_reason or "").split(", "):
            rt.suppressions.add(MANUAL)  # by hand survives a restart; the automatic reasons are re-derived
        self._windows(rt, now)
        self._sync_suppression(rt, now)
        if isinstance(rt.config.spec, Stale):
            self._arm_stale(rt)
        if rt.alarm.shelved_until is not None:
            self._arm_shelve(rt)

    async def configure(self, stored: StoredCondition) -> Runtime:
        """A condition was created or changed: start it afresh, keeping its alarm state."""
        old = self.runtimes.pop(stored.id, None)
        alarm = old.alarm if old else None
        if old is not None:
            old.cancel_timers()
            self._unindex(old)
        rt = await self._install(stored, alarm)
        if not rt.config.enabled and rt.alarm.retained:  # disabled: nothing stays on the summary
            self._commit(rt, Outcome(Alarm(), [sm.Transition("disabled", rt.alarm.state, sm.AlarmState.NORMAL,
                                                             self.clock(), stored.updated_by)]))  # fmt: skip
        self.bus.publish(Event(rt.tenant_id, "alarm_conditions", {"id": rt.id, "action": "configured"}))
        return rt

    async def remove(self, condition_id: int) -> None:
        rt = self.runtimes.pop(condition_id, None)
        if rt is None:
            return
        rt.cancel_timers()
        self._unindex(rt)
        self._dirty.pop(condition_id, None)
        self._publish(rt, removed=True)
        self.bus.publish(Event(rt.tenant_id, "alarm_conditions", {"id": rt.id, "action": "removed"}))

    # -- values ------------------------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        if isinstance(message, ValueBatch):
            started = time.perf_counter()
            by_tag = self._by_tag
            samples = evaluations = 0
            for u in message.updates:
                entries = by_tag.get(u.tag_id)
                if entries:
                    samples += 1
                    evaluations += len(entries)
                    for rt, role in entries:
                        self._sample(rt, role, u)
            if samples:
                stats = self._stats(message.tenant_id)
                stats.samples += samples
                stats.evaluations += evaluations
                stats.busy_s += time.perf_counter() - started
        elif isinstance(message, Event):
            if message.kind == "device_status":
                self._device_status(message.tenant_id, str(message.data.get("node_id")), message.data.get("status"))
            elif message.kind == "namespace":
                self._namespace_changed(message.tenant_id, only_created=set(message.data) <= {"created"})

    def _stats(self, tenant_id: int) -> EngineStats:
        stats = self.stats.get(tenant_id)
        if stats is None:
            stats = self.stats[tenant_id] = EngineStats()
        return stats

    def _sample(self, rt: Runtime, role: str, u: TagUpdate) -> None:
        if rt.evaluator is None or not rt.config.enabled:
            return
        if rt.stale and role == ev.MAIN:
            self._arm_stale(rt)  # any sample, whatever its quality, proves the source is talking
        if u.quality is not Quality.GOOD:
            return  # a Bad or Uncertain value does not judge the process
        if role == ev.MAIN:
            rt.live = u.value
        if role == SUPPRESS:
            assert rt.config.suppress_when is not None
            w = rt.config.suppress_when
            changed = ev.compare(w.op, u.value, w.value) != (EQUIPMENT in rt.suppressions)
            if changed:
                (rt.suppressions.add if EQUIPMENT not in rt.suppressions else rt.suppressions.discard)(EQUIPMENT)
                self._sync_suppression(rt, u.ts)
            return
        verdict = rt.evaluator.sample(role, u.ts, u.value)
        if verdict is not None:
            rt.raw = verdict
            a = rt.alarm
            if (
                verdict.condition == a.condition
                and (not a.condition or verdict.level == a.level)
                and rt.pending is None
            ):
                return  # the common case: nothing changes (the state machine would say the same)
            self._judge(rt, verdict, u.ts)

    def anomaly_score(self, tenant_id: int, device_node_id: str, score: float, ts: float | None = None) -> None:
        """The entry point of the anomaly detector: a score per device window."""
        for rt in self._by_device.get((tenant_id, device_node_id), []):
            if isinstance(rt.config.spec, Anomaly) and rt.evaluator is not None and rt.config.enabled:
                verdict = rt.evaluator.sample(ev.MAIN, ts or self.clock(), score)
                if verdict is not None:
                    rt.raw = verdict
                    self._judge(rt, verdict, ts or self.clock())

    def _judge(self, rt: Runtime, verdict: ev.Verdict, ts: float) -> None:
        """Schedule and delays between the evaluator's verdict and the state machine."""
        if rt.config.schedule and not _inside(rt.config.schedule, ts):
            verdict = verdict._replace(condition=False, level=None)
        changing = verdict.condition != rt.alarm.condition
        spec = rt.config.spec
        delay = (spec.on_delay_s if verdict.condition else spec.off_delay_s) if changing else 0.0
        if changing and delay > 0:
            if rt.pending is None or rt.pending_verdict is None or rt.pending_verdict.condition != verdict.condition:
                if rt.pending is not None:
                    rt.pending.cancel()
                rt.pending = asyncio.get_running_loop().call_later(delay, self._delay_over, rt)
            rt.pending_verdict = verdict
            return
        if rt.pending is not None:  # it went back before the delay was over: nothing happened
            rt.pending.cancel()
            rt.pending = rt.pending_verdict = None
        self._apply(rt, verdict, ts)

    def _delay_over(self, rt: Runtime) -> None:
        verdict, rt.pending, rt.pending_verdict = rt.pending_verdict, None, None
        if verdict is not None and self.runtimes.get(rt.id) is rt:
            self._apply(rt, verdict, self.clock())

    def _apply(self, rt: Runtime, verdict: ev.Verdict, ts: float) -> None:
        outcome = sm.evaluate(rt.alarm, verdict.condition, ts, value=verdict.value, limit=verdict.limit,
                              level=verdict.level, latch=rt.config.latch)  # fmt: skip
        self._commit(rt, outcome)

    # -- timers ------------------------------------------------------------------------

    def _arm_stale(self, rt: Runtime) -> None:
        spec = rt.config.spec
        assert isinstance(spec, Stale)
        if rt.stale_timer is not None:
            rt.stale_timer.cancel()
        rt.stale_timer = asyncio.get_running_loop().call_later(spec.timeout_s, self._stale, rt)
        if rt.alarm.condition or (rt.pending_verdict is not None and rt.pending_verdict.condition):
            self._judge(rt, ev.Verdict(False, None, spec.timeout_s), self.clock())

    def _stale(self, rt: Runtime) -> None:
        rt.stale_timer = None
        if self.runtimes.get(rt.id) is rt and rt.config.enabled:
            spec = rt.config.spec
            assert isinstance(spec, Stale)
            self._judge(rt, ev.Verdict(True, None, spec.timeout_s, "stale"), self.clock())

    def _arm_shelve(self, rt: Runtime) -> None:
        if rt.shelve_timer is not None:
            rt.shelve_timer.cancel()
            rt.shelve_timer = None
        until = rt.alarm.shelved_until
        if until is not None:
            rt.shelve_timer = asyncio.get_running_loop().call_later(max(0.0, until - self.clock()),
                                                                    self._shelve_expired, rt)  # fmt: skip

    def _shelve_expired(self, rt: Runtime) -> None:
        rt.shelve_timer = None
        if self.runtimes.get(rt.id) is rt and rt.alarm.shelving is sm.Shelving.TIMED:
            self._commit(rt, sm.unshelve(rt.alarm, self.clock(), sm.SYSTEM, "shelve time expired"))

    def _windows(self, rt: Runtime, now: float) -> None:
        """Maintenance windows suppress; schedule windows gate evaluation. Re-armed at each edge."""
        if rt.window_timer is not None:
            rt.window_timer.cancel()
            rt.window_timer = None
        windows = [*rt.config.schedule, *rt.config.maintenance]
        if not windows:
            return
        if rt.config.maintenance and _inside(rt.config.maintenance, now):
            rt.suppressions.add(MAINTENANCE)
        else:
            rt.suppressions.discard(MAINTENANCE)
        edges = [e for e in (w.next_edge(now) for w in windows) if e is not None]
        if edges:
            delay = max(0.001, min(edges) - now)
            rt.window_timer = asyncio.get_running_loop().call_later(delay, self._window_edge, rt)

    def _window_edge(self, rt: Runtime) -> None:
        rt.window_timer = None
        if self.runtimes.get(rt.id) is not rt:
            return
        now = self.clock()
        self._windows(rt, now)
        self._sync_suppression(rt, now)
        if rt.config.schedule and rt.raw is not None:
            self._judge(rt, rt.raw, now)

    # -- suppression -------------------------------------------------------------------

    def _device_status(self, tenant_id: int, node_id: str, status: object) -> None:
        for rt in self._by_device.get((tenant_id, node_id), []):
            if rt.device is not None:
                rt.device = replace(rt.device, status=DeviceStatus(str(status)))
            if not rt.config.suppress_when_offline:
                continue
            if status == DeviceStatus.OFFLINE.value:
                rt.suppressions.add(OFFLINE)
            else:
                rt.suppressions.discard(OFFLINE)
            self._sync_suppression(rt, self.clock())

    def _sync_suppression(self, rt: Runtime, ts: float) -> None:
        if rt.suppressions:
            reason = ", ".join(sorted(rt.suppressions))
            self._commit(rt, sm.suppress(rt.alarm, ts, reason))
        elif rt.alarm.suppressed:
            self._commit(rt, sm.unsuppress(rt.alarm, ts))

    def _namespace_changed(self, tenant_id: int, *, only_created: bool = False) -> None:
        """Nodes moved, renamed or deleted: re-resolve that tenant's conditions (in the background);
        nodes only created: only the conditions waiting for a missing input."""
        if only_created:
            self._created.add(tenant_id)
        else:
            self._changed.add(tenant_id)
        if tenant_id in self._resolving:
            return
        self._resolving.add(tenant_id)

        async def again() -> None:
            try:
                while tenant_id in self._changed or tenant_id in self._created:  # events during a pass: again
                    await asyncio.sleep(0.2)  # a burst of namespace events becomes one pass
                    everything = tenant_id in self._changed
                    self._changed.discard(tenant_id)
                    self._created.discard(tenant_id)
                    for rt in [r for r in self.runtimes.values() if r.tenant_id == tenant_id and not r.broken
                               and (everything or r.problem is not None)]:  # fmt: skip
                        await self._re_resolve(rt)
            except Exception:
                log.exception("alarm engine: re-resolving the conditions of tenant %s failed", tenant_id)
            finally:
                self._resolving.discard(tenant_id)

        asyncio.get_running_loop().create_task(again())  # noqa: RUF006 - ends by itself, logs its own errors

    async def _re_resolve(self, rt: Runtime) -> None:
        if self.runtimes.get(rt.id) is not rt:
            return  # reconfigured or removed meanwhile
        before = set(rt.inputs), rt.problem
        await self._resolve(rt)
        if (set(rt.inputs), rt.problem) == before:
            return
        log.info("alarm condition %s re-resolved: %s", rt.name, rt.problem or "running")
        rt.cancel_timers()
        if rt.problem is None and rt.config.enabled:
            self._arm(rt)

    # -- operator actions --------------------------------------------------------------

    def runtime(self, tenant_id: int, condition_id: int) -> Runtime:
        rt = self.runtimes.get(condition_id)
        if rt is None or rt.tenant_id != tenant_id:
            raise NotFound(f"alarm {condition_id} not found")
        return rt

    def act(self, rt: Runtime, outcome: Outcome) -> None:
        """Apply an operator's action (already validated by the state machine)."""
        self._commit(rt, outcome)
        if outcome.alarm.shelving is sm.Shelving.TIMED or rt.shelve_timer is not None:
            self._arm_shelve(rt)

    def manual_suppress(self, rt: Runtime, on: bool, ts: float, user: str, reason: str | None) -> None:
        if on:
            rt.suppressions.add(MANUAL)
        else:
            rt.suppressions.discard(MANUAL)
        if rt.suppressions:
            outcome = sm.suppress(rt.alarm, ts, ", ".join(sorted(rt.suppressions)), user)
        else:
            outcome = sm.unsuppress(rt.alarm, ts, user, reason)
        self._commit(rt, outcome)

    # -- committing --------------------------------------------------------------------

    def _commit(self, rt: Runtime, outcome: Outcome) -> None:
        if outcome.alarm is rt.alarm and not outcome.transitions:
            return
        alarm = outcome.alarm
        if any(t.event == "activated" for t in outcome.transitions) and rt.config.group:
            first = not any(
                o.alarm.active and o is not rt and o.config.group == rt.config.group and o.tenant_id == rt.tenant_id
                for o in self.runtimes.values()
            )
            alarm = replace(alarm, first_out=first)
        rt.alarm = alarm
        if not outcome.transitions:
            return  # a new value on an alarm that did not change: shown live, not journaled
        priority = rt.priority.value
        self._stats(rt.tenant_id).transitions += len(outcome.transitions)
        for t in outcome.transitions:
            self._journal.append(JournalRecord(rt.tenant_id, rt.id, rt.name, rt.source_path, priority, t))
        self._dirty[rt.id] = (rt.tenant_id, alarm)
        self._wake.set()
        self._publish(rt, transitions=outcome.transitions)
        if rt.config.actions and self.actions is not None:  # only conditions with actions pay for this
            for t in outcome.transitions:
                self.actions.fire(rt, t)

    def note(self, condition_id: int, event: str, comment: str) -> None:
        """Journal something done on a condition's behalf (an action's outcome) without changing
        its alarm: from and to state are the state it is in."""
        rt = self.runtimes.get(condition_id)
        if rt is None:
            log.info("alarm condition %s is gone; not journaled: %s %s", condition_id, event, comment)
            return
        state = rt.alarm.state
        t = sm.Transition(event, state, state, self.clock(), sm.SYSTEM, comment)
        self._journal.append(JournalRecord(rt.tenant_id, rt.id, rt.name, rt.source_path, rt.priority.value, t))
        self._wake.set()

    def _publish(self, rt: Runtime, *, transitions: list[sm.Transition] | None = None, removed: bool = False) -> None:
        data = self.view(rt)
        if transitions:
            last = transitions[-1]
            data["event"] = last.event
            data["user"] = last.user
            data["comment"] = last.comment
        if removed:
            data["event"] = "removed"
        self.bus.publish(Event(rt.tenant_id, "alarm", data))

    def view(self, rt: Runtime) -> dict[str, Any]:
        """An alarm as the API, the stream and the console show it."""
        a, cfg = rt.alarm, rt.config
        priority = rt.priority
        unit = rt.source.unit if rt.source else None
        value = "" if a.value is None else f"{a.value:g}"
        limit = "" if a.limit is None else f"{a.limit:g}"
        try:
            message = cfg.message.format(name=rt.name, path=rt.source_path, value=value, limit=limit,
                                         level=a.level or "", unit=unit or "")  # fmt: skip
        except (KeyError, IndexError, ValueError, AttributeError):
            message = rt.name
        return {
            "id": rt.id, "name": rt.name, "kind": getattr(cfg.spec, "kind", None), "state": a.state.value,
            "active": a.active, "acked": a.acked, "condition": a.condition, "latched": a.latched,
            "retained": a.retained, "priority": priority.value, "severity": SEVERITY[priority], "message": message,
            "source": rt.source.node_id if rt.source else None, "path": rt.source_path, "unit": unit,
            "level": a.level, "value": a.value, "live": rt.live, "limit": a.limit, "active_since": a.active_since,
            "acked_at": a.acked_at, "acked_by": a.acked_by, "changed_at": a.changed_at,
            "shelving": a.shelving.value, "shelved_until": a.shelved_until, "shelved_by": a.shelved_by,
            "shelve_reason": a.shelve_reason, "suppressed": a.suppressed, "suppressed_reason": a.suppressed_reason,
            "out_of_service": a.out_of_service, "first_out": a.first_out, "group": cfg.group,
            "activations": a.activations, "enabled": cfg.enabled, "problem": rt.problem, "version": rt.version,
        }  # fmt: skip


def _inside(windows: list[Window], ts: float) -> bool:
    return any(w.contains(ts) for w in windows)
