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
historian or database failure requeues after a pause; an unexpected error requeues once,
then dead-letters. Reconnects are counted under the unattributed (system) stats.

Throughput: aio-pika declares the topology and keeps the connection (robust: it reconnects and
restores the channel, QoS and declarations), but the consumer sits on the underlying aiormq
channel and is registered again whenever the channel reopens: aio-pika's per-delivery wrapper
(an `IncomingMessage` and a second task per delivery) cost as much as the rest of the bare
consumer. Deliveries are taken in batches — whatever has arrived while at most
`BATCHES_IN_FLIGHT` earlier batches are being stored, so batches grow with the load — each
tenant's messages of a batch go to the pipeline in one call, and a batch is acknowledged with
one `basic.ack(multiple)` once it and every batch before it are settled. The prefetch (the
broker sends at most `amqp_prefetch` unacknowledged) bounds what is in flight.

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
from dataclasses import dataclass
from functools import partial
from typing import Any

import aio_pika
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aiormq.abc import AbstractChannel, DeliveredMessage

from server.domain.errors import DomainError
from server.ingest.adapter import Adapter, Backoff, IngestContext
from server.ingest.batch_ingest import ingest_together
from server.ingest.lookup_cache import LookupCache
from server.ingest.payloads import DecodeError, decode_telemetry
from server.ingest.pipeline import DeviceValues
from server.storage.repositories.tenants import Tenant

log = logging.getLogger(__name__)

