"""The platform's alarms as OPC UA Part 9 conditions of each tenant, and their events.

asyncua 2.1 has no server-side condition model, so this builds one beside its address space:

- **Conditions without nodes** (the default, `opcua_condition_nodes` false). Part 9 lets a
  server keep conditions out of its AddressSpace; a condition is then its ConditionId
  `ns=2;s=<tenant>;Alarm;<condition id>` (the event's `NodeId` field), its events, ConditionRefresh
  and the standard method ids called with ObjectId = ConditionId (condition_methods.py). asyncua
  keeps every attribute of every node as its own objects: the ~50 nodes of a condition cost
  about 400 KB, which a plant's tens of thousands of conditions cannot afford. Here a condition
  costs its field values and its last event, a few KB (docs/opcua.md has the figures).
- **Nodes** (`opcua_condition_nodes` true, for small systems). Each condition is also an object
  with that id, of its type (condition_model.py), a component (HasComponent) of the object
  holding its source — the tag's device (or folder), the device of an anomaly condition, the
  tenant folder while the source is unresolved — with a HasCondition reference from the source
  itself. Its variables are `<condition>;<path>` (`...;ActiveState;Id`) and follow the alarm.
  There are no per-instance method nodes in either mode: the standard method ids do the same
  for a fraction of the memory (12 methods and their InputArguments were 20 of 69 nodes).
- **Events.** Every alarm transition fires an event of the condition's type with a fresh
  EventId, delivered to the event monitored items of the tenant's sessions (holding
  `alarms.read`) along the notifier chain: the condition node (with nodes), the object holding
  its source and every object above it in the tenant's tree, the Server object. asyncua
  delivers an event only to the emitting node's monitored items, of every session; here each
  subscription's owner is checked first (its user as of now: `PrincipalOf`).
- **Masked alarms** change their process condition without a bus event: the server core reads
  them again every second (`masked`, `apply`) so that ActiveState follows under a mask.
- **ConditionRefresh** re-sends the retained conditions' last events (same EventIds) between a
  RefreshStartEvent and a RefreshEndEvent, to the calling subscription only.
- **EventIds** are a random prefix per condition and a counter, so that Acknowledge and
  AddComment can recognise the last `KNOWN_EVENT_IDS` of them (`event_known`) from two numbers
  instead of a list of ids per condition.

Everything runs on the OPC UA server's loop; the platform is asked through `fetch` (a bridge).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from asyncua import ua
from asyncua.server.internal_subscription import InternalSubscription
from asyncua.server.server import Server

from server.domain.permissions import Permission
from server.domain.principal import Principal
from server.opcua.common import AttributeIds, ObjectIds, StatusCodes, bad, std, to_datetime
from server.opcua.condition_model import (
    OBJECT,
    PROP,
    Child,
    ConditionInfo,
    Memo,
    children,
    field_values,
    masked,
    presented_active,
    unshelve_time_ms,
)
from server.opcua.event_filter import FieldEvent
from server.opcua.mirror import ALARM_INFIX, Built, ConditionRef, Mirror, Registry

log = logging.getLogger(__name__)

SERVER = std(ObjectIds.Server)
KNOWN_EVENT_IDS = 256
"""A condition's last EventIds that AddComment accepts (Acknowledge: those since the last raise)."""
PREFIX_BYTES = 8
"""EventId = a random prefix per condition (per server run) + the condition's event counter."""
RAISES = ("activated", "escalated")
PRESENTED = ("state", "active", "acked", "condition", "latched", "retained", "severity", "message", "shelving",
             "shelved_until", "suppressed", "out_of_service", "enabled", "level", "first_out")  # fmt: skip
"""A change of any of these is an event even when the bus message named no transition."""
UNSHELVE_TIME = "ShelvingState/UnshelveTime"

PrincipalOf = Callable[[ua.NodeId, int], Awaitable[Principal | None]]
"""The current user of a session (by session id) of that tenant; None when it has none (not
activated, closed, disabled) or is another tenant's."""
Fetch = Callable[[int, frozenset[int] | None], Awaitable[list[ConditionInfo]]]
"""A tenant's conditions (all, or those ids) from the platform's alarm engine."""


