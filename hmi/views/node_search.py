"""Search the whole plant on the server, including branches nobody has expanded yet: the results
list shows name and path; activating one shows it in the tree, tags go onto the trend (button,
context menu or drag)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from PySide6.QtCore import QMimeData, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from hmi.client.errors import ApiError, ServerUnreachable
from hmi.models.qt_namespace import MIME_NODES, nodes_mime
from hmi.qt_async import async_slot
from hmi.style import assets_dir
from server.api.schema import NodeOut, NodeSearchOut

Search = Callable[[str, int], Awaitable[NodeSearchOut]]
NODE_ROLE = Qt.ItemDataRole.UserRole + 1
LIMIT = 50


class _Results(QListWidget):
    """The list; a drag carries the selected tags like a drag from the tree."""

    def mimeTypes(self) -> list[str]:  # noqa: N802
        return [MIME_NODES]

    def mimeData(self, items: list[QListWidgetItem]) -> QMimeData:  # type: ignore[override]  # noqa: N802
        return nodes_mime([n for item in items if isinstance(n := item.data(NODE_ROLE), NodeOut)])


class NodeSearch(QWidget):
    """Emits `reveal_wanted(node)` to show a result in the tree and `add_to_trend(tags)`."""

    reveal_wanted = Signal(object)  # NodeOut
    add_to_trend = Signal(list)  # list[NodeOut]

    def __init__(self, search: Search | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._search = search
        self._asked = ""  # the text of the newest request: older answers are dropped
        icons = assets_dir() / "icons"
        self._icons = {cls: QIcon(str(icons / f"{cls}.svg")) for cls in ("folder", "device", "tag")}
        self.box = QLineEdit()
        self.box.setObjectName("nodeSearch")
        self.box.setPlaceholderText("Search the whole plant (name or path)…")
        self.box.setClearButtonEnabled(True)
        self.box.textChanged.connect(self._text_changed)
        self.box.returnPressed.connect(self.search_now)
        self._debounce = QTimer(self, singleShot=True, interval=300)
        self._debounce.timeout.connect(self.search_now)
        self.results = _Results()
        self.results.setObjectName("searchResults")
        self.results.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.results.setDragEnabled(True)
        self.results.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.results.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.results.customContextMenuRequested.connect(self._menu)
        self.results.itemActivated.connect(self._activated)
        self.results.itemSelectionChanged.connect(self._selection_changed)
        self.status = QLabel("")
        self.status.setObjectName("searchStatus")
        self.show_button = QPushButton("Show in tree")
        self.show_button.clicked.connect(self._show_current)
        self.add_button = QPushButton("Add to trend")
        self.add_button.clicked.connect(lambda: self.add_to_trend.emit(self.selected_tags()))
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.show_button)
        buttons.addWidget(self.add_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.box)
        layout.addWidget(self.results)
        layout.addLayout(buttons)
        self.panel = [self.results, self.status, self.show_button, self.add_button]
        self._show_panel(False)

    def _show_panel(self, shown: bool) -> None:
        for widget in self.panel:
            widget.setVisible(shown)
        self._selection_changed()

    def _text_changed(self, text: str) -> None:
        if text.strip():
            self._debounce.start()
        else:
            self._debounce.stop()
            self._asked = ""
            self.results.clear()
            self._show_panel(False)

    @async_slot()
    async def search_now(self) -> None:
        """Ask the server (typing pauses 300 ms first; Enter asks at once)."""
        self._debounce.stop()
        text = self.box.text().strip()
        if not text or self._search is None:
            return
        self._asked = text
        try:
            found = await self._search(text, LIMIT)
        except (ApiError, ServerUnreachable) as exc:
            if self._asked == text:
                self.results.clear()
                self.status.setText(f"Search failed: {exc}")
                self._show_panel(True)
            return
        if self._asked != text:  # the operator typed on meanwhile
            return
        self.show_results(found)

    def show_results(self, found: NodeSearchOut) -> None:
        self.results.clear()
        for node in found.nodes:
            item = QListWidgetItem(self._icons.get(node.node_class, QIcon()), f"{node.display_name}  —  {node.path}")
            item.setData(NODE_ROLE, node)
            item.setToolTip(f"{node.path}\n{node.node_id}")
            self.results.addItem(item)
        count = len(found.nodes)
        if not count:
            self.status.setText("Nothing found.")
        elif found.truncated:
            self.status.setText(f"The first {count} matches; type more to narrow.")
        else:
            self.status.setText(f"{count} found.")
        self._show_panel(True)

    def nodes(self) -> list[NodeOut]:
        """Every result shown, in order."""
        return [self.results.item(row).data(NODE_ROLE) for row in range(self.results.count())]

    def selected_tags(self) -> list[NodeOut]:
        nodes = [item.data(NODE_ROLE) for item in self.results.selectedItems()]
        return [n for n in nodes if isinstance(n, NodeOut) and n.node_class == "tag"]

    def _selection_changed(self) -> None:
        self.add_button.setEnabled(bool(self.selected_tags()))
        self.show_button.setEnabled(self.results.currentItem() is not None)

    def _activated(self, item: QListWidgetItem) -> None:
        node = item.data(NODE_ROLE)
        if isinstance(node, NodeOut):
            self.reveal_wanted.emit(node)

    def _show_current(self) -> None:
        item = self.results.currentItem()
        if item is not None:
            self._activated(item)

    def _menu(self, pos: QPoint) -> None:
        item = self.results.itemAt(pos)
        tags = self.selected_tags()
        menu = QMenu(self)
        show = menu.addAction("Show in tree")
        show.setEnabled(item is not None)
        show.triggered.connect(lambda: self._activated(item) if item is not None else None)
        add = menu.addAction("Add to trend")
        add.setEnabled(bool(tags))
        add.triggered.connect(lambda: self.add_to_trend.emit(tags))
        menu.popup(self.results.viewport().mapToGlobal(pos))
