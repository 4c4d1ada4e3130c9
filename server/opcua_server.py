"""Northbound OPC UA server (asyncua): each tenant's namespace for third-party OPC UA clients.

What it serves (settings.opcua_host:opcua_port; port 0 = off, `build` returns []):

- **Address space.** Under Objects, a folder per tenant with its folders, devices (objects with a
  `Status` variable and a `SetStatus(status)` method) and tags (BaseAnalogType variables of the
  tag's data type with `EngineeringUnits` and `EURange` properties), mirrored from the database
  and diffed again on every bus `namespace` event. Node ids: `ns=2;s=<tenant>/<platform id>` —
  the platform's `ns=2;s=Plant1/Pump7` of tenant `acme` is `ns=2;s=acme/Plant1/Pump7`
  (server/opcua/mirror.py has the details).
- **Live values** from the bus (the ingest pipeline's value batches), with source timestamps
  and qualities as StatusCodes (Good, Uncertain 0x40000000, Bad 0x80000000).
- **HistoryRead** (raw) straight from the historian (server/opcua/history.py).
- **Alarms** as Part 9 conditions (AlarmConditionType, ExclusiveLimitAlarmType,
  OffNormalAlarmType) of their source nodes, following the bus's alarm events, with their events
  for the tenant's sessions and the Acknowledge/AddComment/shelving/Enable/Disable/Reset methods
  (standard method ids, ObjectId = ConditionId) and ConditionRefresh answered through the
  AlarmService as the session's user (server/opcua/conditions.py, condition_methods.py,
  condition_model.py). They are not in the address space unless settings.opcua_condition_nodes:
  as nodes, each costs about half a megabyte in asyncua.
- **Sessions** log in with the platform's users: username `<tenant>/<user>` and the user's
  password, checked by the platform (login limiter and audit trail included); anonymous and
  certificate identities are refused. A session sees only its own tenant's tree (and the
  standard Server object), may write a tag's value only with `telemetry.write` (the value goes
  through the ingest pipeline, like HTTP telemetry) and may call `SetStatus` only with what
  `PUT /devices/{id}/status` needs (server/opcua/tenancy.py).
- **Security**: the policies in settings.opcua_security (`None`, `Basic256Sha256` = Sign and
  SignAndEncrypt) with a self-signed certificate generated into `<data_dir>/opcua/` on first
  start. With policy None the password is still sent encrypted with the server certificate
  when Basic256Sha256 is enabled.
- It runs on its own thread and event loop: asyncua's start-up (building the standard address
  space, ~1.2 s of CPU) and its request handling never stall the platform's loop. Database
  work is sent to the platform's loop; the bus is read through a lock-protected hand-off.
  Stopping closes the listening socket; asyncio sets SO_REUSEADDR, so a restart binds the same
  port at once even with connections in TIME_WAIT.

What asyncua (2.1) could not do, and what was done instead:

- No per-session views or access control on nodes: sessions, the binary protocol processor and
  the server are subclassed (tenancy.py) to filter Browse/Read/HistoryRead/Translate/
  CreateMonitoredItems by tenant and to decide Write and Call. These are internal classes:
  an asyncua upgrade must re-run tests/server/test_opcua_server.py and test_opcua_alarms.py.
- The user manager is synchronous, so the password check runs in the processor before
  asyncua's ActivateSession; a client's signature on ActivateSession is verified only after it.
- Method callbacks are not told who calls: SetStatus and the condition methods are answered by
  the session itself.
- No condition model on the server side (no state variables in step, no Acknowledge, AddComment
  or shelving implementations), events reach only monitored items on the emitting node, of every
  session, and its ConditionRefresh keeps one list for all sessions: conditions.py keeps the
  conditions (and their nodes, when they are nodes), delivers events per tenant along the
  notifier chain and answers ConditionRefresh itself.
- Event filters: OfType is compared for equality, WhereClause browse paths are cut to their first
  name, a select clause naming a Python attribute of the event object fails the delivery to
  every later subscription: event_filter.py does it the Part 4 way.
- Subscription services do not check that a subscription belongs to the calling session
  (any session could delete, modify, acknowledge or take over another's): the session checks it.
- BrowseNext is not implemented (a Browse returns every reference at once; asyncua answers
  BadInternalError to BrowseNext); RegisterNodes is a no-op.
- Percent deadband is not evaluated (asyncua logs and passes every change); an absolute
  deadband on a variable whose value is or becomes Bad (null) fails inside asyncua and that
  change is not sent to that monitored item.
- Only raw history (no processed/at-time reads, no history of events or modifications);
  client certificates are not checked against a trust list (any is accepted; users
  authenticate by password); the standard Server object is shared by all sessions.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from asyncua import ua

from server.bus import Event, Message, Subscription, ValueBatch
from server.domain.errors import DomainError, Forbidden, InvalidInput, NotFound, Unauthorized
from server.domain.namespace import DeviceStatus, NodeClass
from server.domain.principal import Principal
from server.domain.quality import Quality
from server.ingest.adapter import Adapter, IngestContext
from server.ingest.pipeline import DeviceValues
from server.opcua.common import SERVER_APP_URI, StatusCodes, bad, ensure_certificate, quiet_asyncua
from server.opcua.condition_methods import ConditionMethods
from server.opcua.condition_model import ConditionInfo, snapshot
from server.opcua.conditions import Conditions
from server.opcua.history import HistorianStorage
from server.opcua.mirror import NAMESPACE_URI, DeviceRef, LiveValue, Mirror, Registry, TagRef
from server.opcua.tenancy import TenantServer
from server.security.passwords import verify_password
from server.storage.historian.columns import RawSeries

log = logging.getLogger(__name__)

T = TypeVar("T")


class Bridge(Protocol):
    """Runs a coroutine on the platform's loop and awaits its result on the server's loop."""

    async def __call__(self, coro: Coroutine[Any, Any, T]) -> T: ...


SOURCE = "opcua_server"
"""Counters and dead letters of values written by OPC UA clients."""
MAX_NODES = 1_000_000
RESYNC_S = 300.0
"""Every tenant is diffed again this often, for changes that publish no event (a tenant disabled)."""
COALESCE_S = 0.1
"""Namespace events arrive in bursts (an import creates many nodes): one sync per burst."""
LIVE_COALESCE_S = 0.05
"""Live values and statuses are handed to the OPC UA thread at most this often."""
RETRY_BIND_S = 5.0
MAX_ALARM_BACKLOG = 10_000
"""Alarm events waiting for the OPC UA thread (about 2 KB each); beyond this the oldest go and
every tenant's conditions are read afresh instead, which costs less than a bigger backlog: an
alarm flood is exactly when memory should not balloon."""
ALARM_KINDS = ("alarm", "alarm_conditions")
MASKED_POLL_S = 1.0
"""Shelved, suppressed and out-of-service alarms are read this often: their process condition
(ActiveState under a mask) changes without a bus event."""


def build(ctx: IngestContext) -> list[Adapter]:
    if ctx.settings.opcua_port == 0:
        return []
    quiet_asyncua()
    return [OpcUaServerAdapter(ctx)]


class OpcUaServerAdapter:
    """Owns the server's thread; everything else happens in `Core` on that thread's loop."""

    name = SOURCE

    def __init__(self, ctx: IngestContext) -> None:
        self.ctx = ctx
        self.core: Core | None = None
        self.ready = threading.Event()
        self._main: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._main = asyncio.get_running_loop()
        self._stopping = False
        self.ready.clear()
        self._subscription = self.ctx.bus.subscribe(None, self._on_message)
        self._thread = threading.Thread(target=self._run, name="opcua-server", daemon=True)
        self._thread.start()

    def _on_message(self, message: Message) -> None:
        core = self.core
        if core is not None:
            core.offer(message)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except Exception:
            log.exception("opcua server: stopped by an error")
        finally:
            loop.run_until_complete(_cancel_leftovers())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        while not self._stopping:
            core = Core(self.ctx, self._bridge, self._count)
            self.core = core  # takes messages from now on: what happens while it loads comes after
            try:
                await core.start()
            except OSError as exc:  # the port is taken: say so and try again
                self.core = None
                log.error("opcua server: cannot listen on %s:%d (%s); retrying", core.host, core.port, exc)
                await core.stop()
                try:
                    await asyncio.wait_for(self._stop.wait(), RETRY_BIND_S)
                except TimeoutError:
                    continue
                return
            except BaseException:
                self.core = None
                raise
            self.ready.set()
            log.info("opcua server: listening on %s", core.endpoint)
            try:
                if not self._stopping:  # stop() may have come while starting
                    await self._stop.wait()
            finally:
                self.core = None
                await core.stop()
            return

    def _count(self, tenant_id: int | None, reason: str) -> None:
        """Counters live on the platform's loop: increment them there."""
        if self._main is not None:
            self._main.call_soon_threadsafe(self._increment, tenant_id, reason)

    def _increment(self, tenant_id: int | None, reason: str) -> None:
        stats = self.ctx.stats(SOURCE, tenant_id)
        stats.received += 1
        stats.rejected[reason] += 1

    async def _bridge(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the platform's loop (database, pipeline, services) and await it here."""
        assert self._main is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._main))

    async def stop(self) -> None:
        self._stopping = True
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
            if self._thread.is_alive():
                log.error("opcua server: thread did not stop within 30 s")
            self._thread = None
        self.ready.clear()