@dataclass(slots=True)
class Placement:
    """Where a condition is in its tenant's tree: the mirror's objects it hangs from, the
    notifiers its events reach, and its nodes when conditions are exposed as nodes."""

    owner: Built
    """The object holding its source (the tenant folder while the source is unresolved)."""
    source: Built | None
    chain: tuple[ua.NodeId, ...]
    """The notifiers its events reach: the condition node (only with nodes), the owner and the
    objects above it, the Server object."""
    nodes: dict[str, ua.NodeId] | None = None
    """Child path -> node id ("" is the condition itself); None without nodes."""


@dataclass(slots=True)
class Condition:
    info: ConditionInfo
    node: ua.NodeId
    """The ConditionId (a node id whether or not the node exists)."""
    memo: Memo
    prefix: bytes
    """The first PREFIX_BYTES of each of its EventIds."""
    placement: Placement | None = None
    values: dict[str, ua.Variant] = field(default_factory=dict)
    last_event: FieldEvent | None = None
    serial: int = 0
    """The number of its latest EventId (the one in `memo`)."""
    ack_from: int = 0
    """The first EventId number an Acknowledge may name: the alarm's last raise (an older one
    would acknowledge a state its sender never saw)."""

    @property
    def ref(self) -> ConditionRef:
        return ConditionRef(self.info.tenant_id, self.info.id, self.node)

    @property
    def retained(self) -> bool:
        retain = self.values.get("Retain")
        return bool(retain is not None and retain.Value)

    def next_event_id(self, *, raised: bool) -> bytes:
        """A fresh EventId; `raised`: a new alarm to acknowledge, older EventIds no longer do."""
        self.serial += 1
        if raised:
            self.ack_from = self.serial
        return self.prefix + self.serial.to_bytes(8, "big")

    def knows(self, event_id: bytes, *, to_acknowledge: bool) -> bool:
        """One of its last KNOWN_EVENT_IDS EventIds (for Acknowledge: and since the last raise)."""
        if len(event_id) != PREFIX_BYTES + 8 or event_id[:PREFIX_BYTES] != self.prefix:
            return False
        number = int.from_bytes(event_id[PREFIX_BYTES:], "big")
        low = self.serial - KNOWN_EVENT_IDS + 1
        if to_acknowledge:
            low = max(low, self.ack_from)
        return low <= number <= self.serial


def _event_id() -> bytes:
    """The EventId of an event that belongs to no condition's sequence (refresh brackets, a
    deleted condition's last event)."""
    return uuid.uuid4().bytes


def _to_event(values: dict[str, ua.Variant], condition: ua.NodeId) -> FieldEvent:
    """asyncua's condition event classes give some fields a NodeId for a variant type (UtcTime,
    Duration) and lack ShelvingState: the event is the fields themselves (the same dict), with
    the ConditionId as its `NodeId`."""
    return FieldEvent(condition, values, condition)


def _system_event(type_id: int, message: str, now: float) -> FieldEvent:
    values = {
        "EventId": ua.Variant(_event_id(), ua.VariantType.ByteString),
        "EventType": ua.Variant(std(type_id), ua.VariantType.NodeId),
        "SourceNode": ua.Variant(SERVER, ua.VariantType.NodeId),
        "SourceName": ua.Variant("Server", ua.VariantType.String),
        "Time": ua.Variant(to_datetime(now), ua.VariantType.DateTime),
        "ReceiveTime": ua.Variant(to_datetime(now), ua.VariantType.DateTime),
        "Message": ua.Variant(ua.LocalizedText(message), ua.VariantType.LocalizedText),
        "Severity": ua.Variant(1, ua.VariantType.UInt16),
    }
    return FieldEvent(SERVER, values)


