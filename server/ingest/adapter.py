"""What every protocol adapter shares: its context, start/stop, backoff, and one reject path."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from server.bus import Bus
from server.config import Settings
from server.domain.errors import DomainError
from server.ingest.dead_letters import DeadLetterRepository
from server.ingest.payloads import DecodeError
from server.ingest.pipeline import AdapterStats, IngestPipeline, refusal_reason
from server.services.auth import AuthService
from server.services.history import HistoryService
from server.services.namespace import NamespaceService
from server.storage.repositories.connections import ConnectionRepository
from server.storage.repositories.nodes import NodeRepository
from server.storage.repositories.tenants import Tenant, TenantRepository

if TYPE_CHECKING:
    from server.alarms.service import AlarmService

log = logging.getLogger(__name__)


class Adapter(Protocol):
    name: str

    async def start(self) -> None:
        """Begin serving or connecting; must return promptly (connect in a background task)."""

    async def stop(self) -> None:
        """Stop and release sockets; must not lose what was acknowledged to a sender."""


@dataclass(slots=True)
class IngestContext:
    """Everything an adapter may use; adapters never touch SQL or the API."""

    settings: Settings
    pipeline: IngestPipeline
    tenants: TenantRepository
    nodes: NodeRepository
    namespace: NamespaceService
    history: HistoryService
    auth: AuthService
    bus: Bus
    dead_letters: DeadLetterRepository
    connections: ConnectionRepository
    alarms: AlarmService | None = None
    """The northbound OPC UA server shows alarms as conditions and acts on them through it."""

    async def tenant(self, name: str) -> Tenant | None:
        """A tenant by name if it exists and is active (topics and routing keys carry names)."""
        tenant = await self.tenants.by_name(name)
        return tenant if tenant is not None and tenant.is_active else None

    async def refused(self, source: str, tenant_id: int | None, origin: str, exc: DomainError, payload: bytes) -> None:
        """Dead-letter what the pipeline refused (the pipeline has counted it already)."""
        detail = f"{exc.field}: {exc.detail}" if exc.field else exc.detail
        await self.dead_letter(source, tenant_id, origin, refusal_reason(exc), detail, payload, count=False)

    async def reject(
        self, source: str, tenant_id: int | None, origin: str, error: DecodeError, payload: bytes, values: int = 1
    ) -> None:
        stats = self.pipeline.adapter(source, tenant_id)
        stats.received += values
        stats.rejected[error.reason] += values
        await self.dead_letter(source, tenant_id, origin, error.reason, error.detail, payload, count=False)

    async def dead_letter(
        self, source: str, tenant_id: int | None, origin: str, reason: str, detail: str, payload: bytes,
        *, count: bool = True,
    ) -> None:  # fmt: skip
        stats = self.pipeline.adapter(source, tenant_id)
        if count:
            stats.rejected[reason] += 1
        stats.dead_lettered += 1
        log.warning("%s: dead-lettered message from %s: %s (%s)", source, origin, detail, reason)
        try:
            await self.dead_letters.record(tenant_id, source, origin, reason, detail, payload)
        except Exception:  # the database is down: the counter and the log line still tell
            log.exception("%s: could not store a dead letter", source)

    def stats(self, source: str, tenant_id: int | None = None) -> AdapterStats:
        return self.pipeline.adapter(source, tenant_id)


class Backoff:
    """Exponential backoff with full jitter, so reconnecting clients don't stampede a broker."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial, self.maximum = initial, maximum
        self._attempt = 0
        self._connected_at = 0.0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * 2**self._attempt)
        self._attempt += 1
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography

    def connected(self) -> None:
        self._connected_at = time.monotonic()

    def reset_if_stable(self, stable_s: float = 10.0) -> None:
        """Only a connection that lasted resets the delay: a flapping peer keeps backing off."""
        if self._connected_at and time.monotonic() - self._connected_at >= stable_s:
            self._attempt = 0
