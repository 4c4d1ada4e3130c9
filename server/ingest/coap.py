"""CoAP (aiocoap): telemetry in, devices and latest values out, observe on a tag, over UDP.

Resources (all JSON, Content-Format 50):

- `POST /telemetry?key=K[&device=D]` — the shared payload shape (`server/ingest/payloads.py`);
  each object names its `device` unless `?device=` names it for the whole request. Answers
  2.04 Changed only after the historian committed the values.
- `GET /devices?key=K[&under=P]` — the tenant's devices with their status.
- `GET /devices/<path or node id>?key=K` — one device and its tags with their latest values.
- `GET /tags/<path or node id>?key=K` — a tag's latest value; with Observe=0 every newer value
  is notified (from the bus, only the tenant's own tag).
- `GET /.well-known/core` — RFC 6690 discovery (no key needed; lists resource types only).

Devices authenticate with an API key of their tenant in the URI query `key=` — plain CoAP has
no standard credential option (DTLS PSK / OSCORE identities would be the standard way, and
need a secured transport this adapter does not set up). Without DTLS the key crosses the
network in clear, as it would over plain HTTP: use it on a plant network or behind a VPN.
libcoap's `coap-client` carries only about 100 bytes of URI query: a 64-character key leaves
room for a short `device=`; longer references go in the body. The key needs `telemetry.write`
to post and `namespace.read` to read. A key's principal is cached for a few seconds (as the
HTTP API caches a user's), so revoking it takes effect within `PRINCIPAL_CACHE_S`; an
observation already established continues until it ends.

aiocoap binds with SO_REUSEPORT: a second process of the same user on the same port shares
it (the kernel spreads clients by address, so a client's block-wise transfer stays with one
process) rather than failing; a port held by another program is retried in the background.

Errors carry a diagnostic text payload and the CoAP code of their HTTP twin: 4.00 bad input,
4.01 no or bad key, 4.03 the key lacks the permission, 4.04 unknown node (another tenant's
nodes are simply not found), 4.13 larger than `max_payload_bytes` (also mid-Block1, with
Size1 telling the limit), 4.15 a Content-Format other than JSON or none, 5.03 the historian
could not commit (Max-Age says when to retry). Every refused POST is counted under
`coap` in `/api/v1/ingest/stats` and dead-lettered; refused GETs only get their code.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import aiocoap  # type: ignore[import-untyped, unused-ignore]
from aiocoap import resource  # type: ignore[import-untyped, unused-ignore]
from aiocoap.blockwise import Block1Spool, Block2Cache  # type: ignore[import-untyped, unused-ignore]
from aiocoap.numbers.codes import Code  # type: ignore[import-untyped, unused-ignore]
from aiocoap.numbers.contentformat import ContentFormat  # type: ignore[import-untyped, unused-ignore]
from aiocoap.util.linkformat import Link, LinkFormat  # type: ignore[import-untyped, unused-ignore]

from server.bus import Message, Subscription, ValueBatch
from server.domain.errors import (
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from server.domain.namespace import Node, NodeClass
from server.domain.permissions import Permission
from server.domain.principal import Principal
from server.domain.quality import Quality
from server.ingest.adapter import Adapter, Backoff, IngestContext
from server.ingest.batch_ingest import Coalescer
from server.ingest.coap_context import IngestCoapContext
from server.ingest.lookup_cache import LookupCache
from server.ingest.payloads import DecodeError, decode_telemetry
from server.services.auth import PRINCIPAL_CACHE_S, AuthService

log = logging.getLogger(__name__)

SOURCE = "coap"
JSON_FORMAT = ContentFormat.JSON
RETRY_AFTER_S = 5
"""Max-Age on a 5.03: how long a device should wait before posting again."""

_CODES: tuple[tuple[type[DomainError], Any], ...] = (
    (Unauthorized, Code.UNAUTHORIZED),
    (Forbidden, Code.FORBIDDEN),
    (NotFound, Code.NOT_FOUND),
    (PayloadTooLarge, Code.REQUEST_ENTITY_TOO_LARGE),
    (Unavailable, Code.SERVICE_UNAVAILABLE),
    (TooManyRequests, Code.SERVICE_UNAVAILABLE),
)


def build(ctx: IngestContext) -> list[Adapter]:
    """The CoAP server when a port is set (0 switches it off)."""
    if ctx.settings.coap_port == 0:
        return []
    return [CoapAdapter(ctx)]


def _code_for(exc: DomainError) -> Any:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return Code.BAD_REQUEST


def _error(code: Any, detail: str) -> Any:
    """An error response: RFC 7252 diagnostic payload, UTF-8 text without a Content-Format."""
    response = aiocoap.Message(code=code, payload=detail.encode()[:512])
    if code == Code.SERVICE_UNAVAILABLE:
        response.opt.max_age = RETRY_AFTER_S
    return response


def _json(obj: object, code: Any = None) -> Any:
    payload = json.dumps(obj, separators=(",", ":")).encode()
    return aiocoap.Message(code=code, payload=payload, content_format=JSON_FORMAT)


def _query(request: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in request.opt.uri_query:
        name, _, value = item.partition("=")
        out[name] = value
    return out


POST = "POST /telemetry"
IN_FLIGHT = 8
"""Pipeline calls under way at once; POSTs arriving meanwhile gather into the next. With 2 the
requests queued behind the slots and closed-loop throughput stayed near 1,000 req/s; the
historian merges the calls' chunks into one commit anyway."""


