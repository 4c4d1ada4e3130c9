"""OPC UA client adapter (asyncua): per-tenant connections to field OPC UA servers (PLCs).

Each enabled "opcua" connection of every tenant (`ctx.connections.enabled_everywhere`) runs one
task, reconciled whenever a `connections` event is published:

- connect (endpoint, security policy and mode, user or anonymous), make sure the mapped
  devices and tags exist (`ensure_device`, with the configured unit), create one subscription
  with a monitored item per mapped node (sampling interval, queue size, data-change filter
  with an absolute or percent deadband);
- every Publish response is one micro-batch for the pipeline: DataValues become samples
  (source timestamp, else server timestamp, else arrival; StatusCode severity -> quality; a
  Bad value carries the tag's last good value, the OPC UA value of a Bad item is not a
  measurement). asyncua sends the next Publish request only after the callback returns, so a
  slow historian backs up into the field server's monitored-item queues, not into our memory;
- on a lost connection (asyncua's watchdog, a closed socket, a Bad status notification) the
  connection's devices go offline and their tags Bad once, then it reconnects with `Backoff`
  and subscribes again (`reconnects` counts the re-established connections).

`browse()` and `import_nodes()` serve the API (server/api/routes/opcua.py): look through a
remote server and map chosen variables into the namespace.

Remote server certificates are accepted as the endpoint presents them (no trust list yet).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any, Self

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from server.bus import Event, Message, Subscription
from server.domain.errors import DomainError, InvalidInput, NotFound, Unavailable
from server.domain.namespace import DataType, DeviceStatus, NodeClass, check_browse_name
from server.domain.permissions import Permission
from server.domain.principal import Principal
from server.domain.quality import Quality
from server.ingest.adapter import Adapter, Backoff, IngestContext
from server.ingest.pipeline import AdapterStats, DeviceValues
from server.opcua.common import (
    CLIENT_APP_URI,
    DATA_TYPES,
    AttributeIds,
    ObjectIdNames,
    ObjectIds,
    UaError,
    UaStatusCodeError,
    boolean,
    ensure_certificate,
    epoch,
    number,
    quality_of,
    quiet_asyncua,
    std,
)
from server.services.connections import ConnectionService
from server.services.namespace import NamespaceService
from server.storage.repositories.connections import Connection
from server.storage.repositories.nodes import NodeSpec

log = logging.getLogger(__name__)

KIND = "opcua"
LOG_EVERY_S = 300.0
RESYNC_S = 60.0
"""Connections are also reloaded this often, so a deactivated tenant stops within it."""
"""A recurring problem of one connection (unreachable server, refused values) is logged this often."""


class SecurityPolicy(StrEnum):
    NONE = "None"
    BASIC256SHA256 = "Basic256Sha256"


class SecurityMode(StrEnum):
    NONE = "None"
    SIGN = "Sign"
    SIGN_AND_ENCRYPT = "SignAndEncrypt"


class Deadband(StrEnum):
    NONE = "none"
    ABSOLUTE = "absolute"
    PERCENT = "percent"
    """Percent of the remote variable's EURange; the field server must support it."""


_MODES = {
    SecurityMode.NONE: ua.MessageSecurityMode.None_,
    SecurityMode.SIGN: ua.MessageSecurityMode.Sign,
    SecurityMode.SIGN_AND_ENCRYPT: ua.MessageSecurityMode.SignAndEncrypt,
}


def _node_id(text: str) -> ua.NodeId:
    try:
        return ua.NodeId.from_string(text)
    except Exception:
        raise ValueError(f"{text!r} is not an OPC UA node id (e.g. ns=3;s=PLC1.Flow or i=2258)") from None


def _path(text: str) -> str:
    parts = [p for p in text.strip().strip("/").split("/") if p]
    if not parts:
        raise ValueError("device path is empty")
    try:
        return "/".join(check_browse_name(p) for p in parts)
    except InvalidInput as exc:
        raise ValueError(exc.detail) from None


