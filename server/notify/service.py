"""The notification set-up through the API: engineers configure channels, policies, schedules
and the webhook allowlist (audited, secrets never shown back); every user sets their own
preferences; the delivery log is for those who may read alarms."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from server.domain.errors import InvalidInput, NotFound
from server.domain.permissions import Permission
from server.domain.principal import Principal
from server.domain.validation import validated
from server.notify.dispatcher import Notifier
from server.notify.repository import Delivery, NotifyRepository
from server.notify.senders import Attempt
from server.notify.spec import ChannelConfig, PolicyConfig, Preferences, ScheduleConfig
from server.storage.repositories.audit import AuditRepository

MODELS: dict[str, type[BaseModel]] = {"channel": ChannelConfig, "policy": PolicyConfig, "schedule": ScheduleConfig}
SECRET_FIELDS = ("password", "secret")
MASK = "********"


def masked(doc: dict[str, Any]) -> dict[str, Any]:
    channel = doc.get("channel")
    if isinstance(channel, dict):
        doc = doc | {"channel": {k: (MASK if k in SECRET_FIELDS and v else v) for k, v in channel.items()}}
    return doc


class NotifyService:
    def __init__(self, repo: NotifyRepository, notifier: Notifier, audit: AuditRepository) -> None:
        self.repo, self.notifier, self.audit = repo, notifier, audit

    async def all(self, who: Principal, kind: str) -> list[dict[str, Any]]:
        who.require(Permission.ALARMS_CONFIGURE)
        return [masked(doc) for doc in (await self.repo.all(who.tenant_id, kind)).values()]

    async def get(self, who: Principal, kind: str, name: str) -> dict[str, Any]:
        who.require(Permission.ALARMS_CONFIGURE)
        doc = await self.repo.get(who.tenant_id, kind, name)
        if doc is None:
            raise NotFound(f"{kind} {name!r} not found")
        return masked(doc)

    async def put(self, who: Principal, kind: str, name: str, doc: dict[str, Any]) -> dict[str, Any]:
        """Create or replace; a secret sent back masked keeps the stored one."""
        who.require(Permission.ALARMS_CONFIGURE)
        doc = {**doc, "name": name}
        if kind == "channel":
            doc = await self._keep_secrets(who.tenant_id, name, doc)
        config = validated(MODELS[kind], doc).model_dump(mode="json")
        await self.repo.put(who.tenant_id, kind, name, config)
        await self.audit.record(who.tenant_id, who.subject, f"notify.{kind}.put", name, detail=masked(config))
        return masked(config)

    async def _keep_secrets(self, tenant_id: int, name: str, doc: dict[str, Any]) -> dict[str, Any]:
        channel = doc.get("channel")
        old = await self.repo.get(tenant_id, "channel", name)
        if not isinstance(channel, dict) or old is None:
            return doc
        kept = {k: old["channel"].get(k) for k in SECRET_FIELDS if channel.get(k) == MASK}
        return doc | {"channel": channel | kept}

    async def delete(self, who: Principal, kind: str, name: str) -> None:
        who.require(Permission.ALARMS_CONFIGURE)
        await self.repo.delete(who.tenant_id, kind, name)
        await self.audit.record(who.tenant_id, who.subject, f"notify.{kind}.delete", name)

    async def allowlist(self, who: Principal) -> list[str]:
        who.require(Permission.ALARMS_CONFIGURE)
        return await self.notifier.allowlist(who.tenant_id)

    async def set_allowlist(self, who: Principal, entries: list[str]) -> list[str]:
        who.require(Permission.ALARMS_CONFIGURE)
        clean = sorted({e.strip().lower() for e in entries if e.strip()})
        await self.repo.put(who.tenant_id, "settings", "webhooks", {"allowlist": clean})
        await self.audit.record(who.tenant_id, who.subject, "notify.allowlist.put", "webhooks",
                                detail={"allowlist": clean})  # fmt: skip
        return clean

    async def on_call(self, who: Principal, name: str, at: float | None) -> str:
        who.require(Permission.ALARMS_READ)
        doc = await self.repo.get(who.tenant_id, "schedule", name)
        if doc is None:
            raise NotFound(f"schedule {name!r} not found")
        return ScheduleConfig.model_validate(doc).on_call(at if at is not None else time.time())

    async def preferences(self, who: Principal) -> dict[str, Any]:
        doc = await self.repo.get(who.tenant_id, "prefs", who.subject) or {}
        return Preferences.model_validate(doc).model_dump(mode="json")

    async def set_preferences(self, who: Principal, doc: dict[str, Any]) -> dict[str, Any]:
        if who.kind != "user":
            raise InvalidInput("notification preferences belong to users, not API keys")
        config = validated(Preferences, doc).model_dump(mode="json")
        await self.repo.put(who.tenant_id, "prefs", who.subject, config)
        return config

    async def deliveries(self, who: Principal, *, start: float, end: float, condition_id: int | None) -> list[Delivery]:
        who.require(Permission.ALARMS_READ)
        return await self.repo.deliveries(who.tenant_id, start=start, end=end, condition_id=condition_id)

    async def test(self, who: Principal, name: str) -> list[Attempt]:
        who.require(Permission.ALARMS_CONFIGURE)
        view = {"id": 0, "name": "Test notification", "message": f"Test from {who.subject}", "priority": "low",
                "state": "normal", "path": "", "value": None, "limit": None, "active_since": time.time()}  # fmt: skip
        attempts = await self.notifier.test(who.tenant_id, name, view)
        await self.audit.record(who.tenant_id, who.subject, "notify.test", name,
                                detail={"outcome": attempts[-1].outcome if attempts else None})  # fmt: skip
        return attempts
