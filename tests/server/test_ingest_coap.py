"""CoAP ingest and reads against a real UDP socket, driven by Debian's libcoap client
(`coap-client-notls`, written by nobody here) and by aiocoap's client where raw control is
easier: telemetry into the historian on SQLite and PostgreSQL, device reads, discovery,
observe, every refusal with its CoAP code, counters and dead letters, and tenancy."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiocoap
import pytest
from aiocoap.numbers.codes import Code

from server.domain.errors import Unavailable
from server.ingest.coap import CoapAdapter
from tests.support import BACKENDS, LiveServer, TenantHandle, database_url, free_port, make_settings, unavailable

DEVICE = "Plant1/Area1/Pump7"
FLOW = f"{DEVICE}/Flow"
MAX_BYTES = 2048
CLIENT = "coap-client-notls"


@dataclass
class CoapServer:
    live: LiveServer
    port: int

    @property
    def base(self) -> str:
        return f"coap://127.0.0.1:{self.port}"

    @property
    def adapter(self) -> CoapAdapter:
        assert self.live.server is not None
        return next(a for a in self.live.server.adapters if isinstance(a, CoapAdapter))

    def client(self, *args: str, timeout: float = 20) -> tuple[str, str]:
        """Run coap-client; (stdout payload, stderr) — libcoap prints an error's code on stderr."""
        proc = subprocess.run([CLIENT, "-B", "5", *args], capture_output=True, text=True, timeout=timeout)
        return proc.stdout.strip(), proc.stderr.strip()

    def post(self, body: str | bytes, query: str, *extra: str) -> tuple[str, str]:
        data = body if isinstance(body, str) else body.decode()
        return self.client("-m", "post", *extra, "-e", data, f"{self.base}/telemetry?{query}")

    def get(self, path: str, query: str = "") -> tuple[str, str]:
        return self.client("-m", "get", f"{self.base}/{path}" + (f"?{query}" if query else ""))


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, CoapServer]]:
    """One CoAP-enabled server per backend, started on first use and stopped with the module."""
    if shutil.which(CLIENT) is None:
        unavailable(f"{CLIENT} is not installed (Debian package libcoap3-bin)")
    started: dict[str, CoapServer] = {}
    with ExitStack() as stack:

        class Lazy(dict[str, CoapServer]):
            def __missing__(self, backend: str) -> CoapServer:
                tmp = tmp_path_factory.mktemp(f"coap-{backend}")
                url = stack.enter_context(database_url(backend, tmp))
                port = free_port()
                settings = make_settings(tmp, url, coap_port=port, max_payload_bytes=MAX_BYTES)
                live = LiveServer(settings).start()
                stack.callback(live.stop)
                self[backend] = CoapServer(live, port)
                return self[backend]

        lazy = Lazy(started)
        yield lazy


@pytest.fixture
def coap(servers: dict[str, CoapServer]) -> CoapServer:
    return servers["sqlite"]


def api_key(tenant: TenantHandle, role: str = "engineer") -> str:
    r = tenant.admin.post("/api/v1/api-keys", json={"name": f"device-{role}", "roles": [role]})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def history(tenant: TenantHandle, node: str) -> list[float]:
    r = tenant.engineer.get("/api/v1/history", params={"node": node, "start": time.time() - 3600})
    assert r.status_code == 200, r.text
    return list(r.json()["value"])


def stats(tenant: TenantHandle) -> dict[str, Any]:
    return dict(tenant.engineer.get("/api/v1/ingest/stats").json().get("coap", {}))


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


