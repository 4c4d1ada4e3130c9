"""How the simulated plant's readings reach the platform: HTTP, MQTT (JSON and Sparkplug B),
CoAP and AMQP. Each publisher connects in the background and reconnects on its own; a tick
whose transport is down is dropped (and counted), never queued, like a real device's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import aiocoap  # type: ignore[import-untyped, unused-ignore]
import aiomqtt
import httpx

from server.sim import sparkplug
from server.sim.plant import DeviceInfo, Frame

log = logging.getLogger("iiot-sim")


class Publisher(Protocol):
    name: str
    sent: int
    """Device messages (or requests) the transport accepted."""
    dropped: int

    async def start(self) -> None:
        """Begin connecting; returns at once."""

    async def publish(self, ts: float, frame: Frame) -> None:
        """Send one tick; never raises (a failure is counted and logged, rate-limited)."""

    async def stop(self) -> None: ...


class _Warn:
    """At most one warning per `every_s` per publisher: a dead broker must not flood the log."""

    def __init__(self, name: str, every_s: float = 30.0) -> None:
        self.name, self.every_s = name, every_s
        self._at = -1e9
        self._quiet = 0

    def __call__(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._at < self.every_s:
            self._quiet += 1
            return
        extra = f" ({self._quiet} more since the last message)" if self._quiet else ""
        log.warning("%s: " + message + "%s", self.name, *args, extra)
        self._at, self._quiet = now, 0


# -- HTTP: the platform's REST API ---------------------------------------------------------


class Platform:
    """A logged-in session on iiot-server: builds the namespace, posts telemetry, makes keys."""

    def __init__(self, server: str, tenant: str, username: str, password: str) -> None:
        self.http = httpx.AsyncClient(base_url=server, timeout=10)
        self.tenant, self.username, self.password = tenant, username, password
        self.refresh_token = ""
        self.expires = 0.0

    async def login(self) -> None:
        r = await self.http.post(
            "/api/v1/auth/login", json={"tenant": self.tenant, "username": self.username, "password": self.password}
        )
        r.raise_for_status()
        self._use(r.json())

    def _use(self, tokens: dict[str, Any]) -> None:
        self.http.headers["Authorization"] = f"Bearer {tokens['access_token']}"
        self.refresh_token = str(tokens["refresh_token"])
        self.expires = time.monotonic() + float(tokens["expires_in"]) * 0.8

    async def ensure_token(self) -> None:
        if time.monotonic() < self.expires:
            return
        r = await self.http.post("/api/v1/auth/refresh", json={"refresh_token": self.refresh_token})
        if r.status_code == 200:
            self._use(r.json())
        else:
            await self.login()

    async def build(self, devices: list[DeviceInfo]) -> None:
        """Folders, devices and tags (units, ranges, types) as needed; devices marked online."""
        made: set[str] = set()
        for device in devices:
            parts = device.path.split("/")
            for depth in range(1, len(parts)):
                path = "/".join(parts[:depth])
                if path not in made:
                    await self._node("/".join(parts[: depth - 1]) or None, "folder", parts[depth - 1])
                    made.add(path)
            await self._node("/".join(parts[:-1]), "device", parts[-1])
            for tag in device.tags:
                extra: dict[str, Any] = (
                    {"data_type": "Boolean"} if tag.boolean
                    else {"data_type": "Double", "unit": tag.unit or None, "range_low": tag.low, "range_high": tag.high}
                )  # fmt: skip
                await self._node(device.path, "tag", tag.name, **extra)
            await self.set_status(device.path, "online")

    async def set_status(self, path: str, status: str) -> None:
        await self.ensure_token()
        r = await self.http.put(f"/api/v1/devices/{path}/status", json={"status": status})
        if r.status_code != 200:
            log.warning("could not mark %s %s: %s %s", path, status, r.status_code, r.text[:200])

    async def _node(self, parent: str | None, cls: str, name: str, **extra: object) -> None:
        await self.ensure_token()
        r = await self.http.post(
            "/api/v1/nodes", json={"parent": parent, "node_class": cls, "browse_name": name, **extra}
        )
        if r.status_code not in (201, 409):
            raise RuntimeError(f"creating {name}: {r.status_code} {r.text}")

    async def post_telemetry(self, batch: list[dict[str, Any]], attempts: int = 4) -> None:
        """One batch that must arrive (a backfill leaves no silent gaps): a network error or a
        5xx is tried again (1, 2, 4 s apart), a refusal raises with the server's reason."""
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(2.0 ** (attempt - 1))
            try:
                await self.ensure_token()
                r = await self.http.post("/api/v1/telemetry", json=batch, timeout=60)
            except httpx.HTTPError as exc:
                log.warning("telemetry batch not sent (%s); retrying", exc)
                continue
            if r.status_code < 300:
                return
            if r.status_code < 500:
                raise RuntimeError(f"the server refused a telemetry batch: {r.status_code} {r.text[:300]}")
            log.warning("telemetry batch: %s from the server; retrying", r.status_code)
        raise RuntimeError(f"a telemetry batch could not be sent in {attempts} attempts")

    async def api_key(self, name: str) -> str:
        """A fresh telemetry key (roles engineer) for devices that can't log in (CoAP)."""
        await self.ensure_token()
        r = await self.http.post(
            "/api/v1/api-keys", json={"name": f"{name}-{uuid.uuid4().hex[:8]}", "roles": ["engineer"]}
        )
        if r.status_code != 201:
            raise RuntimeError(f"creating an API key: {r.status_code} {r.text[:200]}")
        return str(r.json()["key"])

    async def create_connection(self, kind: str, name: str, config: dict[str, Any]) -> None:
        await self.ensure_token()
        r = await self.http.post("/api/v1/connections", json={"kind": kind, "name": name, "config": config})
        if r.status_code == 409:
            found = [c for c in (await self.http.get("/api/v1/connections")).json() if c["name"] == name]
            r = await self.http.patch(f"/api/v1/connections/{found[0]['id']}", json={"config": config})
        if r.status_code not in (200, 201):
            raise RuntimeError(f"configuring connection {name}: {r.status_code} {r.text[:300]}")

    async def close(self) -> None:
        await self.http.aclose()


