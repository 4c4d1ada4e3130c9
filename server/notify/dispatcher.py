"""Who hears about an alarm, and when: a condition's `notify` routes (channels or escalation
policies) start when it activates; each policy step after the first goes only if the alarm is
still unacknowledged and still the same episode (activation). One episode sends one
notification per step — also across a restart, because the delivery log is consulted."""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from server.alarms.engine import AlarmEngine
from server.bus import Bus, Event, Message
from server.domain.alarms import PRIORITY_RANK, Priority
from server.domain.timeutil import iso
from server.notify.repository import Delivery, NotifyRepository
from server.notify.senders import Attempt, EmailSender, WebhookSender
from server.notify.spec import (
    ChannelConfig,
    EmailChannel,
    PolicyConfig,
    Preferences,
    ScheduleConfig,
    Step,
    WebhookChannel,
)
from server.storage.repositories.users import UserRepository

log = logging.getLogger(__name__)

COLOURS = {Priority.URGENT: "#b00020", Priority.HIGH: "#d35400", Priority.MEDIUM: "#b7950b", Priority.LOW: "#2e5c8a"}
"""Severity colours of the email (ISA-101: colour only for what is abnormal)."""


class Notifier:
    def __init__(
        self, repo: NotifyRepository, users: UserRepository, engine: AlarmEngine, bus: Bus, *,
        webhooks: WebhookSender | None = None, email: EmailSender | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.repo, self.users, self.engine, self.bus = repo, users, engine, bus
        self.webhooks = webhooks or WebhookSender()
        self.email = email or EmailSender()
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscription: Any = None

    async def start(self) -> None:
        self._subscription = self.bus.subscribe(None, self._on_message)
        # episodes under way when the server stopped: their remaining steps still go
        for rt in list(self.engine.runtimes.values()):
            a = rt.alarm
            if a.active and not a.acked and rt.config.notify and a.active_since is not None:
                self._spawn(self._episode(rt.tenant_id, rt.id, a.activations, a.active_since))

    async def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_message(self, message: Message) -> None:
        if isinstance(message, Event) and message.kind == "alarm" and message.data.get("event") == "activated":
            data = message.data
            raised = float(data.get("active_since") or self.clock())
            self._spawn(self._episode(message.tenant_id, int(data["id"]), int(data["activations"]), raised))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _same_episode(self, tenant_id: int, condition_id: int, episode: int) -> bool:
        rt = self.engine.runtimes.get(condition_id)
        return (
            rt is not None and rt.tenant_id == tenant_id and rt.alarm.activations == episode
            and rt.alarm.active and not rt.alarm.acked
        )  # fmt: skip

    async def _episode(self, tenant_id: int, condition_id: int, episode: int, raised_at: float) -> None:
        try:
            rt = self.engine.runtimes.get(condition_id)
            if rt is None or not rt.config.notify:
                return
            done = await self.repo.steps_done(tenant_id, condition_id, episode)
            routes: list[tuple[str, PolicyConfig]] = []
            for route in rt.config.notify:
                policy = await self._policy(tenant_id, route)
                if policy is None:
                    log.warning("alarm %s: notification route %r is neither a channel nor a policy", rt.name, route)
                    continue
                routes.append((route, policy))
            await asyncio.gather(*(self._route(tenant_id, condition_id, episode, raised_at, route, policy, done)
                                   for route, policy in routes))  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("notifications of alarm %s failed", condition_id)

    async def _policy(self, tenant_id: int, route: str) -> PolicyConfig | None:
        """A policy by name, or a channel name as a one-step policy."""
        doc = await self.repo.get(tenant_id, "policy", route)
        if doc is not None:
            return PolicyConfig.model_validate(doc)
        if await self.repo.get(tenant_id, "channel", route) is not None:
            return PolicyConfig(name=route, steps=[Step(after_s=0, targets=[route])])
        return None

    async def _route(
        self, tenant_id: int, condition_id: int, episode: int, raised_at: float, route: str, policy: PolicyConfig,
        done: set[tuple[str, int]],
    ) -> None:  # fmt: skip
        priority: Priority | None = None
        for index, step in enumerate(policy.steps):
            priority = step.priority or priority
            if (route, index) in done:
                continue  # sent before a restart
            wait = raised_at + step.after_s - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)
            if not self._same_episode(tenant_id, condition_id, episode):
                return  # acknowledged, cleared or re-raised meanwhile: the escalation ends
            rt = self.engine.runtimes[condition_id]
            effective = priority or rt.priority
            if PRIORITY_RANK[effective] > PRIORITY_RANK[policy.min_priority]:
                return
            view = self.engine.view(rt) | {"priority": effective.value, "step": index, "route": route}
            await self._deliver(tenant_id, condition_id, episode, route, index, step, policy, view)

    async def _deliver(
        self, tenant_id: int, condition_id: int, episode: int, route: str, index: int, step: Step,
        policy: PolicyConfig, view: dict[str, Any],
    ) -> None:  # fmt: skip
        log_rows: list[Delivery] = []

        def record(target: str, channel: str, attempts: list[Attempt]) -> None:
            for n, a in enumerate(attempts, 1):
                log_rows.append(Delivery(a.ts, condition_id, episode, route, index, target, channel, n, a.outcome,
                                         a.status, a.detail))  # fmt: skip

        people: list[str] = []
        for target in step.targets:
            if target.startswith("user:"):
                people.append(target[5:])
            elif target.startswith("oncall:"):
                schedule = await self.repo.get(tenant_id, "schedule", target[7:])
                if schedule is None:
                    record(target, "", [Attempt(self.clock(), "failed", None, "no such on-call schedule")])
                    continue
                people.append(ScheduleConfig.model_validate(schedule).on_call(self.clock()))
            else:
                channel = await self._channel(tenant_id, target)
                if channel is None:
                    record(target, target, [Attempt(self.clock(), "failed", None, "no such enabled channel")])
                elif isinstance(channel, WebhookChannel):
                    allow = await self.allowlist(tenant_id)
                    record(target, target, await self.webhooks.send(channel, _webhook_body(view), allow))
                elif channel.recipients:
                    record(target, target, await self._mail(channel, channel.recipients, view))
        if people:
            channel_name = policy.email_channel or ""
            channel = await self._channel(tenant_id, channel_name)
            for user in dict.fromkeys(people):
                address = await self._address(tenant_id, user, Priority(view["priority"]))
                if address is None:
                    continue  # the user opted out of this priority, or has no address
                if not isinstance(channel, EmailChannel):
                    record(f"user:{user}", channel_name, [Attempt(self.clock(), "failed", None,
                                                                  "no enabled email channel")])  # fmt: skip
                    continue
                record(f"user:{user}", channel_name, await self._mail(channel, [address], view))
        await self.repo.log(tenant_id, log_rows)

    async def _channel(self, tenant_id: int, name: str) -> EmailChannel | WebhookChannel | None:
        doc = await self.repo.get(tenant_id, "channel", name) if name else None
        if doc is None:
            return None
        try:
            config = ChannelConfig.model_validate(doc)
        except ValidationError:
            return None
        return config.channel if config.enabled else None

    async def allowlist(self, tenant_id: int) -> list[str]:
        doc = await self.repo.get(tenant_id, "settings", "webhooks") or {}
        return [str(x) for x in doc.get("allowlist", [])]

    async def _address(self, tenant_id: int, username: str, priority: Priority) -> str | None:
        user = await self.users.by_username(tenant_id, username)
        if user is None or not user.is_active:
            return None
        prefs = Preferences.model_validate(await self.repo.get(tenant_id, "prefs", username) or {})
        if not prefs.enabled or PRIORITY_RANK[priority] > PRIORITY_RANK[prefs.min_priority]:
            return None
        return prefs.email or user.email

    async def _mail(self, channel: EmailChannel, to: list[str], view: dict[str, Any]) -> list[Attempt]:
        subject, text, body = email_bodies(view)
        return await self.email.send(channel, to, subject, text, body)

    async def test(self, tenant_id: int, name: str, view: dict[str, Any]) -> list[Attempt]:
        """Send a test notification through one channel (the set-up's "send test" button)."""
        channel = await self._channel(tenant_id, name)
        if channel is None:
            return [Attempt(self.clock(), "failed", None, "no such enabled channel")]
        if isinstance(channel, WebhookChannel):
            return await self.webhooks.send(channel, _webhook_body(view), await self.allowlist(tenant_id))
        if not channel.recipients:
            return [Attempt(self.clock(), "failed", None, "the channel has no fixed recipients")]
        return await self._mail(channel, channel.recipients, view)