class MappedItem(BaseModel):
    """One remote variable and the tag it feeds."""

    model_config = ConfigDict(extra="forbid")
    node_id: str = Field(max_length=1000, description="remote node id, e.g. ns=3;s=PLC1.Flow")
    device: str = Field(max_length=1000, description="device path in the tenant's namespace, e.g. Plant1/Pump7")
    tag: str = Field(max_length=100, description="tag browse name under the device")
    unit: str | None = Field(None, max_length=50)

    @field_validator("node_id")
    @classmethod
    def _check_node(cls, value: str) -> str:
        return _node_id(value).to_string()

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        return _path(value)

    @field_validator("tag")
    @classmethod
    def _check_tag(cls, value: str) -> str:
        try:
            return check_browse_name(value)
        except InvalidInput as exc:
            raise ValueError(exc.detail) from None


class ConnectionConfig(BaseModel):
    """A field OPC UA server of one tenant and what to read from it."""

    model_config = ConfigDict(extra="forbid")
    endpoint: str = Field(max_length=500, pattern=r"^opc\.tcp://[^\s/]+", description="opc.tcp://host:port[/path]")
    security_policy: SecurityPolicy = SecurityPolicy.NONE
    security_mode: SecurityMode = SecurityMode.NONE
    username: str | None = Field(None, max_length=200, description="empty: anonymous")
    password: str | None = Field(None, max_length=500)
    sampling_interval_ms: float = Field(1000.0, ge=0, le=3_600_000)
    publishing_interval_ms: float = Field(1000.0, ge=10, le=3_600_000)
    queue_size: int = Field(10, ge=1, le=10_000, description="values the server keeps per item between publishes")
    deadband: Deadband = Deadband.NONE
    deadband_value: float = Field(0.0, ge=0)
    timeout_s: float = Field(5.0, gt=0, le=120, description="request timeout")
    reconnect_min_s: float = Field(1.0, gt=0, le=600)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    items: list[MappedItem] = Field(default_factory=list, max_length=10_000)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.security_policy is SecurityPolicy.NONE) != (self.security_mode is SecurityMode.NONE):
            raise ValueError("security_mode must be None exactly when security_policy is None")
        if self.deadband is Deadband.PERCENT and self.deadband_value > 100:
            raise ValueError("a percent deadband is at most 100")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if self.password and not self.username:
            raise ValueError("a password needs a username")
        seen: set[tuple[str, str]] = set()
        for item in self.items:
            key = (item.device, item.tag)
            if key in seen:
                raise ValueError(f"tag {item.device}/{item.tag} is mapped twice")
            seen.add(key)
        return self


def build(ctx: IngestContext) -> list[Adapter]:
    """Always present: it idles until a tenant configures an OPC UA connection."""
    quiet_asyncua()
    return [OpcUaClientAdapter(ctx)]


# -- connecting ----------------------------------------------------------------------------


async def open_client(
    config: ConnectionConfig,
    cert_dir: Path | None,
    on_lost: Callable[[Exception], Coroutine[Any, Any, None]] | None = None,
) -> Client:
    """A connected asyncua client for the connection (its own reconnect is off: ours counts)."""
    client = Client(config.endpoint, timeout=config.timeout_s, watchdog_intervall=1.0)
    client.session_timeout = 120_000  # ms: how long the server keeps our session if we vanish
    client.application_uri = CLIENT_APP_URI
    client.name = client.description = "iiot-server"
    if config.username:
        client.set_user(config.username)
        client.set_password(config.password or "")
    if config.security_policy is SecurityPolicy.BASIC256SHA256:
        if cert_dir is None:
            raise InvalidInput("a secured connection needs the data directory for its certificate")
        creds = await asyncio.to_thread(ensure_certificate, cert_dir, "client", CLIENT_APP_URI, server=False)
        mode = _MODES[config.security_mode]
        await client.set_security(SecurityPolicyBasic256Sha256, creds.cert_der, creds.key_der, mode=mode)
    client.connection_lost_callback = on_lost
    await asyncio.wait_for(client.connect(), config.timeout_s * 3)
    return client


async def close_client(client: Client) -> None:
    """Disconnect politely when the server still answers, else just drop the socket."""
    try:
        await asyncio.wait_for(client.disconnect(), 2.0)
    except Exception:
        with suppress(Exception):
            client.disconnect_socket()


