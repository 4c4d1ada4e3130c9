"""In-process publish/subscribe between the pipeline and its consumers (stream, alarms, OPC UA).

Subscribers are plain callbacks that must not block: each consumer keeps its own buffer
(the stream coalesces per client), so a slow consumer never slows the publisher.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from server.domain.sample import TagUpdate

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ValueBatch:
    tenant_id: int
    updates: list[TagUpdate]


@dataclass(frozen=True, slots=True)
class Event:
    """A non-value message: device status, namespace change, later alarms."""

    tenant_id: int
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


Message = ValueBatch | Event
Handler = Callable[[Message], None]


class Subscription:
    def __init__(self, bus: Bus, tenant_id: int | None, handler: Handler) -> None:
        self._bus, self.tenant_id, self.handler = bus, tenant_id, handler

    def close(self) -> None:
        self._bus._remove(self)


class Bus:
    """Tenant-keyed fan-out; a subscription with tenant None sees every tenant (system consumers)."""

    def __init__(self) -> None:
        self._subs: dict[int | None, list[Subscription]] = {}
        self.published = 0

    def subscribe(self, tenant_id: int | None, handler: Handler) -> Subscription:
        sub = Subscription(self, tenant_id, handler)
        self._subs.setdefault(tenant_id, []).append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.tenant_id, [])
        if sub in subs:
            subs.remove(sub)

    def publish(self, message: Message) -> None:
        self.published += 1
        for sub in (*self._subs.get(message.tenant_id, ()), *self._subs.get(None, ())):
            try:
                sub.handler(message)
            except Exception:
                log.exception("bus subscriber failed; message dropped for it only")

    def subscriber_count(self, tenant_id: int | None = None) -> int:
        return len(self._subs.get(tenant_id, ()))