def _origin(request: Any, what: str) -> str:
    """Where a dead letter came from: the peer and the resource, never the key in the query."""
    try:
        peer = str(request.remote.hostinfo)
    except Exception:  # a transport without host info
        peer = "?"
    return f"{peer} {what}"


def _ref(request: Any) -> str:
    """A node reference from the remaining URI path: a path's segments, or a node id split at '/'."""
    return "/".join(request.opt.uri_path)


def _value_out(node: Node, ts: float | None, v: float | None, q: Quality | None) -> dict[str, object]:
    return {"node_id": node.node_id, "path": node.path, "name": node.browse_name, "unit": node.unit,
            "ts": ts, "value": v, "quality": q.label if q is not None else None}  # fmt: skip


def _device_out(node: Node) -> dict[str, object]:
    return {"node_id": node.node_id, "path": node.path, "name": node.browse_name,
            "status": node.status.value if node.status else None}  # fmt: skip


class _KeyCache:
    """API key → Principal for a few seconds, so a device posting every second costs no
    database round trips per request; keys are held as digests, not in clear."""

    def __init__(self, auth: AuthService, ttl_s: float = PRINCIPAL_CACHE_S, max_entries: int = 10_000) -> None:
        self.auth = auth
        self._cache: LookupCache[bytes, Principal] = LookupCache(ttl_s, max_entries)

    async def principal(self, key: str) -> Principal:
        """A refused key raises and is not kept: it costs a lookup each time, as it should."""
        digest = hashlib.sha256(key.encode()).digest()
        return await self._cache.get(digest, partial(self.auth.principal_for_api_key, key))


class _TooLarge(Exception):
    """A Block1 transfer that grew past the limit; answered 4.13 without assembling more."""

    def __init__(self, size: int) -> None:
        super().__init__(f"request body of at least {size} bytes exceeds the limit")
        self.size = size


class _BoundedSpool(Block1Spool):  # type: ignore[misc, unused-ignore]
    """aiocoap's Block1 reassembly, refusing at the first block that crosses the limit (or
    at block 0 when Size1 announces too much) instead of buffering an unbounded body."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__()
        self.max_bytes = max_bytes

    def feed_and_take(self, req: Any) -> Any:
        block1 = req.opt.block1
        if block1 is not None:
            declared = req.opt.size1
            if declared is not None and declared > self.max_bytes:
                raise _TooLarge(int(declared))
            if block1.start + len(req.payload) > self.max_bytes:
                raise _TooLarge(block1.start + len(req.payload))
        return super().feed_and_take(req)


class _Telemetry(resource.Resource):  # type: ignore[misc, unused-ignore]
    rt = "iiot.telemetry"
    ct = str(int(JSON_FORMAT))

    def __init__(self, adapter: CoapAdapter) -> None:
        super().__init__()
        self.adapter = adapter
        self._block1 = _BoundedSpool(adapter.max_bytes)
        self._block2 = Block2Cache()

    async def render_to_pipe(self, pipe: Any) -> None:
        """A plain POST (no block options, the usual device message) skips aiocoap's block-wise
        spool and cache; a transfer in blocks, and an answer too large for one datagram, take
        aiocoap's path."""
        request = pipe.request
        opt = request.opt
        if request.code != Code.POST or opt.block1 is not None or opt.block2 is not None:
            try:
                await super().render_to_pipe(pipe)
            except _TooLarge as exc:
                pipe.add_response(await self.adapter.too_large(request, exc.size), is_last=True)
            return
        response = await self.adapter.post_telemetry(request)
        if len(response.payload) > request.remote.maximum_payload_size:
            response = await self._block2.extract_or_insert(request, partial(_ready, response))
        response.opt.no_response = opt.no_response
        pipe.add_response(response, is_last=True)

    async def render_post(self, request: Any) -> Any:
        return await self.adapter.post_telemetry(request)