@asynccontextmanager
async def _session(config: ConnectionConfig, cert_dir: Path | None) -> AsyncIterator[Client]:
    client = await open_client(config, cert_dir)
    try:
        yield client
    finally:
        await close_client(client)


def describe(exc: BaseException) -> str:
    if isinstance(exc, UaStatusCodeError):
        return f"{type(exc).__name__} ({exc})"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}"


# -- browse and import (for the API) -------------------------------------------------------


async def browse(
    config: ConnectionConfig, node_id: str | None, *, cert_dir: Path | None = None
) -> list[dict[str, Any]]:
    """The children of a remote node (default: the Objects folder), one Browse and one Read."""
    start = _node_id(node_id) if node_id else std(ObjectIds.ObjectsFolder)
    async with _session(config, cert_dir) as client:
        refs = await client.get_node(start).get_children_descriptions()
        variables = [r for r in refs if r.NodeClass == ua.NodeClass.Variable]
        types: dict[str, str | None] = {}
        if variables:
            read = ua.ReadParameters(
                NodesToRead=[ua.ReadValueId(NodeId=r.NodeId, AttributeId=AttributeIds.DataType) for r in variables]
            )
            for ref, dv in zip(variables, await client.uaclient.read(read), strict=True):
                dtype = dv.Value.Value if dv.Value is not None else None
                types[ref.NodeId.to_string()] = _type_name(dtype) if isinstance(dtype, ua.NodeId) else None
    out = []
    for ref in refs:
        key = ref.NodeId.to_string()
        entry: dict[str, Any] = {
            "node_id": key, "browse_name": ref.BrowseName.to_string(), "display_name": ref.DisplayName.Text,
            "node_class": ref.NodeClass.name,
        }  # fmt: skip
        if ref.NodeClass == ua.NodeClass.Variable:
            entry["data_type"] = types.get(key)
        out.append(entry)
    return out


def _type_name(dtype: ua.NodeId) -> str:
    if dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int):
        return ObjectIdNames.get(dtype.Identifier, dtype.to_string())
    return dtype.to_string()


def _data_type(dtype: object) -> DataType:
    """A remote built-in numeric type we store as such; anything else is kept as Double."""
    if isinstance(dtype, ua.NodeId) and dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int):
        with suppress(ValueError):
            return DATA_TYPES.get(ua.VariantType(dtype.Identifier), DataType.DOUBLE)
    return DataType.DOUBLE


async def read_metadata(config: ConnectionConfig, node_ids: list[str], *, cert_dir: Path | None) -> list[NodeSpec]:
    """Tag specs for remote variables: data type, description, EngineeringUnits and EURange
    properties when the server has them (one TranslateBrowsePaths and one Read)."""
    ids = [_node_id(n) for n in node_ids]
    async with _session(config, cert_dir) as client:
        paths = [
            ua.BrowsePath(
                StartingNode=nid,
                RelativePath=ua.RelativePath(
                    Elements=[
                        ua.RelativePathElement(
                            ReferenceTypeId=std(ObjectIds.HasProperty),
                            IsInverse=boolean(False),  # asyncua's default is True
                            IncludeSubtypes=boolean(False),
                            TargetName=ua.QualifiedName(prop, 0),
                        )
                    ]
                ),
            )
            for nid in ids
            for prop in ("EngineeringUnits", "EURange")
        ]
        found = await client.uaclient.translate_browsepaths_to_nodeids(paths)
        to_read = []
        for i, nid in enumerate(ids):
            to_read += [
                ua.ReadValueId(NodeId=nid, AttributeId=AttributeIds.DataType),
                ua.ReadValueId(NodeId=nid, AttributeId=AttributeIds.Description),
            ]
            for res in found[2 * i : 2 * i + 2]:
                target = res.Targets[0].TargetId if res.StatusCode.is_good() and res.Targets else None
                to_read.append(ua.ReadValueId(NodeId=target or ua.NodeId(), AttributeId=AttributeIds.Value))
        values = await client.uaclient.read(ua.ReadParameters(NodesToRead=to_read))
    specs = []
    for i in range(len(ids)):
        status = values[4 * i].StatusCode
        if status is not None and not status.is_good():  # unknown node, or not a variable (it has no data type)
            raise InvalidInput(f"remote node {node_ids[i]}: {status.name}", field=f"items[{i}].node_id")
        dtype, desc, eu, rng = (dv.Value.Value if dv.Value is not None else None for dv in values[4 * i : 4 * i + 4])
        spec = NodeSpec(NodeClass.TAG, "x", data_type=_data_type(dtype))
        if isinstance(desc, ua.LocalizedText) and desc.Text:
            spec.description = desc.Text[:1000]
        if isinstance(eu, ua.EUInformation) and eu.DisplayName.Text:
            spec.unit = eu.DisplayName.Text[:50]
        if isinstance(rng, ua.Range) and math.isfinite(rng.Low) and math.isfinite(rng.High) and rng.Low < rng.High:
            spec.range_low, spec.range_high = rng.Low, rng.High
        specs.append(spec)
    return specs


