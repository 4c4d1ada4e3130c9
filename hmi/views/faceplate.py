"""Details of one device or tag: properties, last value, status, and the commands the user may send."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtWidgets import QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from hmi.client.errors import ApiError, ServerUnreachable
from hmi.models.live_values import LiveValues
from hmi.qt_async import async_slot
from server.api.schema import NodeOut

SendCommand = Callable[[str, str, dict[str, Any]], Awaitable[None]]


class Faceplate(QWidget):
    """Shows the selected node; the command box exists only for users with `devices.command`."""

    def __init__(self, values: LiveValues, send: SendCommand | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.values, self._send = values, send
        self.node: NodeOut | None = None
        self.title = QLabel("Select a device or tag")
        self.title.setObjectName("faceplateTitle")
        self.fields: dict[str, QLabel] = {}
        form = QFormLayout()
        for name in ("Path", "Class", "Node id", "Type", "Unit", "Range", "Status", "Value", "Quality", "Time"):
            self.fields[name] = QLabel("")
            form.addRow(name, self.fields[name])
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(form)
        self.commands = QGroupBox("Command")
        self.command = QLineEdit()
        self.command.setPlaceholderText("e.g. start")
        self.args = QLineEdit()
        self.args.setPlaceholderText('arguments as JSON, e.g. {"speed": 1450}')
        self.send_button = QPushButton("Send")
        self.send_button.clicked.connect(self.send_command)
        self.result = QLabel("")
        row = QHBoxLayout()
        row.addWidget(self.command)
        row.addWidget(self.send_button)
        box = QVBoxLayout(self.commands)
        box.addLayout(row)
        box.addWidget(self.args)
        box.addWidget(self.result)
        layout.addWidget(self.commands)
        layout.addStretch(1)
        self.commands.setVisible(False)
        values.changed.connect(self._values_changed)

    def allow_commands(self, send: SendCommand | None) -> None:
        """Commands only for users holding `devices.command` (None hides the box)."""
        self._send = send
        if self.node is not None:
            self.show_node(self.node)

    def show_node(self, node: NodeOut) -> None:
        self.node = node
        self.title.setText(f"<b>{node.display_name or node.browse_name}</b>")
        rng = "" if node.range_low is None and node.range_high is None else f"{node.range_low} … {node.range_high}"
        for name, text in (("Path", node.path), ("Class", node.node_class), ("Node id", node.node_id),
                           ("Type", node.data_type or ""), ("Unit", node.unit or ""), ("Range", rng),
                           ("Status", node.status or "")):  # fmt: skip
            self.fields[name].setText(text)
        self.commands.setVisible(self._send is not None and node.node_class == "device")
        self._show_value()

    def _values_changed(self, node_ids: set[str]) -> None:
        if self.node is not None and self.node.node_id in node_ids:
            self._show_value()

    def _show_value(self) -> None:
        value = self.values.get(self.node.node_id) if self.node else None
        self.fields["Value"].setText("" if value is None else f"{value.v:.6g}")
        self.fields["Quality"].setText(self.values.quality_text(self.node.node_id) if self.node else "")
        self.fields["Time"].setText(
            "" if value is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value.t))
        )

    @async_slot()
    async def send_command(self) -> None:
        if self.node is None or self._send is None or not self.command.text().strip():
            return
        try:
            args = json.loads(self.args.text() or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
            await self._send(self.node.path, self.command.text().strip(), args)
            self.result.setText("accepted for delivery")
        except (ValueError, ApiError, ServerUnreachable) as exc:
            self.result.setText(f"not sent: {exc}")
