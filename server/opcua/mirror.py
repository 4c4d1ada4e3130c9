"""The platform's namespace as OPC UA nodes, kept in step with it by diffing, with live values.

Node ids. Every tenant lives in namespace 2 (`urn:iiot-server:tenants`, the first namespace the
server registers) with string ids `ns=2;s=<tenant>/<platform id>`, where the platform id is the
`s=` part of the node's own id: the platform's `ns=2;s=Plant1/Area1/Pump7` of tenant `acme` is
`ns=2;s=acme/Plant1/Area1/Pump7` here. Platform ids are fixed at creation, so these survive
renames and moves too. The tenant's folder is `ns=2;s=<tenant>`. Nodes the server adds beside
a platform node carry a `;` suffix, which no browse name may contain: `<id>;EngineeringUnits`,
`<id>;EURange`, `<id>;Status`, `<id>;SetStatus`, `<id>;SetStatus;InputArguments`. Tenant names
are `[a-z0-9_-]`, so the owner of any namespace-2 node is the text before the first `/` or `;`.

Shape. Objects → tenant folder (FolderType) → folders (FolderType) and devices (BaseObjectType,
with a `Status` string variable and a `SetStatus(status)` method) → tags (BaseAnalogType
variables of the tag's data type, historizing, with `EngineeringUnits` (EUInformation) and
`EURange` (Range) properties when the tag has a unit and a range). Every object is an event
notifier, for the alarm conditions below it (server/opcua/conditions.py, which also keeps the
registry's `conditions`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from asyncua import ua
from asyncua.server.server import Server

from server.domain.namespace import DataType, DeviceStatus, Node, NodeClass
from server.domain.quality import Quality
from server.opcua.common import (
    VARIANTS,
    AttributeIds,
    ObjectIds,
    StatusCodes,
    bad,
    status_of,
    std,
    to_datetime,
    utcnow,
    variant,
)

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:iiot-server:tenants"
ACCESS = ua.AccessLevel.CurrentRead.mask | ua.AccessLevel.CurrentWrite.mask | ua.AccessLevel.HistoryRead.mask
LiveValue = tuple[float, float, Quality]
NOTIFIER = ua.Byte(ua.EventNotifier.SubscribeToEvents.mask)
"""Every object (tenant folder, folder, device) is an event notifier: the alarm events below it."""


@dataclass(frozen=True, slots=True)
class TagRef:
    tenant_id: int
    tag_id: int
    node_id: str
    """The platform's node id (ns=2;s=<path at creation>)."""
    path: str
    device: str
    """The device's platform node id (what a written value is ingested under)."""
    data_type: DataType | None


@dataclass(frozen=True, slots=True)
class DeviceRef:
    tenant_id: int
    node_id: str
    path: str


ALARM_INFIX = "Alarm;"
"""Alarm condition node ids are `<tenant>;Alarm;<condition id>[;<field path>]`."""


@dataclass(frozen=True, slots=True)
class ConditionRef:
    tenant_id: int
    condition_id: int
    node: ua.NodeId
    """The condition node (also for its ShelvingState object)."""


@dataclass(slots=True)
class Registry:
    """What sessions and the history storage look up, rebuilt per tenant by the mirror."""

    ns: int = 2
    tenants: dict[str, int] = field(default_factory=dict)
    tags: dict[ua.NodeId, TagRef] = field(default_factory=dict)
    tag_nodes: dict[int, ua.NodeId] = field(default_factory=dict)
    devices: dict[ua.NodeId, DeviceRef] = field(default_factory=dict)
    methods: dict[ua.NodeId, ua.NodeId] = field(default_factory=dict)
    """SetStatus method -> its device."""
    status_vars: dict[tuple[int, str], ua.NodeId] = field(default_factory=dict)
    conditions: dict[ua.NodeId, ConditionRef] = field(default_factory=dict)
    """ConditionIds (whether or not conditions are nodes), and the ShelvingState objects of
    condition nodes, -> the condition (server/opcua/conditions.py)."""

    def owner(self, nodeid: ua.NodeId) -> int | None:
        """The tenant a node belongs to; None for shared nodes (the standard namespace, the
        server object); -1 for a namespace-2 id of no known tenant (seen by nobody)."""
        if nodeid.NamespaceIndex != self.ns:
            return None
        ident = nodeid.Identifier
        if not isinstance(ident, str):
            return -1
        return self.tenants.get(ident.split("/", 1)[0].split(";", 1)[0], -1)

    def is_alarm(self, nodeid: ua.NodeId) -> bool:
        """A node of an alarm condition (`<tenant>;Alarm;<id>...`): seen only with `alarms.read`."""
        ident = nodeid.Identifier
        if nodeid.NamespaceIndex != self.ns or not isinstance(ident, str):
            return False
        head, sep, rest = ident.partition(";")
        return bool(sep) and "/" not in head and rest.startswith(ALARM_INFIX)

    def is_condition_id(self, nodeid: ua.NodeId) -> bool:
        """Shaped like a ConditionId (`<tenant>;Alarm;<condition id>`), known or not."""
        ident = nodeid.Identifier
        if not self.is_alarm(nodeid) or not isinstance(ident, str):
            return False
        return ident.partition(";")[2][len(ALARM_INFIX) :].isdigit()


