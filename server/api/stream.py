"""WebSocket `/api/v1/stream`: subscribe to nodes or subtrees, receive coalesced value frames.

Each client has a dict of pending updates keyed by tag: a slow client sees the latest value
per node when it catches up, never an unbounded queue, and never slows ingestion.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from server.api.deps import ApiContext
from server.bus import Event, Message, ValueBatch
from server.domain.errors import DomainError, Forbidden, Unauthorized
from server.domain.namespace import in_subtree
from server.domain.permissions import Permission
from server.domain.principal import Principal
from server.domain.sample import TagUpdate

log = logging.getLogger(__name__)
router = APIRouter()

CLOSE_AUTH_EXPIRED = 4401
CLOSE_AUTH_FAILED = 4403
CLOSE_PROTOCOL = 4400
AUTH_TIMEOUT_S = 10.0
MAX_EVENTS = 1000
MAX_MESSAGE_BYTES = 256 * 1024


class _Client:
    def __init__(self, ws: WebSocket, ctx: ApiContext, who: Principal, credential: Credential | None = None) -> None:
        self.ws, self.ctx, self.who = ws, ctx, who
        self.credential = credential
        self.tags: set[int] = set()
        self.subtrees: dict[str, str] = {}  # root node id -> its current path
        self.pending: dict[int, TagUpdate] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.dropped_events = 0
        self.wake = asyncio.Event()
        self.hurry = asyncio.Event()
        """An alarm is waiting: it goes out at once, not after the values' coalescing window."""
        self.frames = 0
        self.subscription = ctx.bus.subscribe(who.tenant_id, self.on_message)

    def on_message(self, message: Message) -> None:
        """Runs in the publisher's call: only dictionary work, never I/O."""
        if isinstance(message, ValueBatch):
            hit = False
            for u in message.updates:
                if u.tag_id in self.tags or any(in_subtree(u.path, p) for p in self.subtrees.values()):
                    self.pending[u.tag_id] = u
                    hit = True
            if hit:
                self.wake.set()
        elif isinstance(message, Event):
            if message.kind == "namespace" and self.subtrees:
                asyncio.get_running_loop().create_task(self.refresh_subtrees())  # noqa: RUF006
            if message.kind == "command" and not self.who.can(Permission.DEVICES_COMMAND):
                return  # a command's arguments are for those who may send one
            if message.kind in ("alarm", "alarm_conditions") and not self.who.can(Permission.ALARMS_READ):
                return
            if message.kind in ("anomaly", "anomaly_model") and not self.who.can(Permission.HISTORY_READ):
                return
            if message.kind != "namespace" or self.tags or self.subtrees:
                if len(self.events) == self.events.maxlen:
                    self.dropped_events += 1
                self.events.append({"type": "event", **message.data, "kind": message.kind})
                if message.kind == "alarm":
                    self.hurry.set()
                self.wake.set()

    async def refresh_subtrees(self) -> None:
        for node_id in list(self.subtrees):
            try:
                self.subtrees[node_id] = (await self.ctx.nodes.get(self.who.tenant_id, node_id)).path
            except DomainError:
                self.subtrees.pop(node_id, None)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(frame, separators=(",", ":")))

    async def sender(self) -> None:
        interval = self.ctx.settings.stream_flush_interval_s
        while True:
            await self.wake.wait()
            if not self.hurry.is_set():
                with contextlib.suppress(TimeoutError):  # let a burst coalesce into one frame
                    await asyncio.wait_for(self.hurry.wait(), interval)
            self.wake.clear()
            self.hurry.clear()
            while self.events:
                await self.send(self.events.popleft())
            if self.pending:
                batch, self.pending = self.pending, {}
                await self.send({"type": "values", "updates": [_update(u) for u in batch.values()]})
                self.frames += 1

    async def revalidate(self) -> None:
        """A disabled user, a revoked key or a removed role ends the stream, not only new requests."""
        if self.credential is None:
            return
        kind, secret = self.credential
        if kind == "token":
            self.who = await self.ctx.auth.principal_for_token(secret)
        else:
            self.who = await self.ctx.auth.principal_for_api_key(secret)
        if Permission.NAMESPACE_READ not in self.who.permissions:
            raise Forbidden("the stream's credential no longer holds namespace.read")

    async def heartbeat(self) -> None:
        period = self.ctx.settings.stream_heartbeat_s
        while True:
            expires = self.who.expires_at
            wait = period if expires is None else max(0.0, min(period, expires - time.time()))
            await asyncio.sleep(wait)
            if self.who.expires_at is not None and self.who.expires_at <= time.time():
                await self.send({"type": "error", "status": 401, "detail": "access token expired; send a new one"})
                await self.ws.close(CLOSE_AUTH_EXPIRED, "access token expired")
                return
            try:
                await self.revalidate()
            except DomainError as exc:
                await self.send({"type": "error", "status": exc.status, "detail": exc.detail})
                await self.ws.close(CLOSE_AUTH_FAILED, exc.detail[:120])
                return
            if wait >= period or expires is None:
                await self.send({"type": "heartbeat", "t": time.time(), "dropped_events": self.dropped_events})

    async def handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        req_id = msg.get("id")
        try:
            if kind == "subscribe":
                await self.subscribe(msg, req_id)
            elif kind == "unsubscribe":
                await self.unsubscribe(msg, req_id)
            elif kind == "auth":
                who = await self.ctx.auth.principal_for_token(str(msg.get("token", "")))
                if who.tenant_id != self.who.tenant_id or who.user_id != self.who.user_id:
                    raise Unauthorized("a stream cannot change user or tenant; open a new one")
                self.who = who
                self.credential = ("token", str(msg.get("token", "")))
                await self.send({"type": "auth_ok", "id": req_id, "expires_at": who.expires_at})
            elif kind == "ping":
                await self.send({"type": "pong", "id": req_id, "t": time.time()})
            else:
                await self.send(
                    {"type": "error", "id": req_id, "status": 400, "detail": f"unknown message type {kind!r}"}
                )
        except DomainError as exc:
            await self.send(
                {"type": "error", "id": req_id, "status": exc.status, "detail": exc.detail, "field": exc.field}
            )

    async def subscribe(self, msg: dict[str, Any], req_id: Any) -> None:
        self.who.require(Permission.NAMESPACE_READ)
        refs, roots = _strings(msg, "nodes"), _strings(msg, "subtrees")
        if len(refs) + len(roots) > 10_000:
            raise DomainError("at most 10000 nodes per subscribe message", field="nodes")
        # Resolve everything first: a subscription naming another tenant's node fails whole (404).
        tags = [await self.ctx.history.tag(self.who, ref) for ref in refs]
        root_nodes = [await self.ctx.nodes.get(self.who.tenant_id, ref) for ref in roots]
        self.tags.update(t.id for t in tags)
        for node in root_nodes:
            self.subtrees[node.node_id] = node.path
        await self.send(
            {
                "type": "subscribed", "id": req_id, "nodes": [t.node_id for t in tags],
                "subtrees": [n.node_id for n in root_nodes],
            }
        )  # fmt: skip
        snapshot: dict[str, dict[str, Any]] = {}
        for root in root_nodes:
            for v in await self.ctx.history.latest(self.who, None, root.node_id):
                if v.ts is not None and v.quality is not None:
                    snapshot[v.node.node_id] = {"n": v.node.node_id, "t": v.ts, "v": v.value, "q": int(v.quality)}
        cached = await self.ctx.history.cache.get([t.id for t in tags])
        for tag in tags:
            if tag.id in cached:
                ts, value, quality = cached[tag.id]
                snapshot[tag.node_id] = {"n": tag.node_id, "t": ts, "v": value, "q": int(quality)}
        current = list(snapshot.values())
        if current:
            await self.send({"type": "values", "snapshot": True, "updates": current})

    async def unsubscribe(self, msg: dict[str, Any], req_id: Any) -> None:
        for ref in _strings(msg, "nodes"):
            with contextlib.suppress(DomainError):
                self.tags.discard((await self.ctx.nodes.get(self.who.tenant_id, ref)).id)
        for ref in _strings(msg, "subtrees"):
            with contextlib.suppress(DomainError):
                self.subtrees.pop((await self.ctx.nodes.get(self.who.tenant_id, ref)).node_id, None)
        if msg.get("all"):
            self.tags.clear()
            self.subtrees.clear()
        await self.send({"type": "unsubscribed", "id": req_id})

    def close(self) -> None:
        self.subscription.close()


