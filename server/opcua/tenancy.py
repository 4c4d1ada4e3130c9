"""Per-session tenancy for the asyncua server: platform logins, filtered views, role checks.

asyncua has no per-session view of the address space and no asynchronous user check, so the
server is assembled from subclasses of its internal classes (pinned asyncua 2.1):

- `TenantProcessor` (a `UaProcessor`) checks the username and password of an ActivateSession
  against the platform *before* asyncua's synchronous `activate_session` runs (a password
  check needs the database and bcrypt, which must not block the loop); the user manager's
  `get_user` cannot await.
- `TenantSession` (an `InternalSession`, created by `TenantInternalServer.create_session`) then
  holds the platform `Principal` and filters every service by tenant: Browse drops references
  to other tenants' nodes, Read/HistoryRead/CreateMonitoredItems/TranslateBrowsePaths answer
  BadNodeIdUnknown for them, Write and Call are decided here by the caller's permissions
  (asyncua's method callbacks never learn who calls). Subscription services accept only the
  session's own subscriptions (asyncua itself lets any session delete, modify, acknowledge or
  take over any subscription id), and TransferSubscriptions only between sessions of one user.
  Alarm conditions (ConditionIds, and their nodes when they are nodes) are seen only with
  `alarms.read`; calls of the standard condition methods with a ConditionId (and
  ConditionRefresh) go to `condition_methods.ConditionMethods` with the caller's principal.
  Event monitored items get a Part 4 WhereClause (event_filter.py); alarm events ask
  `principal_of` whether a session's user, checked again like a request, may still have them.
- `TenantServer` / `TenantBinaryServer` / `TenantProtocol` only exist to put the processor in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import uacrypto
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession
from asyncua.server.internal_subscription import InternalSubscription
from asyncua.server.server import Server
from asyncua.server.uaprocessor import UaProcessor
from asyncua.server.user_managers import UserManager
from asyncua.ua.ua_binary import struct_from_binary

from server.domain.namespace import DeviceStatus
from server.domain.permissions import Permission
from server.domain.principal import Principal
from server.domain.quality import Quality
from server.opcua.common import AttributeIds, ObjectIds, StatusCodes, bad, epoch, number, quality_of, std
from server.opcua.condition_methods import ConditionMethods
from server.opcua.event_filter import use_part4_where
from server.opcua.mirror import DeviceRef, Registry, TagRef

log = logging.getLogger(__name__)

PRINCIPAL_TTL_S = 5.0
"""A disabled user or a changed role reaches open sessions within this long (as on HTTP)."""

_ACTIVATE = std(ObjectIds.ActivateSessionRequest_Encoding_DefaultBinary)


class Gate(Protocol):
    """What sessions need from the server core (whose calls reach the platform's loop)."""

    registry: Registry
    alarm_methods: ConditionMethods | None
    """The Part 9 condition methods; None when the server has no alarm service."""

    async def authenticate(self, tenant: str, username: str, password: str, address: str) -> Principal:
        """The platform's password check; raises a DomainError when refused."""

    async def refresh(self, principal: Principal) -> Principal:
        """The principal again from the database; raises when the user or tenant is gone or disabled."""

    async def ingest(self, principal: Principal, rows: list[tuple[TagRef, float, float, Quality]]) -> ua.StatusCode:
        """Written values through the ingest pipeline, all or nothing."""

    async def set_status(self, principal: Principal, device: DeviceRef, status: DeviceStatus) -> ua.StatusCode: ...

    def refused(self, tenant: str | None, reason: str) -> None:
        """Count a refused request (the platform's ingest counters, source "opcua_server")."""


class _NamedUsers(UserManager):
    """asyncua's synchronous user hook: the real check already ran in TenantProcessor."""

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        return User(role=UserRole.User, name=username) if username else None


class TenantInternalServer(InternalServer):
    def __init__(self, gate: Gate) -> None:
        super().__init__(user_manager=_NamedUsers())
        self.gate = gate
        self.owners: dict[ua.NodeId, tuple[int, int | None]] = {}
        """Session id -> (tenant, user) of every activated session: who may take over its subscriptions."""
        self.sessions: dict[ua.NodeId, TenantSession] = {}
        """Activated sessions by session id: whose subscription an alarm event may reach."""

    async def principal_of(self, session_id: ua.NodeId, tenant_id: int) -> Principal | None:
        """The user of a session of that tenant, checked again like any request of the session
        (`PRINCIPAL_TTL_S`): a disabled user or one who lost a permission stops receiving alarm
        events although a subscribed client sends nothing but Publish. None for other sessions."""
        session = self.sessions.get(session_id)
        if session is None or session.principal is None or session.principal.tenant_id != tenant_id:
            return None
        return await session.current()

    def create_session(
        self,
        name: str,
        user: User = User(role=UserRole.Anonymous),
        external: bool = False,  # noqa: B008
    ) -> InternalSession:
        return TenantSession(self, self.aspace, self.subscription_service, name, user=user, external=external)


class TenantSession(InternalSession):
    """A client session: one platform user, one tenant, filtered services."""

    iserver: TenantInternalServer

    def __init__(self, iserver: TenantInternalServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(iserver, *args, **kwargs)
        self.gate = iserver.gate
        self.pending: Principal | None = None
        self.principal: Principal | None = None
        self.checked_at = 0.0

    # -- identity -----------------------------------------------------------------------------------

    def activate_session(
        self, params: ua.ActivateSessionParameters, peer_certificate: bytes | None
    ) -> ua.ActivateSessionResult:
        principal, self.pending = self.pending, None
        if principal is None:  # not authenticated by the processor: never happens for a client
            raise ServiceError(StatusCodes.BadUserAccessDenied)
        result = super().activate_session(params, peer_certificate)
        self.principal, self.checked_at = principal, time.monotonic()
        self.user = User(role=UserRole.User, name=f"{principal.tenant_name}/{principal.subject}")
        self.iserver.owners[self.session_id] = (principal.tenant_id, principal.user_id)
        self.iserver.sessions[self.session_id] = self
        return result

    async def close_session(self, delete_subs: bool = True) -> None:
        self.iserver.sessions.pop(self.session_id, None)
        await super().close_session(delete_subs)
        if not any(s.session_id == self.session_id for s in self.subscription_service.subscriptions.values()):
            self.iserver.owners.pop(self.session_id, None)

    async def _who(self) -> Principal:
        principal = self.principal
        if principal is None:
            raise ServiceError(StatusCodes.BadUserAccessDenied)
        if time.monotonic() - self.checked_at > PRINCIPAL_TTL_S:
            try:
                principal = await self.gate.refresh(principal)
            except Exception:
                self.principal = None
                log.info("opcua server: session of %s ended: the user or tenant is gone or disabled", self.user.name)
                raise ServiceError(StatusCodes.BadUserAccessDenied) from None
            self.principal, self.checked_at = principal, time.monotonic()
        return principal

    async def current(self) -> Principal | None:
        """`_who` for the server's own use: None instead of a ServiceError once the user is gone."""
        try:
            return await self._who()
        except ServiceError:
            return None

    def _visible(self, who: Principal, nodeid: ua.NodeId) -> bool:
        reg = self.gate.registry
        owner = reg.owner(nodeid)
        if owner is None:
            return True
        if owner != who.tenant_id or not who.can(Permission.NAMESPACE_READ):
            return False
        return who.can(Permission.ALARMS_READ) or not reg.is_alarm(nodeid)

    # -- views --------------------------------------------------------------------------------------

    async def browse(self, params: ua.BrowseParameters) -> list[ua.BrowseResult]:
        who = await self._who()
        shown = [i for i, d in enumerate(params.NodesToBrowse) if self._visible(who, d.NodeId)]
        found = await super().browse(
            ua.BrowseParameters(
                View=params.View, RequestedMaxReferencesPerNode=params.RequestedMaxReferencesPerNode,
                NodesToBrowse=[params.NodesToBrowse[i] for i in shown],
            )
        )  # fmt: skip
        out = [ua.BrowseResult(StatusCode=bad(StatusCodes.BadNodeIdUnknown)) for _ in params.NodesToBrowse]
        for i, res in zip(shown, found, strict=True):
            res.References = [r for r in res.References if self._visible(who, r.NodeId)]
            out[i] = res
        return out

    async def translate_browsepaths_to_nodeids(self, params: list[ua.BrowsePath]) -> list[ua.BrowsePathResult]:
        who = await self._who()
        results = await super().translate_browsepaths_to_nodeids(params)
        out = []
        for path, res in zip(params, results, strict=True):
            if not self._visible(who, path.StartingNode):
                res = ua.BrowsePathResult(StatusCode=bad(StatusCodes.BadNodeIdUnknown))
            elif res.StatusCode.is_good():
                res.Targets = [t for t in res.Targets if self._visible(who, t.TargetId)]
                if not res.Targets:
                    res.StatusCode = bad(StatusCodes.BadNoMatch)
            out.append(res)
        return out

    async def read(self, params: ua.ReadParameters) -> list[ua.DataValue]:
        who = await self._who()
        shown = [i for i, rv in enumerate(params.NodesToRead) if self._visible(who, rv.NodeId)]
        sub = ua.ReadParameters(
            MaxAge=params.MaxAge, TimestampsToReturn=params.TimestampsToReturn,
            NodesToRead=[params.NodesToRead[i] for i in shown],
        )  # fmt: skip
        found = await super().read(sub) if shown else []
        out = [ua.DataValue(StatusCode=bad(StatusCodes.BadNodeIdUnknown)) for _ in params.NodesToRead]
        for i, dv in zip(shown, found, strict=True):
            out[i] = self._personal(who, params.NodesToRead[i], dv)
        return out

    def _personal(self, who: Principal, rv: ua.ReadValueId, dv: ua.DataValue) -> ua.DataValue:
        """UserAccessLevel and UserExecutable say what this user may do (stored ones are static)."""
        reg = self.gate.registry
        if rv.AttributeId == AttributeIds.UserAccessLevel and rv.NodeId in reg.tags:
            level = ua.AccessLevel.CurrentRead.mask
            if who.can(Permission.TELEMETRY_WRITE):
                level |= ua.AccessLevel.CurrentWrite.mask
            if who.can(Permission.HISTORY_READ):
                level |= ua.AccessLevel.HistoryRead.mask
            return ua.DataValue(ua.Variant(level, ua.VariantType.Byte))
        if rv.AttributeId == AttributeIds.UserExecutable and rv.NodeId in reg.methods:
            return ua.DataValue(ua.Variant(who.can(Permission.TELEMETRY_WRITE), ua.VariantType.Boolean))
        alarm_methods = self.gate.alarm_methods
        if rv.AttributeId == AttributeIds.UserExecutable and alarm_methods is not None:
            needed = alarm_methods.permission(rv.NodeId)  # the standard condition methods (shared type nodes)
            if needed is not None:
                return ua.DataValue(ua.Variant(who.can(needed), ua.VariantType.Boolean))
        return dv

    async def history_read(self, params: ua.HistoryReadParameters) -> list[ua.HistoryReadResult]:
        who = await self._who()
        out: list[ua.HistoryReadResult | None] = []
        shown: list[int] = []
        for i, rv in enumerate(params.NodesToRead):
            if not self._visible(who, rv.NodeId):
                out.append(ua.HistoryReadResult(StatusCode=bad(StatusCodes.BadNodeIdUnknown)))
            elif rv.NodeId not in self.gate.registry.tags:
                out.append(ua.HistoryReadResult(StatusCode=bad(StatusCodes.BadHistoryOperationUnsupported)))
            elif not who.can(Permission.HISTORY_READ):
                out.append(ua.HistoryReadResult(StatusCode=bad(StatusCodes.BadUserAccessDenied)))
            else:
                out.append(None)
                shown.append(i)
        if shown:
            sub = ua.HistoryReadParameters(
                HistoryReadDetails=params.HistoryReadDetails, TimestampsToReturn=params.TimestampsToReturn,
                ReleaseContinuationPoints=params.ReleaseContinuationPoints,
                NodesToRead=[params.NodesToRead[i] for i in shown],
            )  # fmt: skip
            for i, res in zip(shown, await super().history_read(sub), strict=True):
                out[i] = res
        return [r for r in out if r is not None]

    # -- writes and calls ---------------------------------------------------------------------------

    async def write(self, params: ua.WriteParameters) -> list[ua.StatusCode]:
        """A tag's Value written by a user who may write telemetry goes through the ingest
        pipeline like any field value; nothing else in the address space is writable."""
        who = await self._who()
        reg = self.gate.registry
        out: list[ua.StatusCode] = []
        rows: list[tuple[TagRef, float, float, Quality]] = []
        at: list[int] = []
        now = time.time()
        for i, wv in enumerate(params.NodesToWrite):
            ref = reg.tags.get(wv.NodeId)
            if not self._visible(who, wv.NodeId):
                out.append(bad(StatusCodes.BadNodeIdUnknown))
            elif ref is None or wv.AttributeId != AttributeIds.Value:
                out.append(bad(StatusCodes.BadNotWritable if ref is not None else StatusCodes.BadUserAccessDenied))
            elif not who.can(Permission.TELEMETRY_WRITE):
                self.gate.refused(who.tenant_name, "write_denied")
                out.append(bad(StatusCodes.BadUserAccessDenied))
            else:
                dv = wv.Value
                value = number(dv.Value.Value if dv.Value is not None else None)
                quality = quality_of(dv.StatusCode)
                if value is None and quality is not Quality.BAD:
                    out.append(bad(StatusCodes.BadTypeMismatch))
                    continue
                rows.append((ref, epoch(dv.SourceTimestamp) or now, value if value is not None else 0.0, quality))
                at.append(i)
                out.append(ua.StatusCode())
        if rows:
            status = await self.gate.ingest(who, rows)
            for i in at:
                out[i] = status
        return out

    async def call(self, params: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        """SetStatus on a device of the caller's tenant, as `PUT /devices/{id}/status` allows, and
        the alarm conditions' methods as the AlarmService allows; asyncua's own methods
        (GetMonitoredItems, ...) are not offered to clients."""
        who = await self._who()
        reg = self.gate.registry
        alarm_methods = self.gate.alarm_methods
        out = []
        for req in params:
            res = ua.CallMethodResult()
            device = reg.methods.get(req.MethodId)
            args = req.InputArguments or []
            if not (self._visible(who, req.ObjectId) and self._visible(who, req.MethodId)):
                res.StatusCode = bad(StatusCodes.BadNodeIdUnknown)
            elif alarm_methods is not None and alarm_methods.handles(req.MethodId):
                res = await alarm_methods.call(who, req, self._own_subscription)
            elif reg.is_alarm(req.MethodId):  # a condition has no method nodes: the standard ids are its methods
                res.StatusCode = bad(StatusCodes.BadMethodInvalid)
            elif device is None:
                res.StatusCode = bad(StatusCodes.BadUserAccessDenied)
            elif device != req.ObjectId:
                res.StatusCode = bad(StatusCodes.BadMethodInvalid)
            elif len(args) != 1:
                res.StatusCode = bad(StatusCodes.BadArgumentsMissing if not args else StatusCodes.BadTooManyArguments)
            elif not isinstance(args[0].Value, str) or args[0].Value not in {s.value for s in DeviceStatus}:
                res.StatusCode = bad(StatusCodes.BadInvalidArgument)
                res.InputArgumentResults = [bad(StatusCodes.BadInvalidArgument)]
            elif not who.can(Permission.TELEMETRY_WRITE):
                res.StatusCode = bad(StatusCodes.BadUserAccessDenied)
            else:
                res.StatusCode = await self.gate.set_status(who, reg.devices[device], DeviceStatus(args[0].Value))
                res.InputArgumentResults = [ua.StatusCode()]
            out.append(res)
        return out

    # -- subscriptions: only the session's own ------------------------------------------------------------

    def _own(self, subscription_id: int) -> bool:
        return self._own_subscription(subscription_id) is not None

    def _own_subscription(self, subscription_id: int) -> InternalSubscription | None:
        sub = self.subscription_service.subscriptions.get(subscription_id)
        return sub if sub is not None and sub.session_id == self.session_id else None

    def _require_own(self, subscription_id: int) -> None:
        if not self._own(subscription_id):
            raise ServiceError(StatusCodes.BadSubscriptionIdInvalid)

    async def create_subscription(
        self,
        params: ua.CreateSubscriptionParameters,
        callback: Callable[..., Any],
        request_callback: Callable[..., Any] | None = None,
    ) -> ua.CreateSubscriptionResult:
        await self._who()
        return await super().create_subscription(params, callback, request_callback)

    async def create_monitored_items(
        self, params: ua.CreateMonitoredItemsParameters
    ) -> list[ua.MonitoredItemCreateResult]:
        who = await self._who()
        self._require_own(params.SubscriptionId)
        shown = [i for i, it in enumerate(params.ItemsToCreate) if self._visible(who, it.ItemToMonitor.NodeId)]
        out = [ua.MonitoredItemCreateResult(StatusCode=bad(StatusCodes.BadNodeIdUnknown)) for _ in params.ItemsToCreate]
        if shown:
            sub = ua.CreateMonitoredItemsParameters(
                SubscriptionId=params.SubscriptionId, TimestampsToReturn=params.TimestampsToReturn,
                ItemsToCreate=[params.ItemsToCreate[i] for i in shown],
            )  # fmt: skip
            for i, res in zip(shown, await super().create_monitored_items(sub), strict=True):
                out[i] = res
            self._part4_where(params.SubscriptionId, [r.MonitoredItemId for r in out if r.StatusCode.is_good()])
        return out

    async def modify_monitored_items(
        self, params: ua.ModifyMonitoredItemsParameters
    ) -> list[ua.MonitoredItemModifyResult]:
        self._require_own(params.SubscriptionId)
        results = await super().modify_monitored_items(params)
        self._part4_where(params.SubscriptionId, [i.MonitoredItemId for i in params.ItemsToModify])
        return results

    def _part4_where(self, subscription_id: int, monitored_item_ids: list[int]) -> None:
        sub = self._own_subscription(subscription_id)
        if sub is not None:
            use_part4_where(sub.monitored_item_srv, monitored_item_ids)

    async def set_monitoring_mode(self, params: ua.SetMonitoringModeParameters) -> list[ua.StatusCode]:
        self._require_own(params.SubscriptionId)
        return await super().set_monitoring_mode(params)

    async def delete_monitored_items(self, params: ua.DeleteMonitoredItemsParameters) -> list[ua.StatusCode]:
        self._require_own(params.SubscriptionId)
        return await super().delete_monitored_items(params)

    def modify_subscription(self, params: ua.ModifySubscriptionParameters) -> ua.ModifySubscriptionResult:
        self._require_own(params.SubscriptionId)
        return super().modify_subscription(params)

    def republish(self, params: ua.RepublishParameters) -> ua.NotificationMessage:
        self._require_own(params.SubscriptionId)
        return super().republish(params)

    async def delete_subscriptions(self, ids: list[int]) -> list[ua.StatusCode]:
        own = [i for i in ids if self._own(i)]
        done = dict(zip(own, await super().delete_subscriptions(own), strict=True)) if own else {}
        return [done.get(i, bad(StatusCodes.BadSubscriptionIdInvalid)) for i in ids]

    async def set_publishing_mode(self, params: ua.SetPublishingModeParameters) -> list[ua.StatusCode]:
        ids = list(params.SubscriptionIds)
        own = [i for i in ids if self._own(i)]
        done: dict[int, ua.StatusCode] = {}
        if own:
            sub = ua.SetPublishingModeParameters(PublishingEnabled=params.PublishingEnabled, SubscriptionIds=own)
            done = dict(zip(own, await super().set_publishing_mode(sub), strict=True))
        return [done.get(i, bad(StatusCodes.BadSubscriptionIdInvalid)) for i in ids]

    def publish(self, acks: Iterable[ua.SubscriptionAcknowledgement] | None = None) -> tuple[int, list[ua.StatusCode]]:
        acks = list(acks or [])
        own = [a for a in acks if self._own(a.SubscriptionId)]
        count, results = super().publish(own)
        by_ack = dict(zip((id(a) for a in own), results, strict=True))
        return count, [by_ack.get(id(a), bad(StatusCodes.BadSubscriptionIdInvalid)) for a in acks]

    async def transfer_subscriptions(  # type: ignore[override]
        self, params: ua.TransferSubscriptionsParameters, callback: Callable[..., Any]
    ) -> list[ua.TransferResult]:
        """Only the user who created a subscription (on another session) may take it over."""
        who = await self._who()
        mine = (who.tenant_id, who.user_id)
        subs = self.subscription_service.subscriptions
        allowed = [
            i for i in params.SubscriptionIds
            if (s := subs.get(int(i))) is not None and self.iserver.owners.get(s.session_id) == mine
        ]  # fmt: skip
        done: dict[int, ua.TransferResult] = {}
        if allowed:
            sub = ua.TransferSubscriptionsParameters(
                SubscriptionIds=allowed, SendInitialValues=params.SendInitialValues
            )
            done = dict(zip(allowed, await super().transfer_subscriptions(sub, callback), strict=True))
        return [
            done.get(i, ua.TransferResult(StatusCode=bad(StatusCodes.BadUserAccessDenied)))
            for i in params.SubscriptionIds
        ]


class TenantProcessor(UaProcessor):
    """Authenticates ActivateSession against the platform before asyncua handles it."""

    async def _process_message(self, typeid: ua.NodeId, requesthdr: Any, seqhdr: Any, body: Any) -> Any:
        if typeid == _ACTIVATE:
            session = self.session or self.iserver.lookup_external_session(requesthdr.AuthenticationToken)
            if isinstance(session, TenantSession):
                params = struct_from_binary(ua.ActivateSessionParameters, body.copy())
                session.pending = await self._authenticate(session, params.UserIdentityToken)
        return await super()._process_message(typeid, requesthdr, seqhdr, body)  # type: ignore[no-untyped-call]

    async def _authenticate(self, session: TenantSession, token: object) -> Principal:
        if not isinstance(token, ua.UserNameIdentityToken):  # anonymous and certificates: refused
            session.gate.refused(None, "login_refused")
            raise ServiceError(StatusCodes.BadIdentityTokenRejected)
        try:
            username, password = self.iserver.decrypt_user_token(session, token)
        except Exception:
            session.gate.refused(None, "login_refused")
            raise ServiceError(StatusCodes.BadIdentityTokenInvalid) from None
        tenant, _, user = (username or "").partition("/")
        address = str(self.name[0]) if isinstance(self.name, tuple) else str(self.name)
        if not tenant or not user:
            session.gate.refused(None, "login_refused")
            log.info("opcua server: refused login %r from %s: the username must be <tenant>/<user>", username, address)
            raise ServiceError(StatusCodes.BadUserAccessDenied)
        try:
            return await session.gate.authenticate(tenant, user, password or "", address)
        except Exception as exc:
            log.info("opcua server: refused login %r from %s: %s", username, address, exc)
            raise ServiceError(StatusCodes.BadUserAccessDenied) from None


class TenantProtocol(OPCUAProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.processor is not None:  # replaced before the first message is read
            self.processor = TenantProcessor(self.iserver, self.transport, self.limits)
            self.processor.set_policies(self.policies)  # type: ignore[no-untyped-call]


class TenantBinaryServer(BinaryServer):
    def _make_protocol(self) -> OPCUAProtocol:
        return TenantProtocol(
            iserver=self.iserver, policies=self._policies, clients=self.clients, closing_tasks=self.closing_tasks,
            limits=self.limits,
        )  # fmt: skip


class TenantServer(Server):
    """asyncua's Server with the tenancy classes; `start` is asyncua's with our binary server."""

    def __init__(self, gate: Gate) -> None:
        self.tenant_iserver = TenantInternalServer(gate)
        super().__init__(iserver=self.tenant_iserver)

    async def start(self) -> None:
        if self.iserver.certificate is not None:
            uacrypto.check_certificate(self.iserver.certificate, self._application_uri, None)
        await self._setup_server_nodes()
        await self.iserver.start()
        try:
            host, port = self._get_bind_socket_info()
            self.bserver = TenantBinaryServer(self.iserver, host or "", port or 0, self.limits)
            self.bserver.set_policies(self._policies)
            await self.bserver.start()
        except Exception:
            await self.iserver.stop()
            raise
