"""The namespace as a lazy Qt tree: children are fetched when a branch is first expanded.

The model does no I/O: `fetchMore` emits `fetch_requested(parent node id)` and the console
answers with `set_children` once the REST call is done, so the GUI thread never waits.
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QMimeData, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QColor, QIcon

from hmi.models.alarms import AlarmChange, AlarmStore
from hmi.models.live_values import LiveValues
from hmi.style import BAD_TEXT, PRIORITY_COLOURS, PRIORITY_TEXT, STALE_TEXT, UNCERTAIN_TEXT, assets_dir
from server.api.schema import NodeOut

MIME_NODES = "application/x-iiot-nodes"
COLUMNS = ["Name", "Value", "Unit", "Quality", "Alarm"]
NODE_ID_ROLE = Qt.ItemDataRole.UserRole + 1
NODE_ROLE = Qt.ItemDataRole.UserRole + 2
Index = QModelIndex | QPersistentModelIndex


def nodes_mime(nodes: list[NodeOut]) -> QMimeData:
    """What a drag of nodes carries (the tree's and the search results'): the tags among them as
    JSON, node id, path and unit each, the trend's drop turns them into pens."""
    seen: dict[str, dict[str, Any]] = {}
    for node in nodes:
        if node.node_class == "tag":
            seen[node.node_id] = {"node_id": node.node_id, "path": node.path, "unit": node.unit}
    mime = QMimeData()
    mime.setData(MIME_NODES, json.dumps(list(seen.values())).encode())
    return mime


class _Item:
    __slots__ = ("children", "fetched", "fetching", "node", "parent")

    def __init__(self, node: NodeOut | None, parent: _Item | None) -> None:
        self.node, self.parent = node, parent
        self.children: list[_Item] = []
        self.fetched = False
        self.fetching = False

    def row(self) -> int:
        return self.parent.children.index(self) if self.parent else 0