async def _ready(response: Any) -> Any:
    return response


class _DeviceList(resource.Resource):  # type: ignore[misc, unused-ignore]
    rt = "iiot.devices"
    ct = str(int(JSON_FORMAT))

    def __init__(self, adapter: CoapAdapter) -> None:
        super().__init__()
        self.adapter = adapter

    async def render_get(self, request: Any) -> Any:
        return await self.adapter.get_devices(request)


class _Device(resource.Resource, resource.PathCapable):  # type: ignore[misc, unused-ignore]
    """`/devices/<ref>`: a subsite, so the device path's own slashes stay part of the reference."""

    def __init__(self, adapter: CoapAdapter) -> None:
        super().__init__()
        self.adapter = adapter

    def get_resources_as_linkheader(self) -> Any:
        return LinkFormat([Link("/", rt="iiot.device", ct=str(int(JSON_FORMAT)), title="append a device path")])

    async def render_get(self, request: Any) -> Any:
        if not request.opt.uri_path:
            return await self.adapter.get_devices(request)
        return await self.adapter.get_device(request)


class _Tag(resource.ObservableResource, resource.PathCapable):  # type: ignore[misc, unused-ignore]
    """`/tags/<ref>`, observable: notifications come from the bus, one per newer value."""

    def __init__(self, adapter: CoapAdapter) -> None:
        super().__init__()
        self.adapter = adapter

    def get_resources_as_linkheader(self) -> Any:
        return LinkFormat(
            [Link("/", rt="iiot.tag", ct=str(int(JSON_FORMAT)), obs=None, title="append a tag path or node id")]
        )

    async def add_observation(self, request: Any, serverobservation: Any) -> None:
        await self.adapter.observe(request, serverobservation)

    async def render_get(self, request: Any) -> Any:
        return await self.adapter.get_tag(request)


class _Router:
    """The server's root: `POST /telemetry`, the hot path, goes straight to its resource;
    everything else through aiocoap's `Site`. `Site` deep-copies every request's options to
    strip the path it routed on (~17% of the server's loop under a telemetry load, measured
    with py-spy); the telemetry resource never reads its path, so it gets the request as
    received. Context asks its root only for `render_to_pipe` (aiocoap's `interfaces.Resource`)."""

    def __init__(self, site: Any, telemetry: _Telemetry) -> None:
        self.site, self.telemetry = site, telemetry

    async def render_to_pipe(self, pipe: Any) -> None:
        opt = pipe.request.opt
        if opt.uri_path == _TELEMETRY_PATH and opt.uri_path_abbrev is None:
            await self.telemetry.render_to_pipe(pipe)
        else:
            await self.site.render_to_pipe(pipe)


_TELEMETRY_PATH = ("telemetry",)


