"""The analytics part of the main window in one place: the analytics panel and the model list
(docks of the window), the trend's overlays (bands, markers, forecast), and how they follow
the tree's selection, the session and the user's permissions."""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QDockWidget

from hmi.client.analytics import AnalyticsApi
from hmi.console import Console
from hmi.qt_async import async_slot
from hmi.views.analytics_panel import AnalyticsPanel
from hmi.views.model_list import ModelList
from hmi.views.namespace_view import NamespaceView
from hmi.views.trend_overlays import TrendOverlays
from hmi.views.trend_view import TrendView
from server.api.schema import AnomalyModelOut, ForecastOut, Me, NodeOut

READ, TRAIN = "history.read", "alarms.configure"
"""The server's permissions: reading models, bands and analytics; training and deleting models."""


class AnalyticsDocks(QObject):
    def __init__(self, console: Console, trend: TrendView, tree: NamespaceView) -> None:
        super().__init__(trend)
        self.console = console
        self._api: AnalyticsApi | None = None
        self.panel = AnalyticsPanel(self.api)
        self.models = ModelList(self.api)
        self.overlays = TrendOverlays(trend, self.api)
        tree.node_selected.connect(self._selected)
        self.panel.draw_forecast.connect(self.draw_forecast)
        self.models.trained.connect(self._trained)

    def api(self) -> AnalyticsApi | None:
        """The analytics endpoints of the current session (None when logged out)."""
        session = self.console.session
        if session is None:
            self._api = None
        elif self._api is None or self._api.session is not session:
            self._api = AnalyticsApi(session)
        return self._api

    def _selected(self, node: NodeOut) -> None:
        self.panel.show_node(node)
        if node.node_class == "device":
            self.models.device_hint = node.path
        elif node.node_class == "tag" and node.parent_path:
            self.models.device_hint = node.parent_path

    @async_slot(object)
    async def draw_forecast(self, forecast: ForecastOut) -> None:
        """The forecast's tag goes on the trend first when it is not there yet."""
        if self.console.trend.pen(forecast.node_id) is None:
            await self.console.add_to_trend([{"node_id": forecast.node_id, "path": forecast.path,
                                              "unit": forecast.unit}])  # fmt: skip
        self.overlays.show_forecast(forecast)

    def _trained(self, _: AnomalyModelOut) -> None:
        self.overlays.refresh()

    def apply_permissions(self, perms: set[str], docks: dict[str, QDockWidget]) -> None:
        """Models and analytics for those who read history; Train/Retrain/Delete for engineers and admins."""
        can_read = READ in perms
        for key in ("analytics", "models"):
            if not can_read:
                docks[key].setVisible(False)
            docks[key].toggleViewAction().setVisible(can_read)
        self.models.allow_training(TRAIN in perms)
        self.overlays.toggle.setVisible(can_read)

    def logged_in(self, me: Me) -> None:
        if READ in me.permissions:
            self.models.refresh()

    def logged_out(self) -> None:
        self.panel.clear()
        self.models.set_models([])
        self.overlays.forget()
