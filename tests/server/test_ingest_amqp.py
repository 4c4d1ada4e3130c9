"""AMQP ingest against the machine's RabbitMQ, published with Debian's `amqp-publish`
(amqp-tools, written by nobody here) and with aio-pika where confirms are needed: data into
the historian on SQLite and PostgreSQL, malformed messages in the dead-letter queue and
counted, tenancy by routing key, a connection the broker drops mid-stream (nothing
acknowledged is lost), restart, competing consumers and concurrent processing.

Each module run declares its own exchange and queues (unique names), so parallel runs on one
broker don't collide; they are deleted at the end. The broker itself is never restarted —
others use it — its connection to the server is closed instead (`rabbitmqctl
close_connection` when available, else the client side of the socket)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import pytest
from yarl import URL

from server.ingest.amqp import AmqpAdapter
from tests.support import BACKENDS, LiveServer, TenantHandle, database_url, make_settings, unavailable, wait_for

AMQP_URL = os.environ.get("IIOT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1/")
DEVICE = "Plant1/Area1/Pump7"
FLOW = f"{DEVICE}/Flow"
MAX_BYTES = 4096
PREFETCH = 50


@dataclass
class AmqpServer:
    live: LiveServer
    exchange: str
    queue: str
    extra: list[AmqpAdapter] = field(default_factory=list)

    @property
    def dlq(self) -> str:
        return f"{self.queue}.dlq"

    @property
    def adapter(self) -> AmqpAdapter:
        assert self.live.server is not None
        return next(a for a in self.live.server.adapters if isinstance(a, AmqpAdapter))

    def publish(self, routing_key: str, body: str | bytes, *options: str) -> None:
        """One message with amqp-publish; bytes go through stdin (they may not be text)."""
        url = AMQP_URL[:-1] if AMQP_URL.endswith("/") and URL(AMQP_URL).path == "/" else AMQP_URL
        cmd = ["amqp-publish", "-u", url, "-e", self.exchange, "-r", routing_key, *options]
        if isinstance(body, str):
            proc = subprocess.run([*cmd, "-b", body], capture_output=True, timeout=20)
        else:
            proc = subprocess.run(cmd, input=body, capture_output=True, timeout=20)
        assert proc.returncode == 0, proc.stderr


def broker(coro_fn: Callable[[aio_pika.abc.AbstractChannel], Awaitable[Any]]) -> Any:
    """Run something on a channel of a fresh connection (the test's own, not the server's)."""

    async def run() -> Any:
        connection = await aio_pika.connect(AMQP_URL)
        try:
            return await coro_fn(await connection.channel())
        finally:
            await connection.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AmqpServer]]:
    """One AMQP-enabled server per backend, each on its own exchange and queue, started lazily."""
    if shutil.which("amqp-publish") is None:
        unavailable("amqp-publish is not installed (Debian package amqp-tools)")
    target = URL(AMQP_URL)
    try:
        socket.create_connection((target.host or "127.0.0.1", target.port or 5672), timeout=3).close()
    except OSError as exc:
        unavailable(f"RabbitMQ at {AMQP_URL} is unreachable ({exc}); set IIOT_TEST_AMQP_URL")
    with ExitStack() as stack:

        class Lazy(dict[str, AmqpServer]):
            def __missing__(self, backend: str) -> AmqpServer:
                tmp = tmp_path_factory.mktemp(f"amqp-{backend}")
                url = stack.enter_context(database_url(backend, tmp))
                name = f"iiot-test-{uuid.uuid4().hex[:10]}"
                settings = make_settings(tmp, url, amqp_url=AMQP_URL, amqp_exchange=name, amqp_queue=name,
                                         amqp_prefetch=PREFETCH, max_payload_bytes=MAX_BYTES)  # fmt: skip
                stack.callback(delete_topology, name)
                live = LiveServer(settings).start()
                stack.callback(live.stop)
                server = AmqpServer(live, name, name)
                live.call(server.adapter.ready.wait(), timeout=30)
                self[backend] = server
                return server

        yield Lazy()


def delete_topology(name: str) -> None:
    async def delete(channel: aio_pika.abc.AbstractChannel) -> None:
        for queue in (name, f"{name}.dlq"):
            await channel.queue_delete(queue)
        await channel.exchange_delete(name)

    broker(delete)


@pytest.fixture
def amqp(servers: dict[str, AmqpServer]) -> AmqpServer:
    return servers["sqlite"]


def history(tenant: TenantHandle, node: str, expect: int | None = None, timeout: float = 20) -> list[float]:
    """The tag's stored values; with `expect`, waits until that many distinct ones are there
    (a redelivery after a dropped connection may store a value twice before the last arrive)."""
    deadline = time.monotonic() + timeout
    while True:
        r = tenant.engineer.get("/api/v1/history", params={"node": node, "start": time.time() - 7200,
                                                           "max_points": 10_000})  # fmt: skip
        assert r.status_code == 200, r.text
        values = list(r.json()["value"])
        if expect is None or len(set(values)) >= expect or time.monotonic() > deadline:
            return values
        time.sleep(0.1)


def stats(client: Any) -> dict[str, Any]:
    return dict(client.get("/api/v1/ingest/stats").json().get("amqp", {}))


def drain(amqp: AmqpServer) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Everything in the dead-letter queue, removed from it."""

    async def get_all(channel: aio_pika.abc.AbstractChannel) -> list[Any]:
        queue = await channel.get_queue(amqp.dlq)
        out = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            out.append(message)
        return out

    return list(broker(get_all))