class CoapAdapter:
    """One aiocoap server context on `coap_host:coap_port` (UDP), started and stopped with the server."""

    name = SOURCE

    def __init__(self, ctx: IngestContext) -> None:
        self.ctx = ctx
        self.host, self.port = ctx.settings.coap_host, ctx.settings.coap_port
        self.max_bytes = ctx.settings.max_payload_bytes
        self.max_items = ctx.settings.max_telemetry_items
        self.keys = _KeyCache(ctx.auth)
        self._coalescer = Coalescer(ctx.pipeline, SOURCE, in_flight=IN_FLIGHT)
        """Each POST waits for its commit; those arriving meanwhile share one pipeline call."""
        self._context: Any = None
        self._retry: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._watchers: dict[tuple[int, int], tuple[Node, set[Any]]] = {}
        """(tenant id, tag id) → the tag and the aiocoap observations of it."""

    def site(self) -> _Router:
        site = resource.Site()
        telemetry = _Telemetry(self)
        site.add_resource(_TELEMETRY_PATH, telemetry)  # still listed in discovery; routed by _Router
        site.add_resource(("devices",), _DeviceList(self))
        site.add_resource(("devices",), _Device(self))
        site.add_resource(("tags",), _Tag(self))
        site.add_resource((".well-known", "core"), resource.WKCResource(site.get_resources_as_linkheader, None))
        return _Router(site, telemetry)

    async def start(self) -> None:
        """Bind now; a port still taken (another server, a restart racing its predecessor) is
        retried in the background with backoff, so the rest of the server serves meanwhile."""
        self._subscription = self.ctx.bus.subscribe(None, self._on_message)
        if not await self._bind():
            self._retry = asyncio.create_task(self._bind_until_free(), name="coap-bind")

    async def _bind(self) -> bool:
        try:
            self._context = await IngestCoapContext.create_server_context(
                self.site(), bind=(self.host, self.port), transports=["udp6"]
            )
        except OSError as exc:
            log.error("coap: cannot bind udp %s:%d (%s); retrying", self.host, self.port, exc)
            return False
        log.info("coap: serving on udp %s:%d", self.host, self.port)
        return True

    async def _bind_until_free(self) -> None:
        backoff = Backoff(1.0, 30.0)
        while True:
            await asyncio.sleep(backoff.next_delay())
            if await self._bind():
                return

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            self._retry = None
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if self._context is not None:
            context, self._context = self._context, None
            await context.shutdown()  # closes the socket: a restart binds the same port again
        self._watchers.clear()

    # -- authentication ------------------------------------------------------------------

    async def principal(self, request: Any, permission: Permission, query: dict[str, str] | None = None) -> Principal:
        key = (_query(request) if query is None else query).get("key", "")
        if not key:
            raise Unauthorized("pass the tenant's API key as the URI query key=...")
        principal = await self.keys.principal(key)
        principal.require(permission)
        return principal

    # -- POST /telemetry -----------------------------------------------------------------

    async def post_telemetry(self, request: Any) -> Any:
        payload: bytes = request.payload
        query = _query(request)
        try:
            who = await self.principal(request, Permission.TELEMETRY_WRITE, query)
        except Unauthorized as exc:
            await self.ctx.reject(
                SOURCE, None, _origin(request, POST), DecodeError("unauthorized", exc.detail), payload
            )
            return _error(Code.UNAUTHORIZED, exc.detail)
        except Forbidden as exc:
            tenant_id = await self._tenant_of(request)
            await self.ctx.reject(
                SOURCE, tenant_id, _origin(request, POST), DecodeError("forbidden", exc.detail), payload
            )
            return _error(Code.FORBIDDEN, exc.detail)
        tenant_id = who.tenant_id
        content_format = request.opt.content_format
        if content_format is not None and content_format != JSON_FORMAT:
            detail = f"Content-Format {content_format} is not supported; send application/json (50)"
            await self.ctx.reject(
                SOURCE, tenant_id, _origin(request, POST), DecodeError("unsupported_format", detail), payload
            )
            return _error(Code.UNSUPPORTED_CONTENT_FORMAT, detail)
        try:
            items = decode_telemetry(
                payload, device=query.get("device") or None, max_bytes=self.max_bytes, max_items=self.max_items
            )
        except DecodeError as exc:
            await self.ctx.reject(SOURCE, tenant_id, _origin(request, POST), exc, payload)
            code = Code.REQUEST_ENTITY_TOO_LARGE if exc.reason == "too_large" else Code.BAD_REQUEST
            response = _error(code, exc.detail)
            if code == Code.REQUEST_ENTITY_TOO_LARGE:
                response.opt.size1 = self.max_bytes
            return response
        try:
            result = await self._coalescer.ingest(tenant_id, items)
        except (InvalidInput, NotFound) as exc:  # counted by the pipeline
            await self.ctx.refused(SOURCE, tenant_id, _origin(request, POST), exc, payload)
            return _error(_code_for(exc), exc.detail)
        except DomainError as exc:  # Unavailable: the commit failed or the historian is stopping
            await self.ctx.dead_letter(SOURCE, tenant_id, _origin(request, POST), "unavailable", exc.detail, payload)
            return _error(_code_for(exc), exc.detail)
        return _json({"accepted": result.accepted, "created_tags": result.created_tags}, Code.CHANGED)

    async def too_large(self, request: Any, size: int) -> Any:
        """A Block1 transfer past the limit: counted, dead-lettered (the block at hand), 4.13."""
        detail = f"request body of at least {size} bytes exceeds {self.max_bytes}"
        tenant_id = await self._tenant_of(request)
        await self.ctx.reject(
            SOURCE, tenant_id, _origin(request, POST), DecodeError("too_large", detail), request.payload
        )
        response = _error(Code.REQUEST_ENTITY_TOO_LARGE, detail)
        response.opt.size1 = self.max_bytes
        return response

    async def _tenant_of(self, request: Any) -> int | None:
        """The tenant a refused request belongs to, when its key is valid (for the counters)."""
        key = _query(request).get("key", "")
        if not key:
            return None
        try:
            return (await self.keys.principal(key)).tenant_id
        except DomainError:
            return None

    # -- GET resources -------------------------------------------------------------------

    async def _read(self, request: Any, what: str, render: Callable[[Principal], Awaitable[Any]]) -> Any:
        """A read with the key checked and domain errors mapped to codes."""
        try:
            who = await self.principal(request, Permission.NAMESPACE_READ)
            return await render(who)
        except DomainError as exc:
            log.debug("coap: %s refused: %s", what, exc.detail)
            return _error(_code_for(exc), exc.detail)

    async def get_devices(self, request: Any) -> Any:
        async def render(who: Principal) -> Any:
            under = _query(request).get("under") or None
            found = await self.ctx.nodes.find(who.tenant_id, under=under, node_class=NodeClass.DEVICE)
            return _json([_device_out(n) for n in found])

        return await self._read(request, "GET /devices", render)

    async def get_device(self, request: Any) -> Any:
        async def render(who: Principal) -> Any:
            node = await self.ctx.nodes.get(who.tenant_id, _ref(request))
            if node.node_class is not NodeClass.DEVICE:
                raise NotFound(f"{node.path!r} is a {node.node_class.value}, not a device")
            latest = await self.ctx.history.latest(who, None, node.path)
            tags = [_value_out(v.node, v.ts, v.value, v.quality) for v in latest]
            return _json(_device_out(node) | {"tags": tags})

        return await self._read(request, "GET /devices/...", render)

    async def _tag(self, who: Principal, request: Any) -> Node:
        node = await self.ctx.nodes.get(who.tenant_id, _ref(request))
        if node.node_class is not NodeClass.TAG:
            raise NotFound(f"{node.path!r} is a {node.node_class.value}, not a tag")
        return node

    async def get_tag(self, request: Any) -> Any:
        async def render(who: Principal) -> Any:
            node = await self._tag(who, request)
            ts, value, quality = (await self.ctx.pipeline.cache.get([node.id])).get(node.id) or (None, None, None)
            return _json(_value_out(node, ts, value, quality))

        return await self._read(request, "GET /tags/...", render)

    # -- observe -------------------------------------------------------------------------

    async def observe(self, request: Any, observation: Any) -> None:
        """Accept an observation only for an authorised caller's own tag; a refused one gets
        its error code from the first render and no registration."""
        try:
            who = await self.principal(request, Permission.NAMESPACE_READ)
            node = await self._tag(who, request)
        except Exception as exc:
            if not isinstance(exc, DomainError):
                log.exception("coap: observation refused")
            # aiocoap 0.4 expects every observation accepted (it calls the cancellation callback
            # unconditionally); an early deregister makes the first response the only one.
            observation.accept(lambda: None)
            observation.deregister()
            return
        key = (who.tenant_id, node.id)
        entry = self._watchers.setdefault(key, (node, set()))
        entry[1].add(observation)

        def cancelled() -> None:
            entry[1].discard(observation)
            if not entry[1] and self._watchers.get(key) is entry:
                del self._watchers[key]

        observation.accept(cancelled)

    def _on_message(self, message: Message) -> None:
        """Bus callback (synchronous, on the loop): notify the observers of updated tags."""
        if not self._watchers or not isinstance(message, ValueBatch):
            return
        for update in message.updates:
            entry = self._watchers.get((message.tenant_id, update.tag_id))
            if entry is None:
                continue
            node, watchers = entry
            body = _value_out(node, update.ts, update.value, update.quality) | {"path": update.path}
            for observation in list(watchers):
                observation.trigger(_json(body, Code.CONTENT))  # one message each: aiocoap stamps it