async def import_nodes(
    namespace: NamespaceService,
    connections: ConnectionService,
    who: Principal,
    connection: Connection,
    items: list[MappedItem],
    *,
    cert_dir: Path | None = None,
) -> Connection:
    """Create the chosen remote variables as tags (unit, range, type and description read from
    the remote server, the item's unit winning) and add them to the connection's mapping; the
    connection's task re-subscribes when the update is announced."""
    who.require(Permission.NAMESPACE_WRITE)
    if connection.tenant_id != who.tenant_id or connection.kind != KIND:
        raise NotFound(f"OPC UA connection {connection.id} not found")
    if not items:
        raise InvalidInput("nothing to import", field="items")
    config = ConnectionConfig.model_validate(connection.config)
    merged = {(i.device, i.tag): i for i in config.items}
    merged |= {(i.device, i.tag): i for i in items}
    try:
        ConnectionConfig.model_validate(config.model_dump() | {"items": [i.model_dump() for i in merged.values()]})
    except ValidationError as exc:
        raise InvalidInput(f"items: {exc.errors()[0]['msg']}", field="items") from None
    try:
        specs = await read_metadata(config, [i.node_id for i in items], cert_dir=cert_dir)
    except UaStatusCodeError as exc:
        raise InvalidInput(f"{config.endpoint} refused: {describe(exc)}", field="items") from None
    except (OSError, TimeoutError, UaError) as exc:
        raise Unavailable(f"cannot read the nodes from {config.endpoint}: {describe(exc)}") from None
    by_device: dict[str, list[NodeSpec]] = {}
    for item, spec in zip(items, specs, strict=True):
        spec.browse_name, spec.display_name = item.tag, item.tag
        spec.unit = item.unit or spec.unit
        by_device.setdefault(item.device, []).append(spec)
    for device, tags in by_device.items():
        await namespace.ensure_device(who.tenant_id, device, tags, actor=who.subject)
    new_config = connection.config | {"items": [i.model_dump() for i in merged.values()]}
    return await connections.update(who, connection.id, new_config, None)


# -- the adapter ----------------------------------------------------------------------------


