"""The live stream (WebSocket /api/v1/stream): values, events, reconnect with back-off.

It keeps what the console subscribed to and subscribes again after every reconnect; it
renews the access token in-band when the session refreshes (§8.8); it reports the link state
with the time the link was lost, so the trends can fill the gap from history on return.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from hmi.client.backoff import Backoff
from hmi.client.errors import ApiError, AuthError, ServerUnreachable
from hmi.client.session import Session
from server.api.schema import TokenResponse

log = logging.getLogger(__name__)


class LinkState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    AUTH_FAILED = "auth_failed"  # 4403: log in again, retrying will not help
    CLOSED = "closed"


class Update(NamedTuple):
    node_id: str
    t: float
    v: float
    q: int


class StreamListener(Protocol):
    """What the stream calls, always on the event loop's thread."""

    def on_values(self, updates: list[Update], snapshot: bool) -> None: ...

    def on_event(self, event: dict[str, Any]) -> None: ...

    def on_link(self, state: LinkState, detail: str, lost_at: float | None) -> None:
        """`lost_at`: on CONNECTED after an outage, when the previous link was lost (fill the gap)."""


class _AuthRefused(Exception):
    pass


class LiveStream:
    """One stream per session; `start` runs it until `stop`."""

    def __init__(self, session: Session, listener: StreamListener, backoff: Backoff | None = None) -> None:
        self.session, self.listener = session, listener
        self.backoff = backoff or Backoff()
        self.state = LinkState.CLOSED
        self.nodes: set[str] = set()
        self.subtrees: set[str] = set()
        self.heartbeat_s = 15.0
        self.close_timeout_s = 2.0
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost_at: float | None = None
        self._next_id = 0
        self._dropped = 0
        session.on_tokens(self._renew)

    # -- public ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="hmi-stream")

    async def stop(self) -> None:
        """Cancel the connection; the closing handshake gets a short while, never the GUI's patience."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=self.close_timeout_s + 1)
        self._set(LinkState.CLOSED, "closed")

    async def subscribe(self, nodes: Sequence[str] = (), subtrees: Sequence[str] = ()) -> None:
        """Add to the subscription; sent now when connected, and again after every reconnect."""
        new_nodes = [n for n in nodes if n not in self.nodes]
        new_trees = [s for s in subtrees if s not in self.subtrees]
        self.nodes.update(new_nodes)
        self.subtrees.update(new_trees)
        if (new_nodes or new_trees) and self._ws is not None:
            await self._send({"type": "subscribe", "nodes": new_nodes, "subtrees": new_trees})

    async def unsubscribe(self, nodes: list[str]) -> None:
        gone = [n for n in nodes if n in self.nodes]
        self.nodes.difference_update(gone)
        if gone and self._ws is not None:
            await self._send({"type": "unsubscribe", "nodes": gone})

    # -- the connection loop ----------------------------------------------------------------
    async def _run(self) -> None:
        self._set(LinkState.CONNECTING, "connecting")
        while True:
            try:
                await self._connect_once()
                detail = "the server closed the stream"
            except _AuthRefused as exc:
                self._set(LinkState.AUTH_FAILED, str(exc))
                return
            except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed, TimeoutError, ServerUnreachable) as exc:
                detail = f"connection lost: {exc or type(exc).__name__}"
            finally:
                self._ws = None
            if self._lost_at is None:
                self._lost_at = time.time()
            delay = self.backoff.next_delay()
            self._set(LinkState.RECONNECTING, f"{detail}; reconnecting in {delay:.0f} s")
            await asyncio.sleep(delay)

    async def _connect_once(self) -> None:
        async with websockets.connect(
            self.session.ws_url, open_timeout=10, close_timeout=self.close_timeout_s, max_size=2**24
        ) as ws:
            hello = await self._authenticate(ws)
            self.heartbeat_s = float(hello.get("heartbeat_s") or 15.0)
            self._dropped = 0  # counted per connection by the server
            self._ws = ws
            if self.nodes or self.subtrees:
                await self._send({"type": "subscribe", "nodes": sorted(self.nodes), "subtrees": sorted(self.subtrees)})
            self.backoff.reset()
            lost_at, self._lost_at = self._lost_at, None
            self._set(LinkState.CONNECTED, f"connected to {self.session.base_url}", lost_at)
            while True:  # two heartbeats of silence mean a dead link (§8.7)
                raw = await asyncio.wait_for(ws.recv(), timeout=2.5 * self.heartbeat_s)
                self._dispatch(json.loads(raw))

    async def _authenticate(self, ws: ClientConnection) -> dict[str, Any]:
        """Send the access token; an expired one is refreshed once, anything else is final."""
        for attempt in range(2):
            await ws.send(json.dumps({"type": "auth", "token": self.session.access_token}))
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            except ConnectionClosed as exc:
                raise _AuthRefused(f"the stream refused the credentials ({exc.rcvd})") from exc
            if frame.get("type") == "hello":
                return dict(frame)
            if attempt == 0 and frame.get("status") == 401:
                try:
                    await self.session.refresh()
                except AuthError as exc:
                    raise _AuthRefused(exc.detail) from exc
                except ApiError as exc:
                    raise ServerUnreachable(str(exc)) from exc
                raise ServerUnreachable("token refreshed; reconnecting")  # the server closed this socket
            raise _AuthRefused(str(frame.get("detail", "refused")))
        raise _AuthRefused("refused")  # pragma: no cover

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "values":
            updates = [Update(u["n"], float(u["t"]), float(u["v"]), int(u["q"])) for u in frame["updates"]]
            self.listener.on_values(updates, bool(frame.get("snapshot")))
        elif kind == "event":
            self.listener.on_event(frame)
        elif kind == "heartbeat":
            dropped = int(frame.get("dropped_events") or 0)
            if dropped > self._dropped:  # the server's queue for us overflowed: what we hold is incomplete
                self.listener.on_event({"type": "event", "kind": "events_dropped", "count": dropped - self._dropped})
            self._dropped = dropped
        elif kind == "error":
            log.warning("stream error: %s", frame.get("detail"))

    # -- helpers --------------------------------------------------------------------------
    async def _send(self, message: dict[str, Any]) -> None:
        if self._ws is None:
            return
        self._next_id += 1
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(json.dumps({"id": self._next_id, **message}))

    def _renew(self, tokens: TokenResponse) -> None:
        """The session refreshed: hand the new access token to the open stream (§8.8)."""
        if self._ws is not None:
            task = asyncio.get_running_loop().create_task(self._send({"type": "auth", "token": tokens.access_token}))
            self._pending = task  # keep a reference until it ran (RUF006)

    def _set(self, state: LinkState, detail: str, lost_at: float | None = None) -> None:
        self.state = state
        self.listener.on_link(state, detail, lost_at)