class Core:
    """The asyncua server, its mirror of the namespace, and the platform calls sessions make."""

    def __init__(self, ctx: IngestContext, bridge: Bridge, count: Callable[[int | None, str], None]) -> None:
        self.ctx, self.bridge, self.count = ctx, bridge, count
        settings = ctx.settings
        self.host, self.port = settings.opcua_host, settings.opcua_port
        self.endpoint = f"opc.tcp://{self.host}:{self.port}/"
        self.registry = Registry()
        self.server = TenantServer(self)
        self.mirror = Mirror(self.server, self.registry)
        self.alarm_service = ctx.alarms
        self.conditions = Conditions(
            self.server, self.mirror, self.registry, self.server.tenant_iserver.principal_of, self._fetch_conditions,
            nodes=settings.opcua_condition_nodes,
        )  # fmt: skip
        self.alarm_methods = (
            ConditionMethods(self.registry, self.conditions, bridge, self.alarm_service, self.drain_alarms)
            if self.alarm_service is not None
            else None
        )
        self._alarm_events: list[tuple[int, str, dict[str, Any]]] = []
        self._alarm_overflow = False
        self._alarm_drain = asyncio.Lock()
        self._lock = threading.Lock()
        self._values: dict[int, LiveValue] = {}
        self._statuses: dict[tuple[int, str], DeviceStatus] = {}
        self._dirty: set[int] = set()
        self._woken = False
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    async def start(self) -> None:
        settings = self.ctx.settings
        server = self.server
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("iiot-server")
        await server.set_application_uri(SERVER_APP_URI)
        server.product_uri = "urn:iiot-server"
        wanted = {p.strip().lower() for p in settings.opcua_security.split(",") if p.strip()}
        policies: list[ua.SecurityPolicyType] = []
        if "none" in wanted:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        if "basic256sha256" in wanted:
            creds = await asyncio.to_thread(
                ensure_certificate, settings.data_dir / "opcua", "server", SERVER_APP_URI, server=True
            )
            await server.load_certificate(creds.cert_der)
            await server.load_private_key(creds.key_der)
            policies += [
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                ua.SecurityPolicyType.Basic256Sha256_Sign,
            ]
        if not policies:
            raise ValueError(f"opcua_security {settings.opcua_security!r} names no known policy")
        server.set_security_policy(policies)
        server.set_identity_tokens([ua.UserNameIdentityToken])
        self.registry.ns = await server.register_namespace(NAMESPACE_URI)
        server.iserver.history_manager.set_storage(HistorianStorage(self.registry, self._read_raw))
        await self._sync_all()
        await server.start()
        self._started = True
        self._tasks = [
            asyncio.create_task(self._pump(), name="opcua server values"),
            asyncio.create_task(self._resync(), name="opcua server resync"),
            asyncio.create_task(self._poll_masked(), name="opcua server masked alarms"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("opcua server: task ended with an error")
        if self._started:
            await self.server.stop()

    # -- from the bus (platform thread) -------------------------------------------------------------

    def offer(self, message: Message) -> None:
        """Called on the platform's loop: hand over under a lock, wake the server's loop once."""
        with self._lock:
            if isinstance(message, ValueBatch):
                for u in message.updates:
                    self._values[u.tag_id] = (u.ts, u.value, u.quality)
            elif isinstance(message, Event) and message.kind == "namespace":
                self._dirty.add(message.tenant_id)
            elif isinstance(message, Event) and message.kind == "device_status":
                try:
                    status = DeviceStatus(str(message.data.get("status")))
                except ValueError:
                    return
                self._statuses[(message.tenant_id, str(message.data.get("node_id")))] = status
            elif isinstance(message, Event) and message.kind in ALARM_KINDS and self.alarm_service is not None:
                if len(self._alarm_events) >= MAX_ALARM_BACKLOG:
                    del self._alarm_events[: MAX_ALARM_BACKLOG // 10]
                    self._alarm_overflow = True
                self._alarm_events.append((message.tenant_id, message.kind, dict(message.data)))
            else:
                return
            if self._woken:
                return
            self._woken = True
        self._loop.call_soon_threadsafe(self._wake.set)

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            # Gather a while before taking the values: a wake per message costs the ingest loop
            # a thread switch each (a fifth of its time in the AMQP benchmark); OPC UA clients
            # publish at 100 ms or slower anyway.
            await asyncio.sleep(COALESCE_S if self._dirty else LIVE_COALESCE_S)
            self._wake.clear()
            with self._lock:
                values, self._values = self._values, {}
                statuses, self._statuses = self._statuses, {}
                dirty, self._dirty = self._dirty, set()
                self._woken = False
            for tenant_id in sorted(dirty):
                try:
                    await self._sync(tenant_id)
                except Exception:
                    log.exception("opcua server: cannot mirror tenant %d; retrying at the next resync", tenant_id)
            try:
                await self.mirror.write_values(values)
                for (tenant_id, node_id), status in statuses.items():
                    await self.mirror.set_status(tenant_id, node_id, status)
            except Exception:
                log.exception("opcua server: cannot publish live values")
            await self.drain_alarms()

    async def drain_alarms(self) -> None:
        """The alarm events handed over so far, in order, into the conditions (and their events)."""
        async with self._alarm_drain:
            await self._drain_pending()

    async def _drain_pending(self) -> None:
        """`drain_alarms` under `_alarm_drain`. Whatever reads conditions from the platform drains
        first under the same lock, so that no event older than its snapshot is applied after it."""
        with self._lock:
            batch, self._alarm_events = self._alarm_events, []
            overflow, self._alarm_overflow = self._alarm_overflow, False
        if overflow:
            log.warning("opcua server: alarm events overflowed; reading every tenant's conditions afresh")
            for tenant_id in sorted(self.conditions.tenants):
                batch.insert(0, (tenant_id, "reload", {}))
        for tenant_id, kind, data in batch:
            try:
                if kind == "reload":
                    await self.conditions.reconcile(tenant_id, reload=True)
                else:
                    await self.conditions.on_event(tenant_id, kind, data)
            except Exception:
                log.exception("opcua server: cannot show an alarm event of tenant %d", tenant_id)

    async def _reconcile(self, tenant_id: int, *, reload: bool = False) -> None:
        async with self._alarm_drain:
            await self._drain_pending()
            await self.conditions.reconcile(tenant_id, reload=reload)

    async def _poll_masked(self) -> None:
        while True:
            await asyncio.sleep(MASKED_POLL_S)
            try:
                await self.refresh_masked()
            except Exception:
                log.exception("opcua server: cannot read the masked alarms")

    async def refresh_masked(self) -> None:
        """The masked conditions read afresh: an event for each whose process condition changed."""
        masked = self.conditions.masked()
        if not masked:
            return
        async with self._alarm_drain:
            await self._drain_pending()
            for tenant_id, ids in sorted(masked.items()):
                await self.conditions.apply(tenant_id, await self._fetch_conditions(tenant_id, ids))

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_S)
            try:
                await self._sync_all()
            except Exception:
                log.exception("opcua server: periodic resync failed")

    async def _sync_all(self) -> None:
        tenants = await self.bridge(self.ctx.tenants.all())
        for tenant_id in set(self.mirror.trees) - {t.id for t in tenants if t.is_active}:
            await self.mirror.sync_tenant(tenant_id, None, "", [], {})
            await self._reconcile(tenant_id)
        for tenant in tenants:
            if tenant.is_active:
                await self._sync(tenant.id, reload=True)

    async def _sync(self, tenant_id: int, *, reload: bool = False) -> None:
        """The tenant's tree, then its alarm conditions (read afresh with `reload`)."""
        try:
            tenant = await self.bridge(self.ctx.tenants.get(tenant_id))
        except NotFound:
            tenant = None
        if tenant is None or not tenant.is_active:
            await self.mirror.sync_tenant(tenant_id, None, "", [], {})
            await self._reconcile(tenant_id)
            return
        for other, name in list(self.mirror.names.items()):  # a deleted tenant's name came back
            if name == tenant.name and other != tenant_id:
                await self.mirror.sync_tenant(other, None, "", [], {})
                await self._reconcile(other)
        nodes = await self.bridge(self.ctx.nodes.find(tenant_id, limit=MAX_NODES))
        tag_ids = [n.id for n in nodes if n.node_class is NodeClass.TAG]
        live: dict[int, LiveValue] = await self.bridge(self.ctx.pipeline.cache.get(tag_ids)) if tag_ids else {}
        await self.mirror.sync_tenant(tenant_id, tenant.name, tenant.display_name or tenant.name, nodes, live)
        await self._reconcile(tenant_id, reload=reload)

    async def _fetch_conditions(self, tenant_id: int, ids: frozenset[int] | None) -> list[ConditionInfo]:
        if self.alarm_service is None:
            return []
        return await self.bridge(snapshot(self.alarm_service, tenant_id, ids))

    async def _read_raw(self, tag_id: int, start: float, end: float, limit: int) -> RawSeries:
        return await self.bridge(self.ctx.history.reader.store.read_raw(tag_id, start, end, limit))

    # -- the Gate: what sessions ask of the platform ----------------------------------------------------

    async def authenticate(self, tenant: str, username: str, password: str, address: str) -> Principal:
        return await self.bridge(_login(self.ctx, tenant, username, password, address))

    def refused(self, tenant: str | None, reason: str) -> None:
        self.count(self.registry.tenants.get(tenant or ""), reason)

    async def refresh(self, principal: Principal) -> Principal:
        return await self.bridge(_refresh(self.ctx, principal))

    async def ingest(self, principal: Principal, rows: list[tuple[TagRef, float, float, Quality]]) -> ua.StatusCode:
        groups: dict[tuple[str, float, Quality], dict[str, float]] = {}
        for ref, ts, value, quality in rows:
            groups.setdefault((ref.device, ts, quality), {})[ref.path.rsplit("/", 1)[-1]] = value
        items = [DeviceValues(dev, values, ts, q) for (dev, ts, q), values in groups.items()]
        try:
            await self.bridge(self.ctx.pipeline.ingest(principal.tenant_id, items, source=SOURCE))
        except NotFound:
            return bad(StatusCodes.BadNodeIdUnknown)
        except InvalidInput:
            return bad(StatusCodes.BadOutOfRange)
        except DomainError:
            return bad(StatusCodes.BadInvalidArgument)
        except Exception:
            log.exception("opcua server: written values could not be stored")
            return bad(StatusCodes.BadResourceUnavailable)
        return ua.StatusCode()

    async def set_status(self, principal: Principal, device: DeviceRef, status: DeviceStatus) -> ua.StatusCode:
        try:
            await self.bridge(self.ctx.namespace.set_status(principal, device.node_id, status))
        except Forbidden:
            return bad(StatusCodes.BadUserAccessDenied)
        except NotFound:
            return bad(StatusCodes.BadNodeIdUnknown)
        except DomainError:
            return bad(StatusCodes.BadInvalidArgument)
        return ua.StatusCode()


async def _cancel_leftovers() -> None:
    """asyncua leaves session watchdogs behind: end them before their loop goes."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _login(ctx: IngestContext, tenant_name: str, username: str, password: str, address: str) -> Principal:
    """The platform's password check as `AuthService.login` does it (limiter, audit), without
    issuing tokens: an OPC UA session is its own credential."""
    auth = ctx.auth
    user_key, addr_key = f"u:{tenant_name}:{username}", f"a:{address}"
    tenant = await auth.tenants.by_name(tenant_name)
    stats = ctx.stats(SOURCE, tenant.id if tenant else None)
    try:
        auth.limiter.check(user_key, addr_key)
    except DomainError:
        stats.received += 1
        stats.rejected["login_refused"] += 1
        raise
    user = await auth.users.by_username(tenant.id, username) if tenant and tenant.is_active else None
    valid = await verify_password(password, user.password_hash if user else None)
    if tenant is None or not tenant.is_active or user is None or not valid or not user.is_active:
        auth.limiter.failed(user_key, addr_key)
        stats.received += 1
        stats.rejected["login_refused"] += 1
        reason = (
            "unknown tenant" if tenant is None else "tenant disabled" if not tenant.is_active
            else "unknown user" if user is None else "user disabled" if valid else "wrong password"
        )  # fmt: skip
        await auth.audit.record(
            tenant.id if tenant else None, username, "auth.login", username, success=False, address=address,
            detail={"reason": reason, "tenant": tenant_name, "via": "opcua"},
        )  # fmt: skip
        raise Unauthorized("invalid tenant, username or password")
    auth.limiter.succeeded(user_key)
    await auth.audit.record(tenant.id, username, "auth.login", username, address=address, detail={"via": "opcua"})
    return Principal(
        tenant.id, tenant.name, user.username, user.id, tuple(user.roles), user.permissions, user.is_system_admin
    )


async def _refresh(ctx: IngestContext, principal: Principal) -> Principal:
    if principal.user_id is None:
        raise Unauthorized("not a user")
    tenant = await ctx.auth.tenants.get(principal.tenant_id)
    user = await ctx.auth.users.get(principal.tenant_id, principal.user_id)
    if not tenant.is_active or not user.is_active:
        raise Unauthorized("account disabled")
    return Principal(
        tenant.id, tenant.name, user.username, user.id, tuple(user.roles), user.permissions, user.is_system_admin
    )
