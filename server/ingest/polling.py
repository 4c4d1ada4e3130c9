"""One polling mechanism for every polled source (Modbus today), with one error path.

A source only knows how to read its device once (`poll`); the `Poller` owns the schedule,
the deadline, quality, device status, counters and logging, so every polled protocol
behaves the same when a device stops answering:

- polls run on a fixed grid (`interval_s` after the previous slot, not after the previous
  poll ended), and a slow poll never overlaps the next: slots it overran are skipped;
- a timeout or any exception turns the source's tags to Bad quality (one Bad sample per tag
  when the failure starts, carrying the last good value), is counted, and is logged once
  when it starts, then at most once per `log_every_s`, and once on recovery;
- after `offline_after` failed polls in a row the device is marked offline; the first good
  poll marks it online again;
- each good poll goes to the pipeline as one call; nothing a source raises ends the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from server.domain.errors import DomainError, NotFound
from server.domain.namespace import DeviceStatus
from server.domain.quality import Quality
from server.ingest.adapter import IngestContext
from server.ingest.pipeline import DeviceValues

log = logging.getLogger(__name__)

MAX_PENDING_COMMITS = 4
"""Polls of one source whose values may wait for their commit at once; more wait in the poll."""
COMMIT_WAIT_S = 10.0
"""How long removing a source waits for its pending commits."""


class PollError(Exception):
    """A failed poll with a counter name (`reason`) and a sentence for the log."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass(slots=True)
class Reading:
    """What one poll read: good values, and tags the device refused (tag -> reason)."""

    values: dict[str, float]
    bad: dict[str, str] = field(default_factory=dict)
    ts: float | None = None


class PolledSource(Protocol):
    """A device read on a schedule; the poller calls it, never concurrently with itself."""

    kind: str
    """The adapter's name, under which its counters are kept ("modbus")."""
    label: str
    """Who this is in log lines (tenant and connection name)."""
    tenant_id: int
    device: str
    """The device's path in the tenant's namespace."""
    tags: list[str]
    interval_s: float
    timeout_s: float
    """Deadline of one whole poll; the source's own request timeouts should be shorter."""
    offline_after: int

    async def prepare(self) -> None:
        """Make sure the device and its tags exist (before the first poll, and after a refusal)."""

    async def poll(self) -> Reading:
        """Read the device once; raise on failure (PollError for a known reason)."""

    async def close(self) -> None:
        """Release the connection; the source is not polled again."""


def describe(exc: BaseException) -> tuple[str, str]:
    """A counter name and a log sentence for whatever a poll raised."""
    if isinstance(exc, PollError):
        return exc.reason, exc.detail
    if isinstance(exc, TimeoutError):
        return "timeout", "no answer within the poll deadline"
    if isinstance(exc, OSError):
        return "connection", f"{type(exc).__name__}: {exc}"
    return "error", f"{type(exc).__name__}: {exc}"


@dataclass(slots=True)
class _State:
    source: PolledSource
    task: asyncio.Task[None] | None = None
    prepared: bool = False
    failures: int = 0
    online: bool | None = None
    last: dict[str, float] = field(default_factory=dict)
    """Last good value per tag: what a Bad sample carries (its value is not trusted)."""
    bad: set[str] = field(default_factory=set)
    """Tags whose current live value is Bad: written once when they turn Bad."""
    polls: int = 0
    overruns: int = 0
    logged_at: float = -math.inf
    suppressed: int = 0
    commits: set[asyncio.Task[None]] = field(default_factory=set)
    """Polls whose values wait for the historian's commit, off the poll schedule."""


