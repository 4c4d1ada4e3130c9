"""The address space: folders (sites, areas), devices and tags, named like OPC UA nodes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from server.domain.errors import InvalidInput

NAMESPACE_INDEX = 2
"""Every tenant's nodes live in namespace 2, as a northbound OPC UA server will publish them."""

_NODE_ID = re.compile(r"^ns=(\d+);s=(.+)$")
_BROWSE_NAME = re.compile(r"^[^/;\x00-\x1f]{1,100}$")


class NodeClass(StrEnum):
    FOLDER = "folder"
    DEVICE = "device"
    TAG = "tag"


class DataType(StrEnum):
    """OPC UA built-in types a historian tag can carry (stored as double)."""

    DOUBLE = "Double"
    FLOAT = "Float"
    INT32 = "Int32"
    INT64 = "Int64"
    UINT16 = "UInt16"
    BOOLEAN = "Boolean"


class DeviceStatus(StrEnum):
    UNKNOWN = "unknown"
    ONLINE = "online"
    OFFLINE = "offline"
    MAINTENANCE = "maintenance"


class UnknownTagPolicy(StrEnum):
    """What ingestion does with a value for a tag the device does not have yet."""

    CREATE = "create"
    REJECT = "reject"


ALLOWED_CHILDREN: dict[NodeClass | None, frozenset[NodeClass]] = {
    None: frozenset({NodeClass.FOLDER, NodeClass.DEVICE}),
    NodeClass.FOLDER: frozenset({NodeClass.FOLDER, NodeClass.DEVICE}),
    NodeClass.DEVICE: frozenset({NodeClass.TAG, NodeClass.FOLDER}),
    NodeClass.TAG: frozenset(),
}


def check_browse_name(name: str) -> str:
    """Browse names become path segments, so '/' and ';' are not allowed in them."""
    name = name.strip()
    if not _BROWSE_NAME.fullmatch(name):
        raise InvalidInput(
            "browse name must be 1-100 characters without '/', ';' or control characters",
            field="browse_name",
        )
    return name


def check_child(parent: NodeClass | None, child: NodeClass) -> None:
    if child not in ALLOWED_CHILDREN[parent]:
        where = f"a {parent.value}" if parent else "the root"
        raise InvalidInput(f"a {child.value} cannot be placed under {where}", field="parent")


def node_id_for_path(path: str) -> str:
    return f"ns={NAMESPACE_INDEX};s={path}"


def parse_node_ref(ref: str) -> tuple[str, str]:
    """Split a client reference into ('node_id', id) or ('path', path); clients may send either."""
    ref = ref.strip()
    match = _NODE_ID.fullmatch(ref)
    if match:
        return "node_id", ref
    if not ref or ref.startswith("ns="):
        raise InvalidInput(f"{ref!r} is neither a node id (ns=2;s=...) nor a path", field="node")
    return "path", ref.strip("/")


def join_path(parent_path: str | None, browse_name: str) -> str:
    return f"{parent_path}/{browse_name}" if parent_path else browse_name


def in_subtree(path: str, root_path: str) -> bool:
    return path == root_path or path.startswith(root_path + "/")


@dataclass(slots=True)
class Node:
    """A namespace node as the services see it (ids are stable; paths move with the tree)."""

    id: int
    tenant_id: int
    node_id: str
    parent_id: int | None
    node_class: NodeClass
    browse_name: str
    display_name: str
    path: str
    description: str = ""
    data_type: DataType | None = None
    unit: str | None = None
    range_low: float | None = None
    range_high: float | None = None
    status: DeviceStatus | None = None
    has_children: bool = False
    attributes: dict[str, object] = field(default_factory=dict)
