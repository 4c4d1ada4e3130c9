"""MQTT ingestion (aiomqtt): JSON telemetry and device status per tenant, Sparkplug B, commands out.

Topics; the first level is the tenant's name:

    {tenant}/devices/{device}/telemetry   {"ts": ..., "values": {...}, "quality": ...} or a list of them
    {tenant}/devices/{device}/status      "online" | "offline" (retained; a device's last will)
    {tenant}/devices/{device}/commands    published by the server (POST /api/v1/devices/{ref}/commands)
    spBv1.0/{tenant}/...                  Sparkplug B (server/ingest/sparkplug.py)

`{device}` is the device's path with one topic level per path segment
(`acme/devices/Plant1/Area1/Pump7/telemetry`) or its node id (`acme/devices/ns=2;s=Plant1/Area1/Pump7/...`):
browse names can't contain '/', so the levels between `devices` and the last one are the path.
A device whose browse name holds '+' or '#' can't be addressed over MQTT.

Tenancy: the server takes the topic's first level as the tenant and writes only there, strictly
(an unknown or inactive tenant is rejected). What stops a device publishing under another
tenant's prefix is the broker's ACL (e.g. mosquitto `pattern readwrite %u/devices/#` with the
tenant as user name, or one `topic readwrite acme/devices/#` per user: readwrite, since devices
also subscribe to their commands); give each device credentials that reach only its tenant's prefix.

Delivery: the server's session is persistent (MQTT 5, clean start off, session expiry
`SESSION_EXPIRY_S`, client id `mqtt_client_id`), it subscribes at QoS 1 and acknowledges a
QoS 1 message (PUBACK) only once its samples are committed to the historian, or once it is
dead-lettered. aiomqtt 2.5 has no manual acknowledgement yet (empicano/aiomqtt#345, PR #346),
so the adapter uses paho-mqtt's own `manual_ack` through aiomqtt's client. A message whose
storage failed is not acknowledged: the adapter reconnects and the broker delivers it again.
The guarantee is at-least-once: a redelivery after a lost connection can store a message twice.
The broker keeps a session's messages while the server is away up to its own limits
(mosquitto: `max_queued_messages`, default 1000, and QoS 0 messages only with `queue_qos0_messages`).

Throughput: messages are taken from the connection in batches (whatever has arrived, up to
`MAX_BATCH`), decoded in order, and each tenant's values of a batch go to the pipeline in one
call; up to `MAX_IN_FLIGHT` messages are being committed while the next ones are decoded, so
a batch reaches the live stream (published before the commit) without waiting for the commits
of the batches before it.
MQTT 5's Receive Maximum (`RECEIVE_MAXIMUM`) lets the broker send that many messages ahead of
their acknowledgements (MQTT 3.1.1 would be limited to mosquitto's `max_inflight_messages`, 20).
If a merged call is refused (an unknown device in one message), the batch's messages of that
tenant are stored one by one, so only the bad one is dead-lettered.

Shared subscriptions: with `mqtt_shared_group` the telemetry filter becomes
`$share/<group>/+/devices/#` and several servers split the load. Sparkplug needs every message
of an edge node in order (seq, aliases), so its filters are never shared: enable
`mqtt_sparkplug` on one server only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import ssl
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import unquote, urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from server.bus import Event, Message, Subscription
from server.config import ConfigError
from server.domain.errors import DomainError, InvalidInput, NotFound
from server.domain.namespace import DeviceStatus
from server.ingest.adapter import Adapter, Backoff, IngestContext
from server.ingest.batch_ingest import ingest_together, storage_trouble
from server.ingest.lookup_cache import LookupCache
from server.ingest.payloads import DecodeError, decode_telemetry
from server.ingest.pipeline import DeviceValues, refusal_reason
from server.ingest.sparkplug import (
    NAMESPACE,
    MessageType,
    Reject,
    SparkplugHost,
    parse_topic,
    state_payload,
    state_topic,
)
from server.storage.repositories.tenants import check_tenant_name

log = logging.getLogger(__name__)

SOURCE = "mqtt"
SPARKPLUG_SOURCE = "sparkplug"
RECEIVE_MAXIMUM = 1000
"""Unacknowledged QoS 1 messages the broker may send ahead (MQTT 5 Receive Maximum)."""
SESSION_EXPIRY_S = 7 * 86_400
"""How long the broker keeps the server's session (and queues its messages) while it is away."""
MAX_BATCH = 500
MAX_IN_FLIGHT = RECEIVE_MAXIMUM
"""Messages decoded and handed to the pipeline but not yet committed (bounds QoS 0 as well)."""
INBOX_WARN = 20_000
"""The client's inbox is unbounded: aiomqtt would drop what exceeds a bound, and a dropped QoS 1
message is never acknowledged, so the session's window fills and delivery stops for good. The
broker can exceed Receive Maximum (mosquitto 2.0.11 did under a backlog, in the benchmark), so
this size is only logged; the broker's own queue limit is what bounds it."""
TENANT_TTL_S = 5.0
"""A tenant's name is looked up again after this long (deactivation takes effect within it)."""
OUTBOX_SIZE = 10_000
DEAD_LETTERS_PER_S = 20.0
DEAD_LETTER_BURST = 100
SPARKPLUG_FILTERS = tuple(
    f"{NAMESPACE}/+/{kind.value}/#"
    for kind in (
        MessageType.NBIRTH, MessageType.NDATA, MessageType.NDEATH,
        MessageType.DBIRTH, MessageType.DDATA, MessageType.DDEATH,
    )
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def parse_url(url: str, username: str = "", password: str = "") -> BrokerAddress:
    """`mqtt://[user:pass@]host[:1883]` or `mqtts://...[:8883]`; the settings' user and password win."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(f"configuration key 'mqtt_url': {url!r} is not mqtt://host[:port] or mqtts://host[:port]")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ConfigError(f"configuration key 'mqtt_url': bad port in {url!r}") from None
    user = username or (unquote(parts.username) if parts.username else None)
    secret = password or (unquote(parts.password) if parts.password else None)
    return BrokerAddress(parts.hostname, port, tls, user or None, secret)


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]


class _StorageFailed(Exception):
    pass


@dataclass(slots=True)
class _Work:
    """One received message on its way to being stored and acknowledged."""

    client: aiomqtt.Client
    """Acknowledged on the connection it came in on (a later connection gets a redelivery)."""
    mid: int
    qos: int
    topic: str
    payload: bytes
    source: str = SOURCE
    tenant_id: int | None = None
    items: list[DeviceValues] = field(default_factory=list)


@dataclass(slots=True)
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    expires_at: float | None = None


class _Tenants:
    """Topic tenant name -> active tenant id, cached briefly (a flood must not query per message)."""

    def __init__(self, ctx: IngestContext, ttl: float = TENANT_TTL_S) -> None:
        self.ctx = ctx
        self._cache: LookupCache[str, int | None] = LookupCache(ttl)

    async def id(self, name: str) -> int | None:
        return await self._cache.get(name, partial(self._lookup, name))

    async def _lookup(self, name: str) -> int | None:
        try:
            check_tenant_name(name)
        except InvalidInput:
            return None
        tenant = await self.ctx.tenant(name)
        return tenant.id if tenant else None


class _Rejects:
    """Counts every rejection; stores dead letters at a bounded rate per (source, tenant, reason),
    so a misbehaving publisher can't turn each of its messages into a database write."""

    def __init__(self, ctx: IngestContext) -> None:
        self.ctx = ctx
        self._buckets: dict[tuple[str, int | None, str], tuple[float, float]] = {}
        self.suppressed = 0

    def _allow(self, source: str, tenant_id: int | None, reason: str) -> bool:
        now = time.monotonic()
        key = (source, tenant_id, reason)
        tokens, at = self._buckets.get(key, (float(DEAD_LETTER_BURST), now))
        tokens = min(float(DEAD_LETTER_BURST), tokens + (now - at) * DEAD_LETTERS_PER_S)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if not allowed:
            if self.suppressed % 1000 == 0:
                log.warning("%s: dead letters for %s are rate-limited (still counted)", source, reason)
            self.suppressed += 1
        if len(self._buckets) > 10_000:
            self._buckets.clear()
        return allowed

    async def reject(
        self, source: str, tenant_id: int | None, origin: str, error: DecodeError, payload: bytes, values: int = 1
    ) -> None:
        # Unattributed rejections are limited per topic prefix: one noisy stranger can't hide another.
        reason_key = error.reason if tenant_id is not None else f"{error.reason}:{origin.split('/', 2)[:2]}"
        if self._allow(source, tenant_id, reason_key):
            await self.ctx.reject(source, tenant_id, origin, error, payload, values)
            return
        stats = self.ctx.stats(source, tenant_id)
        stats.received += values
        stats.rejected[error.reason] += values

    async def refused(self, work: _Work, exc: DomainError) -> None:
        """The pipeline refused a message (it has counted it already): dead-letter it."""
        if self._allow(work.source, work.tenant_id, refusal_reason(exc)):
            await self.ctx.refused(work.source, work.tenant_id, work.topic, exc, work.payload)

    def bind(self, source: str) -> Reject:
        def reject(
            tenant_id: int | None, origin: str, error: DecodeError, payload: bytes, values: int = 1
        ) -> Awaitable[None]:
            return self.reject(source, tenant_id, origin, error, payload, values)

        return reject


class MqttAdapter:
    """One MQTT connection: subscribes, stores in batches, acknowledges what is stored, publishes commands."""

    name = "mqtt"

    def __init__(self, ctx: IngestContext) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.broker = parse_url(s.mqtt_url, s.mqtt_username, s.mqtt_password)
        self.client_id = s.mqtt_client_id
        self.max_bytes = s.max_payload_bytes
        self.max_items = s.max_telemetry_items
        self.shared_group = s.mqtt_shared_group
        self.rejects = _Rejects(ctx)
        self.tenants = _Tenants(ctx)
        self.sparkplug = (
            SparkplugHost(ctx, self.rejects.bind(SPARKPLUG_SOURCE), self.send, max_bytes=s.max_payload_bytes)
            if s.mqtt_sparkplug
            else None
        )
        self.backoff = Backoff()
        self.connected = asyncio.Event()
        """Set while subscribed (tests and health checks wait on it)."""
        self.sessions = 0
        self._outbox: asyncio.Queue[_Outgoing] = asyncio.Queue(OUTBOX_SIZE)
        self._unsent: _Outgoing | None = None
        self._stopping = False
        self._stop = asyncio.Event()
        self._interrupt = asyncio.Event()
        """Ends the current session's reading: on stop, or when a batch could not be stored."""
        self._born_ms = 0
        self._inbox: asyncio.Queue[aiomqtt.Message] | None = None
        self._broken: BaseException | None = None
        self._in_flight = 0
        self._room = asyncio.Event()
        self._room.set()
        self._tail: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._tls: ssl.SSLContext | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._subscription = self.ctx.bus.subscribe(None, self._on_bus)
        self._task = asyncio.create_task(self._run(), name="mqtt-adapter")

    async def stop(self) -> None:
        """Stop reading, let in-flight batches commit and be acknowledged, then disconnect."""
        self._stopping = True
        self._stop.set()
        self._interrupt.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 30)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        if self._subscription is not None:
            self._subscription.close()

    async def _run(self) -> None:
        if self.broker.tls:
            self._tls = await asyncio.to_thread(self._tls_context)
        while not self._stopping:
            try:
                client = self._client()
                async with client:
                    self.backoff.connected()
                    if self.sessions:
                        self.ctx.stats(SOURCE).reconnects += 1
                    self.sessions += 1
                    log.info("mqtt: connected to %s:%d as %s", self.broker.host, self.broker.port, self.client_id)
                    await self._session(client)
            except aiomqtt.MqttError as exc:
                if not self._stopping:
                    log.warning(
                        "mqtt: connection to %s:%d lost or refused: %s", self.broker.host, self.broker.port, exc
                    )
            except _StorageFailed as exc:
                log.error("mqtt: storing failed (%s); reconnecting so the broker redelivers", exc.__cause__ or exc)
            except Exception:
                log.exception("mqtt: session failed")
            finally:
                self.connected.clear()
            if self._stopping:
                break
            self.backoff.reset_if_stable()
            delay = self.backoff.next_delay()
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except TimeoutError:
                pass

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ctx.settings.mqtt_ca_file or None)

    def _client(self) -> aiomqtt.Client:
        props = _properties(PacketTypes.CONNECT)
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._born_ms = int(time.time() * 1000)
        will = None
        if self.sparkplug is not None:  # Sparkplug 3.0 host STATE: its death is the will
            will = aiomqtt.Will(state_topic(self.client_id), state_payload(False, self._born_ms), qos=1, retain=True)
        client = aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=self.broker.username,
            password=self.broker.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            will=will,
            keepalive=30,
            tls_context=self._tls,
            max_queued_incoming_messages=0,
            queue_type=self._inbox_type(),
        )
        # aiomqtt 2.5 acknowledges on receipt; paho's manual_ack (set before connecting, so a
        # persistent session's backlog is covered too) lets us acknowledge after the commit.
        client._client.manual_ack_set(True)
        return client

    def _inbox_type(self) -> type[asyncio.Queue[aiomqtt.Message]]:
        """aiomqtt's incoming queue, kept so a batch can be drained without a task per message."""
        adapter = self

        class Inbox(asyncio.Queue[aiomqtt.Message]):
            def __init__(self, maxsize: int = 0) -> None:
                super().__init__(maxsize)
                adapter._inbox = self
                self.warned = False

            def put_nowait(self, item: aiomqtt.Message) -> None:
                super().put_nowait(item)
                if self.qsize() >= INBOX_WARN and not self.warned:
                    self.warned = True
                    log.warning("mqtt: %d messages wait to be stored (the broker sends faster)", self.qsize())
                elif self.warned and self.qsize() < INBOX_WARN // 2:
                    self.warned = False

        return Inbox

    def _filters(self) -> list[str]:
        telemetry = "+/devices/#"
        filters = [f"$share/{self.shared_group}/{telemetry}" if self.shared_group else telemetry]
        if self.sparkplug is not None:
            filters.extend(SPARKPLUG_FILTERS)
        return filters

    async def _session(self, client: aiomqtt.Client) -> None:
        self._broken = None
        if not self._stopping:
            self._interrupt.clear()
        codes = await client.subscribe([(f, SubscribeOptions(qos=1)) for f in self._filters()])
        for topic, code in zip(self._filters(), codes, strict=False):
            if getattr(code, "is_failure", False):
                log.error("mqtt: the broker refused the subscription %s: %s", topic, code)
        if self.sparkplug is not None:
            await client.publish(state_topic(self.client_id), state_payload(True, self._born_ms), qos=1, retain=True)
        self.connected.set()
        sender = asyncio.create_task(self._sender(client), name="mqtt-sender")
        try:
            await self._consume(client)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            if self._tail is not None:  # everything taken in is stored (and acknowledged) or failed
                await asyncio.gather(self._tail, return_exceptions=True)
        if self._broken is not None:
            raise _StorageFailed(str(self._broken)) from self._broken
        if self._stopping and self.sparkplug is not None:
            await client.publish(state_topic(self.client_id), state_payload(False, self._born_ms), qos=1, retain=True)

    # -- receiving ---------------------------------------------------------------------

    async def _consume(self, client: aiomqtt.Client) -> None:
        messages, inbox = client.messages, self._inbox
        assert inbox is not None
        interrupt = asyncio.ensure_future(self._interrupt.wait())
        try:
            while True:
                first = asyncio.ensure_future(anext(messages))
                await asyncio.wait({first, interrupt}, return_when=asyncio.FIRST_COMPLETED)
                if not first.done():
                    first.cancel()
                    await asyncio.gather(first, return_exceptions=True)
                    return
                batch = [first.result()]  # raises MqttError when the connection dropped
                while len(batch) < MAX_BATCH and not inbox.empty():
                    batch.append(inbox.get_nowait())
                while self._in_flight >= MAX_IN_FLIGHT:
                    self._room.clear()
                    await self._room.wait()
                self._in_flight += len(batch)
                try:
                    works = await self._prepare(client, batch)
                except BaseException:
                    self._release(len(batch))
                    raise
                self._tail = asyncio.create_task(self._store(works, self._tail))
                if self._interrupt.is_set():
                    return
        finally:
            interrupt.cancel()

    async def _prepare(self, client: aiomqtt.Client, batch: list[aiomqtt.Message]) -> list[_Work]:
        """Decode and route in arrival order (Sparkplug state depends on it); nothing stored yet."""
        works: list[_Work] = []
        for msg in batch:
            raw = msg.payload
            payload = bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw).encode()
            work = _Work(client, msg.mid, msg.qos, msg.topic.value, payload)
            works.append(work)
            if msg.retain and not work.topic.endswith("/status"):
                continue  # a replay at subscription time: already stored when it was live
            try:
                await self._route(work)
            except Exception as exc:
                if storage_trouble(exc):
                    raise _StorageFailed(str(exc)) from exc
                log.exception("mqtt: unexpected failure on %s", work.topic)
                work.items = []
                error = DecodeError("internal_error", f"{type(exc).__name__}: {exc}")
                await self.rejects.reject(work.source, work.tenant_id, work.topic, error, payload)
        return works

    async def _route(self, work: _Work) -> None:
        levels = work.topic.split("/")
        if levels[0] == NAMESPACE:
            await self._sparkplug(work, levels)
            return
        if len(levels) < 4 or levels[1] != "devices" or not any(levels[2:-1]):
            error = DecodeError("invalid_topic", "expected {tenant}/devices/{device}/{telemetry|status}")
            await self.rejects.reject(SOURCE, None, work.topic, error, work.payload)
            return
        kind, device = levels[-1], "/".join(levels[2:-1])
        if kind == "commands":
            return  # on its way to a device (ours, echoed back by the broker)
        work.tenant_id = await self.tenants.id(levels[0])
        if work.tenant_id is None:
            error = DecodeError("unknown_tenant", f"no active tenant {levels[0][:64]!r}")
            await self.rejects.reject(SOURCE, None, work.topic, error, work.payload)
            return
        if kind == "telemetry":
            try:
                work.items = decode_telemetry(work.payload, device=device, max_bytes=self.max_bytes,
                                              max_items=self.max_items)  # fmt: skip
            except DecodeError as exc:
                await self.rejects.reject(SOURCE, work.tenant_id, work.topic, exc, work.payload)
        elif kind == "status":
            await self._status(work, device)
        else:
            error = DecodeError("invalid_topic", f"unknown message kind {kind[:32]!r}: telemetry or status")
            await self.rejects.reject(SOURCE, work.tenant_id, work.topic, error, work.payload)

    async def _status(self, work: _Work, device: str) -> None:
        assert work.tenant_id is not None
        text = work.payload[:64].decode("utf-8", "replace").strip().strip('"').lower()
        if not text:
            return  # a retained status being cleared
        if text not in (DeviceStatus.ONLINE, DeviceStatus.OFFLINE) or len(work.payload) > 64:
            error = DecodeError("invalid_status", "status payload must be 'online' or 'offline'")
            await self.rejects.reject(SOURCE, work.tenant_id, work.topic, error, work.payload)
            return
        try:
            await self.ctx.namespace.set_device_status(work.tenant_id, device, DeviceStatus(text))
        except NotFound:
            error = DecodeError("unknown_device", f"device {device!r} not found")
            await self.rejects.reject(SOURCE, work.tenant_id, work.topic, error, work.payload)
            return
        except InvalidInput as exc:
            await self.rejects.reject(SOURCE, work.tenant_id, work.topic, DecodeError("not_a_device", exc.detail),
                                      work.payload)  # fmt: skip
            return
        stats = self.ctx.stats(SOURCE, work.tenant_id)
        stats.received += 1
        stats.accepted += 1

    async def _sparkplug(self, work: _Work, levels: list[str]) -> None:
        work.source = SPARKPLUG_SOURCE
        if self.sparkplug is None:
            return
        try:
            topic = parse_topic(levels)
        except DecodeError as exc:
            await self.rejects.reject(SPARKPLUG_SOURCE, None, work.topic, exc, work.payload)
            return
        if topic is None:
            return
        work.tenant_id = await self.tenants.id(topic.group)
        if work.tenant_id is None:
            error = DecodeError("unknown_tenant", f"no active tenant {topic.group[:64]!r} (the Sparkplug group id)")
            await self.rejects.reject(SPARKPLUG_SOURCE, None, work.topic, error, work.payload)
            return
        work.items = await self.sparkplug.handle(work.tenant_id, topic, work.payload)

    # -- storing and acknowledging -------------------------------------------------------

    async def _store(self, works: list[_Work], before: asyncio.Task[None] | None) -> None:
        """Commit the batch (each tenant in one call), then acknowledge it after the batch before it."""
        failed = False
        try:
            groups: dict[tuple[int, str], list[_Work]] = {}
            for w in works:
                if w.items and w.tenant_id is not None:
                    groups.setdefault((w.tenant_id, w.source), []).append(w)
            results = await asyncio.gather(
                *(self._ingest(tenant_id, source, group) for (tenant_id, source), group in groups.items()),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    failed = True
                    if not storage_trouble(result):
                        log.error("mqtt: storing a batch failed", exc_info=result)
                    self._break(result)
        finally:
            self._release(len(works))
        if before is not None:
            await asyncio.gather(before, return_exceptions=True)  # acknowledgements go out in order
        if failed:
            return  # not acknowledged: redelivered after the reconnect
        for w in works:
            if w.qos > 0:
                w.client._client.ack(w.mid, w.qos)

    def _release(self, messages: int) -> None:
        self._in_flight -= messages
        self._room.set()

    def _break(self, exc: BaseException) -> None:
        if self._broken is None:
            self._broken = exc
        self._interrupt.set()

    async def _ingest(self, tenant_id: int, source: str, works: list[_Work]) -> None:
        """A tenant's messages of a batch in one pipeline call (the one at fault alone if that is refused)."""
        outcomes = await ingest_together(self.ctx.pipeline, tenant_id, source, [w.items for w in works])
        for w, exc in zip(works, outcomes, strict=True):
            if not isinstance(exc, Exception):
                continue
            if isinstance(exc, DomainError):
                await self.rejects.refused(w, exc)
                continue
            # A bug, not the message's fault or the database's: keep the message, don't loop on it.
            log.error("mqtt: storing a message from %s failed", w.topic, exc_info=exc)
            self.ctx.stats(source, tenant_id).rejected["internal_error"] += sum(len(i.values) for i in w.items)
            await self.ctx.dead_letter(
                w.source, tenant_id, w.topic, "internal_error", repr(exc), w.payload, count=False
            )

    # -- sending -----------------------------------------------------------------------

    def send(self, topic: str, payload: bytes, qos: int = 1, expires_at: float | None = None) -> None:
        """Queue a message for the broker (sent while connected, kept across reconnects)."""
        try:
            self._outbox.put_nowait(_Outgoing(topic, payload, qos, expires_at))
        except asyncio.QueueFull:
            log.error("mqtt: outgoing queue full; dropped a message to %s", topic)

    def _on_bus(self, message: Message) -> None:
        if not isinstance(message, Event) or message.kind != "command":
            return
        data = message.data
        body = {k: data.get(k) for k in ("id", "command", "args", "node_id", "user", "ts", "expires_at")}
        self.send(
            f"{data['tenant']}/devices/{data['device']}/commands",
            json.dumps(body, separators=(",", ":")).encode(),
            1,
            data.get("expires_at"),
        )

    async def _sender(self, client: aiomqtt.Client) -> None:
        while True:
            out = self._unsent or await self._outbox.get()
            self._unsent = out
            props = None
            if out.expires_at is not None:
                remaining = out.expires_at - time.time()
                if remaining <= 0:
                    log.warning("mqtt: command to %s expired before it could be sent", out.topic)
                    self._unsent = None
                    continue
                props = _properties(PacketTypes.PUBLISH)
                props.MessageExpiryInterval = max(1, math.ceil(remaining))
            try:
                await client.publish(out.topic, out.payload, qos=out.qos, properties=props)
            except aiomqtt.MqttError as exc:
                log.warning("mqtt: publishing to %s failed (%s); retried after reconnecting", out.topic, exc)
                return
            except ValueError as exc:  # a topic paho won't publish (wildcards in a name)
                log.error("mqtt: can't publish to %r: %s", out.topic, exc)
            self._unsent = None


def build(ctx: IngestContext) -> list[Adapter]:
    """One MQTT adapter (plain topics and, with mqtt_sparkplug, Sparkplug B) when mqtt_url is set."""
    return [MqttAdapter(ctx)] if ctx.settings.mqtt_url else []