# -- the core path, on both backends ------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_coap_client_posts_telemetry_into_the_historian(servers: dict[str, CoapServer], backend: str) -> None:
    coap = servers[backend]
    tenant = coap.live.new_tenant()
    ids = tenant.build_plant()
    key = api_key(tenant)
    now = time.time()
    batch = [
        {"device": DEVICE, "ts": iso(now - 2), "values": {"Flow": 1.5, "Pressure": 3.0}},
        {"device": ids["Pump7"], "ts": now - 1, "values": {"Flow": 2.5}, "quality": "Uncertain"},
    ]
    out, err = coap.post(json.dumps(batch), f"key={key}", "-t", "json")
    assert err == "", err
    assert json.loads(out) == {"accepted": 3, "created_tags": []}  # 2.04 comes after the commit
    assert history(tenant, FLOW) == [1.5, 2.5]  # so the values are already there
    assert history(tenant, ids["Pressure"]) == [3.0]

    # one object naming its device in the query; an unknown tag is created (the default policy)
    out, err = coap.post(json.dumps({"values": {"Flow": 4.5, "Speed": 1450}}), f"key={key}&device={DEVICE}")
    assert err == "", err
    assert json.loads(out) == {"accepted": 2, "created_tags": [f"{DEVICE}/Speed"]}
    assert history(tenant, FLOW) == [1.5, 2.5, 4.5]

    out, err = coap.get("devices", f"key={key}")
    assert err == "", err
    assert json.loads(out) == [{"node_id": ids["Pump7"], "path": DEVICE, "name": "Pump7", "status": "unknown"}]
    for ref in (DEVICE, ids["Pump7"]):
        out, err = coap.get(f"devices/{ref}", f"key={key}")
        assert err == "", err
        device = json.loads(out)
        assert device["node_id"] == ids["Pump7"]
        tags = {t["name"]: t for t in device["tags"]}
        assert set(tags) == {"Flow", "Pressure", "Speed"}
        assert (tags["Flow"]["value"], tags["Flow"]["quality"]) == (4.5, "Good")
    out, err = coap.get(f"tags/{ids['Pressure']}", f"key={key}")
    assert json.loads(out)["value"] == 3.0

    counters = stats(tenant)
    assert counters["accepted"] == 5
    assert counters["rejected"] == {}


def test_an_answer_larger_than_a_datagram_goes_in_blocks(coap: CoapServer) -> None:
    """A POST creating many tags gets an answer naming them all, too large for one datagram:
    it leaves the lean path for aiocoap's Block2 cache, and libcoap's client fetches the rest."""
    tenant = coap.live.new_tenant()
    tenant.build_plant()
    key = api_key(tenant)
    names = [f"NewTag{i:02d}" for i in range(48)]
    body = json.dumps({"values": dict.fromkeys(names, 1.0)})
    out, err = coap.post(body, f"key={key}&device={DEVICE}")
    assert err == "", err
    answer = json.loads(out)
    assert len(out.encode()) > 1024  # more than one block
    assert answer == {"accepted": 48, "created_tags": [f"{DEVICE}/{n}" for n in names]}
    assert history(tenant, f"{DEVICE}/NewTag47") == [1.0]
    assert stats(tenant)["accepted"] == 48


# -- discovery and observe ----------------------------------------------------------------


def test_well_known_core_lists_the_resources(coap: CoapServer) -> None:
    out, err = coap.get(".well-known/core")
    assert err == "", err
    links = out.split(",")
    assert '</telemetry>;ct="50";rt="iiot.telemetry"' in links
    assert '</devices>;ct="50";rt="iiot.devices"' in links
    tags = next(link for link in links if link.startswith("</tags/>"))
    assert ";obs" in tags
    assert "key" not in out  # discovery is unauthenticated and names nothing of any tenant