# -- the core path, on both backends ------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_amqp_publish_reaches_the_historian(servers: dict[str, AmqpServer], backend: str) -> None:
    amqp = servers[backend]
    tenant = amqp.live.new_tenant()
    ids = tenant.build_plant()
    now = time.time()
    amqp.publish(f"telemetry.{tenant.name}.{DEVICE}", json.dumps({"ts": now - 3, "values": {"Flow": 1.5}}))
    amqp.publish(
        f"telemetry.{tenant.name}.{ids['Pump7']}",
        json.dumps([{"ts": now - 2, "values": {"Flow": 2.5, "Pressure": 7.0}}]),
        "-C",
        "application/json",
    )
    amqp.publish(f"telemetry.{tenant.name}",
                 json.dumps({"device": DEVICE, "ts": now - 1, "values": {"Flow": 3.5}}), "-p")  # fmt: skip
    assert history(tenant, FLOW, expect=3) == [1.5, 2.5, 3.5]
    assert history(tenant, ids["Pressure"]) == [7.0]
    counters = stats(tenant.engineer)
    assert (counters["accepted"], counters["rejected"], counters["dead_lettered"]) == (4, {}, 0)


# -- bad input ----------------------------------------------------------------------------


def test_malformed_messages_go_to_the_dead_letter_queue_and_are_counted(amqp: AmqpServer) -> None:
    drain(amqp)
    tenant = amqp.live.new_tenant()
    tenant.build_plant()
    key = f"telemetry.{tenant.name}.{DEVICE}"
    marker = uuid.uuid4().hex
    oversized = json.dumps({"ts": time.time(), "values": {"Flow": 1}, "quality": "Good", "pad": marker * 200})
    assert len(oversized) > MAX_BYTES
    bad: list[tuple[str, bytes | str, tuple[str, ...], str]] = [
        (key, b"\x00\xff\xfe" + marker.encode() + os.urandom(32), (), "invalid_json"),
        (key, '{"values": {"Flow": ' + marker, (), "invalid_json"),
        (key, json.dumps({"values": {"Flow": marker}}), (), "invalid_value"),
        (key, json.dumps({"values": {"Flow": 1}, "quality": marker}), (), "invalid_quality"),
        (key, json.dumps({"ts": time.time() + 99_999, "values": {"Flow": 1}, "quality": "Good", "x": marker}), (),
         "invalid_shape"),
        (key, json.dumps({"ts": time.time() + 99_999, "values": {"Flow": 1}}), (), "bad_timestamp"),
        (f"telemetry.{tenant.name}.Plant1/Area1/Nope", json.dumps({"values": {"Flow": 1}, "quality": "Bad"}), (),
         "unknown_device"),
        (f"telemetry.{tenant.name}", json.dumps({"values": {marker: 1}}), (), "invalid_shape"),
        (key, oversized, (), "too_large"),
        (key, json.dumps({"values": {marker: 2}}), ("-C", "text/plain"), "unsupported_format"),
        (key, json.dumps({"values": {marker: 3}}), ("-E", "gzip"), "unsupported_format"),
        (f"telemetry.no-such-tenant-{marker}.{DEVICE}", json.dumps({"values": {"Flow": 1}}), (), "unknown_tenant"),
        ("telemetry", json.dumps({"values": {marker: 4}}), (), "bad_routing_key"),
    ]  # fmt: skip
    before_all = stats(amqp.live.system())
    for routing_key, body, options, _ in bad:
        amqp.publish(routing_key, body, *options)

    expected = {body.encode() if isinstance(body, str) else body for _, body, _, _ in bad}
    assert len(expected) == len(bad)
    by_body: dict[bytes, Any] = {}
    deadline = time.monotonic() + 20
    while not expected <= set(by_body):
        assert time.monotonic() < deadline, f"missing from the dead-letter queue: {expected - set(by_body)}"
        by_body.update((m.body, m) for m in drain(amqp))
        time.sleep(0.1)
    for routing_key, body, _, _ in bad:
        message = by_body[body.encode() if isinstance(body, str) else body]
        death = message.headers["x-death"][0]
        assert death["reason"] == "rejected"
        assert routing_key in [str(k) for k in death["routing-keys"]]  # the original key is kept

    counters = stats(tenant.engineer)
    per_tenant = [r for _, _, _, r in bad if r not in ("unknown_tenant", "bad_routing_key")]
    assert counters["dead_lettered"] == len(per_tenant)
    expected_reasons: dict[str, int] = {}
    for reason in per_tenant:
        expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
    assert counters["rejected"] == expected_reasons
    assert counters["accepted"] == 0
    after_all = stats(amqp.live.system())  # unknown tenant and bad key belong to no tenant
    assert after_all["dead_lettered"] - before_all.get("dead_lettered", 0) == len(bad)
    letters = tenant.engineer.get("/api/v1/ingest/dead-letters", params={"source": "amqp"}).json()
    assert {d["reason"] for d in letters} >= {"invalid_json", "too_large", "unsupported_format"}
    assert history(tenant, FLOW) == []  # nothing of it was stored

    # and the adapter is still consuming
    amqp.publish(key, json.dumps({"values": {"Flow": 42.0}}))
    assert history(tenant, FLOW, expect=1) == [42.0]