SOURCE = "amqp"
BINDING = "telemetry.#"
TENANT_CACHE_S = 5.0
"""A tenant created or disabled is seen within this long (a lookup per message would cost more)."""
RETRY_PAUSE_S = 1.0
"""A message the historian could not store waits this long before it goes back to the queue."""
STOP_GRACE_S = 10.0
BATCHES_IN_FLIGHT = 2
"""Batches being stored at once; while they are, deliveries gather into the next, larger batch."""
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
        self._channel: AbstractRobustChannel | None = None
        self._raw: AbstractChannel | None = None
        """The aiormq channel under the robust one, where the consumer is registered."""
        self._consumer_tag: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._arrived: list[DeliveredMessage] = []
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(BATCHES_IN_FLIGHT)
        self._batcher: asyncio.Task[None] | None = None
        self._tail: asyncio.Task[None] | None = None
        """The newest batch being stored; each batch waits for the one before it to settle."""
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
        if self._channel is not None:
            self._channel.reopen_callbacks.discard(self._reopened)
        if self._raw is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._raw.basic_cancel(self._consumer_tag), 5)
        await asyncio.sleep(0)  # deliveries already dispatched reach the batcher
        if self._batcher is not None:
            self._batcher.cancel()  # it only waits between batches: what it took is in a _store task
            await asyncio.gather(self._batcher, return_exceptions=True)
        if self._tail is not None:
            await asyncio.wait({self._tail}, timeout=STOP_GRACE_S)
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()
        self.connection, self._channel, self._raw, self._consumer_tag = None, None, None, None
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
        assert isinstance(channel, AbstractRobustChannel)  # a robust connection opens robust channels
        await channel.set_qos(prefetch_count=self.prefetch)
        exchange = await channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        await channel.declare_queue(self.dlq_name, durable=True)
        queue = await channel.declare_queue(
            self.queue_name,
            durable=True,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.dlq_name},
        )
        await queue.bind(exchange, BINDING)
        self._channel = channel
        channel.reopen_callbacks.add(self._reopened)
        await self._consume(channel)

    async def _consume(self, channel: AbstractRobustChannel) -> None:
        raw = await channel.get_underlay_channel()
        ok = await raw.basic_consume(self.queue_name, self._on_message, consumer_tag=self._consumer_tag)
        self._raw, self._consumer_tag = raw, ok.consumer_tag

    async def _reopened(self, channel: AbstractRobustChannel | None) -> None:
        """aio-pika restored the channel after a reconnect (its own consumers only): consume again."""
        channel = channel or self._channel
        if channel is None:  # stopped meanwhile
            return
        try:
            await self._consume(channel)
        except Exception as exc:  # aio-pika gathers callbacks and drops their errors: say it here
            log.error("amqp: could not consume %s again after a reconnect (%s)", self.queue_name, exc)

    def _reconnected(self, *_: Any) -> None:
        self.ctx.stats(SOURCE).reconnects += 1
        log.warning("amqp: reconnected to the broker; consuming %s again", self.queue_name)

    async def _tenant(self, name: str) -> Tenant | None:
        return await self._tenants.get(name, partial(self.ctx.tenant, name))

    async def _on_message(self, message: DeliveredMessage) -> None:
        """aiormq's callback per delivery: only queue it; the batcher takes whatever has arrived."""
        self._arrived.append(message)
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._take_batches(), name="amqp-batches")
        self._wake.set()

    async def _take_batches(self) -> None:
        """Decode what has arrived in order, then commit and settle it as one batch.

        The broker sends at most `prefetch` unacknowledged messages, which bounds the work in
        flight. Batches are stored concurrently but settled in order: a batch's acknowledgement
        (`multiple`, one frame for the batch) covers every earlier delivery still unsettled on
        the channel, so it may only go once the batches before it are settled. At most
        `BATCHES_IN_FLIGHT` are stored at once: under load the next batch gathers meanwhile, so
        the pipeline's per-call cost is paid once per many messages."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._arrived:
                continue
            await self._slots.acquire()
            stored = False
            try:
                batch, self._arrived = self._arrived, []
                works: list[_Work] = []
                for done, message in enumerate(batch):
                    try:
                        work = await self._decode(message)
                    except Exception:  # a bug in decoding: nothing is lost, the broker redelivers
                        log.exception("amqp: decoding a batch failed; its undecoded messages are requeued")
                        await asyncio.gather(*(self._settle(m, requeue=True) for m in batch[done:]))
                        break
                    if work is not None:
                        works.append(work)
                if works:
                    self._tail = asyncio.create_task(self._store(works, self._tail))
                    self._tail.add_done_callback(lambda _: self._slots.release())
                    stored = True
            finally:
                if not stored:  # nothing to store, or stopped while decoding: the slot is free again
                    self._slots.release()

    async def _decode(self, message: DeliveredMessage) -> _Work | None:
        """The message's tenant and items, or None when it was dead-lettered for its form."""
        key = message.routing_key or ""
        origin = f"{self.exchange_name}:{key}"[:500]
        body = message.body
        parts = key.split(".", 2)
        if len(parts) < 2 or parts[0] != "telemetry" or not parts[1]:
            detail = f"routing key {key!r} is not telemetry.<tenant>[.<device>]"
            await self._dead(message, None, origin, DecodeError("bad_routing_key", detail))
            return None
        tenant = await self._tenant(parts[1])
        if tenant is None:
            await self._dead(message, None, origin, DecodeError("unknown_tenant", f"no active tenant {parts[1]!r}"))
            return None
        properties = message.header.properties
        content_type = (properties.content_type or "").split(";")[0].strip().lower()
        encoding = (properties.content_encoding or "").strip().lower()
        if (content_type and content_type not in JSON_TYPES) or (encoding and encoding not in PLAIN_ENCODINGS):
            detail = (
                f"Content-Type {properties.content_type!r} / Content-Encoding {properties.content_encoding!r} "
                "is not supported; send uncompressed application/json"
            )
            await self._dead(message, tenant.id, origin, DecodeError("unsupported_format", detail))
            return None
        device = parts[2] if len(parts) == 3 and parts[2] else None
        try:
            items = decode_telemetry(body, device=device, max_bytes=self.max_bytes, max_items=self.max_items)
        except DecodeError as exc:
            await self._dead(message, tenant.id, origin, exc)
            return None
        return _Work(message, tenant.id, origin, items)

    async def _store(self, works: list[_Work], before: asyncio.Task[None] | None) -> None:
        """Commit each tenant's messages of the batch in one call, then settle them in order."""
        groups: dict[int, list[_Work]] = {}
        for w in works:
            groups.setdefault(w.tenant_id, []).append(w)
        results = await asyncio.gather(
            *(ingest_together(self.ctx.pipeline, t, SOURCE, [w.items for w in g]) for t, g in groups.items()),
            return_exceptions=True,
        )
        for group, result in zip(groups.values(), results, strict=True):
            if isinstance(result, BaseException):
                log.warning("amqp: could not store %d messages (%s); requeued", len(group), result)
                for w in group:
                    w.retry = True
            else:
                for w, outcome in zip(group, result, strict=True):
                    w.outcome = outcome if isinstance(outcome, Exception) else None
        if before is not None:
            await asyncio.gather(before, return_exceptions=True)
        await self._settle_batch(works)

    async def _settle_batch(self, works: list[_Work]) -> None:
        """Everything that is not a plain ack first, then one `multiple` ack per channel."""
        if any(w.retry for w in works):
            await asyncio.sleep(RETRY_PAUSE_S)  # the historian failed: don't spin on it
        last_ok: dict[int, _Work] = {}
        for w in works:
            message = w.message
            if w.retry:
                await self._settle(message, requeue=True)
            elif isinstance(w.outcome, DomainError):
                await self.ctx.refused(SOURCE, w.tenant_id, w.origin, w.outcome, message.body)
                await self._settle(message)
            elif w.outcome is not None:
                await self._failed(w, w.outcome)
            else:
                last_ok[id(message.channel)] = w
        for w in last_ok.values():
            await self._settle(w.message, ack=True, multiple=True)

    async def _failed(self, w: _Work, exc: Exception) -> None:
        """A bug, not the message's fault or the database's: requeue once, then dead-letter."""
        message = w.message
        if message.redelivered:  # failed before too: a poison message must not loop forever
            log.error("amqp: redelivered message %s failed again; dead-lettered", message.delivery_tag, exc_info=exc)
            self.ctx.stats(SOURCE, w.tenant_id).rejected["internal_error"] += sum(len(i.values) for i in w.items)
            await self.ctx.dead_letter(SOURCE, w.tenant_id, w.origin, "internal_error", repr(exc), message.body,
                                       count=False)  # fmt: skip
            await self._settle(message)
        else:
            log.error("amqp: message %s failed; it is requeued once", message.delivery_tag, exc_info=exc)
            await self._settle(message, requeue=True)

    async def _dead(self, message: DeliveredMessage, tenant_id: int | None, origin: str, error: DecodeError) -> None:
        """Count and record it, then let the broker move it to the dead-letter queue."""
        await self.ctx.reject(SOURCE, tenant_id, origin, error, message.body)
        await self._settle(message)

    async def _settle(
        self, message: DeliveredMessage, *, ack: bool = False, requeue: bool = False, multiple: bool = False
    ) -> None:
        """Ack, reject (to the dead-letter queue) or requeue on the channel it came on; on a
        channel that died meanwhile (delivery tags belong to their channel) the broker
        redelivers instead."""
        tag = message.delivery_tag or 0
        try:
            if ack:
                await message.channel.basic_ack(tag, multiple=multiple)
            elif requeue:
                await message.channel.basic_nack(tag, requeue=True)
            else:
                await message.channel.basic_reject(tag, requeue=False)
        except Exception as exc:
            log.info("amqp: could not settle delivery %s (%s); the broker will redeliver it", message.delivery_tag, exc)


@dataclass(slots=True)
class _Work:
    """One decoded delivery on its way to being stored and settled."""

    message: DeliveredMessage
    tenant_id: int
    origin: str
    items: list[DeviceValues]
    outcome: Exception | None = None
    retry: bool = False