@dataclass(frozen=True, slots=True)
class Spec:
    """One platform node as it should appear (the tenant folder has key "")."""

    key: str
    ua_id: ua.NodeId
    parent: ua.NodeId
    node_class: NodeClass | None
    browse_name: str
    display_name: str
    description: str
    path: str
    data_type: DataType | None = None
    unit: str | None = None
    range: tuple[float, float] | None = None
    status: DeviceStatus | None = None
    tag_id: int | None = None
    device: str = ""

    def structure(self) -> tuple[object, ...]:
        """What cannot be changed in place: a change deletes and recreates the node."""
        return (self.parent, self.node_class, self.browse_name, self.data_type)


@dataclass(slots=True)
class Built:
    spec: Spec
    extra: dict[str, ua.NodeId] = field(default_factory=dict)
    """Nodes added beside it, by suffix (EngineeringUnits, EURange, Status, SetStatus...)."""


def _platform_key(node_id: str) -> str:
    return node_id.split(";s=", 1)[1]


def _lt(text: str) -> ua.LocalizedText:
    return ua.LocalizedText(text)


class Mirror:
    """Builds and diffs each tenant's tree in the asyncua address space (the server's own loop)."""

    def __init__(self, server: Server, registry: Registry) -> None:
        self.server = server
        self.session = server.iserver.isession
        self.aspace = server.iserver.aspace
        self.registry = registry
        self.trees: dict[int, dict[str, Built]] = {}
        self.names: dict[int, str] = {}

    def ua_id(self, tenant: str, suffix: str = "") -> ua.NodeId:
        return ua.NodeId(ua.String(tenant + suffix), ua.Int16(self.registry.ns))

    # -- desired state ---------------------------------------------------------------------------

    def _specs(self, tenant: str, display: str, nodes: list[Node]) -> dict[str, Spec]:
        root = self.ua_id(tenant)
        specs = {"": Spec("", root, std(ObjectIds.ObjectsFolder), None, tenant, display, display, "")}
        by_db_id: dict[int, Node] = {n.id: n for n in nodes}
        for node in nodes:  # ordered by path: parents come first
            parent = by_db_id.get(node.parent_id) if node.parent_id is not None else None
            if node.parent_id is not None and parent is None:
                continue
            parent_ua = self.ua_id(tenant, "/" + _platform_key(parent.node_id)) if parent else root
            rng = (
                (node.range_low, node.range_high)
                if node.range_low is not None and node.range_high is not None
                else None
            )
            specs[node.node_id] = Spec(
                node.node_id, self.ua_id(tenant, "/" + _platform_key(node.node_id)), parent_ua, node.node_class,
                node.browse_name, node.display_name, node.description, node.path,
                data_type=node.data_type or DataType.DOUBLE if node.node_class is NodeClass.TAG else None,
                unit=node.unit, range=rng, status=node.status,
                tag_id=node.id if node.node_class is NodeClass.TAG else None,
                device=parent.node_id if parent and node.node_class is NodeClass.TAG else "",
            )  # fmt: skip
        return specs

    # -- sync ----------------------------------------------------------------------------------------

    async def sync_tenant(
        self, tenant_id: int, name: str | None, display: str, nodes: list[Node], live: dict[int, LiveValue]
    ) -> None:
        """Make the tenant's tree match `nodes`; name None removes the tenant (deleted, disabled)."""
        current = self.trees.setdefault(tenant_id, {})
        if name is None or (tenant_id in self.names and self.names[tenant_id] != name):
            await self._delete(list(current.values()))
            current.clear()
            self.names.pop(tenant_id, None)
            self._reindex(tenant_id)
            if name is None:
                self.trees.pop(tenant_id, None)
                return
        self.names[tenant_id] = name
        self.registry.tenants[name] = tenant_id
        desired = self._specs(name, display, nodes)
        gone_paths = [
            b.spec.path for k, b in current.items()
            if k and (k not in desired or b.spec.structure() != desired[k].structure())
        ]  # fmt: skip
        if "" in current and current[""].spec.structure() != desired[""].structure():
            gone_paths = [""]
        if gone_paths:
            gone = [
                k for k, b in current.items()
                if any(p == "" or b.spec.path == p or b.spec.path.startswith(p + "/") for p in gone_paths)
            ]  # fmt: skip
            await self._delete([current.pop(k) for k in gone])
        items: list[ua.AddNodesItem] = []
        new: list[Built] = []
        for key, spec in desired.items():
            if key not in current:
                built = Built(spec)
                items += self._items(built)
                new.append(built)
        if items:
            results = await self.session.add_nodes(items)
            failed = [
                (i.RequestedNewNodeId, r.StatusCode)
                for i, r in zip(items, results, strict=True)
                if not r.StatusCode.is_good()
            ]
            if failed:
                log.error("opcua server: %d node(s) of tenant %s not added, first: %s", len(failed), name, failed[0])
            for built in new:
                current[built.spec.key] = built
                if "SetStatus" in built.extra:
                    self.session.add_method_callback(built.extra["SetStatus"], _refuse_internal_call)
                if built.spec.tag_id is not None:
                    await self._write_value(built, live.get(built.spec.tag_id))
        for key, spec in desired.items():
            built = current[key]
            if built not in new and built.spec != spec:
                await self._update(built, spec)
        self._reindex(tenant_id)

    def _items(self, built: Built) -> list[ua.AddNodesItem]:
        spec = built.spec
        cls = spec.node_class
        qname = ua.QualifiedName(spec.browse_name, ua.UInt16(self.registry.ns))
        if cls is NodeClass.TAG:
            assert spec.data_type is not None
            attrs = ua.VariableAttributes(
                DisplayName=_lt(spec.display_name), Description=_lt(spec.description),
                Value=ua.Variant(None, ua.VariantType.Null),
                DataType=std(VARIANTS[spec.data_type].value), ValueRank=-1, ArrayDimensions=[],
                AccessLevel=ua.Byte(ACCESS), UserAccessLevel=ua.Byte(ACCESS), Historizing=True,
                MinimumSamplingInterval=0.0,
            )  # fmt: skip
            item = ua.AddNodesItem(
                RequestedNewNodeId=spec.ua_id, ParentNodeId=spec.parent, BrowseName=qname,
                ReferenceTypeId=std(ObjectIds.HasComponent), NodeClass=ua.NodeClass.Variable, NodeAttributes=attrs,
                TypeDefinition=std(ObjectIds.BaseAnalogType),
            )  # fmt: skip
            return [item, *self._property_items(built, spec.unit, spec.range)]
        folder = cls is None or cls is NodeClass.FOLDER
        item = ua.AddNodesItem(
            RequestedNewNodeId=spec.ua_id, ParentNodeId=spec.parent, BrowseName=qname,
            ReferenceTypeId=std(ObjectIds.Organizes), NodeClass=ua.NodeClass.Object,
            NodeAttributes=ua.ObjectAttributes(
                DisplayName=_lt(spec.display_name), Description=_lt(spec.description), EventNotifier=NOTIFIER,
            ),
            TypeDefinition=std(ObjectIds.FolderType if folder else ObjectIds.BaseObjectType),
        )  # fmt: skip
        if cls is not NodeClass.DEVICE:
            return [item]
        return [item, *self._device_items(built)]

    def _variable(
        self, ua_id: ua.NodeId, parent: ua.NodeId, name: str, value: ua.Variant, datatype: int, *, prop: bool,
        rank: int = -1,
    ) -> ua.AddNodesItem:  # fmt: skip
        attrs = ua.VariableAttributes(
            DisplayName=_lt(name), Description=_lt(name), Value=value, DataType=std(datatype), ValueRank=rank,
            ArrayDimensions=[0] if rank == 1 else [], AccessLevel=ua.Byte(ua.AccessLevel.CurrentRead.mask),
            UserAccessLevel=ua.Byte(ua.AccessLevel.CurrentRead.mask), Historizing=False,
        )  # fmt: skip
        return ua.AddNodesItem(
            RequestedNewNodeId=ua_id, ParentNodeId=parent, BrowseName=ua.QualifiedName(name, 0),
            ReferenceTypeId=std(ObjectIds.HasProperty if prop else ObjectIds.HasComponent),
            NodeClass=ua.NodeClass.Variable, NodeAttributes=attrs,
            TypeDefinition=std(ObjectIds.PropertyType if prop else ObjectIds.BaseDataVariableType),
        )  # fmt: skip

    def _property_items(self, built: Built, unit: str | None, rng: tuple[float, float] | None) -> list[ua.AddNodesItem]:
        spec, out = built.spec, []
        base = spec.ua_id.Identifier
        assert isinstance(base, str)
        if unit:
            nid = built.extra["EngineeringUnits"] = self.ua_id(base + ";EngineeringUnits")
            out.append(
                self._variable(nid, spec.ua_id, "EngineeringUnits", _eu(unit), ObjectIds.EUInformation, prop=True)
            )
        if rng:
            nid = built.extra["EURange"] = self.ua_id(base + ";EURange")
            value = ua.Variant(ua.Range(Low=rng[0], High=rng[1]), ua.VariantType.ExtensionObject)
            out.append(self._variable(nid, spec.ua_id, "EURange", value, ObjectIds.Range, prop=True))
        return out

    def _device_items(self, built: Built) -> list[ua.AddNodesItem]:
        spec = built.spec
        base = spec.ua_id.Identifier
        assert isinstance(base, str)
        status = built.extra["Status"] = self.ua_id(base + ";Status")
        method = built.extra["SetStatus"] = self.ua_id(base + ";SetStatus")
        args = built.extra["SetStatus;InputArguments"] = self.ua_id(base + ";SetStatus;InputArguments")
        value = ua.Variant((spec.status or DeviceStatus.UNKNOWN).value, ua.VariantType.String)
        status_item = self._variable(status, spec.ua_id, "Status", value, ObjectIds.String, prop=False)
        method_item = ua.AddNodesItem(
            RequestedNewNodeId=method, ParentNodeId=spec.ua_id, BrowseName=ua.QualifiedName("SetStatus", 0),
            ReferenceTypeId=std(ObjectIds.HasComponent), NodeClass=ua.NodeClass.Method,
            NodeAttributes=ua.MethodAttributes(
                DisplayName=_lt("SetStatus"), Description=_lt("Set the device's status"), Executable=True,
                UserExecutable=True,
            ),
        )  # fmt: skip
        argument = ua.Argument(
            Name="status", DataType=std(ObjectIds.String), ValueRank=-1, ArrayDimensions=[],
            Description=_lt(", ".join(s.value for s in DeviceStatus)),
        )  # fmt: skip
        arg_value = ua.Variant([argument], ua.VariantType.ExtensionObject)
        args_item = self._variable(args, method, "InputArguments", arg_value, ObjectIds.Argument, prop=True, rank=1)
        return [status_item, method_item, args_item]

    async def _delete(self, builts: list[Built]) -> None:
        ids = [i for b in builts for i in (*b.extra.values(), b.spec.ua_id)]
        if not ids:
            return
        items = [ua.DeleteNodesItem(NodeId=i, DeleteTargetReferences=True) for i in ids]
        await self.session.delete_nodes(ua.DeleteNodesParameters(NodesToDelete=items))

    async def _update(self, built: Built, spec: Spec) -> None:
        old = built.spec
        built.spec = spec
        if (old.display_name, old.description) != (spec.display_name, spec.description):
            await self._write(spec.ua_id, AttributeIds.DisplayName, ua.Variant(_lt(spec.display_name)))
            await self._write(spec.ua_id, AttributeIds.Description, ua.Variant(_lt(spec.description)))
        if spec.node_class is NodeClass.DEVICE and old.status != spec.status:
            await self.write_status(built, spec.status or DeviceStatus.UNKNOWN)
        if spec.node_class is not NodeClass.TAG or (old.unit, old.range) == (spec.unit, spec.range):
            return
        stale = [k for k in ("EngineeringUnits", "EURange") if k in built.extra]
        if stale:
            ids = [built.extra.pop(k) for k in stale]
            gone = [ua.DeleteNodesItem(NodeId=i, DeleteTargetReferences=True) for i in ids]
            await self.session.delete_nodes(ua.DeleteNodesParameters(NodesToDelete=gone))
        items = self._property_items(built, spec.unit, spec.range)
        if items:
            await self.session.add_nodes(items)

    async def _write(self, nodeid: ua.NodeId, attr: AttributeIds, value: ua.Variant) -> None:
        await self.aspace.write_attribute_value(nodeid, attr, ua.DataValue(value))

    def _reindex(self, tenant_id: int) -> None:
        reg = self.registry
        old_tags = [k for k, v in reg.tags.items() if v.tenant_id == tenant_id]
        for key in old_tags:
            reg.tag_nodes.pop(reg.tags.pop(key).tag_id, None)
        old_devices = {k for k, v in reg.devices.items() if v.tenant_id == tenant_id}
        for key in old_devices:
            del reg.devices[key]
        for key in [m for m, dev in reg.methods.items() if dev in old_devices]:
            del reg.methods[key]
        for skey in [k for k in reg.status_vars if k[0] == tenant_id]:
            del reg.status_vars[skey]
        if tenant_id not in self.names:
            for name in [n for n, t in reg.tenants.items() if t == tenant_id]:
                del reg.tenants[name]
        for built in self.trees.get(tenant_id, {}).values():
            spec = built.spec
            if spec.node_class is NodeClass.TAG and spec.tag_id is not None:
                reg.tags[spec.ua_id] = TagRef(tenant_id, spec.tag_id, spec.key, spec.path, spec.device, spec.data_type)
                reg.tag_nodes[spec.tag_id] = spec.ua_id
            elif spec.node_class is NodeClass.DEVICE:
                reg.devices[spec.ua_id] = DeviceRef(tenant_id, spec.key, spec.path)
                reg.methods[built.extra["SetStatus"]] = spec.ua_id
                reg.status_vars[(tenant_id, spec.key)] = built.extra["Status"]

    # -- values -------------------------------------------------------------------------------------------

    async def _write_value(self, built: Built, live: LiveValue | None) -> None:
        spec = built.spec
        if live is None:
            dv = ua.DataValue(StatusCode=bad(StatusCodes.BadWaitingForInitialData))
        else:
            dv = _datavalue(live, spec.data_type)
        await self.aspace.write_attribute_value(spec.ua_id, AttributeIds.Value, dv)

    async def write_values(self, values: dict[int, LiveValue]) -> None:
        tags = self.registry.tags
        for tag_id, live in values.items():
            nodeid = self.registry.tag_nodes.get(tag_id)
            if nodeid is None:
                continue
            ref = tags[nodeid]
            await self.aspace.write_attribute_value(nodeid, AttributeIds.Value, _datavalue(live, ref.data_type))

    async def set_status(self, tenant_id: int, node_id: str, status: DeviceStatus) -> None:
        """A device status event from the bus (a user, a failed poll, a Sparkplug death)."""
        built = self.trees.get(tenant_id, {}).get(node_id)
        if built is not None and built.spec.node_class is NodeClass.DEVICE:
            built.spec = replace(built.spec, status=status)
            await self.write_status(built, status)

    async def write_status(self, built: Built, status: DeviceStatus) -> None:
        value = ua.DataValue(ua.Variant(status.value, ua.VariantType.String), SourceTimestamp=utcnow())
        await self.aspace.write_attribute_value(built.extra["Status"], AttributeIds.Value, value)


def _datavalue(live: LiveValue, data_type: DataType | None) -> ua.DataValue:
    ts, value, quality = live
    stamp = to_datetime(ts)
    return ua.DataValue(
        variant(value, data_type), StatusCode=status_of(quality), SourceTimestamp=stamp,
        ServerTimestamp=utcnow(),
    )  # fmt: skip


def _eu(unit: str) -> ua.Variant:
    eu = ua.EUInformation(
        NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact", UnitId=-1, DisplayName=_lt(unit),
        Description=_lt(unit),
    )  # fmt: skip
    return ua.Variant(eu, ua.VariantType.ExtensionObject)


def _refuse_internal_call(parent: ua.NodeId, *args: object) -> ua.StatusCode:
    """Client calls of SetStatus are handled by the session, which knows who calls."""
    return bad(StatusCodes.BadUserAccessDenied)
