"""The tenant's anomaly models (device, version, status, training range, metrics, who trained),
and for engineers and admins (`alarms.configure`, as the server requires) Train / Retrain with a
progress bar and Delete. Training is a job on the server: its progress is polled
(`GET /anomaly/models/{id}`) until the model is ready or failed. Beside the list, the selected
model's monitoring (`model_monitoring.py`), for every role that may read history."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QDateTime, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateTimeEdit,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hmi.client.analytics import AnalyticsApi
from hmi.client.errors import ApiError, ServerUnreachable
from hmi.qt_async import async_slot
from hmi.views.model_monitoring import ModelMonitoring
from server.api.schema import AnomalyModelOut

ApiGetter = Callable[[], AnalyticsApi | None]
COLUMNS = ["Device", "Version", "Status", "Active", "Training range", "Metrics", "Trained by"]
POLL_S = 0.5
DONE = ("ready", "failed")


@dataclass
class TrainRequest:
    device: str
    start: float
    end: float
    contamination: float
    window_s: int
    step_s: int


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def metrics_text(metrics: dict[str, object]) -> str:
    """A few numbers of the model's metrics, the scalar ones, briefly."""
    parts = []
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        parts.append(f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}")
        if len(parts) == 4:
            break
    return ", ".join(parts)


class TrainDialog(QDialog):
    """Device, training range, contamination, window (and the bucket step)."""

    def __init__(self, devices: list[str], device: str | None, parent: QWidget | None = None,
                 defaults: TrainRequest | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.setWindowTitle("Train an anomaly model")
        self.device = QComboBox()
        self.device.setEditable(True)
        self.device.addItems(devices)
        if device:
            self.device.setCurrentText(device)
        now = time.time()
        self.start, self.end = QDateTimeEdit(), QDateTimeEdit()
        start = defaults.start if defaults else now - 7 * 86_400
        for edit, t in ((self.start, start), (self.end, defaults.end if defaults else now)):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd HH:mm:ss")
            edit.setDateTime(QDateTime.fromSecsSinceEpoch(int(t)))
        self.contamination = QDoubleSpinBox(decimals=4, minimum=0.0001, maximum=0.1, singleStep=0.0005)
        self.contamination.setValue(defaults.contamination if defaults else 0.001)
        self.window_s = QSpinBox(minimum=30, maximum=360 * 3600, singleStep=30, suffix=" s")
        self.window_s.setValue(defaults.window_s if defaults else 300)
        self.step_s = QSpinBox(minimum=10, maximum=3600, singleStep=10, suffix=" s")
        self.step_s.setValue(defaults.step_s if defaults else 10)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Train")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Device", self.device)
        form.addRow("From", self.start)
        form.addRow("To", self.end)
        form.addRow("Contamination", self.contamination)
        form.addRow("Window", self.window_s)
        form.addRow("Step", self.step_s)
        form.addRow(buttons)

    def request(self) -> TrainRequest:
        return TrainRequest(self.device.currentText().strip(), float(self.start.dateTime().toSecsSinceEpoch()),
                            float(self.end.dateTime().toSecsSinceEpoch()), self.contamination.value(),
                            self.window_s.value(), self.step_s.value())  # fmt: skip


