"""Actions on conditions: rules that are not alarms ("publish a command when X") riding on the
same conditions. The engine hands over each committed transition of a condition that has
actions; they run here, on one worker, in the order the transitions happened — so a command
on activation never overtakes the one on the clearing that followed — and never on the
engine's sample path, which only queues them.

Each command goes through the same path as a person's (`CommandService`: target checked in the
condition's tenant, audited, published for the MQTT adapter), as `system` on the condition's
behalf, and its outcome is journaled on the condition (event `action`). At most once: a
transition whose actions were still queued when the server stopped does not run them after a
restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import NamedTuple

from server.alarms.engine import AlarmEngine, Runtime
from server.alarms.spec import CommandAction
from server.domain import alarms as sm
from server.domain.errors import DomainError
from server.services.commands import CommandService
from server.storage.repositories.tenants import TenantRepository

log = logging.getLogger(__name__)

MAX_PENDING = 10_000
"""Actions waiting to run; beyond that a transition's actions are journaled as not run."""
STOP_GRACE_S = 2.0


class _Job(NamedTuple):
    tenant_id: int
    condition_id: int
    name: str
    version: int
    action: CommandAction
    transition: sm.Transition


class ActionRunner:
    def __init__(self, engine: AlarmEngine, commands: CommandService, tenants: TenantRepository) -> None:
        self.engine, self.commands, self.tenants = engine, commands, tenants
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(MAX_PENDING)
        self._worker: asyncio.Task[None] | None = None
        self.done = 0
        """Actions run (whatever their outcome)."""

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="alarm-actions")
        self.engine.actions = self

    async def stop(self) -> None:
        """Let what is queued finish for a moment, then stop (before the engine's last flush)."""
        self.engine.actions = None
        if self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), STOP_GRACE_S)
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker

    def fire(self, rt: Runtime, transition: sm.Transition) -> None:
        """Called by the engine as it commits a transition: queue the actions it triggers, with
        the configuration of that moment. Never waits."""
        for action in rt.config.actions:
            if action.on != transition.event:
                continue
            try:
                self._queue.put_nowait(_Job(rt.tenant_id, rt.id, rt.name, rt.version, action, transition))
            except asyncio.QueueFull:
                log.error("alarm %s: %d actions already waiting; %r not run", rt.name, MAX_PENDING, action.command)
                self.engine.note(rt.id, "action", f"{_what(action)}: not run, too many actions waiting")

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                outcome = await self._run(job)
            except Exception:
                log.exception("alarm %s: action %r failed", job.name, job.action.command)
                outcome = f"{_what(job.action)}: failed (internal error, see the server log)"
            finally:
                self._queue.task_done()
            self.done += 1
            self.engine.note(job.condition_id, "action", outcome[:500])

    async def _run(self, job: _Job) -> str:
        action = job.action
        try:
            tenant = await self.tenants.get(job.tenant_id)
            # resolved again now, in the condition's own tenant: a device renamed, moved or deleted
            # since the condition was written is found by node id, or not at all
            node = await self.commands.target(job.tenant_id, action.device, field="device")
            sent = await self.commands.send(
                job.tenant_id, tenant.name, node, action.command, action.args, expires_in_s=action.expires_in_s,
                actor=sm.SYSTEM, on_behalf_of={"condition": job.condition_id, "name": job.name,
                                               "version": job.version, "event": job.transition.event,
                                               "at": job.transition.ts},
            )  # fmt: skip
        except DomainError as exc:
            log.warning("alarm %s: %s failed: %s", job.name, _what(action), exc.detail)
            return f"{_what(action)}: failed, {exc.detail}"
        return f"command {action.command!r} to {node.path}: issued (id {sent['id']}, on {job.transition.event})"


def _what(action: CommandAction) -> str:
    return f"command {action.command!r} to {action.device}"