def _webhook_body(view: dict[str, Any]) -> dict[str, Any]:
    return {"type": "alarm", "alarm": view}


def email_bodies(view: dict[str, Any]) -> tuple[str, str, str]:
    priority = Priority(view.get("priority", "medium"))
    colour = COLOURS[priority]
    when = iso(view["active_since"]) if view.get("active_since") else ""
    subject = f"[{priority.value.upper()}] {view.get('message') or view.get('name')}"
    lines = [
        f"Alarm: {view.get('name')}", f"Priority: {priority.value}", f"State: {view.get('state')}",
        f"Source: {view.get('path')}", f"Value: {view.get('value')} {view.get('unit') or ''}".rstrip(),
        f"Limit: {view.get('limit')}", f"Active since: {when}", "", str(view.get("message") or ""),
    ]  # fmt: skip
    rows = "".join(
        f"<tr><td style='color:#555;padding:2px 12px 2px 0'>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in (
            ("Source", view.get("path")),
            ("Value", view.get("value")),
            ("Limit", view.get("limit")),
            ("State", view.get("state")),
            ("Active since", when),
        )  # fmt: skip
    )
    body = (
        "<html><body style='font-family:sans-serif;background:#f0f0f0;padding:12px'>"
        f"<div style='border-left:6px solid {colour};background:#fff;padding:12px'>"
        f"<div style='color:{colour};font-weight:bold'>{html.escape(priority.value.upper())}</div>"
        f"<h2 style='margin:4px 0'>{html.escape(str(view.get('message') or view.get('name')))}</h2>"
        f"<table>{rows}</table></div></body></html>"
    )
    return subject, "\n".join(lines), body
