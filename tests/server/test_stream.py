"""The WebSocket stream: auth, subscriptions, coalesced frames, heartbeats, expiry, bad clients."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from server.api.stream import _Client
from server.bus import Bus, ValueBatch
from server.domain.quality import Quality
from server.domain.sample import TagUpdate
from server.security.tokens import TokenCodec
from tests.support import JWT_SECRET, LiveServer, Stream, TenantHandle

DEVICE = "Plant1/Area1/Pump7"


def test_subscribe_by_node_and_subtree_and_receive_batched_frames(live: LiveServer, tenant: TenantHandle) -> None:
    ids = tenant.build_plant()
    eng = tenant.engineer
    eng.post("/api/v1/telemetry", json={"device": DEVICE, "values": {"Flow": 1.0, "Pressure": 2.0}})
    with tenant.users["viewer"].stream() as s:
        s.send({"type": "subscribe", "id": 7, "nodes": [ids["Flow"]]})
        ack = s.next_of("subscribed")
        assert ack["id"] == 7 and ack["nodes"] == [ids["Flow"]]
        snap = s.next_of("values")
        assert snap["snapshot"] and [u["n"] for u in snap["updates"]] == [ids["Flow"]]
        eng.post("/api/v1/telemetry", json={"device": DEVICE, "values": {"Flow": 3.0, "Pressure": 4.0}})
        frame = s.next_of("values")
        assert [(u["n"], u["v"], u["q"]) for u in frame["updates"]] == [(ids["Flow"], 3.0, 0)]
        s.send({"type": "subscribe", "id": 8, "subtrees": ["Plant1/Area1"]})
        s.next_of("subscribed")
        s.next_of("values")  # snapshot of the subtree
        eng.post("/api/v1/telemetry", json={"device": DEVICE, "values": {"Flow": 5.0, "Pressure": 6.0}})
        frame = s.next_of("values")
        assert sorted((u["n"], u["v"]) for u in frame["updates"]) == [(ids["Flow"], 5.0), (ids["Pressure"], 6.0)]
        s.send({"type": "unsubscribe", "id": 9, "all": True})
        s.next_of("unsubscribed")
        s.send({"type": "ping", "id": 10})
        assert s.next_of("pong")["id"] == 10
        eng.post("/api/v1/telemetry", json={"device": DEVICE, "values": {"Flow": 7.0}})
        with pytest.raises(TimeoutError):
            s.next_of("values", timeout=0.5)


def test_auth_by_header_and_heartbeats(live: LiveServer, tenant: TenantHandle) -> None:
    token = tenant.users["viewer"].token
    with connect(live.ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        s = Stream(ws)
        assert s.next()["type"] == "hello"
        beat = s.next_of("heartbeat", timeout=3)
        assert beat["t"] == pytest.approx(time.time(), abs=5)


@pytest.mark.parametrize(
    "first", [{"type": "auth", "token": "garbage"}, {"type": "subscribe", "nodes": []}, "not json"]
)
def test_bad_auth_closes_with_4403(live: LiveServer, first: Any) -> None:
    with connect(live.ws_url) as ws:
        ws.send(first if isinstance(first, str) else json.dumps(first))
        err = json.loads(ws.recv(5))
        assert err["type"] == "error" and err["status"] == 401
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


def test_expired_token_closes_with_4401_unless_renewed(live: LiveServer, tenant: TenantHandle) -> None:
    me = tenant.users["viewer"].get("/api/v1/auth/me").json()
    short, _ = TokenCodec(JWT_SECRET, 2).issue(me["user_id"], me["tenant_id"], "viewer", tenant.name)
    with connect(live.ws_url) as ws:
        ws.send(json.dumps({"type": "auth", "token": short}))
        s = Stream(ws)
        assert s.next()["type"] == "hello"
        err = s.next_of("error", timeout=6)
        assert err["status"] == 401 and "expired" in err["detail"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    # Renewing in-band keeps the stream open.
    short, _ = TokenCodec(JWT_SECRET, 2).issue(me["user_id"], me["tenant_id"], "viewer", tenant.name)
    with connect(live.ws_url) as ws:
        ws.send(json.dumps({"type": "auth", "token": short}))
        s = Stream(ws)
        s.next()
        s.send({"type": "auth", "id": 1, "token": tenant.users["viewer"].token})
        assert s.next_of("auth_ok")["id"] == 1
        time.sleep(2.5)
        s.send({"type": "ping", "id": 2})
        assert s.next_of("pong")["id"] == 2


def test_protocol_errors_are_answered_not_fatal(live: LiveServer, tenant: TenantHandle) -> None:
    tenant.build_plant()
    with tenant.users["viewer"].stream() as s:
        s.ws.send("{not json")
        assert s.next_of("error")["status"] == 400
        s.send({"type": "dance"})
        assert s.next_of("error")["status"] == 400
        s.send({"type": "subscribe", "id": 3, "nodes": "Plant1"})
        assert s.next_of("error")["field"] == "nodes"
        s.send({"type": "subscribe", "id": 4, "nodes": ["Plant1/Nope"]})
        err = s.next_of("error")
        assert (err["id"], err["status"]) == (4, 404)
        s.send({"type": "ping", "id": 5})
        assert s.next_of("pong")["id"] == 5


def test_a_client_that_vanishes_mid_stream_harms_nobody(live: LiveServer, tenant: TenantHandle) -> None:
    ids = tenant.build_plant()
    eng = tenant.engineer
    srv = live.server
    assert srv is not None
    before = srv.ctx.stream_clients
    for _ in range(3):
        raw = socket.create_connection(("127.0.0.1", live.settings.http_port))
        ws = connect(live.ws_url, sock=raw)
        ws.send(json.dumps({"type": "auth", "token": tenant.users["viewer"].token}))
        ws.recv(5)
        ws.send(json.dumps({"type": "subscribe", "subtrees": ["Plant1"]}))
        raw.shutdown(socket.SHUT_RDWR)  # no close handshake: the network just went away
        raw.close()
    for i in range(20):
        assert eng.post("/api/v1/telemetry", json={"device": DEVICE, "values": {"Flow": float(i)}}).status_code == 201
    with tenant.users["viewer"].stream() as s:
        s.send({"type": "subscribe", "nodes": [ids["Flow"]]})
        s.next_of("subscribed")
        assert s.next_of("values")["updates"][0]["v"] == 19.0
    deadline = time.monotonic() + 5
    while srv.ctx.stream_clients != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.ctx.stream_clients == before


class _StalledSocket:
    """Stands in for a client whose network is congested: every send waits for `release`."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.frames: list[dict[str, Any]] = []

    async def send_text(self, text: str) -> None:
        await self.release.wait()
        self.frames.append(json.loads(text))