class HttpPublisher:
    name = "http"

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.sent = self.dropped = 0
        self._warn = _Warn(self.name)

    async def start(self) -> None:
        pass

    async def publish(self, ts: float, frame: Frame) -> None:
        batch = [{"device": path, "ts": ts, "values": values} for path, values in frame.items()]
        try:
            await self.platform.ensure_token()
            r = await self.platform.http.post("/api/v1/telemetry", json=batch)
        except httpx.HTTPError as exc:
            self.dropped += len(batch)
            self._warn("server unreachable (%s)", exc)
            return
        if r.status_code >= 400:
            self.dropped += len(batch)
            self._warn("server refused a batch: %s %s", r.status_code, r.text[:200])
        else:
            self.sent += len(batch)

    async def stop(self) -> None:
        pass


# -- MQTT: plain JSON and Sparkplug B --------------------------------------------------------


def mqtt_params(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp", ""):
        raise ValueError(f"MQTT URL {url!r}: only mqtt://host[:port] (TLS is not used by the simulator)")
    return {
        "hostname": parts.hostname or "127.0.0.1", "port": parts.port or 1883,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
    }  # fmt: skip


class _MqttLink:
    """One MQTT connection kept up in the background; `on_connect` runs after each connect."""

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        will: aiomqtt.Will | Callable[[], aiomqtt.Will] | None = None,
        on_connect: Callable[[aiomqtt.Client], Awaitable[None]] | None = None,
        on_message: Callable[[aiomqtt.Message], Awaitable[None]] | None = None,
        warn: _Warn,
    ) -> None:
        self.params = mqtt_params(url)
        self.client_id, self.will, self.on_connect, self.on_message, self.warn = (
            client_id, will, on_connect, on_message, warn,
        )  # fmt: skip
        self.client: aiomqtt.Client | None = None
        self.connects = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mqtt {self.client_id}")

    async def _run(self) -> None:
        delay = 0.5
        while True:
            will = self.will() if callable(self.will) else self.will
            try:
                async with aiomqtt.Client(**self.params, identifier=self.client_id, will=will, timeout=5) as client:
                    self.connects += 1
                    if self.on_connect is not None:
                        await self.on_connect(client)
                    self.client, delay = client, 0.5
                    async for message in client.messages:  # also how a lost connection shows
                        if self.on_message is not None:
                            await self.on_message(message)
            except aiomqtt.MqttError as exc:
                self.warn("broker %s:%s unreachable (%s); retrying", self.params["hostname"], self.params["port"], exc)
            finally:
                self.client = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def stop(self, farewell: Callable[[aiomqtt.Client], Awaitable[None]] | None = None) -> None:
        if farewell is not None and self.client is not None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(farewell(self.client), 5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class MqttPublisher:
    """`{tenant}/devices/{path}/telemetry` with `{"ts", "values"}` at QoS 1; status retained."""

    name = "mqtt"

    def __init__(self, url: str, tenant: str, devices: list[DeviceInfo], client_id: str = "") -> None:
        self.tenant, self.devices = tenant, devices
        self.sent = self.dropped = 0
        self._warn = _Warn(self.name)
        self.link = _MqttLink(
            url, client_id or f"iiot-sim-{uuid.uuid4().hex[:8]}", on_connect=self._online, warn=self._warn
        )

    def topic(self, path: str, kind: str) -> str:
        return f"{self.tenant}/devices/{path}/{kind}"

    async def _online(self, client: aiomqtt.Client) -> None:
        for device in self.devices:
            await client.publish(self.topic(device.path, "status"), b"online", qos=1, retain=True)

    async def start(self) -> None:
        self.link.start()

    async def publish(self, ts: float, frame: Frame) -> None:
        client = self.link.client
        if client is None:
            self.dropped += len(frame)
            return
        try:
            for path, values in frame.items():
                body = json.dumps({"ts": ts, "values": values}).encode()
                await client.publish(self.topic(path, "telemetry"), body, qos=1)
                self.sent += 1
        except aiomqtt.MqttError as exc:
            self.dropped += 1
            self._warn("publish failed (%s)", exc)

    async def stop(self) -> None:
        async def offline(client: aiomqtt.Client) -> None:
            for device in self.devices:
                await client.publish(self.topic(device.path, "status"), b"offline", qos=1, retain=True)

        await self.link.stop(offline)


class SparkplugPublisher:
    """An edge node `edge` in group `tenant`: NBIRTH/DBIRTH with every metric's name, alias,
    type, unit and range; DDATA by alias; NDEATH as last will (bdSeq); a Rebirth NCMD answered."""

    name = "sparkplug"

    def __init__(self, url: str, tenant: str, edge: str, devices: list[DeviceInfo]) -> None:
        self.tenant, self.edge, self.devices = tenant, edge, devices
        self.sent = self.dropped = 0
        self.births = 0
        self._warn = _Warn(self.name)
        self.aliases: dict[tuple[str, str], int] = {}
        alias = 1
        for device in devices:
            for tag in device.tags:
                self.aliases[(device.name, tag.name)] = alias
                alias += 1
        self.bd_seq = -1
        self.seq = 0
        self._last: dict[str, dict[str, float]] = {}
        self._lock = asyncio.Lock()
        self.link = _MqttLink(
            url, f"iiot-sim-sp-{uuid.uuid4().hex[:8]}", will=self._will, on_connect=self._birth,
            on_message=self._command, warn=self._warn,
        )  # fmt: skip

    def topic(self, kind: str, device: str | None = None) -> str:
        base = f"spBv1.0/{self.tenant}/{kind}/{self.edge}"
        return f"{base}/{device}" if device else base

    def _will(self) -> aiomqtt.Will:
        self.bd_seq = (self.bd_seq + 1) % 256
        return aiomqtt.Will(self.topic("NDEATH"), self._death_payload(), qos=1)

    def _death_payload(self) -> bytes:
        bd = sparkplug.Metric(name="bdSeq", datatype=sparkplug.UINT64, value=self.bd_seq)
        return sparkplug.encode(int(time.time() * 1000), [bd], None)

    def _next_seq(self) -> int:
        seq = self.seq
        self.seq = (self.seq + 1) % 256
        return seq

    async def _birth(self, client: aiomqtt.Client) -> None:
        async with self._lock:
            now_ms = int(time.time() * 1000)
            self.seq = 0
            node = [
                sparkplug.Metric(name="bdSeq", datatype=sparkplug.UINT64, value=self.bd_seq),
                sparkplug.Metric(name="Node Control/Rebirth", datatype=sparkplug.BOOLEAN, value=False),
            ]
            await client.subscribe(self.topic("NCMD"), qos=1)
            await client.publish(self.topic("NBIRTH"), sparkplug.encode(now_ms, node, self._next_seq()), qos=1)
            for device in self.devices:
                last = self._last.get(device.path, {})
                metrics = [
                    sparkplug.Metric(
                        name=tag.name, alias=self.aliases[(device.name, tag.name)],
                        datatype=sparkplug.BOOLEAN if tag.boolean else sparkplug.DOUBLE,
                        value=(bool(last[tag.name]) if tag.boolean else last[tag.name]) if tag.name in last else None,
                        unit=tag.unit or None, low=None if tag.boolean else tag.low,
                        high=None if tag.boolean else tag.high,
                    )
                    for tag in device.tags
                ]  # fmt: skip
                payload = sparkplug.encode(now_ms, metrics, self._next_seq())
                await client.publish(self.topic("DBIRTH", device.name), payload, qos=1)
            self.births += 1

    async def _command(self, message: aiomqtt.Message) -> None:
        if not isinstance(message.payload, bytes):
            return
        try:
            _, _, metrics = sparkplug.decode(message.payload)
        except Exception:  # a malformed command is ignored, as an edge node would
            self._warn("ignored an undecodable NCMD")
            return
        if any(m.name == "Node Control/Rebirth" and m.value for m in metrics) and self.link.client is not None:
            log.info("sparkplug: rebirth requested")
            await self._birth(self.link.client)

    async def start(self) -> None:
        self.link.start()

    async def publish(self, ts: float, frame: Frame) -> None:
        by_path = {d.path: d for d in self.devices}
        for path, values in frame.items():
            self._last[path] = values
        client = self.link.client
        if client is None:
            self.dropped += len(frame)
            return
        ts_ms = int(ts * 1000)
        try:
            async with self._lock:
                for path, values in frame.items():
                    device = by_path[path]
                    metrics = [
                        sparkplug.Metric(
                            alias=self.aliases[(device.name, tag.name)],
                            datatype=sparkplug.BOOLEAN if tag.boolean else sparkplug.DOUBLE,
                            value=bool(values[tag.name]) if tag.boolean else values[tag.name],
                        )
                        for tag in device.tags
                        if tag.name in values
                    ]
                    payload = sparkplug.encode(ts_ms, metrics, self._next_seq())
                    await client.publish(self.topic("DDATA", device.name), payload, qos=0)
                    self.sent += 1
        except aiomqtt.MqttError as exc:
            self.dropped += 1
            self._warn("publish failed (%s)", exc)

    async def stop(self) -> None:
        async def death(client: aiomqtt.Client) -> None:
            now_ms = int(time.time() * 1000)
            for device in self.devices:
                await client.publish(self.topic("DDEATH", device.name), sparkplug.encode(now_ms, [], self._next_seq()))
            await client.publish(self.topic("NDEATH"), self._death_payload(), qos=1)

        await self.link.stop(death)


# -- CoAP and AMQP ---------------------------------------------------------------------------


class CoapPublisher:
    """`POST <coap-url>/telemetry?key=K` with every device's values of a tick in one request."""

    name = "coap"

    def __init__(self, url: str, key: str, timeout_s: float = 5.0) -> None:
        self.uri = url.rstrip("/") + "/telemetry?key=" + quote(key, safe="")
        self.timeout_s = timeout_s
        self.sent = self.dropped = 0
        self._warn = _Warn(self.name)
        self._context: Any = None

    async def start(self) -> None:
        self._context = await aiocoap.Context.create_client_context()

    async def publish(self, ts: float, frame: Frame) -> None:
        body = json.dumps([{"device": p, "ts": ts, "values": v} for p, v in frame.items()]).encode()
        request = aiocoap.Message(
            code=aiocoap.POST, uri=self.uri, payload=body, content_format=aiocoap.ContentFormat.JSON
        )
        try:
            response = await asyncio.wait_for(self._context.request(request).response, self.timeout_s)
        except (TimeoutError, OSError, aiocoap.error.Error) as exc:
            self.dropped += len(frame)
            self._warn("no answer from %s (%s)", self.uri.split("?")[0], type(exc).__name__)
            return
        if response.code.is_successful():
            self.sent += len(frame)
        else:
            self.dropped += len(frame)
            self._warn("refused: %s %s", response.code, response.payload[:200].decode(errors="replace"))

    async def stop(self) -> None:
        if self._context is not None:
            await self._context.shutdown()


class AmqpPublisher:
    """Routing key `telemetry.<tenant>.<device path>` on the durable topic exchange."""

    name = "amqp"

    def __init__(self, url: str, tenant: str, exchange: str = "iiot") -> None:
        self.url, self.tenant, self.exchange_name = url, tenant, exchange
        self.sent = self.dropped = 0
        self._warn = _Warn(self.name)
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._connect(), name="amqp connect")

    async def _connect(self) -> None:
        delay = 0.5
        while self._exchange is None:
            try:
                self._connection = await aio_pika.connect_robust(self.url, timeout=5)
                channel = await self._connection.channel()
                self._exchange = await channel.declare_exchange(
                    self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                )
            except (aio_pika.exceptions.AMQPError, OSError, TimeoutError) as exc:
                self._warn("broker unreachable (%s); retrying", exc)
                if self._connection is not None:
                    with contextlib.suppress(Exception):
                        await self._connection.close()
                    self._connection = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def publish(self, ts: float, frame: Frame) -> None:
        exchange = self._exchange
        if exchange is None or self._connection is None or self._connection.is_closed:
            self.dropped += len(frame)
            return
        try:
            for path, values in frame.items():
                message = aio_pika.Message(
                    json.dumps({"ts": ts, "values": values}).encode(), content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )  # fmt: skip
                await exchange.publish(message, routing_key=f"telemetry.{self.tenant}.{path}", timeout=5)
                self.sent += 1
        except (aio_pika.exceptions.AMQPError, OSError, TimeoutError, RuntimeError) as exc:
            self.dropped += 1
            self._warn("publish failed (%s)", exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