class NamespaceModel(QAbstractItemModel):
    """Columns: name, live value, unit, quality, alarm state."""

    fetch_requested = Signal(object)  # parent node id, or None for the roots

    def __init__(self, values: LiveValues, alarms: AlarmStore) -> None:
        super().__init__()
        self.values, self.alarms = values, alarms
        self._root = _Item(None, None)
        self._by_id: dict[str, _Item] = {}
        icons = assets_dir() / "icons"
        self._icons = {cls: QIcon(str(icons / f"{cls}.svg")) for cls in ("folder", "device", "tag")}
        self._worst = alarms.worst_by_source()
        values.changed.connect(self._values_changed)
        values.stale_changed.connect(self._stale_changed)
        alarms.changed.connect(self._alarms_changed)

    # -- structure ------------------------------------------------------------------------
    def _item(self, index: Index) -> _Item:
        return index.internalPointer() if index.isValid() else self._root

    def index(self, row: int, column: int, parent: Index = QModelIndex()) -> QModelIndex:  # noqa: B008
        item = self._item(parent)
        if 0 <= row < len(item.children) and 0 <= column < len(COLUMNS):
            return self.createIndex(row, column, item.children[row])
        return QModelIndex()

    def parent(self, index: Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        if not index.isValid():
            return QModelIndex()
        parent = self._item(index).parent
        if parent is None or parent is self._root:
            return QModelIndex()
        return self.createIndex(parent.row(), 0, parent)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self._item(parent).children)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802
        return len(COLUMNS)

    def hasChildren(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008, N802
        item = self._item(parent)
        if item is self._root:
            return True
        return bool(item.children) or (not item.fetched and item.node is not None and item.node.has_children)

    def canFetchMore(self, parent: Index) -> bool:  # noqa: N802
        item = self._item(parent)
        has = item is self._root or (item.node is not None and item.node.has_children)
        return has and not item.fetched and not item.fetching

    def fetchMore(self, parent: Index) -> None:  # noqa: N802
        item = self._item(parent)
        item.fetching = True
        self.fetch_requested.emit(item.node.node_id if item.node else None)

    def set_children(self, parent_id: str | None, nodes: list[NodeOut]) -> None:
        """The answer to a fetch: merge (keeps expanded branches when re-browsing after an event)."""
        item = self._root if parent_id is None else self._by_id.get(parent_id)
        if item is None:
            return
        item.fetched, item.fetching = True, False
        parent_index = self._index_of(item)
        wanted = {n.node_id: n for n in nodes}
        for row in reversed(range(len(item.children))):
            child = item.children[row]
            if child.node is not None and child.node.node_id not in wanted:
                self.beginRemoveRows(parent_index, row, row)
                gone = item.children.pop(row)
                self._forget(gone)
                self.endRemoveRows()
        present = {c.node.node_id: c for c in item.children if c.node is not None}
        for child in item.children:
            if child.node is not None:
                child.node = wanted[child.node.node_id]
        new = [n for n in nodes if n.node_id not in present]
        if new:
            first = len(item.children)
            self.beginInsertRows(parent_index, first, first + len(new) - 1)
            for node in new:
                child = _Item(node, item)
                item.children.append(child)
                self._by_id[node.node_id] = child
            self.endInsertRows()
        if item.children:
            top = self.index(0, 0, parent_index)
            bottom = self.index(len(item.children) - 1, len(COLUMNS) - 1, parent_index)
            self.dataChanged.emit(top, bottom)

    def clear(self) -> None:
        """Forget everything (another user, another tenant)."""
        self.beginResetModel()
        self._root = _Item(None, None)
        self._by_id.clear()
        self.endResetModel()

    def fetch_failed(self, parent_id: str | None) -> None:
        item = self._root if parent_id is None else self._by_id.get(parent_id)
        if item is not None:
            item.fetching = False

    def loaded_parents(self) -> list[str | None]:
        """Every branch fetched so far (to re-browse after a namespace event)."""
        parents: list[str | None] = [None] if self._root.fetched else []
        parents += [node_id for node_id, item in self._by_id.items() if item.fetched]
        return parents

    def node(self, node_id: str) -> NodeOut | None:
        item = self._by_id.get(node_id)
        return item.node if item else None

    def is_fetched(self, parent_id: str | None) -> bool:
        """Whether the children of this node (None: the roots) are loaded."""
        item = self._root if parent_id is None else self._by_id.get(parent_id)
        return item is not None and item.fetched

    def child_with_path(self, parent_id: str | None, path: str) -> str | None:
        """The node id of the loaded child of `parent_id` (None: a root) at `path`."""
        item = self._root if parent_id is None else self._by_id.get(parent_id)
        if item is None:
            return None
        return next((c.node.node_id for c in item.children if c.node is not None and c.node.path == path), None)

    def index_of(self, node_id: str) -> QModelIndex:
        item = self._by_id.get(node_id)
        return self._index_of(item) if item else QModelIndex()

    def _index_of(self, item: _Item, column: int = 0) -> QModelIndex:
        if item is self._root:
            return QModelIndex()
        return self.createIndex(item.row(), column, item)

    def _forget(self, item: _Item) -> None:
        if item.node is not None:
            self._by_id.pop(item.node.node_id, None)
        for child in item.children:
            self._forget(child)

    # -- data -----------------------------------------------------------------------------
    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        item = self._item(index)
        node = item.node
        if node is None:
            return None
        column = index.column()
        if role == NODE_ID_ROLE:
            return node.node_id
        if role == NODE_ROLE:
            return node
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(node, column)
        if role == Qt.ItemDataRole.DecorationRole and column == 0:
            return self._icons.get(node.node_class)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{node.path}\n{node.node_id}" + (f"\n{node.description}" if node.description else "")
        if role == Qt.ItemDataRole.ForegroundRole:
            return self._foreground(node, column)
        if role == Qt.ItemDataRole.BackgroundRole and column == 4:
            alarm = self._worst.get(node.node_id)
            return QColor(PRIORITY_COLOURS.get(alarm.priority, "#999999")) if alarm else None
        return None

    def _display(self, node: NodeOut, column: int) -> str | None:
        if column == 0:
            return node.display_name or node.browse_name
        if column == 2:
            return node.unit or ""
        if column == 4:
            alarm = self._worst.get(node.node_id)
            return f"{alarm.priority} {alarm.state}" if alarm else ""
        if node.node_class == "device" and column == 3:
            return node.status or ""
        value = self.values.get(node.node_id)
        if value is None or node.node_class != "tag":
            return ""
        if column == 1:
            return f"{value.v:.6g}"
        return self.values.quality_text(node.node_id)

    def _foreground(self, node: NodeOut, column: int) -> QColor | None:
        if column == 4:
            alarm = self._worst.get(node.node_id)
            return QColor(PRIORITY_TEXT.get(alarm.priority, "#000000")) if alarm else None
        if column not in (1, 3):
            return None
        value = self.values.get(node.node_id)
        if value is None:
            return None
        if self.values.stale:
            return QColor(STALE_TEXT)
        return QColor(BAD_TEXT) if value.q == 2 else QColor(UNCERTAIN_TEXT) if value.q == 1 else None

    # -- drag -----------------------------------------------------------------------------
    def flags(self, index: Index) -> Qt.ItemFlag:
        flags = super().flags(index)
        node = self._item(index).node
        if node is not None and node.node_class == "tag":
            flags |= Qt.ItemFlag.ItemIsDragEnabled
        return flags

    def mimeTypes(self) -> list[str]:  # noqa: N802
        return [MIME_NODES]

    def mimeData(self, indexes: list[QModelIndex]) -> QMimeData:  # type: ignore[override]  # noqa: N802
        """Tags as JSON (node id, path, unit): what the trend needs to add a pen."""
        return nodes_mime([node for index in indexes if (node := self._item(index).node) is not None])

    # -- live updates -----------------------------------------------------------------------
    def _values_changed(self, node_ids: set[str]) -> None:
        for node_id in node_ids:
            item = self._by_id.get(node_id)
            if item is not None:
                self.dataChanged.emit(self._index_of(item, 1), self._index_of(item, 3))

    def _alarms_changed(self, change: AlarmChange) -> None:
        """The worst alarm of the tags an event touched (all of them only on a reload)."""
        if change.reset:
            before, self._worst = self._worst, self.alarms.worst_by_source()
            touched = set(before) | set(self._worst)
        else:
            touched = set(change.sources)
            for source in touched:
                worst = self.alarms.worst_of(source)
                if worst is None:
                    self._worst.pop(source, None)
                else:
                    self._worst[source] = worst
        for node_id in touched:
            item = self._by_id.get(node_id)
            if item is not None:
                self.dataChanged.emit(self._index_of(item, 4), self._index_of(item, 4))

    def _stale_changed(self, _stale: bool) -> None:
        self._column_changed(1, 3)

    def _column_changed(self, first: int, last: int) -> None:
        for item in self._by_id.values():
            if item.node is not None and item.node.node_class == "tag":
                self.dataChanged.emit(self._index_of(item, first), self._index_of(item, last))