class ModelList(QWidget):
    """`allow_training(False)` leaves a read-only list (viewers, operators)."""

    trained = Signal(object)  # AnomalyModelOut, ready: the trend may now draw bands for the device

    def __init__(self, api: ApiGetter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._api = api
        self.models: list[AnomalyModelOut] = []
        self.device_hint: str | None = None  # the device selected in the tree: the dialog's default
        self.make_dialog: Callable[[list[str], str | None, TrainRequest | None], TrainDialog] = (
            lambda devices, device, defaults: TrainDialog(devices, device, self, defaults)
        )
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("modelsTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.train_button = QPushButton("Train…")
        self.train_button.setObjectName("trainModel")
        self.train_button.clicked.connect(lambda: self.open_train_dialog(retrain=False))
        self.retrain_button = QPushButton("Retrain…")
        self.retrain_button.clicked.connect(lambda: self.open_train_dialog(retrain=True))
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete_selected)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.monitoring = ModelMonitoring(api)
        self.table.itemSelectionChanged.connect(lambda: self.monitoring.show_model(self.selected()))
        buttons = QHBoxLayout()
        for b in (self.refresh_button, self.train_button, self.retrain_button, self.delete_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        listing = QWidget()
        left = QVBoxLayout(listing)
        left.setContentsMargins(0, 0, 0, 0)
        left.addLayout(buttons)
        left.addWidget(self.table, 1)
        left.addWidget(self.progress)
        left.addWidget(self.status)
        # Beside the list, not under it: the dock stays as short as before (the console's
        # minimum must fit a 1366 × 768 laptop).
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(listing)
        self.splitter.addWidget(self.monitoring)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)
        self.can_train = False
        self.training = False
        self.allow_training(False)

    def allow_training(self, on: bool) -> None:
        self.can_train = on
        for b in (self.train_button, self.retrain_button, self.delete_button):
            b.setVisible(on)

    def selected(self) -> AnomalyModelOut | None:
        rows = self.table.selectionModel().selectedRows()
        return self.models[rows[0].row()] if rows and rows[0].row() < len(self.models) else None

    # -- the list -----------------------------------------------------------------------------
    @async_slot()
    async def refresh(self) -> None:
        await self.reload()

    async def reload(self) -> None:
        """The tenant's models again (awaitable: `refresh` is the slot)."""
        api = self._api()
        if api is None:
            return
        try:
            models = await api.models()
        except (ApiError, ServerUnreachable) as exc:
            self.status.setText(f"Models not loaded: {exc}")
            return
        self.set_models(models)

    def set_models(self, models: list[AnomalyModelOut]) -> None:
        selected = self.selected()
        self.models = sorted(models, key=lambda m: (m.path, -m.version))
        self.table.setRowCount(len(self.models))
        for row, m in enumerate(self.models):
            status = m.status if m.status not in ("queued", "training") else f"{m.status} {m.progress:.0%} {m.phase}"
            if m.status == "failed" and m.error:
                status = f"failed: {m.error}"
            cells = [m.path, str(m.version), status, "yes" if m.active else "", f"{_when(m.train_start)} – "
                     f"{_when(m.train_end)}", metrics_text(m.metrics), m.trained_by]  # fmt: skip
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 2 and m.error:
                    item.setToolTip(m.error)
                self.table.setItem(row, col, item)
            if selected is not None and m.id == selected.id:
                self.table.selectRow(row)
        self.table.resizeColumnsToContents()
        self.monitoring.show_model(self.selected())  # rows moved or changed status under the selection
        if not self.training:
            self.status.setText(f"{len(self.models)} model version(s)")

    # -- training -----------------------------------------------------------------------------
    def open_train_dialog(self, retrain: bool) -> None:
        """Retrain: the selected model's device and parameters over the latest equally long range."""
        devices = sorted({m.path for m in self.models})
        chosen, defaults = self.device_hint, None
        model = self.selected() if retrain else None
        if retrain and model is None:
            self.status.setText("Select the model to retrain.")
            return
        if model is not None:
            chosen = model.path
            span, now = model.train_end - model.train_start, time.time()
            p = model.params
            defaults = TrainRequest(model.path, now - span, now, float(p.get("contamination", 0.001)),
                                    int(p.get("window_s", 300)), int(p.get("step_s", 10)))  # fmt: skip
        dialog = self.make_dialog(devices, chosen, defaults)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.train(dialog.request())

    @async_slot(object)
    async def train(self, req: TrainRequest) -> None:
        """Start the job and follow its progress until the model is ready (or failed)."""
        api = self._api()
        if api is None or not req.device:
            return
        try:
            model = await api.train(req.device, req.start, req.end, contamination=req.contamination,
                                    window_s=req.window_s, step_s=req.step_s)  # fmt: skip
        except (ApiError, ServerUnreachable) as exc:
            self.status.setText(f"Not trained: {exc.detail if isinstance(exc, ApiError) else exc}")
            return
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.training = True
        self.train_button.setEnabled(False)
        self.retrain_button.setEnabled(False)
        try:
            while model.status not in DONE:
                self.progress.setValue(int(model.progress * 100))
                self.progress.setFormat(f"{model.path} v{model.version}: {model.phase or model.status} %p%")
                self.status.setText(f"Training {model.path} v{model.version}…")
                await asyncio.sleep(POLL_S)
                try:
                    model = await api.model(model.id)
                except ServerUnreachable:
                    continue  # the link comes back; the job runs on the server meanwhile
        except ApiError as exc:  # deleted meanwhile
            self.status.setText(f"Training stopped: {exc.detail}")
            return
        finally:
            self.training = False
            self.train_button.setEnabled(True)
            self.retrain_button.setEnabled(True)
        await self.reload()
        self.progress.setValue(100 if model.status == "ready" else self.progress.value())
        self.progress.setFormat(f"{model.path} v{model.version}: {model.status}")
        if model.status == "ready":
            self.status.setText(f"{model.path} v{model.version} is ready: {metrics_text(model.metrics)}")
            self.trained.emit(model)
        else:
            self.status.setText(f"{model.path} v{model.version} failed: {model.error}")

    @async_slot()
    async def delete_selected(self) -> None:
        api, model = self._api(), self.selected()
        if api is None or model is None:
            self.status.setText("Select a model to delete.")
            return
        try:
            await api.delete_model(model.id)
        except (ApiError, ServerUnreachable) as exc:
            self.status.setText(f"Not deleted: {exc}")
            return
        self.status.setText(f"Deleted {model.path} v{model.version}")
        await self.reload()
