"""The composition root: builds every object from the settings and owns start and stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import uvicorn
from fastapi import FastAPI

from server.alarms.actions import ActionRunner
from server.alarms.engine import AlarmEngine
from server.alarms.repository import AlarmRepository
from server.alarms.service import AlarmService
from server.analytics.service import AnalyticsService
from server.api.app import create_api
from server.api.deps import ApiContext
from server.bus import Bus
from server.config import ConfigError, Settings
from server.gc_freezer import GcFreezer
from server.ingest.adapter import Adapter, IngestContext
from server.ingest.dead_letters import DeadLetterRepository
from server.ingest.live_cache import LiveCache
from server.ingest.pipeline import IngestPipeline
from server.ingest.registry import build_adapters, connection_kinds
from server.ingest.stats_log import StatsLogger
from server.ml.registry import ModelRegistry
from server.ml.scorer import AnomalyScorer
from server.ml.service import AnomalyService
from server.ml.training import HistorySource
from server.notify.dispatcher import Notifier
from server.notify.repository import NotifyRepository
from server.notify.service import NotifyService
from server.security.limiter import LoginLimiter
from server.security.tokens import TokenCodec, load_or_create_secret
from server.services.admin import AdminService
from server.services.auth import AuthService
from server.services.commands import CommandService
from server.services.connections import ConnectionService
from server.services.history import HistoryService
from server.services.namespace import NamespaceService
from server.services.user_settings import UserSettingsService
from server.storage.database import Database
from server.storage.historian.postgres_store import PostgresSampleStore
from server.storage.historian.reader import HistoryReader
from server.storage.historian.sqlite_store import SqliteSampleStore
from server.storage.historian.store import SampleStore
from server.storage.historian.writer import HistorianWriter
from server.storage.repositories.audit import AuditRepository
from server.storage.repositories.connections import ConnectionRepository
from server.storage.repositories.credentials import ApiKeyRepository, RefreshTokenRepository
from server.storage.repositories.nodes import NodeRepository
from server.storage.repositories.tenants import TenantRepository
from server.storage.repositories.user_settings import UserSettingsRepository
from server.storage.repositories.users import RoleRepository, UserRepository

log = logging.getLogger(__name__)


def open_sample_store(db: Database) -> SampleStore:
    """The historian talks to the raw driver of the same database the engine uses."""
    if db.is_postgres:
        dsn = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresSampleStore(dsn)
    return SqliteSampleStore(db.url.database or ":memory:")


class Server:
    """Everything the server runs, built in one place, started and stopped in order."""

    def __init__(self, settings: Settings, *, bcrypt_rounds: int = 12, freeze_gc: bool = True) -> None:
        """`freeze_gc=False` when the server shares its process with a Qt GUI (the console's tests):
        a collection run on the server's thread can free the GUI's QObjects, and their destructors
        deadlock there waiting for the GIL."""
        self.settings, self.freeze_gc = settings, freeze_gc
        self.db = Database(settings.database_url)
        self.bus = Bus()
        self.store = open_sample_store(self.db)
        self.writer = HistorianWriter(
            self.store,
            batch_size=settings.historian_batch_size,
            flush_interval=settings.historian_flush_interval_s,
            rollup_interval=settings.historian_rollup_interval_s,
            commit_spacing=settings.historian_commit_spacing_s,
        )
        self.cache = LiveCache(self.store)
        tenants, users, roles = TenantRepository(self.db), UserRepository(self.db), RoleRepository(self.db)
        refresh, api_keys = RefreshTokenRepository(self.db), ApiKeyRepository(self.db)
        self.audit = AuditRepository(self.db)
        self.nodes = NodeRepository(self.db)
        try:
            secret = load_or_create_secret(settings.jwt_secret, settings.data_dir)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.auth = AuthService(
            tenants=tenants, users=users, roles=roles, refresh_tokens=refresh, api_keys=api_keys, audit=self.audit,
            codec=TokenCodec(secret, settings.access_token_ttl_s),
            limiter=LoginLimiter(settings.login_max_failures, settings.login_failure_window_s),
            refresh_ttl_s=settings.refresh_token_ttl_s,
        )  # fmt: skip
        self.admin = AdminService(tenants, users, roles, refresh, self.audit, self.auth, api_keys, bcrypt_rounds)
        self.pipeline = IngestPipeline(
            nodes=self.nodes, tenants=tenants, writer=self.writer, cache=self.cache, bus=self.bus,
            max_future_skew_s=settings.max_future_skew_s,
        )  # fmt: skip
        self.namespace = NamespaceService(self.nodes, self.store, self.writer, self.cache, self.audit, self.bus)
        reader = HistoryReader(self.store, self.writer)
        self.history = HistoryService(self.nodes, reader, self.cache, settings.max_history_points)
        self.ctx = ApiContext(
            settings=settings, db=self.db, bus=self.bus, auth=self.auth, admin=self.admin, namespace=self.namespace,
            history=self.history, pipeline=self.pipeline, writer=self.writer, nodes=self.nodes, audit=self.audit,
            api_keys=api_keys,
        )  # fmt: skip
        self.dead_letters = DeadLetterRepository(self.db)
        self.ctx.dead_letters = self.dead_letters
        self.connection_repo = ConnectionRepository(self.db)
        self.connections = ConnectionService(self.connection_repo, self.audit, self.bus, connection_kinds())
        self.ctx.connections = self.connections
        self.ingest = IngestContext(
            settings=settings, pipeline=self.pipeline, tenants=tenants, nodes=self.nodes, namespace=self.namespace,
            history=self.history, auth=self.auth, bus=self.bus, dead_letters=self.dead_letters,
            connections=self.connection_repo,
        )  # fmt: skip
        self.commands = CommandService(self.nodes, self.audit, self.bus, mqtt_url=settings.mqtt_url)
        self.ctx.commands = self.commands
        self.alarm_repo = AlarmRepository(self.db)
        self.alarm_engine = AlarmEngine(self.alarm_repo, self.nodes, self.bus)
        self.ctx.alarms = AlarmService(self.alarm_engine, self.alarm_repo, self.nodes, self.audit, self.commands)
        self.alarm_actions = ActionRunner(self.alarm_engine, self.commands, tenants)
        self.ingest.alarms = self.ctx.alarms
        notify_repo = NotifyRepository(self.db)
        self.notifier = Notifier(notify_repo, users, self.alarm_engine, self.bus)
        self.ctx.notify = NotifyService(notify_repo, self.notifier, self.audit)
        self.ctx.user_settings = UserSettingsService(UserSettingsRepository(self.db))
        self.ctx.analytics = AnalyticsService(self.history, self.store, self.writer)
        self.scorer = AnomalyScorer(self.bus, self.alarm_engine)  # scores feed the engine's anomaly conditions
        self.anomaly = AnomalyService(
            ModelRegistry(self.db), self.nodes, HistorySource(self.writer), self.scorer, self.audit
        )
        self.ctx.anomaly = self.anomaly
        self.adapters: list[Adapter] = build_adapters(self.ingest)
        self.api: FastAPI = create_api(self.ctx)
        self._stack = AsyncExitStack()

    async def start(self) -> None:
        """Check the database, then start the historian; refuses to run on an old schema."""
        await self.db.check()
        await self.db.ensure_current()
        await self.store.start()
        self._stack.push_async_callback(self.store.close)
        await self.writer.start()
        self._stack.push_async_callback(self.writer.stop)
        self._stack.push_async_callback(self.db.dispose)
        self._stack.callback(self.pipeline.close)
        await self.alarm_engine.start()  # before the adapters: the first samples are judged too
        self._stack.push_async_callback(self.alarm_engine.stop)  # after them: so are the last
        await self.alarm_actions.start()
        self._stack.push_async_callback(self.alarm_actions.stop)  # before the engine's last flush
        await self.scorer.start()  # after the engine (it judges the scores), before the adapters
        self._stack.push_async_callback(self.scorer.stop)
        await self.anomaly.start()  # the models the scorer runs
        self._stack.push_async_callback(self.anomaly.stop)  # training jobs end before the database
        await self.notifier.start()
        self._stack.push_async_callback(self.notifier.stop)
        self.stats_logger = StatsLogger(self.pipeline)
        await self.stats_logger.start()
        self._stack.push_async_callback(self.stats_logger.stop)
        for adapter in self.adapters:
            await adapter.start()
            self._stack.push_async_callback(adapter.stop)  # stopped before the writer flushes
            log.info("adapter %s started", adapter.name)
        if self.freeze_gc:
            # Start-up objects live for the whole run: keep them out of full collections, which
            # otherwise stop the event loop ~100 ms to walk them (seen in the latency benchmark).
            gc.collect()
            gc.freeze()
            freezer = GcFreezer(self.bus)  # and again after bursts of run-time configuration
            self._stack.callback(freezer.close)
        log.info("iiot-server started on %s", self.db.display_url)

    async def stop(self) -> None:
        await self._stack.aclose()
        log.info("iiot-server stopped; historian flushed")

    async def serve(self, *, install_signal_handlers: bool = True, **uvicorn_options: Any) -> None:
        """Run the HTTP server until a signal (or cancellation), then stop cleanly."""
        await self.start()
        config = uvicorn.Config(
            self.api,
            host=self.settings.http_host,
            port=self.settings.http_port,
            log_level=self.settings.log_level,
            lifespan="off",
            ws_ping_interval=20,
            **uvicorn_options,
        )
        self.http = _HttpServer(config)
        if install_signal_handlers:
            _on_stop_signals(lambda: setattr(self.http, "should_exit", True))
        try:
            await self.http.serve()
        finally:
            await self.stop()


class _HttpServer(uvicorn.Server):
    """uvicorn without its signal handling: it re-raises SIGTERM after shutdown, which would
    kill the process before the historian has flushed. The Server handles the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _on_stop_signals(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop)
        except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
            with contextlib.suppress(ValueError):
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop))


async def run_until_stopped(settings: Settings) -> None:
    server = Server(settings)
    await server.serve()


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """None for asyncio's own loop; uvloop on request: about a fifth less CPU per MQTT message
    here, but aiocoap misbehaves on it, so the settings allow it only with CoAP off."""
    if choice != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        raise ConfigError("configuration key 'event_loop': uvloop is not installed (not on Windows)") from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main_loop(settings: Settings) -> None:
    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        runner.run(run_until_stopped(settings))