def test_a_routing_key_reaches_only_its_tenant(amqp: AmqpServer) -> None:
    drain(amqp)
    a, b = amqp.live.new_tenant(), amqp.live.new_tenant("other")
    a.build_plant()
    b.build_plant()  # the same paths in both tenants
    r = a.engineer.post("/api/v1/nodes", json={"parent": "Plant1/Area1", "node_class": "device",
                                               "browse_name": "Secret"})  # fmt: skip
    assert r.status_code == 201, r.text
    secret = r.json()["node_id"]
    amqp.publish(f"telemetry.{b.name}.{DEVICE}", json.dumps({"values": {"Flow": 5.0}}))
    amqp.publish(f"telemetry.{b.name}.{secret}", json.dumps({"values": {"Level": 1.0}}))
    amqp.publish(f"telemetry.{b.name}", json.dumps({"device": "Plant1/Area1/Secret", "values": {"Level": 1.0}}))
    assert history(b, FLOW, expect=1) == [5.0]
    wait_for(lambda: stats(b.engineer).get("dead_lettered", 0) == 2, what="b's dead letters")
    assert history(a, FLOW) == []
    assert stats(a.engineer) == {}
    assert [n["browse_name"] for n in a.engineer.get("/api/v1/nodes", params={"parent": secret}).json()] == []
    assert a.engineer.get("/api/v1/ingest/dead-letters", params={"source": "amqp"}).json() == []
    letters = b.engineer.get("/api/v1/ingest/dead-letters", params={"source": "amqp"}).json()
    assert sorted(d["reason"] for d in letters) == ["unknown_device", "unknown_device"]
    assert len(drain(amqp)) == 2