def wait_for_observers(coap: CoapServer, count: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while sum(len(w) for _, w in coap.adapter._watchers.values()) < count:
        assert time.monotonic() < deadline, "the observation was not registered"
        time.sleep(0.05)


def json_stream(text: str) -> list[dict[str, Any]]:
    """coap-client prints each notification's payload with no separator between them."""
    decoder, out, i = json.JSONDecoder(), [], 0
    while i < len(text):
        obj, i = decoder.raw_decode(text, i)
        out.append(obj)
        while i < len(text) and text[i].isspace():
            i += 1
    return out


def test_observe_a_tag_with_coap_client(coap: CoapServer) -> None:
    a, b = coap.live.new_tenant(), coap.live.new_tenant("other")
    ids, _ = a.build_plant(), b.build_plant()  # the same paths in both tenants
    key_a, key_b = api_key(a, "viewer"), api_key(b, "viewer")
    url_a = f"{coap.base}/tags/{FLOW}?key={key_a}"
    url_b = f"{coap.base}/tags/{FLOW}?key={key_b}"
    cmd = [CLIENT, "-B", "6", "-s", "4", "-m", "get"]
    with (
        subprocess.Popen([*cmd, url_a], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as obs_a,
        subprocess.Popen([*cmd, url_b], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as obs_b,
    ):
        wait_for_observers(coap, 2)
        now = time.time()
        for i, value in enumerate((10.0, 11.0, 12.0)):
            r = a.engineer.post("/api/v1/telemetry", json={"device": DEVICE, "ts": now + i * 0.01,
                                                         "values": {"Flow": value}})  # fmt: skip
            assert r.status_code == 201, r.text
            time.sleep(0.3)  # observe is lossy by design: a newer value may replace an unsent one
        out_a, err_a = obs_a.communicate(timeout=15)
        out_b, err_b = obs_b.communicate(timeout=15)
    seen_a = json_stream(out_a)
    assert seen_a[0]["value"] is None  # the first response: no value yet
    assert [n["value"] for n in seen_a[1:]] == [10.0, 11.0, 12.0], (out_a, err_a)
    assert all(n["node_id"] == ids["Flow"] for n in seen_a)
    seen_b = json_stream(out_b)
    assert [n["value"] for n in seen_b] == [None], (out_b, err_b)  # tenant b saw nothing of a's
    wait_for_observers(coap, 0)  # the client deregistered when -s ran out


def test_observing_another_tenants_tag_is_refused(coap: CoapServer) -> None:
    a, b = coap.live.new_tenant(), coap.live.new_tenant("other")
    ids = a.build_plant()
    key_b = api_key(b, "viewer")

    async def observe() -> Any:
        ctx = await aiocoap.Context.create_client_context()
        try:
            req = aiocoap.Message(code=Code.GET, uri=f"{coap.base}/tags/{ids['Flow']}?key={key_b}", observe=0)
            return await asyncio.wait_for(ctx.request(req).response, 10)
        finally:
            await ctx.shutdown()

    response = asyncio.run(observe())
    assert response.code == Code.NOT_FOUND
    assert response.opt.observe is None
    assert coap.adapter._watchers == {}


# -- refusals -----------------------------------------------------------------------------


def test_bad_input_gets_its_code_is_counted_and_dead_lettered(coap: CoapServer, tmp_path: Path) -> None:
    a, b = coap.live.new_tenant(), coap.live.new_tenant("other")
    a.build_plant()
    b.build_plant()
    r = a.engineer.post("/api/v1/nodes", json={"parent": "Plant1/Area1", "node_class": "device",
                                               "browse_name": "Secret"})  # fmt: skip
    assert r.status_code == 201, r.text
    secret = r.json()["node_id"]
    r = a.engineer.post("/api/v1/nodes", json={"parent": secret, "node_class": "tag", "browse_name": "Level"})
    assert r.status_code == 201, r.text
    level = r.json()["node_id"]
    key_a, key_b, viewer_b = api_key(a), api_key(b), api_key(b, "viewer")
    good = json.dumps({"device": DEVICE, "values": {"Flow": 1.0}})
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"device": DEVICE, "values": {f"T{i}": i for i in range(400)}}))
    assert big.stat().st_size > MAX_BYTES

    cases = [
        ("no key", lambda: coap.post(good, "device=x"), "4.01"),
        ("bad key", lambda: coap.post(good, "key=iiot_000000000000_nope"), "4.01"),
        ("viewer key", lambda: coap.post(good, f"key={viewer_b}"), "4.03"),
        ("garbage", lambda: coap.post("\x01\x02garbage", f"key={key_b}"), "4.00"),
        ("invalid JSON", lambda: coap.post('{"device": ', f"key={key_b}"), "4.00"),
        ("wrong type", lambda: coap.post(json.dumps({"device": DEVICE, "values": {"Flow": "x"}}), f"key={key_b}"),
         "4.00"),
        ("no device", lambda: coap.post(json.dumps({"values": {"Flow": 1}}), f"key={key_b}"), "4.00"),
        ("unknown device", lambda: coap.post(good.replace("Pump7", "Nope"), f"key={key_b}"), "4.04"),
        ("another tenant's device", lambda: coap.post(good, f"key={key_b}&device=Plant1/Area1/Secret"), "4.04"),
        ("another tenant's node id", lambda: coap.post(good.replace(DEVICE, secret), f"key={key_b}"), "4.04"),
        ("future timestamp", lambda: coap.post(json.dumps({"device": DEVICE, "ts": time.time() + 9999,
                                                           "values": {"Flow": 1}}), f"key={key_b}"), "4.00"),
        ("CBOR", lambda: coap.post(good, f"key={key_b}", "-t", "cbor"), "4.15"),
        ("oversized, block-wise", lambda: coap.client("-m", "post", "-f", str(big), f"{coap.base}/telemetry?key={key_b}"), "4.13"),  # noqa: E501
    ]  # fmt: skip
    for name, call, code in cases:
        out, err = call()
        assert err.startswith(code), f"{name}: expected {code}, got {err!r} / {out!r}"

    # reads: no key, another tenant's device and tag are simply not found
    assert coap.get("devices")[1].startswith("4.01")
    assert coap.get(f"devices/{DEVICE}", "key=iiot_000000000000_nope")[1].startswith("4.01")
    assert coap.get("devices/Plant1/Area1/Secret", f"key={key_b}")[1].startswith("4.04")
    assert coap.get(f"devices/{secret}", f"key={viewer_b}")[1].startswith("4.04")
    assert coap.get(f"devices/{secret}", f"key={key_a}")[1] == ""  # (it exists, in tenant a)
    assert coap.get(f"tags/{level}", f"key={viewer_b}")[1].startswith("4.04")
    assert coap.get(f"tags/{level}", f"key={key_a}")[1] == ""
    assert coap.get(f"tags/{DEVICE}", f"key={viewer_b}")[1].startswith("4.04")  # a device is not a tag
    assert coap.get("nothing/here")[1].startswith("4.04")

    # nothing of it was stored: tenant a untouched, tenant b's tags empty
    assert history(a, FLOW) == [] and history(b, FLOW) == []
    # the adapter keeps serving
    out, err = coap.post(good, f"key={key_b}")
    assert err == "" and json.loads(out)["accepted"] == 1
    assert history(b, FLOW) == [1.0]

    counters = stats(b)
    assert counters["rejected"] == {
        "forbidden": 1, "invalid_json": 2, "invalid_value": 1, "invalid_shape": 1, "unknown_device": 3,
        "bad_timestamp": 1, "unsupported_format": 1, "too_large": 1,
    }  # fmt: skip
    assert counters["dead_lettered"] == 11
    assert stats(a) == {}
    letters = b.engineer.get("/api/v1/ingest/dead-letters", params={"source": "coap"}).json()
    assert len(letters) == 11
    assert all("key" not in d["origin"] and key_b not in d["detail"] for d in letters)
    assert {d["reason"] for d in letters} >= {"forbidden", "invalid_json", "too_large", "unsupported_format"}
    assert a.engineer.get("/api/v1/ingest/dead-letters", params={"source": "coap"}).json() == []
    # unauthenticated refusals belong to no tenant: a system administrator sees them
    system = coap.live.system()
    unattributed = system.get("/api/v1/ingest/dead-letters", params={"source": "coap", "unattributed": True}).json()
    assert sum(d["reason"] == "unauthorized" for d in unattributed) >= 2


