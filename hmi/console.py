"""The console's controller: owns the session, the stream and the models, and performs every
network action the widgets ask for (awaited on the qasync loop, never blocking the GUI)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from hmi.client import Api, ApiError, AuthError, LinkState, LiveStream, ServerUnreachable, Session, Update
from hmi.client.backoff import Backoff
from hmi.client.credentials import CredentialStore
from hmi.client.slices import Slicer
from hmi.models.alarms import AlarmSnapshot, AlarmStore
from hmi.models.live_values import LiveValues
from hmi.models.qt_namespace import NamespaceModel
from hmi.models.trend import History, TrendModel, TrendPen
from hmi.models.trend_sets import PREFIX, TrendSet, key_of, name_of
from hmi.qt_async import async_slot
from hmi.views.login_dialog import LoginForm
from server.api.schema import Me, NodeOut, NodeSearchOut, TokenResponse

log = logging.getLogger(__name__)
STREAM_WAIT_S = 3.0
"""How long a login waits for the stream before it reads the alarm summary anyway."""


class Console(QObject):
    """One per main window. Signals tell the window about the session and the link."""

    logged_in = Signal(object)  # Me
    logged_out = Signal()
    link_changed = Signal(object, str)  # LinkState, text for the banner

    def __init__(self, config_dir: Path, credentials: CredentialStore, backoff: Backoff | None = None) -> None:
        super().__init__()
        self.config_dir, self.credentials = config_dir, credentials
        self.backoff = backoff
        self.values = LiveValues()
        self.alarms = AlarmStore()
        self.trend = TrendModel()
        self.namespace = NamespaceModel(self.values, self.alarms)
        self.namespace.fetch_requested.connect(self.fetch_children)
        self.session: Session | None = None
        self.api: Api | None = None
        self.stream: LiveStream | None = None
        self.me: Me | None = None
        self.remember = False
        self.link_state = LinkState.CLOSED
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reload_task: asyncio.Task[None] | None = None
        self._reload_again = False
        self._stream_up: asyncio.Event | None = None  # set at the stream's first answer of a session
        self._summary_unsynced = False  # the first summary was loaded before the stream carried events

    # -- session --------------------------------------------------------------------------
    async def login(self, form: LoginForm) -> None:
        """Log in with a password (the login dialog's action); raises for the dialog to show."""
        session = Session(form.server)
        try:
            await session.login(form.tenant, form.username, form.password)
        except BaseException:
            await session.aclose()
            raise
        await self._start(session, form.remember)

    async def resume(self, server: str, tenant: str, username: str) -> bool:
        """Log in with a remembered refresh token; False (and forgotten) when it no longer works."""
        token = self.credentials.load(server, tenant, username)
        if not token:
            return False
        session = Session(server)
        try:
            await session.resume(tenant, username, token)
        except (ApiError, ServerUnreachable) as exc:
            log.info("remembered login not usable: %s", exc)
            if isinstance(exc, ApiError):
                self.credentials.forget(server, tenant, username)
            await session.aclose()
            return False
        await self._start(session, True)
        return True

    async def _start(self, session: Session, remember: bool) -> None:
        assert session.me is not None
        self.session, self.api, self.me, self.remember = session, Api(session), session.me, remember
        session.on_tokens(self._tokens_changed)
        if session.tokens is not None:
            self._tokens_changed(session.tokens)
        self.stream = LiveStream(session, self, self.backoff)
        self._stream_up = asyncio.Event()
        self.stream.start()
        self.logged_in.emit(session.me)
        self.namespace.fetchMore(self.namespace.index(-1, -1))
        # The summary is read once the stream carries alarm events, so none falls between the two
        # (events during the read are applied again after it); a slow stream gets a second read.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stream_up.wait(), STREAM_WAIT_S)
        self._summary_unsynced = self.link_state is not LinkState.CONNECTED
        await self.reload_alarms()

    def _tokens_changed(self, tokens: TokenResponse) -> None:
        """Keep the rotated refresh token: the one stored before is used up (docs/protocol.md §1.4)."""
        session = self.session
        if session is None:
            return
        if self.remember:
            self.credentials.save(session.base_url, session.tenant, session.username, tokens.refresh_token)
        else:
            self.credentials.forget(session.base_url, session.tenant, session.username)

    async def logout(self) -> None:
        session, stream = self.session, self.stream
        self.session = self.api = self.stream = self.me = None
        if stream is not None:
            await stream.stop()
        if session is not None:
            self.credentials.forget(session.base_url, session.tenant, session.username)
            await session.logout()
            await session.aclose()
        self.namespace.clear()
        if self._reload_task is not None:
            self._reload_task.cancel()
        self.alarms.cancel_reloads()
        self.alarms.replace_all([])
        self.clear_trend()
        self.logged_out.emit()

    async def close(self) -> None:
        """Stop the stream and the HTTP client, keeping a remembered login."""
        stream, session = self.stream, self.session
        self.stream = self.session = self.api = None
        if stream is not None:
            await stream.stop()
        if session is not None:
            await session.aclose()
        for task in [*self._tasks, self._reload_task]:
            if task is not None:
                task.cancel()

    def can(self, permission: str) -> bool:
        return self.me is not None and permission in self.me.permissions

    # -- the stream -----------------------------------------------------------------------
    def on_values(self, updates: list[Update], snapshot: bool) -> None:
        self.values.update(updates)
        self.trend.add_samples(updates)

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "alarm":
            self.alarms.apply_event(event)
        elif kind in ("namespace", "device_status"):
            self._spawn(self.rebrowse())
        elif kind in ("alarm_conditions", "events_dropped"):
            self.reload_alarms_soon()

    def on_link(self, state: LinkState, detail: str, lost_at: float | None) -> None:
        """Connected: values are current again, and what the outage hid is fetched. Otherwise stale."""
        self.link_state = state
        self.values.set_stale(state is not LinkState.CONNECTED)
        first = self._stream_up is not None and not self._stream_up.is_set()
        if state in (LinkState.CONNECTED, LinkState.AUTH_FAILED) and self._stream_up is not None:
            self._stream_up.set()
        if state is LinkState.CONNECTED:
            self.link_changed.emit(state, "")
            if lost_at is not None:
                self._spawn(self._after_outage(lost_at))
            elif first and self._summary_unsynced:
                self.reload_alarms_soon()
        elif state is LinkState.AUTH_FAILED:
            self.link_changed.emit(state, f"Session ended: {detail}. Log in again.")
        elif state is not LinkState.CLOSED:
            self.link_changed.emit(state, f"Connection lost — values are stale. {detail}")

    async def _after_outage(self, lost_at: float) -> None:
        """Fill every pen's gap from history and reload the alarms (their events were missed)."""
        await self.reload_alarms()
        now = time.time()
        for pen in list(self.trend.pens):
            with contextlib.suppress(ApiError, ServerUnreachable):
                assert self.api is not None
                h = await self.api.history(pen.node_id, lost_at - 1, now, 10_000)
                values = h.value if h.value is not None else h.avg
                if values is not None:
                    pen.fill_gap(np.asarray(h.t, dtype=np.float64), np.asarray(values, dtype=np.float64))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_event_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- namespace ------------------------------------------------------------------------
    @async_slot(object)
    async def fetch_children(self, parent_id: str | None) -> None:
        """The tree asked for a branch (fetchMore)."""
        await self.browse(parent_id)

    async def browse(self, parent_id: str | None) -> None:
        if self.api is None:
            self.namespace.fetch_failed(parent_id)
            return
        try:
            nodes = await self.api.children(parent_id)
        except (ApiError, ServerUnreachable) as exc:
            log.warning("browse %s failed: %s", parent_id, exc)
            self.namespace.fetch_failed(parent_id)
            return
        self.namespace.set_children(parent_id, nodes)
        tags = [n.node_id for n in nodes if n.node_class == "tag"]
        if tags and self.stream is not None:
            await self.stream.subscribe(nodes=tags)

    async def rebrowse(self) -> None:
        for parent in self.namespace.loaded_parents():
            await self.browse(parent)

    async def search_nodes(self, text: str, limit: int = 50) -> NodeSearchOut:
        """Nodes anywhere in the tree, browsed or not (`GET /nodes/search`)."""
        if self.api is None:
            raise AuthError(401, "not logged in")
        return await self.api.search_nodes(text, limit)

    async def load_path(self, path: str) -> str | None:
        """Browse the branches down to `path` that are not loaded yet, root first; the node's id,
        or None when it is not (any more) in the tree."""
        parent: str | None = None
        segments = path.split("/")  # browse names hold no '/'
        for depth in range(1, len(segments) + 1):
            if not self.namespace.is_fetched(parent):
                await self.browse(parent)
            node_id = self.namespace.child_with_path(parent, "/".join(segments[:depth]))
            if node_id is None:
                return None
            parent = node_id
        return parent

    # -- trends ---------------------------------------------------------------------------
    async def add_to_trend(self, tags: list[NodeOut] | list[dict[str, Any]]) -> list[TrendPen]:
        """Add pens, subscribe to them and fetch their history for the visible range."""
        added = []
        for tag in tags:
            d = tag.model_dump() if isinstance(tag, NodeOut) else tag
            pen = self.trend.add_pen(d["node_id"], d["path"], d.get("unit"))
            if pen is not None:
                added.append(pen)
        if added and self.stream is not None:
            await self.stream.subscribe(nodes=[p.node_id for p in added])
        end = time.time()
        for pen in added:
            await self.fetch_history(pen, self.trend.view_start, end, 2000)
        return added

    def clear_trend(self) -> None:
        for pen in list(self.trend.pens):
            self.trend.remove_pen(pen.node_id)

    async def fetch_history(self, pen: TrendPen, start: float, end: float, max_points: int) -> None:
        if self.api is None:
            return
        try:
            h = await self.api.history(pen.node_id, start, end, max_points)
        except (ApiError, ServerUnreachable) as exc:
            log.warning("history of %s failed: %s", pen.path, exc)
            return
        pen.set_history(History.from_columns(h.start, h.end, h.t, h.value, h.min, h.max, h.avg))

    # -- alarms ---------------------------------------------------------------------------
    def reload_alarms_soon(self) -> None:
        """One reload for a burst of condition changes (10,000 conditions configured are 10,000
        events): one runs at a time, and one more after it if anything asked meanwhile."""
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_again = True
            return
        self._reload_task = asyncio.get_event_loop().create_task(self._reload_coalesced())

    async def _reload_coalesced(self) -> None:
        self._reload_again = True
        while self._reload_again:
            self._reload_again = False
            await self.reload_alarms()

    async def reload_alarms(self) -> None:
        """The whole summary again. 10,000 alarms are parsed and built in slices of a few
        milliseconds (the GUI runs between them) and swapped in at once; stream events that arrive
        meanwhile are applied again afterwards when they are newer than the answer."""
        if self.api is None or not self.can("alarms.read"):
            return
        token = self.alarms.begin_reload()
        snapshot: AlarmSnapshot | None = None
        try:
            built, slicer = AlarmSnapshot(), Slicer()
            async for item in self.api.alarm_items(slicer):
                built.add(item)
            snapshot = built
        except (ApiError, ServerUnreachable, ValueError) as exc:
            log.warning("alarm summary not loaded: %s", exc)
        finally:
            self.alarms.finish_reload(token, snapshot)

    async def acknowledge(self, ids: list[int], comment: str | None) -> int:
        """The stream brings the acknowledged alarms' events; reloading 10,000 alarms after every
        acknowledgement would freeze the summary, so only without a stream does the console reload."""
        assert self.api is not None
        count = await self.api.acknowledge(ids, comment)
        await self._reload_unless_streaming()
        return count

    async def shelve(self, alarm_id: int, reason: str, duration_s: float | None) -> None:
        assert self.api is not None
        await self.api.shelve(alarm_id, reason, duration_s)
        await self._reload_unless_streaming()

    async def _reload_unless_streaming(self) -> None:
        if self.link_state is not LinkState.CONNECTED:
            await self.reload_alarms()

    async def journal(self, start: float, end: float, **filters: Any) -> list[dict[str, Any]]:
        assert self.api is not None
        return await self.api.journal(start, end, **filters)

    async def kpis(self, start: float, end: float) -> dict[str, Any]:
        assert self.api is not None
        return await self.api.kpis(start, end)

    async def send_command(self, device: str, command: str, args: dict[str, Any]) -> None:
        assert self.api is not None
        await self.api.command(device, command, args)

    async def conditions(self) -> list[dict[str, Any]]:
        """Every alarm condition (10,000 in a big plant), decoded in slices like the alarm summary."""
        assert self.api is not None
        return [item async for item in self.api.condition_items(Slicer())]

    # -- saved trend sets (the user's own settings on the server) ------------------------
    async def trend_set_names(self) -> list[str]:
        assert self.api is not None
        return [name_of(k.key) for k in await self.api.setting_keys(PREFIX)]

    async def load_trend_set(self, name: str) -> TrendSet:
        """BadTrendSet when the stored document is not one this console reads."""
        assert self.api is not None
        return TrendSet.from_doc(name, (await self.api.setting(key_of(name))).value)

    async def save_trend_set(self, trend_set: TrendSet, overwrite: bool) -> None:
        """ApiError 409 when the name is taken and `overwrite` is False."""
        assert self.api is not None
        await self.api.put_setting(key_of(trend_set.name), trend_set.to_doc(), overwrite=overwrite)

    async def rename_trend_set(self, name: str, new_name: str, overwrite: bool = False) -> None:
        assert self.api is not None
        await self.api.rename_setting(key_of(name), key_of(new_name), overwrite=overwrite)

    async def delete_trend_set(self, name: str) -> None:
        assert self.api is not None
        await self.api.delete_setting(key_of(name))