# -- connection loss, restart, scale-out --------------------------------------------------


def drop_connection(amqp: AmqpServer) -> str:
    """Close the server's broker connection from the broker side (rabbitmqctl), or else cut it
    from the client side; either way aio-pika's robust connection must recover by itself."""
    if shutil.which("rabbitmqctl") and URL(AMQP_URL).host in ("127.0.0.1", "localhost"):
        listing = subprocess.run(["rabbitmqctl", "list_connections", "-q", "pid", "client_properties"],
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
        name = f'"iiot-server {amqp.queue}"'
        pids = [m.group(0) for line in listing.stdout.splitlines() if name in line
                if (m := re.match(r"<[^>]+>", line.strip()))]  # fmt: skip
        if listing.returncode == 0 and len(pids) == 1:
            done = subprocess.run(["rabbitmqctl", "close_connection", pids[0], "test: dropped mid-stream"],
                                  capture_output=True, text=True, timeout=60)  # fmt: skip
            if done.returncode == 0:
                return "rabbitmqctl close_connection"
    connection = amqp.adapter.connection
    assert connection is not None and connection.transport is not None
    amqp.live.call(connection.transport.connection.close(ConnectionResetError("test: dropped mid-stream")))
    return "client-side close of the socket"


def test_a_dropped_connection_recovers_and_loses_nothing_acknowledged(amqp: AmqpServer) -> None:
    tenant = amqp.live.new_tenant()
    tenant.build_plant()
    system = amqp.live.system()
    reconnects = stats(system).get("reconnects", 0)
    count, base = 600, time.time() - 3000
    confirmed: list[int] = []

    async def publish_all() -> None:
        connection = await aio_pika.connect(AMQP_URL)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(amqp.exchange)
            for i in range(count):
                body = json.dumps({"ts": base + i, "values": {"Flow": float(i)}}).encode()
                await exchange.publish(aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                                       routing_key=f"telemetry.{tenant.name}.{DEVICE}")  # fmt: skip
                confirmed.append(i)  # the broker confirmed it: it must end up stored
                await asyncio.sleep(0.004)
        finally:
            await connection.close()

    publisher = threading.Thread(target=asyncio.run, args=(publish_all(),))
    publisher.start()
    wait_for(lambda: len(confirmed) > 50, what="the first messages")
    how = drop_connection(amqp)  # while messages are being published and consumed
    dropped_at = len(confirmed)
    publisher.join(60)
    assert dropped_at < count, f"the drop ({how}) came after the last publish"
    assert len(confirmed) == count

    stored = history(tenant, FLOW, expect=count, timeout=60)
    assert set(stored) == {float(i) for i in range(count)}, f"lost after {how}"
    assert len(stored) >= count  # at least once: a commit whose ack was cut off comes again
    print(f"dropped by {how} after {dropped_at} of {count}; stored {len(stored)} samples")
    wait_for(lambda: stats(system).get("reconnects", 0) > reconnects, what="the reconnect to be counted")
    assert amqp.adapter.connection is not None and not amqp.adapter.connection.is_closed

    async def ready(channel: aio_pika.abc.AbstractChannel) -> tuple[int, int]:
        declared = await channel.declare_queue(amqp.queue, passive=True)
        result = declared.declaration_result
        return int(result.message_count or 0), int(result.consumer_count or 0)

    assert broker(ready) == (0, 1)  # everything acknowledged, consuming again


def test_restart_consumes_what_arrived_while_stopped(amqp: AmqpServer) -> None:
    tenant = amqp.live.new_tenant()
    tenant.build_plant()
    adapter = amqp.adapter
    amqp.live.call(adapter.stop())
    for i in range(5):
        amqp.publish(f"telemetry.{tenant.name}.{DEVICE}", json.dumps({"ts": time.time() - 10 + i,
                                                                      "values": {"Flow": float(i)}}))  # fmt: skip
    time.sleep(0.3)
    assert history(tenant, FLOW) == []  # the durable queue holds them
    amqp.live.call(adapter.start())
    amqp.live.call(adapter.ready.wait(), timeout=30)
    assert history(tenant, FLOW, expect=5) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_competing_consumers_split_the_queue_and_each_works_concurrently(amqp: AmqpServer) -> None:
    tenant = amqp.live.new_tenant()
    tenant.build_plant()
    srv = amqp.live.server
    assert srv is not None
    second = AmqpAdapter(srv.ingest)  # a second server on the same queue, as far as the broker can tell
    amqp.live.call(second.start())
    amqp.live.call(second.ready.wait(), timeout=30)
    handled = {"first": 0, "second": 0}
    running = {"now": 0, "max": 0}

    def counting(adapter: AmqpAdapter, label: str) -> None:
        original = adapter._store

        async def store(works: list[Any], before: Any) -> None:
            handled[label] += len(works)
            running["now"] += len(works)
            running["max"] = max(running["max"], running["now"])
            try:
                await original(works, before)
            finally:
                running["now"] -= len(works)

        adapter._store = store  # type: ignore[method-assign]

    counting(amqp.adapter, "first")
    counting(second, "second")
    try:

        async def publish(channel: aio_pika.abc.AbstractChannel) -> None:
            exchange = await channel.get_exchange(amqp.exchange)
            now = time.time() - 1000
            for i in range(300):
                body = json.dumps({"ts": now + i, "values": {"Flow": float(i)}}).encode()
                await exchange.publish(aio_pika.Message(body), routing_key=f"telemetry.{tenant.name}.{DEVICE}")

        broker(publish)
        assert len(history(tenant, FLOW, expect=300)) == 300
    finally:
        amqp.live.call(second.stop())
        del amqp.adapter._store  # type: ignore[attr-defined]
    assert handled["first"] + handled["second"] >= 300
    assert handled["first"] > 0 and handled["second"] > 0, handled  # the broker split the load
    assert 1 < running["max"] <= 2 * PREFETCH  # not one message at a time, and bounded by prefetch


def test_an_unreachable_broker_does_not_block_start_or_stop(amqp: AmqpServer) -> None:
    srv = amqp.live.server
    assert srv is not None
    settings = srv.settings.model_copy(update={"amqp_url": "amqp://guest:guest@127.0.0.1:1/"})
    adapter = AmqpAdapter(dataclasses.replace(srv.ingest, settings=settings))
    started = time.monotonic()
    amqp.live.call(adapter.start())
    assert time.monotonic() - started < 1  # connecting happens in the background
    time.sleep(0.5)
    assert not adapter.ready.is_set()
    started = time.monotonic()
    amqp.live.call(adapter.stop())
    assert time.monotonic() - started < 2
    # the real adapter was not disturbed
    tenant = amqp.live.new_tenant()
    tenant.build_plant()
    amqp.publish(f"telemetry.{tenant.name}.{DEVICE}", json.dumps({"values": {"Flow": 9.0}}))
    assert history(tenant, FLOW, expect=1) == [9.0]