def raw_exchange(port: int, datagram: bytes, timeout: float = 5) -> Any:
    """Send one UDP datagram and decode the answer: for what a client library won't send."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(datagram, ("127.0.0.1", port))
        data, _ = s.recvfrom(65_536)
    return aiocoap.Message.decode(data)


def test_garbage_datagrams_and_an_oversized_single_datagram(coap: CoapServer) -> None:
    tenant = coap.live.new_tenant()
    tenant.build_plant()
    key = api_key(tenant)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"", b"\xff" * 7, os.urandom(64), b"\x40\x01\x00"):  # not CoAP, truncated headers
            s.sendto(junk, ("127.0.0.1", coap.port))
    payload = json.dumps({"device": DEVICE, "values": {"Flow": 1.0}, "quality": "Good" + " " * 3000}).encode()
    request = aiocoap.Message(code=Code.POST, uri_path=("telemetry",), uri_query=(f"key={key}",), payload=payload)
    request.mtype, request.mid, request.token = aiocoap.CON, 4711, b"\x01\x02"
    response = raw_exchange(coap.port, request.encode())
    assert response.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert response.opt.size1 == MAX_BYTES
    assert stats(tenant)["rejected"] == {"too_large": 1}
    ok = json.dumps({"device": DEVICE, "values": {"Flow": 2.0}})
    assert json.loads(coap.post(ok, f"key={key}")[0])["accepted"] == 1  # still serving


def test_a_repeated_con_gets_the_same_answer_and_is_stored_once(coap: CoapServer) -> None:
    """A device that missed our ACK sends its CON again (same message ID): RFC 7252 §4.5 says
    answer it as before, not process it again. `server/ingest/coap_context.py` keeps that rule
    with its own bookkeeping; this is the check that it (and aiocoap below it) still does."""
    tenant = coap.live.new_tenant()
    tenant.build_plant()
    key = api_key(tenant)
    body = json.dumps({"device": DEVICE, "ts": time.time() - 5, "values": {"Flow": 42.5}}).encode()
    request = aiocoap.Message(code=Code.POST, uri_path=("telemetry",), uri_query=(f"key={key}",), payload=body)
    request.mtype, request.mid, request.token = aiocoap.CON, 3210, b"\x07\x08"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        answers = []
        for _ in range(3):
            s.sendto(request.encode(), ("127.0.0.1", coap.port))
            answers.append(s.recvfrom(65_536)[0])
    assert answers[0] == answers[1] == answers[2]
    first = aiocoap.Message.decode(answers[0])
    assert (first.code, first.mtype, first.mid) == (Code.CHANGED, aiocoap.ACK, 3210)
    assert history(tenant, FLOW) == [42.5]
    assert stats(tenant)["accepted"] == 1


def test_repeats_are_recognised_for_the_exchange_lifetime_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deduplication's own expiry, on a bare context with a short lifetime: remembered
    while young, forgotten after, and a message ID used again later is a new request."""
    from aiocoap import resource

    from server.ingest import coap_context

    monkeypatch.setattr(coap_context, "EXCHANGE_LIFETIME_S", 0.3)
    monkeypatch.setattr(coap_context, "SWEEP_S", 0.1)
    rendered: list[bytes] = []

    class Echo(resource.Resource):  # type: ignore[misc]
        async def render_post(self, request: Any) -> Any:
            rendered.append(request.payload)
            return aiocoap.Message(code=Code.CHANGED, payload=b"n=%d" % len(rendered))

    async def run() -> tuple[list[bytes], list[int]]:
        site = resource.Site()
        site.add_resource(("echo",), Echo())
        port = free_port()
        ctx = await coap_context.IngestCoapContext.create_server_context(site, bind=("127.0.0.1", port))
        (manager,) = ctx.message_managers()
        loop = asyncio.get_running_loop()
        request = aiocoap.Message(code=Code.POST, uri_path=("echo",), payload=b"x")
        request.mtype, request.mid, request.token = aiocoap.CON, 77, b"\x01"
        answers, remembered = [], []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            for wait in (0.0, 0.05, 0.6):  # a repeat at once, then one after the lifetime
                await asyncio.sleep(wait)
                remembered.append(manager.remembered)
                await loop.sock_sendto(s, request.encode(), ("127.0.0.1", port))
                answers.append((await asyncio.wait_for(loop.sock_recvfrom(s, 65_536), 5))[0])
        await ctx.shutdown()
        return answers, remembered

    answers, remembered = asyncio.run(run())
    payloads = [aiocoap.Message.decode(a).payload for a in answers]
    assert payloads == [b"n=1", b"n=1", b"n=2"]
    assert rendered == [b"x", b"x"]
    assert remembered == [0, 1, 0]