class _Settings:
    stream_flush_interval_s = 0.001
    stream_heartbeat_s = 60.0


class _Ctx:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.settings = _Settings()


async def test_slow_client_gets_latest_value_per_node_not_a_queue() -> None:
    """Unit-level (the socket is a stand-in): 10,000 updates for 10 tags while the client is
    stalled leave at most 10 pending entries, and the client then receives the newest ones."""
    from server.domain.principal import Principal

    bus = Bus()
    who = Principal(1, "t", "u", 1, ("viewer",), frozenset())
    ws = _StalledSocket()
    client = _Client(ws, _Ctx(bus), who)  # type: ignore[arg-type]
    client.tags = set(range(10))
    sender = asyncio.create_task(client.sender())
    for i in range(1_000):
        updates = [
            TagUpdate(1, tag, f"ns=2;s=T{tag}", f"T{tag}", float(i), float(i), Quality.GOOD) for tag in range(10)
        ]
        bus.publish(ValueBatch(1, updates))
        await asyncio.sleep(0)
        assert len(client.pending) <= 10
    bus.publish(ValueBatch(2, [TagUpdate(2, 3, "x", "x", 0.0, -1.0, Quality.GOOD)]))  # other tenant: never seen
    ws.release.set()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not client.pending and ws.frames and ws.frames[-1]["updates"][0]["v"] == 999.0:
            break
    sender.cancel()
    client.close()
    last = {u["n"]: u["v"] for f in ws.frames for u in f["updates"]}
    assert last == {f"ns=2;s=T{tag}": 999.0 for tag in range(10)}
    assert sum(len(f["updates"]) for f in ws.frames) <= 20  # one stalled frame plus the final one