class OpcUaClientAdapter:
    """One task per enabled connection of every tenant, reconciled on `connections` events."""

    name = KIND

    def __init__(self, ctx: IngestContext) -> None:
        self.ctx = ctx
        self.links: dict[int, ConnectionLink] = {}
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._wake.set()
        self._subscription = self.ctx.bus.subscribe(None, self._on_message)
        self._task = asyncio.create_task(self._reconcile_loop(), name="opcua client reconcile")

    def _on_message(self, message: Message) -> None:
        if not isinstance(message, Event) or message.kind != "connections" or self._wake is None:
            return
        if message.data.get("connection_kind") == KIND:
            self._wake.set()

    async def _reconcile_loop(self) -> None:
        assert self._wake is not None
        while True:
            with suppress(TimeoutError):  # a periodic pass too: tenants deactivated meanwhile
                await asyncio.wait_for(self._wake.wait(), RESYNC_S)
            self._wake.clear()
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is down: try again shortly
                log.exception("opcua: cannot load the connections; retrying in 5 s")
                await asyncio.sleep(5)
                self._wake.set()

    async def reconcile(self) -> None:
        wanted: dict[int, Connection] = {}
        active: dict[int, bool] = {}
        for c in await self.ctx.connections.enabled_everywhere(KIND):
            if c.tenant_id not in active:
                try:
                    active[c.tenant_id] = (await self.ctx.tenants.get(c.tenant_id)).is_active
                except DomainError:
                    active[c.tenant_id] = False
            if active[c.tenant_id]:  # a deactivated tenant's field connections stop with it
                wanted[c.id] = c
        for cid, link in list(self.links.items()):
            conn = wanted.get(cid)
            if conn is None or conn.config != link.connection.config or conn.tenant_id != link.connection.tenant_id:
                del self.links[cid]
                await link.stop()
                if conn is None:  # deleted or disabled: nobody reads these devices any more
                    await link.retire()
        for cid, conn in wanted.items():
            if cid in self.links:
                continue
            try:
                config = ConnectionConfig.model_validate(conn.config)
            except ValidationError as exc:  # stored before a schema change: say so, don't run it
                self.ctx.stats(KIND, conn.tenant_id).rejected["invalid_config"] += 1
                log.error("opcua: connection %r of tenant %d is invalid: %s", conn.name, conn.tenant_id, exc)
                continue
            link = ConnectionLink(self.ctx, conn, config)
            self.links[cid] = link
            link.start()

    async def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        for link in list(self.links.values()):
            await link.stop()
        self.links.clear()