def test_historian_failure_is_503_with_max_age(coap: CoapServer) -> None:
    tenant = coap.live.new_tenant()
    tenant.build_plant()
    key = api_key(tenant)
    srv = coap.live.server
    assert srv is not None
    real = srv.pipeline.writer

    class Broken:
        async def submit(self, columns: Any, **_: Any) -> Any:
            raise Unavailable("historian write failed: disk on fire")

    async def post() -> Any:
        ctx = await aiocoap.Context.create_client_context()
        try:
            body = json.dumps({"device": DEVICE, "values": {"Flow": 7.0}}).encode()
            req = aiocoap.Message(code=Code.POST, uri=f"{coap.base}/telemetry?key={key}", payload=body,
                                  content_format=50)  # fmt: skip
            return await asyncio.wait_for(ctx.request(req).response, 10)
        finally:
            await ctx.shutdown()

    srv.pipeline.writer = Broken()  # type: ignore[assignment]
    try:
        response = asyncio.run(post())
    finally:
        srv.pipeline.writer = real
    assert response.code == Code.SERVICE_UNAVAILABLE
    assert response.opt.max_age == 5
    assert b"disk on fire" in response.payload
    assert stats(tenant)["rejected"] == {"unavailable": 1}
    assert asyncio.run(post()).code == Code.CHANGED  # recovered with the historian