class Poller:
    """Runs each source's poll loop in its own task; add, replace and remove at any time."""

    def __init__(self, ctx: IngestContext, *, log_every_s: float = 600.0) -> None:
        self.ctx = ctx
        self.log_every_s = log_every_s
        self._states: dict[Hashable, _State] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._states

    def running(self) -> list[Hashable]:
        return list(self._states)

    def source(self, key: Hashable) -> PolledSource:
        return self._states[key].source

    def state(self, key: Hashable) -> _State:
        return self._states[key]

    def add(self, key: Hashable, source: PolledSource) -> None:
        if key in self._states:
            raise ValueError(f"a source is already polled under {key!r}")
        state = _State(source)
        state.task = asyncio.create_task(self._run(state), name=f"poll {source.kind} {source.label}")
        self._states[key] = state

    async def remove(self, key: Hashable) -> None:
        state = self._states.pop(key, None)
        if state is None:
            return
        if state.task is not None:
            # Cancel until it has ended: a cancellation that lands as the device answers can be
            # absorbed by the library, and awaiting once would then wait for ever.
            while not state.task.done():
                state.task.cancel()
                await asyncio.wait({state.task}, timeout=1.0)
            if not state.task.cancelled() and state.task.exception() is not None:
                log.error("%s %s: poll loop ended with an error", state.source.kind, state.source.label,
                          exc_info=state.task.exception())  # fmt: skip
        if state.commits:  # what was polled is stored (or its failure counted) before the source goes
            await asyncio.wait(set(state.commits), timeout=COMMIT_WAIT_S)
        try:
            await state.source.close()
        except Exception:
            log.exception("%s %s: closing failed", state.source.kind, state.source.label)

    async def stop(self) -> None:
        for key in list(self._states):
            await self.remove(key)

    async def _run(self, state: _State) -> None:
        loop = asyncio.get_running_loop()
        source = state.source
        next_at = loop.time()
        while True:
            try:
                await self._poll_once(state)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in the error path itself: keep polling, say so
                log.exception("%s %s: unexpected error in the poll loop", source.kind, source.label)
            state.polls += 1
            next_at += source.interval_s
            now = loop.time()
            if next_at <= now:  # the poll overran its slot(s): skip them, stay on the grid
                missed = math.floor((now - next_at) / source.interval_s) + 1
                state.overruns += missed
                next_at += missed * source.interval_s
            await asyncio.sleep(next_at - now)

    async def _poll_once(self, state: _State) -> None:
        source = state.source
        stats = self.ctx.stats(source.kind, source.tenant_id)
        if not state.prepared:
            try:
                async with asyncio.timeout(max(source.timeout_s, 10.0)):  # unlike wait_for, never eats a cancel
                    await source.prepare()
            except Exception as exc:
                stats.rejected["device_setup"] += 1
                self._log(state, "cannot set up device %s: %s", source.device, describe(exc)[1])
                return
            state.prepared = True
        try:
            async with asyncio.timeout(source.timeout_s):
                reading = await source.poll()
        except Exception as exc:
            await self._failed(state, *describe(exc))
            return
        await self._succeeded(state, reading)

    async def _succeeded(self, state: _State, reading: Reading) -> None:
        source = state.source
        if state.failures:
            log.info("%s %s: device answers again after %d failed poll(s)", source.kind, source.label, state.failures)
            state.logged_at, state.suppressed = -math.inf, 0
        state.failures = 0
        if state.online is not True and await self._set_status(state, DeviceStatus.ONLINE):
            state.online = True
        ts = reading.ts if reading.ts is not None else time.time()
        good: dict[str, float] = {}
        bad = dict(reading.bad)
        for name, value in reading.values.items():
            if math.isfinite(value):
                good[name] = value
            else:
                bad[name] = "not a finite number"
        state.last.update(good)
        state.bad.difference_update(good)
        turned_bad = {name: why for name, why in bad.items() if name not in state.bad}
        items = [DeviceValues(source.device, good, ts)] if good else []
        if turned_bad:
            stats = self.ctx.stats(source.kind, source.tenant_id)
            stats.rejected["read_error"] += len(turned_bad)
            items.append(DeviceValues(source.device, {n: state.last.get(n, 0.0) for n in turned_bad}, ts, Quality.BAD))
            details = "; ".join(f"{n}: {why}" for n, why in sorted(turned_bad.items()))
            self._log(state, "tag(s) now Bad quality: %s", details, force=True)
        if items:
            state.bad.update(turned_bad)  # written once; handed back if the commit fails
            await self._store(state, items, turned_bad)

    async def _failed(self, state: _State, reason: str, detail: str) -> None:
        source = state.source
        state.failures += 1
        self.ctx.stats(source.kind, source.tenant_id).rejected[f"poll_{reason}"] += 1
        self._log(state, "poll failed (%s, %d in a row): %s", reason, state.failures, detail)
        fresh = [name for name in source.tags if name not in state.bad]
        if fresh:
            bad = DeviceValues(source.device, {n: state.last.get(n, 0.0) for n in fresh}, time.time(), Quality.BAD)
            state.bad.update(fresh)
            await self._store(state, [bad], fresh)
        if state.failures >= source.offline_after and state.online is not False:
            ok = await self._set_status(state, DeviceStatus.OFFLINE)
            if ok:
                state.online = False
                log.warning("%s %s: device %s marked offline", source.kind, source.label, source.device)

    async def _store(self, state: _State, items: list[DeviceValues], marked_bad: Iterable[str]) -> None:
        """Hand a poll's values over; the commit is awaited in a task of its own, so a slow
        commit (SQLite under load) doesn't make the schedule skip polls. A few may be pending."""
        while len(state.commits) >= MAX_PENDING_COMMITS:
            await asyncio.wait(set(state.commits), return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(self._commit(state, items, set(marked_bad)))
        state.commits.add(task)
        task.add_done_callback(state.commits.discard)

    async def _commit(self, state: _State, items: list[DeviceValues], marked_bad: set[str]) -> None:
        if not await self._ingest(state, items):
            state.bad.difference_update(marked_bad)  # not stored: written again at the next poll

    async def _ingest(self, state: _State, items: list[DeviceValues]) -> bool:
        """One pipeline call per poll; a refusal is dead-lettered (rate-limited), never raised."""
        source = state.source
        try:
            await self.ctx.pipeline.ingest(source.tenant_id, items, source=source.kind)
        except DomainError as exc:
            if isinstance(exc, NotFound):  # the device or a tag was deleted: recreate before the next poll
                state.prepared = False
            if self._log(state, "values refused: %s", exc.detail):
                payload = json.dumps([{"device": i.device, "ts": i.ts, "values": i.values} for i in items]).encode()
                await self.ctx.refused(source.kind, source.tenant_id, source.label, exc, payload)
            return False
        except Exception as exc:  # the historian failed: counted by the writer, logged here
            self.ctx.stats(source.kind, source.tenant_id).rejected["store_failed"] += 1
            self._log(state, "values could not be stored: %s", describe(exc)[1])
            return False
        return True

    async def _set_status(self, state: _State, status: DeviceStatus) -> bool:
        source = state.source
        try:
            await self.ctx.namespace.set_device_status(source.tenant_id, source.device, status)
        except NotFound:
            state.prepared = False
            return False
        except Exception as exc:
            self._log(state, "cannot set device status %s: %s", status.value, describe(exc)[1])
            return False
        return True

    def _log(self, state: _State, message: str, *args: object, force: bool = False) -> bool:
        """Log a problem now if none was logged for this source within `log_every_s`."""
        source = state.source
        now = time.monotonic()
        if not force and now - state.logged_at < self.log_every_s:
            state.suppressed += 1
            return False
        suffix = f" ({state.suppressed} similar message(s) suppressed)" if state.suppressed else ""
        log.warning("%s %s: " + message + "%s", source.kind, source.label, *args, suffix)
        state.logged_at, state.suppressed = now, 0
        return True
