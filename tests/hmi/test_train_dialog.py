"""The Train dialog on its own: what it shows is what it asks for, Retrain fills it from the
selected model over the latest range of the same length, and a cancelled dialog starts nothing.
(`test_analytics_panel.py` drives the training itself against a real server.)"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QDateTime
from PySide6.QtWidgets import QDialog
from pytestqt.qtbot import QtBot

from hmi.views.model_list import ModelList, TrainDialog, TrainRequest
from hmi.views.model_monitoring import psi_words
from server.api.schema import AnomalyModelOut

PUMP1, PUMP2 = "Plant1/Area1/Pump1", "Plant1/Area1/Pump2"
DAY = 86_400.0


def model(path: str, version: int, start: float, end: float, **params: Any) -> AnomalyModelOut:
    return AnomalyModelOut(
        id=version, device=f"ns=2;s={path}", path=path, version=version, status="ready", progress=1.0,
        phase="done", error=None, params=params, features={}, metrics={"f1": 0.9}, train_start=start,
        train_end=end, threshold=1.0, trained_by="engineer", created_at=None, finished_at=None,
        artifact_sha256=None, active=True, live=None,
    )  # fmt: skip


class Answer(TrainDialog):
    """The dialog as the user leaves it: accepted or cancelled, without showing it."""

    answer = QDialog.DialogCode.Rejected

    def exec(self) -> int:
        return int(self.answer.value)


def test_the_dialog_asks_for_what_it_shows(qtbot: QtBot) -> None:
    defaults = TrainRequest(PUMP1, 1_767_225_600.0, 1_767_225_600.0 + 7 * DAY, 0.002, 600, 20)
    dialog = TrainDialog([PUMP1, PUMP2], PUMP1, defaults=defaults)
    qtbot.addWidget(dialog)
    assert dialog.request() == defaults
    dialog.device.setCurrentText(PUMP2)
    dialog.start.setDateTime(QDateTime.fromSecsSinceEpoch(int(defaults.start + DAY)))
    dialog.contamination.setValue(0.01)
    dialog.window_s.setValue(900)
    dialog.step_s.setValue(30)
    assert dialog.request() == TrainRequest(PUMP2, defaults.start + DAY, defaults.end, 0.01, 900, 30)


def test_retrain_needs_a_selected_model(qtbot: QtBot) -> None:
    models = ModelList(lambda: None)
    qtbot.addWidget(models)
    opened: list[Any] = []
    models.make_dialog = lambda *args: opened.append(args)  # type: ignore[assignment]
    models.set_models([model(PUMP1, 1, 0.0, DAY)])
    models.open_train_dialog(retrain=True)
    assert opened == [] and models.status.text() == "Select the model to retrain."


def test_retrain_offers_the_models_device_and_parameters_over_the_latest_range(qtbot: QtBot) -> None:
    models = ModelList(lambda: None)
    qtbot.addWidget(models)
    started: list[TrainRequest] = []
    models.train = started.append  # type: ignore[method-assign, assignment]
    offered: list[tuple[list[str], str | None, TrainRequest | None]] = []

    def make(devices: list[str], device: str | None, defaults: TrainRequest | None) -> TrainDialog:
        offered.append((devices, device, defaults))
        return Answer(devices, device, models, defaults)

    models.make_dialog = make
    now = time.time()
    models.set_models([model(PUMP2, 1, now - 30 * DAY, now - 16 * DAY, contamination=0.003, window_s=120,
                             step_s=10), model(PUMP1, 3, 0.0, DAY)])  # fmt: skip
    models.table.selectRow(next(i for i, m in enumerate(models.models) if m.path == PUMP2))

    models.open_train_dialog(retrain=True)  # cancelled
    ((devices, device, defaults),) = offered
    assert devices == [PUMP1, PUMP2] and device == PUMP2 and defaults is not None
    assert defaults.end - defaults.start == 14 * DAY and abs(defaults.end - now) < 60
    assert (defaults.device, defaults.contamination, defaults.window_s, defaults.step_s) == (PUMP2, 0.003, 120, 10)
    assert started == []

    Answer.answer = QDialog.DialogCode.Accepted
    try:
        models.open_train_dialog(retrain=True)
    finally:
        Answer.answer = QDialog.DialogCode.Rejected
    (request,) = started
    assert (request.device, request.contamination, request.window_s, request.step_s) == (PUMP2, 0.003, 120, 10)
    assert abs(request.end - request.start - 14 * DAY) <= 1  # the dialog keeps whole seconds


def test_monitoring_words_and_a_model_that_is_not_ready(qtbot: QtBot) -> None:
    assert [psi_words(p, 360) for p in (0.05, 0.1, 0.2, 0.25, float("nan"))] == [
        "stable", "moderate shift", "moderate shift", "shifted", "too few windows to judge"]  # fmt: skip
    assert psi_words(0.0, 0) == "too few windows to judge"  # the server says 0.0 for no windows
    models = ModelList(lambda: None)
    qtbot.addWidget(models)
    training = model(PUMP1, 2, 0.0, DAY).model_copy(update={"status": "training"})
    models.set_models([training])
    models.table.selectRow(0)
    assert models.monitoring.title.text() == f"Monitoring: {PUMP1} v2 is training"
    assert models.monitoring.result is None and not models.monitoring.expected.isVisible()
    models.set_models([training.model_copy(update={"status": "ready"})])  # the list refreshed: now ready
    assert models.monitoring.model is not None and models.monitoring.model.status == "ready"  # and asked
