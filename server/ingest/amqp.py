"""AMQP 0-9-1 ingestion (aio-pika): a durable queue on a topic exchange, acknowledged after commit.

Topology, declared on every (re)connect: the durable topic exchange `amqp_exchange`, the
durable queue `amqp_queue` bound with `telemetry.#`, whose dead letters go through the default
exchange to the durable queue `<amqp_queue>.dlq`. An existing queue declared with other
arguments makes the broker refuse the declaration (PRECONDITION_FAILED): delete it or pick
another `amqp_queue`.

Routing keys: `telemetry.<tenant>.<device>` where `<device>` is everything after the second
dot — a path (`Plant1/Area1/Pump7`) or a node id (`ns=2;s=Plant1/Area1/Pump7`) as it is; a
browse name may contain dots, so no character is translated. `telemetry.<tenant>` alone
means each JSON object names its `device`. The body is the shared payload shape
(`server/ingest/payloads.py`); Content-Type, when set, must be application/json, and
Content-Encoding, when set, identity or utf-8.

Delivery: at least once. A message is acknowledged only after the historian committed its
samples (`wait=True`), so a crash or a dropped connection before that makes the broker
redeliver it; a drop after the commit but before the ack can store it twice. Malformed
messages (bad JSON, unknown tenant or device, refused tags, oversized, bad routing key,
compressed or non-JSON content) are rejected without requeue — the broker moves them to
`<queue>.dlq`, where `x-death` keeps the original routing key — and are counted and recorded
as dead letters under `amqp` (`/api/v1/ingest/stats`, `/api/v1/ingest/dead-letters`). A
historian failure requeues after a pause; an unexpected error requeues once, then
dead-letters. Up to `amqp_prefetch` messages are processed concurrently, so their commits
share the writer's batches. Reconnects are counted under the unattributed (system) stats.

Tenancy: the tenant is the routing key's second word; anyone who may publish to the exchange
may name any tenant. Restrict publishers at the broker with RabbitMQ topic permissions, e.g.
`rabbitmqctl set_topic_permissions -p / plant-a iiot '^telemetry\\.acme\\.' ''`.

Scale-out: several servers with the same `amqp_queue` are competing consumers of one queue —
the broker hands each message to one of them (round robin, bounded by each one's prefetch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from server.domain.errors import DomainError, InvalidInput, NotFound
from server.ingest.adapter import Adapter, Backoff, IngestContext
from server.ingest.lookup_cache import LookupCache
from server.ingest.payloads import DecodeError, decode_telemetry
from server.storage.repositories.tenants import Tenant

log = logging.getLogger(__name__)

SOURCE = "amqp"
BINDING = "telemetry.#"
TENANT_CACHE_S = 5.0
"""A tenant created or disabled is seen within this long (a lookup per message would cost more)."""
RETRY_PAUSE_S = 1.0
"""A message the historian could not store waits this long before it goes back to the queue."""
STOP_GRACE_S = 10.0
JSON_TYPES = {"application/json", "text/json"}
PLAIN_ENCODINGS = {"identity", "utf-8", "utf8"}


def build(ctx: IngestContext) -> list[Adapter]:
    """The AMQP consumer when a broker URL is set."""
    if not ctx.settings.amqp_url:
        return []
    return [AmqpAdapter(ctx)]


class AmqpAdapter:
    """One robust connection, one channel, one consumer on the telemetry queue."""

    name = SOURCE

    def __init__(self, ctx: IngestContext) -> None:
        self.ctx = ctx
        settings = ctx.settings
        self.url, self.exchange_name, self.queue_name = settings.amqp_url, settings.amqp_exchange, settings.amqp_queue
        self.dlq_name = f"{self.queue_name}.dlq"
        self.prefetch = settings.amqp_prefetch
        self.max_bytes, self.max_items = settings.max_payload_bytes, settings.max_telemetry_items
        self.connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._tenants: LookupCache[str, Tenant | None] = LookupCache(TENANT_CACHE_S)
        self.ready = asyncio.Event()
        """Set once the queue is consumed (tests and health checks wait on it)."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._connect(), name="amqp-connect")

    async def stop(self) -> None:
        """Stop consuming, let in-flight messages finish (they are acked after their commit),
        then close: anything not acked is redelivered by the broker."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queue.cancel(self._consumer_tag), 5)
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=STOP_GRACE_S)
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()
        self.connection, self._queue, self._consumer_tag = None, None, None
        self.ready.clear()

    async def _connect(self) -> None:
        """Connect and declare, retrying with backoff; afterwards aio-pika's robust connection
        reconnects by itself and restores the channel, QoS, declarations and consumer."""
        backoff = Backoff()
        while True:
            connection: AbstractRobustConnection | None = None
            try:
                connection = await aio_pika.connect_robust(
                    self.url, client_properties={"connection_name": f"iiot-server {self.queue_name}"}
                )
                await self._declare(connection)
            except asyncio.CancelledError:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close()
                raise
            except Exception as exc:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close()
                delay = backoff.next_delay()
                log.warning("amqp: cannot set up %s (%s); retrying in %.1f s", self.queue_name, exc, delay)
                await asyncio.sleep(delay)
                continue
            self.connection = connection
            connection.reconnect_callbacks.add(self._reconnected)
            self.ready.set()
            log.info("amqp: consuming %s (prefetch %d)", self.queue_name, self.prefetch)
            return

    async def _declare(self, connection: AbstractRobustConnection) -> None:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        exchange = await channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        await channel.declare_queue(self.dlq_name, durable=True)
        queue = await channel.declare_queue(
            self.queue_name,
            durable=True,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.dlq_name},
        )
        await queue.bind(exchange, BINDING)
        self._consumer_tag = await queue.consume(self._on_message)
        self._queue = queue

    def _reconnected(self, *_: Any) -> None:
        self.ctx.stats(SOURCE).reconnects += 1
        log.warning("amqp: reconnected to the broker; consuming %s again", self.queue_name)

    async def _tenant(self, name: str) -> Tenant | None:
        return await self._tenants.get(name, partial(self.ctx.tenant, name))

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        """Runs as its own task per delivery (aio-pika), up to `prefetch` at once."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await self._handle(message)
        except Exception as exc:
            if message.redelivered:  # failed before too: a poison message must not loop forever
                log.exception("amqp: redelivered message %s failed again; dead-lettered", message.delivery_tag)
                key = message.routing_key or ""
                parts = key.split(".", 2)
                known = self._tenants.peek(parts[1]) if len(parts) > 1 else None
                owner = known.id if known is not None else None  # the tenant sees it too
                origin = f"{self.exchange_name}:{key}"
                await self.ctx.dead_letter(SOURCE, owner, origin, "internal_error", repr(exc), message.body)
                await self._settle(message, requeue=False)
            else:
                log.exception("amqp: message %s failed; it is requeued once", message.delivery_tag)
                await self._settle(message, requeue=True, pause=True)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        key = message.routing_key or ""
        origin = f"{self.exchange_name}:{key}"[:500]
        body = message.body
        parts = key.split(".", 2)
        if len(parts) < 2 or parts[0] != "telemetry" or not parts[1]:
            detail = f"routing key {key!r} is not telemetry.<tenant>[.<device>]"
            await self._dead(message, None, origin, DecodeError("bad_routing_key", detail))
            return
        tenant = await self._tenant(parts[1])
        if tenant is None:
            await self._dead(message, None, origin, DecodeError("unknown_tenant", f"no active tenant {parts[1]!r}"))
            return
        content_type = (message.content_type or "").split(";")[0].strip().lower()
        encoding = (message.content_encoding or "").strip().lower()
        if (content_type and content_type not in JSON_TYPES) or (encoding and encoding not in PLAIN_ENCODINGS):
            detail = (
                f"Content-Type {message.content_type!r} / Content-Encoding {message.content_encoding!r} "
                "is not supported; send uncompressed application/json"
            )
            await self._dead(message, tenant.id, origin, DecodeError("unsupported_format", detail))
            return
        device = parts[2] if len(parts) == 3 and parts[2] else None
        try:
            items = decode_telemetry(body, device=device, max_bytes=self.max_bytes, max_items=self.max_items)
        except DecodeError as exc:
            await self._dead(message, tenant.id, origin, exc)
            return
        try:
            await self.ctx.pipeline.ingest(tenant.id, items, source=SOURCE, wait=True)
        except (InvalidInput, NotFound) as exc:  # counted by the pipeline
            await self.ctx.refused(SOURCE, tenant.id, origin, exc, body)
            await self._settle(message, requeue=False)
            return
        except DomainError as exc:  # Unavailable: the commit failed; the broker keeps the message
            log.warning("amqp: could not store a message from %s (%s); requeued", origin, exc.detail)
            await self._settle(message, requeue=True, pause=True)
            return
        await self._settle(message, ack=True)

    async def _dead(
        self, message: AbstractIncomingMessage, tenant_id: int | None, origin: str, error: DecodeError
    ) -> None:
        """Count and record it, then let the broker move it to the dead-letter queue."""
        await self.ctx.reject(SOURCE, tenant_id, origin, error, message.body)
        await self._settle(message, requeue=False)

    async def _settle(
        self, message: AbstractIncomingMessage, *, ack: bool = False, requeue: bool = False, pause: bool = False
    ) -> None:
        """Ack, reject or requeue; on a channel that died meanwhile the broker redelivers instead."""
        if pause:
            await asyncio.sleep(RETRY_PAUSE_S)
        try:
            if ack:
                await message.ack()
            elif requeue:
                await message.nack(requeue=True)
            else:
                await message.reject(requeue=False)
        except Exception as exc:
            log.info("amqp: could not settle delivery %s (%s); the broker will redeliver it", message.delivery_tag, exc)
