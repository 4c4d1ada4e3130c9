"""The plant tree: lazy browse, name filter of the loaded nodes, a search of the whole plant on
the server (a result is shown in the tree, its branches loaded on the way), drag tags to a trend
or use the context menu."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QPoint, QSortFilterProxyModel, Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QLineEdit, QMenu, QTreeView, QVBoxLayout, QWidget

from hmi.models.qt_namespace import NODE_ROLE, NamespaceModel
from hmi.qt_async import async_slot
from hmi.views.node_search import NodeSearch, Search
from server.api.schema import NodeOut

LoadPath = Callable[[str], Awaitable[str | None]]


class NamespaceView(QWidget):
    """Emits `add_to_trend` with tags and `node_selected` for the faceplate."""

    add_to_trend = Signal(list)  # list[NodeOut]
    node_selected = Signal(object)  # NodeOut

    def __init__(self, model: NamespaceModel, search: Search | None = None, load_path: LoadPath | None = None,
                 parent: QWidget | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.model = model
        self._load_path = load_path
        self.search = NodeSearch(search)
        self.search.reveal_wanted.connect(self.reveal)
        self.search.add_to_trend.connect(self.add_to_trend)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(model)
        self.proxy.setRecursiveFilteringEnabled(True)
        self.proxy.setAutoAcceptChildRows(True)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter loaded nodes by name…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._filter_changed)
        self.tree = QTreeView()
        self.tree.setObjectName("namespaceTree")
        self.tree.setModel(self.proxy)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setDragEnabled(True)
        self.tree.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._menu)
        self.tree.doubleClicked.connect(self._double_clicked)
        self.tree.selectionModel().currentChanged.connect(self._current_changed)
        header = self.tree.header()
        header.setStretchLastSection(True)  # the alarm column takes what is left
        for column, width in ((0, 170), (1, 70), (2, 45), (3, 60)):
            self.tree.setColumnWidth(column, width)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.search)
        layout.addWidget(self.filter)
        layout.addWidget(self.tree, 1)

    def _filter_changed(self, text: str) -> None:
        self.proxy.setFilterFixedString(text)
        if text:
            self.tree.expandAll()

    def selected_tags(self) -> list[NodeOut]:
        nodes = [i.data(NODE_ROLE) for i in self.tree.selectionModel().selectedRows(0)]
        return [n for n in nodes if isinstance(n, NodeOut) and n.node_class == "tag"]

    def _menu(self, pos: QPoint) -> None:
        tags = self.selected_tags()
        menu = QMenu(self)
        action = menu.addAction("Add to trend")
        action.setEnabled(bool(tags))
        action.triggered.connect(lambda: self.add_to_trend.emit(tags))
        menu.popup(self.tree.viewport().mapToGlobal(pos))

    def _double_clicked(self, index: QModelIndex) -> None:
        node = index.data(NODE_ROLE)
        if isinstance(node, NodeOut) and node.node_class == "tag":
            self.add_to_trend.emit([node])

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        node = current.siblingAtColumn(0).data(NODE_ROLE)
        if isinstance(node, NodeOut):
            self.node_selected.emit(node)

    @async_slot(object)
    async def reveal(self, node: NodeOut) -> None:
        """Show a node in the tree (a search result): its branches are loaded, expanded, and it
        is selected (the faceplate follows)."""
        if self._load_path is None:
            return
        node_id = await self._load_path(node.path)
        if node_id is None:
            self.search.status.setText(f"{node.path} is no longer in the plant.")
            return
        if self.filter.text():
            self.filter.clear()  # the filter might hide it
        index = self.proxy.mapFromSource(self.model.index_of(node_id))
        if not index.isValid():
            return
        parent = index.parent()
        while parent.isValid():
            self.tree.expand(parent)
            parent = parent.parent()
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        self.tree.selectionModel().setCurrentIndex(index, flags)
        self.tree.scrollTo(index)
        self.tree.setFocus()