def test_concurrent_posts_share_pipeline_calls_and_each_is_answered_for_itself(coap: CoapServer) -> None:
    """Requests arriving while others are being stored go to the pipeline together; each answer
    still counts only its own samples and names only the tags it created, and a bad request
    among them is refused alone."""
    tenant = coap.live.new_tenant()
    tenant.build_plant()
    key = api_key(tenant)
    srv = coap.live.server
    assert srv is not None
    calls: list[int] = []
    real = srv.pipeline.ingest

    async def counting(tenant_id: int, items: Any, **kw: Any) -> Any:
        calls.append(len(items))
        return await real(tenant_id, items, **kw)

    n, base = 40, time.time() - 600
    bodies = [{"device": DEVICE, "ts": base + i, "values": {"Flow": float(i), "Pressure": 1.0}} for i in range(n)]
    bodies[7] = {"device": "Plant1/Area1/Nope", "values": {"Flow": 1.0}}
    bodies[11] = {"device": DEVICE, "ts": base + 11, "values": {"Flow": 11.0, "Fresh": 2.0}}

    async def post_all() -> list[Any]:
        clients = [await aiocoap.Context.create_client_context() for _ in range(n)]
        try:
            requests = [
                aiocoap.Message(code=Code.POST, uri=f"{coap.base}/telemetry?key={key}",
                                payload=json.dumps(b).encode(), content_format=50)
                for b in bodies
            ]  # fmt: skip
            return list(await asyncio.gather(*(asyncio.wait_for(c.request(r).response, 20)
                                               for c, r in zip(clients, requests, strict=True))))  # fmt: skip
        finally:
            await asyncio.gather(*(c.shutdown() for c in clients))

    srv.pipeline.ingest = counting  # type: ignore[method-assign]
    try:
        responses = asyncio.run(post_all())
    finally:
        del srv.pipeline.ingest  # type: ignore[method-assign]
    for i, response in enumerate(responses):
        if i == 7:
            assert response.code == Code.NOT_FOUND, response
            continue
        assert response.code == Code.CHANGED, (i, response, response.payload)
        answer = json.loads(response.payload)
        assert answer["accepted"] == 2
        assert answer["created_tags"] == ([f"{DEVICE}/Fresh"] if i == 11 else []), (i, answer)
    expected = sorted(float(i) for i in range(n) if i != 7)
    assert sorted(history(tenant, FLOW)) == expected
    assert history(tenant, f"{DEVICE}/Fresh") == [2.0]
    assert len(calls) < n // 2, f"{len(calls)} pipeline calls for {n} requests: too little was coalesced"
    counters = stats(tenant)
    assert counters["accepted"] == 2 * (n - 1) and counters["rejected"] == {"unknown_device": 1}
    assert counters["received"] == 2 * (n - 1) + 1


def test_restart_binds_the_same_port(coap: CoapServer) -> None:
    tenant = coap.live.new_tenant()
    tenant.build_plant()
    key = api_key(tenant, "viewer")
    adapter = coap.adapter
    for _ in range(2):
        coap.live.call(adapter.stop())
        coap.live.call(adapter.start())
        out, err = coap.get("devices", f"key={key}")
        assert err == "" and json.loads(out)[0]["path"] == DEVICE


def test_a_taken_port_is_retried_without_blocking_the_server(coap: CoapServer) -> None:
    """aiocoap binds with SO_REUSEPORT, so only a socket without it (another program) blocks
    the port; the adapter must then keep retrying in the background, not fail the server."""
    tenant = coap.live.new_tenant()
    tenant.build_plant()
    key = api_key(tenant, "viewer")
    srv = coap.live.server
    assert srv is not None
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 0))
    port = blocker.getsockname()[1]
    settings = srv.settings.model_copy(update={"coap_port": port})
    adapter = CoapAdapter(dataclasses.replace(srv.ingest, settings=settings))
    try:
        started = time.monotonic()
        coap.live.call(adapter.start())
        assert time.monotonic() - started < 1 and adapter._context is None  # start returned; binding retries
        assert coap.live.call(asyncio.sleep(0.2, "alive")) == "alive"
        blocker.close()  # the port frees up: the adapter takes it
        deadline = time.monotonic() + 10
        while adapter._context is None:
            assert time.monotonic() < deadline, "the adapter never bound the freed port"
            time.sleep(0.1)
        out, err = CoapServer(coap.live, port).get("devices", f"key={key}")
        assert err == "" and json.loads(out)[0]["path"] == DEVICE
    finally:
        blocker.close()
        coap.live.call(adapter.stop())