def _update(u: TagUpdate) -> dict[str, Any]:
    return {"n": u.node_id, "t": u.ts, "v": u.value, "q": int(u.quality)}


def _strings(msg: dict[str, Any], key: str) -> list[str]:
    value = msg.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DomainError(f"{key} must be a list of node ids or paths", field=key)
    return value


Credential = tuple[str, str]
"""("token", access token) or ("apikey", key): kept to re-check the caller while streaming."""


async def _authenticate(ws: WebSocket, ctx: ApiContext) -> tuple[Principal, Credential]:
    header = ws.headers.get("authorization", "")
    credential: Credential
    if header.lower().startswith("bearer "):
        credential = ("token", header[7:].strip())
    elif ws.headers.get("x-api-key"):
        credential = ("apikey", ws.headers["x-api-key"])
    else:
        raw = await asyncio.wait_for(ws.receive_text(), AUTH_TIMEOUT_S)
        msg = json.loads(raw)
        if not isinstance(msg, dict) or msg.get("type") != "auth":
            raise Unauthorized('the first message must be {"type": "auth", "token": "..."}')
        key = msg.get("api_key")
        credential = ("apikey", str(key)) if key else ("token", str(msg.get("token", "")))
    if credential[0] == "apikey":
        who = await ctx.auth.principal_for_api_key(credential[1])
    else:
        who = await ctx.auth.principal_for_token(credential[1])
    who.require(Permission.NAMESPACE_READ)
    return who, credential