class Conditions:
    """The conditions of every mirrored tenant, kept by the OPC UA server's loop."""

    def __init__(
        self, server: Server, mirror: Mirror, registry: Registry, principal_of: PrincipalOf, fetch: Fetch,
        clock: Callable[[], float] = time.time, *, nodes: bool = False,
    ) -> None:  # fmt: skip
        """`nodes`: also add each condition to the address space (settings.opcua_condition_nodes)."""
        self.nodes = nodes
        self.session = server.iserver.isession
        self.aspace = server.iserver.aspace
        self.subscription_service = server.iserver.subscription_service
        self.mirror, self.registry = mirror, registry
        self.principal_of, self.fetch, self.clock = principal_of, fetch, clock
        self.by_id: dict[int, Condition] = {}
        self.tenants: dict[int, set[int]] = {}
        """Loaded tenants -> their condition ids."""
        self.names: dict[int, str] = {}
        """The tenant name each loaded tenant's node ids were made with."""
        self.lock = asyncio.Lock()
        self._refreshing: set[int] = set()
        """Subscriptions a ConditionRefresh runs for: a second one at once would interleave brackets."""
        self._index: dict[int, dict[ua.NodeId, Built]] = {}

    # -- following the platform ---------------------------------------------------------------------------

    async def reconcile(self, tenant_id: int, *, reload: bool = False) -> None:
        """After the mirror synced a tenant: drop a removed tenant's conditions, load a new tenant's
        (or all again with `reload`), and move conditions whose source or holder was re-created."""
        async with self.lock:
            self._index.pop(tenant_id, None)
            name = self.mirror.names.get(tenant_id)
            if name is None or self.names.get(tenant_id, name) != name:
                await self._drop_tenant(tenant_id)
                if name is None:
                    return
            if reload or tenant_id not in self.tenants:
                await self._load(tenant_id, await self.fetch(tenant_id, None), complete=True)
                return
            for cid in sorted(self.tenants[tenant_id]):
                cond = self.by_id[cid]
                owner, source = self._where(cond.info)
                if cond.placement is None or owner is not cond.placement.owner or source is not cond.placement.source:
                    await self._unplace(cond)
                    await self._place(cond)

    async def on_event(self, tenant_id: int, kind: str, data: dict[str, Any]) -> None:
        """An `alarm` (a transition, or `removed`) or `alarm_conditions` (configured, removed) bus event."""
        async with self.lock:
            if tenant_id not in self.mirror.names:
                return  # not mirrored (yet): loaded with its tree
            if tenant_id not in self.tenants:
                await self._load(tenant_id, await self.fetch(tenant_id, None), complete=True)
                return
            cid = data.get("id")
            if not isinstance(cid, int):
                return
            cond = self.by_id.get(cid)
            if cond is not None and cond.info.tenant_id != tenant_id:
                return
            gone = data.get("event") == "removed" if kind == "alarm" else data.get("action") == "removed"
            if gone:
                if cond is not None:
                    await self._remove(cond)
                return
            if kind == "alarm" and cond is not None and data.get("source") == cond.info.source:
                await self._update(cond, replace(cond.info, view=dict(data)), data)
                return
            found = await self.fetch(tenant_id, frozenset({cid}))  # new, or its configuration changed
            if not found:
                if cond is not None:
                    await self._remove(cond)
                return
            info = found[0]
            if kind == "alarm":
                info = replace(info, view=dict(data))
            if cond is None:
                await self._create(info)
                if kind == "alarm":
                    await self._update(self.by_id[cid], info, data, force=True)
            else:
                await self._update(cond, info, data if kind == "alarm" else None)

    def masked(self) -> dict[int, frozenset[int]]:
        """Per tenant, its shelved, suppressed and out-of-service conditions. Under a mask the
        alarm engine follows the process condition without a bus event (nothing is annunciated),
        yet ActiveState shows it: these are read again from time to time (`apply`)."""
        out: dict[int, set[int]] = {}
        for cid, cond in self.by_id.items():
            if masked(cond.info.view):
                out.setdefault(cond.info.tenant_id, set()).add(cid)
        return {tenant_id: frozenset(ids) for tenant_id, ids in out.items()}

    async def apply(self, tenant_id: int, infos: list[ConditionInfo]) -> None:
        """Fresh snapshots of some of a tenant's conditions (newer than every event applied): an
        event for each whose presented state changed; the others only keep the newer facts."""
        async with self.lock:
            for info in infos:
                cond = self.by_id.get(info.id)
                if cond is None or cond.info.tenant_id != tenant_id:
                    continue
                before = cond.info
                same = before.structure() == info.structure() and before.source_is_tag == info.source_is_tag
                if same and all(before.view.get(k) == info.view.get(k) for k in PRESENTED):
                    cond.info = info
                else:
                    await self._update(cond, info, None)

    async def _load(self, tenant_id: int, infos: list[ConditionInfo], *, complete: bool) -> None:
        self.names[tenant_id] = self.mirror.names[tenant_id]
        ids = self.tenants.setdefault(tenant_id, set())
        seen = set()
        for info in infos:
            seen.add(info.id)
            cond = self.by_id.get(info.id)
            if cond is None:
                await self._create(info)
            else:
                await self._update(cond, info, None)
        if complete:
            for cid in sorted(ids - seen):
                await self._remove(self.by_id[cid])

    async def _drop_tenant(self, tenant_id: int) -> None:
        for cid in sorted(self.tenants.pop(tenant_id, set())):
            cond = self.by_id.pop(cid)
            await self._unplace(cond)
        self.names.pop(tenant_id, None)

    # -- one condition --------------------------------------------------------------------------------------

    async def _create(self, info: ConditionInfo) -> None:
        name = self.mirror.names[info.tenant_id]
        node = self.mirror.ua_id(f"{name};{ALARM_INFIX}{info.id}")
        now = self.clock()
        view = info.view
        active = presented_active(view)
        prefix = os.urandom(PREFIX_BYTES)
        memo = Memo(
            event_id=prefix + bytes(8), time=_float(view.get("changed_at")) or now, receive_time=now,
            last_severity=int(view.get("severity") or 1),
            active_at=_float(view.get("active_since")) if active else _float(view.get("changed_at")),
            acked_at=_float(view.get("acked_at")),
        )  # fmt: skip
        # EventId number 0, acknowledgeable: what happened before is unknown, its state is the one to acknowledge
        cond = Condition(info, node, memo, prefix)
        self.by_id[info.id] = cond
        self.tenants.setdefault(info.tenant_id, set()).add(info.id)
        await self._place(cond)
        cond.last_event = _to_event(cond.values, node)

    async def _update(
        self, cond: Condition, info: ConditionInfo, transition: dict[str, Any] | None, *, force: bool = False
    ) -> None:
        """New facts about a condition; an event when it went through a transition or its presented
        state changed (a state missed between two snapshots is reported too)."""
        old = cond.info
        cond.info = info
        rebuilt = info.structure() != old.structure() or info.source_is_tag != old.source_is_tag
        if rebuilt:  # another type, name or source: placed again (new nodes with the same ids)
            await self._unplace(cond)
            await self._place(cond)
        before, view = old.view, info.view
        event = transition.get("event") if transition else None
        fire = force or rebuilt or bool(event) or any(before.get(k) != view.get(k) for k in PRESENTED)
        now = self.clock()
        if fire:
            memo = cond.memo
            at = _float(view.get("changed_at")) or now
            if int(before.get("severity") or 0) != int(view.get("severity") or 0):
                memo.last_severity, memo.severity_at = int(before.get("severity") or 1), at
            if presented_active(before) != presented_active(view):
                memo.active_at = at
            if bool(before.get("acked")) != bool(view.get("acked")):
                memo.acked_at = _float(view.get("acked_at")) or at
            if transition is not None and transition.get("comment") is not None:
                memo.comment, memo.comment_at = str(transition["comment"]), at
                memo.comment_user = str(transition.get("user") or "")
            raised = not view.get("acked") and (bool(before.get("acked")) or event in RAISES)
            memo.event_id, memo.time, memo.receive_time = cond.next_event_id(raised=raised), at, now
        values = field_values(info, cond.memo, source=self._source_id(cond), now=now)
        await self._write(cond, values)
        if fire:
            cond.last_event = _to_event(values, cond.node)
            await self._deliver(cond, cond.last_event)

    async def _remove(self, cond: Condition) -> None:
        """Gone from the platform: a last event with Retain false, then it (and its nodes) go."""
        if cond.placement is not None:
            values = dict(cond.values)
            values["Retain"] = ua.Variant(False, ua.VariantType.Boolean)
            values["EventId"] = ua.Variant(_event_id(), ua.VariantType.ByteString)
            now = self.clock()
            values["Time"] = values["ReceiveTime"] = ua.Variant(to_datetime(now), ua.VariantType.DateTime)
            await self._deliver(cond, _to_event(values, cond.node))
        await self._unplace(cond)
        self.by_id.pop(cond.info.id, None)
        self.tenants.get(cond.info.tenant_id, set()).discard(cond.info.id)

    # -- placement and nodes --------------------------------------------------------------------------------

    def _tree_index(self, tenant_id: int) -> dict[ua.NodeId, Built]:
        index = self._index.get(tenant_id)
        if index is None:
            tree = self.mirror.trees.get(tenant_id, {})
            index = self._index[tenant_id] = {b.spec.ua_id: b for b in tree.values()}
        return index

    def _where(self, info: ConditionInfo) -> tuple[Built, Built | None]:
        """The object holding the condition and its source node (None while unresolved)."""
        tree = self.mirror.trees[info.tenant_id]
        source = tree.get(info.source) if info.source else None
        if source is None:
            return tree[""], None
        if not info.source_is_tag:
            return source, source
        holder = self._tree_index(info.tenant_id).get(source.spec.parent)
        return (holder or tree[""]), source

    def _source_id(self, cond: Condition) -> ua.NodeId | None:
        placement = cond.placement
        return placement.source.spec.ua_id if placement and placement.source else None

    def _id(self, cond: Condition, path: str) -> ua.NodeId:
        base = cond.node.Identifier
        assert isinstance(base, str)
        return self.mirror.ua_id(base + ";" + path.replace("/", ";"))

    async def _place(self, cond: Condition) -> None:
        """Where the condition is now: its notifier chain, its fields, and its nodes (with nodes)."""
        info = cond.info
        owner, source = self._where(info)
        index = self._tree_index(info.tenant_id)
        chain = [cond.node] if self.nodes else []  # without nodes: from the source's object up
        walk: Built | None = owner
        while walk is not None:
            chain.append(walk.spec.ua_id)
            walk = index.get(walk.spec.parent)
        chain.append(SERVER)
        cond.placement = placement = Placement(owner, source, tuple(chain))
        values = field_values(info, cond.memo, source=source.spec.ua_id if source else None, now=self.clock())
        if self.nodes:
            placement.nodes = await self._add_nodes(cond, owner, source, values)
            self.registry.conditions[placement.nodes["ShelvingState"]] = cond.ref
        cond.values = values
        self.registry.conditions[cond.node] = cond.ref

    async def _add_nodes(
        self, cond: Condition, owner: Built, source: Built | None, values: dict[str, ua.Variant]
    ) -> dict[str, ua.NodeId]:
        """The condition object and its variables (no method nodes: clients call the standard
        method ids with the condition as the object), and HasCondition from its source."""
        info = cond.info
        nodes = {"": cond.node}
        for child in children(info):
            nodes[child.path] = self._id(cond, child.path)
        ns = ua.UInt16(self.registry.ns)
        items = [
            ua.AddNodesItem(
                RequestedNewNodeId=cond.node, ParentNodeId=owner.spec.ua_id, BrowseName=ua.QualifiedName(info.name, ns),
                ReferenceTypeId=std(ObjectIds.HasComponent), NodeClass=ua.NodeClass.Object,
                NodeAttributes=ua.ObjectAttributes(
                    DisplayName=ua.LocalizedText(info.name), Description=ua.LocalizedText(f"alarm {info.name}"),
                    EventNotifier=ua.Byte(ua.EventNotifier.SubscribeToEvents.mask),
                ),
                TypeDefinition=std(info.type_id),
            )
        ]  # fmt: skip
        for child in children(info):
            items.append(self._child_item(nodes[child.parent], nodes[child.path], child, values.get(child.path)))
        results = await self.session.add_nodes(items)
        failed = [(i.RequestedNewNodeId, r.StatusCode) for i, r in zip(items, results, strict=True)
                  if not r.StatusCode.is_good()]  # fmt: skip
        if failed:
            log.error("opcua server: %d node(s) of alarm %s not added, first: %s", len(failed), info.name, failed[0])
        if source is not None:
            await self.session.add_references([
                ua.AddReferencesItem(SourceNodeId=source.spec.ua_id, ReferenceTypeId=std(ObjectIds.HasCondition),
                                     IsForward=True, TargetNodeId=cond.node, TargetNodeClass=ua.NodeClass.Object),
                ua.AddReferencesItem(SourceNodeId=cond.node, ReferenceTypeId=std(ObjectIds.HasCondition),
                                     IsForward=False, TargetNodeId=source.spec.ua_id,
                                     TargetNodeClass=ua.NodeClass.Unspecified),
            ])  # fmt: skip
        self.aspace.set_attribute_value_callback(nodes[UNSHELVE_TIME], AttributeIds.Value, self._unshelve_time(cond))
        return nodes

    @staticmethod
    def _child_item(parent: ua.NodeId, node: ua.NodeId, child: Child, value: ua.Variant | None) -> ua.AddNodesItem:
        ref = ObjectIds.HasProperty if child.node_class == PROP else ObjectIds.HasComponent
        if child.node_class == OBJECT:
            return ua.AddNodesItem(
                RequestedNewNodeId=node, ParentNodeId=parent, BrowseName=ua.QualifiedName(child.name, 0),
                ReferenceTypeId=std(ref), NodeClass=ua.NodeClass.Object,
                NodeAttributes=ua.ObjectAttributes(DisplayName=ua.LocalizedText(child.name)),
                TypeDefinition=std(child.type_definition),
            )  # fmt: skip
        read = ua.Byte(ua.AccessLevel.CurrentRead.mask)
        attrs = ua.VariableAttributes(
            DisplayName=ua.LocalizedText(child.name), Value=value if value is not None else ua.Variant(),
            DataType=std(child.data_type), ValueRank=-1, ArrayDimensions=[], AccessLevel=read, UserAccessLevel=read,
            Historizing=False,
        )  # fmt: skip
        type_definition = ObjectIds.PropertyType if child.node_class == PROP else child.type_definition
        return ua.AddNodesItem(
            RequestedNewNodeId=node, ParentNodeId=parent, BrowseName=ua.QualifiedName(child.name, 0),
            ReferenceTypeId=std(ref), NodeClass=ua.NodeClass.Variable, NodeAttributes=attrs,
            TypeDefinition=std(type_definition),
        )  # fmt: skip

    def _unshelve_time(self, cond: Condition) -> Callable[[ua.NodeId, AttributeIds], ua.DataValue]:
        """UnshelveTime counts down: computed when read (monitored items see it at each event)."""

        def read(nodeid: ua.NodeId, attr: AttributeIds) -> ua.DataValue:
            value = unshelve_time_ms(cond.info.view, self.clock())
            return ua.DataValue(ua.Variant(value, ua.VariantType.Double), SourceTimestamp=to_datetime(self.clock()))

        return read

    async def _unplace(self, cond: Condition) -> None:
        placement, cond.placement = cond.placement, None
        if placement is None:
            return
        self.registry.conditions.pop(cond.node, None)
        nodes = placement.nodes
        if nodes is None:
            return
        self.registry.conditions.pop(nodes.get("ShelvingState", cond.node), None)
        refs = [ua.DeleteReferencesItem(SourceNodeId=placement.owner.spec.ua_id, TargetNodeId=cond.node,
                                        ReferenceTypeId=std(ObjectIds.HasComponent), IsForward=True)]  # fmt: skip
        if placement.source is not None:
            refs.append(ua.DeleteReferencesItem(
                SourceNodeId=placement.source.spec.ua_id, TargetNodeId=cond.node,
                ReferenceTypeId=std(ObjectIds.HasCondition), IsForward=True,
            ))  # fmt: skip
        await self.session.delete_references(refs)  # the holder may be gone already: nothing to do then
        # The references pointing at these nodes are those above; asyncua's DeleteTargetReferences
        # would scan the whole address space once per node.
        await self.session.delete_nodes(
            ua.DeleteNodesParameters(NodesToDelete=[ua.DeleteNodesItem(NodeId=i, DeleteTargetReferences=False)
                                                    for i in reversed(nodes.values())])
        )  # fmt: skip

    async def _write(self, cond: Condition, values: dict[str, ua.Variant]) -> None:
        """The fields as they are now; written into the condition's variables that changed (with nodes)."""
        placement = cond.placement
        if placement is None:
            return
        nodes = placement.nodes
        if nodes is not None:
            for path, variant in values.items():
                if path == UNSHELVE_TIME or cond.values.get(path) == variant:
                    continue
                await self.aspace.write_attribute_value(nodes[path], AttributeIds.Value, ua.DataValue(variant))
        cond.values = values

    # -- events ---------------------------------------------------------------------------------------------------

    async def _audience(self, tenant_id: int) -> list[InternalSubscription]:
        """The subscriptions of the tenant's sessions whose users (as they are now) may see its alarms."""
        out = []
        for sub in list(self.subscription_service.subscriptions.values()):
            who = await self.principal_of(sub.session_id, tenant_id)
            if who is not None and who.can(Permission.ALARMS_READ) and who.can(Permission.NAMESPACE_READ):
                out.append(sub)
        return out

    async def _deliver(self, cond: Condition, event: FieldEvent) -> None:
        """To each subscription on its own: a failure with one (its filter) keeps it from no other."""
        placement = cond.placement
        if placement is None:
            return
        for sub in await self._audience(cond.info.tenant_id):
            try:
                for notifier in placement.chain:
                    event.emitting_node = notifier
                    await sub.monitored_item_srv.trigger_event(event)
            except Exception:
                log.exception("opcua server: alarm event of %s not delivered to subscription %s", cond.info.name,
                              sub.data.SubscriptionId)  # fmt: skip
        event.emitting_node = cond.node

    def event_known(self, ref: ConditionRef, event_id: bytes, *, to_acknowledge: bool) -> bool:
        cond = self.by_id.get(ref.condition_id)
        if cond is None or cond.node != ref.node:
            return False
        return cond.knows(event_id, to_acknowledge=to_acknowledge)

    def info(self, ref: ConditionRef) -> ConditionInfo | None:
        cond = self.by_id.get(ref.condition_id)
        return cond.info if cond is not None and cond.node == ref.node else None

    async def refresh(self, who: Principal, sub: InternalSubscription, monitored_item: int | None) -> ua.StatusCode:
        """ConditionRefresh(2): the retained conditions' last events to this subscription, between a
        RefreshStartEvent and a RefreshEndEvent (these two regardless of the item's WhereClause)."""
        items = sub.monitored_item_srv
        watched: dict[ua.NodeId, list[int]] = {
            node: [m for m in mids if monitored_item is None or m == monitored_item]
            for node, mids in items._monitored_events.items()
        }
        if monitored_item is not None and not any(watched.values()):
            return bad(StatusCodes.BadMonitoredItemIdInvalid)
        sid = sub.data.SubscriptionId
        if sid in self._refreshing:
            return bad(StatusCodes.BadRefreshInProgress)
        self._refreshing.add(sid)
        try:
            await self._refresh(who, sub, watched)
        finally:
            self._refreshing.discard(sid)
        return ua.StatusCode()

    async def _refresh(self, who: Principal, sub: InternalSubscription, watched: dict[ua.NodeId, list[int]]) -> None:
        items = sub.monitored_item_srv
        now = self.clock()
        await self._raw(sub, watched, _system_event(ObjectIds.RefreshStartEventType, "ConditionRefresh started", now))
        async with self.lock:
            allowed = who.can(Permission.ALARMS_READ) and who.can(Permission.NAMESPACE_READ)
            for cid in sorted(self.tenants.get(who.tenant_id, set()) if allowed else ()):
                cond = self.by_id[cid]
                event, placement = cond.last_event, cond.placement
                if event is None or placement is None or not cond.retained:
                    continue
                for notifier in placement.chain:
                    event.emitting_node = notifier
                    for mid in watched.get(notifier, []):
                        await items._trigger_event(event, mid)
                event.emitting_node = cond.node
        await self._raw(sub, watched, _system_event(ObjectIds.RefreshEndEventType, "ConditionRefresh ended", now))

    @staticmethod
    async def _raw(sub: InternalSubscription, watched: dict[ua.NodeId, list[int]], event: FieldEvent) -> None:
        items = sub.monitored_item_srv
        for mids in watched.values():
            for mid in mids:
                data = items._monitored_items.get(mid)
                flt = data.filter if data is not None else None
                if data is None or not isinstance(flt, ua.EventFilter):
                    continue
                fields = ua.EventFieldList(ClientHandle=data.client_handle,
                                           EventFields=event.to_event_fields(flt.SelectClauses))  # fmt: skip
                await sub.enqueue_event(mid, fields, data.queue_size)


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