class ConnectionLink:
    """One field server: connect, subscribe, store, and come back after a loss."""

    def __init__(self, ctx: IngestContext, connection: Connection, config: ConnectionConfig) -> None:
        self.ctx, self.connection, self.config = ctx, connection, config
        self.tenant_id = connection.tenant_id
        self.label = f"tenant {connection.tenant_id} connection {connection.name!r} ({config.endpoint})"
        self.items = {handle: item for handle, item in enumerate(config.items, start=1)}
        self.devices = sorted({i.device for i in config.items})
        self.last: dict[int, float] = {}
        """Last good value per client handle: what a Bad sample carries."""
        self.bad: set[int] = set()
        self.connected = False
        self.connects = 0
        self.online: bool | None = None
        self.prepared = False
        self.failed_handles: dict[int, str] = {}
        self._logged: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"opcua {self.label}")

    async def stop(self) -> None:
        """Cancel until the task is gone: asyncua swallows a cancellation that arrives while it
        awaits its own tasks (Client._cancel_task), so one cancel() may not be enough."""
        self._stopping = True
        task = self._task
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)

    async def retire(self) -> None:
        """The connection is gone: its devices go offline and its tags Bad (once)."""
        try:
            await self._went_offline()
        except Exception as exc:
            log.warning("opcua %s: cannot mark the devices offline: %s", self.label, describe(exc))

    @property
    def stats(self) -> AdapterStats:
        return self.ctx.stats(KIND, self.tenant_id)

    def _log(self, key: str, message: str, *args: object, level: int = logging.WARNING) -> None:
        """Once per `key` every LOG_EVERY_S: a dead PLC must not fill the log."""
        now = time.monotonic()
        if now - self._logged.get(key, -math.inf) >= LOG_EVERY_S:
            self._logged[key] = now
            log.log(level, "opcua %s: " + message, self.label, *args)

    async def _run(self) -> None:
        backoff = Backoff(self.config.reconnect_min_s, self.config.reconnect_max_s)
        cert_dir = self.ctx.settings.data_dir / "opcua"
        while not self._stopping:
            lost = asyncio.Event()  # one per connection: a late callback of an old client can't hit the next

            async def on_lost(exc: Exception, lost: asyncio.Event = lost) -> None:
                lost.set()

            client: Client | None = None
            try:
                if not self.prepared:
                    await self._prepare()
                client = await open_client(self.config, cert_dir, on_lost)
                backoff.connected()
                self.connects += 1
                if self.connects > 1:
                    self.stats.reconnects += 1
                    log.info("opcua %s: reconnected", self.label)
                self._logged.pop("connect", None)
                await self._subscribe(client, lost)
                self.connected = True
                await self._set_status(DeviceStatus.ONLINE)
                await lost.wait()
                log.warning("opcua %s: connection lost", self.label)
            except asyncio.CancelledError:
                if client is not None:
                    await close_client(client)
                raise
            except Exception as exc:
                self.stats.rejected["connect_failed"] += 1
                self._log("connect", "cannot connect or subscribe: %s", describe(exc))
            self.connected = False
            if client is not None:
                await close_client(client)
            if self._stopping:
                return
            await self._went_offline()
            backoff.reset_if_stable()
            await asyncio.sleep(backoff.next_delay())

    async def _prepare(self) -> None:
        """The mapped devices and tags exist before the first value arrives."""
        by_device: dict[str, list[NodeSpec]] = {}
        for item in self.config.items:
            by_device.setdefault(item.device, []).append(NodeSpec(NodeClass.TAG, item.tag, unit=item.unit))
        for device, tags in by_device.items():
            await self.ctx.namespace.ensure_device(self.tenant_id, device, tags, actor=f"opcua:{self.connection.name}")
        self.prepared = True

    async def _subscribe(self, client: Client, lost: asyncio.Event) -> None:
        cfg = self.config
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=cfg.publishing_interval_ms,
            RequestedLifetimeCount=10_000,
            RequestedMaxKeepAliveCount=client.get_keepalive_count(cfg.publishing_interval_ms),
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        result = await client.uaclient.create_subscription(params, partial(self._on_publish, lost))
        if not self.items:
            return
        flt = None
        if cfg.deadband is not Deadband.NONE:
            flt = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue,
                DeadbandType=1 if cfg.deadband is Deadband.ABSOLUTE else 2,
                DeadbandValue=cfg.deadband_value,
            )
        requests = [
            ua.MonitoredItemCreateRequest(
                ItemToMonitor=ua.ReadValueId(
                    NodeId=ua.NodeId.from_string(item.node_id), AttributeId=AttributeIds.Value
                ),
                MonitoringMode=ua.MonitoringMode.Reporting,
                RequestedParameters=ua.MonitoringParameters(
                    ClientHandle=handle,
                    SamplingInterval=cfg.sampling_interval_ms,
                    Filter=flt,
                    QueueSize=cfg.queue_size,
                    DiscardOldest=True,
                ),
            )  # fmt: skip
            for handle, item in self.items.items()
        ]
        failed: dict[int, str] = {}
        for start in range(0, len(requests), 1000):
            chunk = requests[start : start + 1000]
            results = await client.uaclient.create_monitored_items(
                ua.CreateMonitoredItemsParameters(
                    SubscriptionId=result.SubscriptionId, ItemsToCreate=chunk,
                    TimestampsToReturn=ua.TimestampsToReturn.Both,
                )
            )  # fmt: skip
            for req, res in zip(chunk, results, strict=True):
                if not res.StatusCode.is_good():
                    failed[req.RequestedParameters.ClientHandle] = res.StatusCode.name
        fresh = {h: why for h, why in failed.items() if h not in self.failed_handles}
        self.failed_handles = failed
        if fresh:
            self.stats.rejected["bad_node"] += len(fresh)
            detail = "; ".join(f"{self.items[h].node_id}: {why}" for h, why in sorted(fresh.items()))
            log.warning("opcua %s: cannot monitor %d node(s): %s", self.label, len(fresh), detail)
            await self._mark_bad(list(fresh))

    async def _on_publish(self, lost: asyncio.Event, result: ua.PublishResult) -> None:
        """One Publish response: its data changes are one batch; a Bad status change is a loss."""
        pairs: list[tuple[int, ua.DataValue]] = []
        for note in result.NotificationMessage.NotificationData or ():
            if isinstance(note, ua.DataChangeNotification):
                pairs += [(mi.ClientHandle, mi.Value) for mi in note.MonitoredItems]
            elif isinstance(note, ua.StatusChangeNotification) and not note.Status.is_good():
                lost.set()
        if pairs:
            try:
                await self._store(pairs)
            except Exception:  # never let a bug stop the publish loop
                log.exception("opcua %s: could not handle a notification", self.label)

    def _stamp(self, dv: ua.DataValue, now: float) -> float:
        latest_ok = now + self.ctx.settings.max_future_skew_s
        for stamp in (dv.SourceTimestamp, dv.ServerTimestamp):
            ts = epoch(stamp)
            if ts is not None and ts <= latest_ok:
                return ts
            if ts is not None:
                self._log("clock", "timestamp %s is in the future; using the next best time", stamp)
        return now

    async def _store(self, pairs: list[tuple[int, ua.DataValue]]) -> None:
        now = time.time()
        groups: dict[tuple[str, float, Quality], dict[str, float]] = {}
        turned_bad: list[int] = []
        for handle, dv in pairs:
            item = self.items.get(handle)
            if item is None:
                continue
            quality = quality_of(dv.StatusCode)
            ts = self._stamp(dv, now)
            if quality is Quality.BAD:
                value = self.last.get(handle, 0.0)
                turned_bad.append(handle)
            else:
                raw = dv.Value.Value if dv.Value is not None else None
                parsed = number(raw)
                if parsed is None:
                    self.stats.received += 1
                    self.stats.rejected["not_a_number"] += 1
                    self._log(f"nan:{handle}", "%s sent %r, not a number; ignored", item.node_id, raw)
                    continue
                value = self.last[handle] = parsed
                self.bad.discard(handle)
            group = groups.setdefault((item.device, ts, quality), {})
            if item.tag in group:  # the same tag twice at one instant (a queue): keep each value
                groups[(item.device, math.nextafter(ts, math.inf), quality)] = {item.tag: value}
            else:
                group[item.tag] = value
        items = [DeviceValues(dev, values, ts, q) for (dev, ts, q), values in groups.items()]
        if items and await self._ingest(items):
            self.bad.update(turned_bad)

    async def _ingest(self, items: list[DeviceValues]) -> bool:
        """One pipeline call (one commit) per batch; a refusal is dead-lettered, never raised."""
        for attempt in (1, 2):
            try:
                await self.ctx.pipeline.ingest(self.tenant_id, items, source=KIND)
                return True
            except NotFound as exc:  # a mapped device or tag was deleted: recreate it once
                if attempt == 1:
                    with suppress(Exception):
                        await self._prepare()
                    continue
                await self._refused(exc, items)
            except DomainError as exc:
                await self._refused(exc, items)
            except Exception as exc:  # the historian failed: counted by the writer, logged here
                self.stats.rejected["store_failed"] += 1
                self._log("store", "values could not be stored: %s", describe(exc))
            return False
        return False

    async def _refused(self, exc: DomainError, items: list[DeviceValues]) -> None:
        payload = json.dumps([{"device": i.device, "ts": i.ts, "values": i.values} for i in items]).encode()
        await self.ctx.refused(KIND, self.tenant_id, self.label, exc, payload)

    async def _mark_bad(self, handles: list[int]) -> None:
        """One Bad sample per tag when it turns Bad, carrying its last good value."""
        fresh = [h for h in handles if h not in self.bad]
        if not fresh or not self.prepared:
            return
        now = time.time()
        by_device: dict[str, dict[str, float]] = {}
        for h in fresh:
            item = self.items[h]
            by_device.setdefault(item.device, {})[item.tag] = self.last.get(h, 0.0)
        if await self._ingest([DeviceValues(d, v, now, Quality.BAD) for d, v in by_device.items()]):
            self.bad.update(fresh)

    async def _went_offline(self) -> None:
        if self.online is False:
            return
        await self._mark_bad(list(self.items))
        await self._set_status(DeviceStatus.OFFLINE)

    async def _set_status(self, status: DeviceStatus) -> None:
        ok = True
        for device in self.devices:
            try:
                await self.ctx.namespace.set_device_status(self.tenant_id, device, status)
            except NotFound:
                self.prepared = ok = False
            except Exception as exc:
                ok = False
                self._log("status", "cannot set device status %s: %s", status.value, describe(exc))
        if ok:
            self.online = status is DeviceStatus.ONLINE