@router.websocket("/api/v1/stream")
async def stream(ws: WebSocket) -> None:
    ctx: ApiContext = ws.app.state.ctx
    await ws.accept()
    try:
        who, credential = await _authenticate(ws, ctx)
    except (DomainError, TimeoutError, ValueError, WebSocketDisconnect) as exc:
        if ws.application_state == WebSocketState.CONNECTED:
            detail = exc.detail if isinstance(exc, DomainError) else "authentication failed"
            status = exc.status if isinstance(exc, DomainError) else 401
            with contextlib.suppress(Exception):
                await ws.send_text(json.dumps({"type": "error", "status": status, "detail": detail}))
                await ws.close(CLOSE_AUTH_FAILED, detail[:120])
        return
    client = _Client(ws, ctx, who, credential)
    ctx.stream_clients += 1
    tasks = [asyncio.create_task(client.sender()), asyncio.create_task(client.heartbeat())]
    try:
        await client.send(
            {
                "type": "hello", "tenant": who.tenant_name, "user": who.subject, "expires_at": who.expires_at,
                "heartbeat_s": ctx.settings.stream_heartbeat_s,
            }
        )  # fmt: skip
        while True:
            receive = asyncio.create_task(ws.receive_text())
            done, _ = await asyncio.wait([receive, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                break  # sender failed or heartbeat closed the socket for expired auth
            raw = receive.result()
            if len(raw) > MAX_MESSAGE_BYTES:
                await ws.close(CLOSE_PROTOCOL, "message too large")
                break
            try:
                msg = json.loads(raw)
            except ValueError:
                await client.send({"type": "error", "status": 400, "detail": "message is not valid JSON"})
                continue
            if not isinstance(msg, dict):
                await client.send({"type": "error", "status": 400, "detail": "message must be a JSON object"})
                continue
            await client.handle(msg)
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        pass  # the client went away mid-stream: nothing to clean but our own state
    finally:
        client.close()
        ctx.stream_clients -= 1
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
