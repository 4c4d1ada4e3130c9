"""The main window: banner and trend in the middle, tree, faceplate, alarms, journal, KPIs and
configuration as dock widgets whose layout is saved per user; shortcuts for the frequent actions."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFrame,
    QLabel,
    QMainWindow,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from hmi import __version__
from hmi.client import LinkState
from hmi.console import Console
from hmi.models.alarms import Alarm
from hmi.models.trend_sets import TrendSet
from hmi.qt_async import async_slot
from hmi.views.alarm_journal import AlarmJournal
from hmi.views.alarm_summary import AlarmSummary
from hmi.views.analytics_docks import AnalyticsDocks
from hmi.views.banner import Banner
from hmi.views.config_panel import ConfigPanel
from hmi.views.faceplate import Faceplate
from hmi.views.kpi_panel import KpiPanel
from hmi.views.namespace_view import NamespaceView
from hmi.views.trend_sets import TrendSetMenu
from hmi.views.trend_view import TrendView
from server.api.schema import Me, NodeOut

LAYOUT_VERSION = 1


class MainWindow(QMainWindow):
    """Built once; `console.logged_in` fills it in and applies the user's roles."""

    def __init__(self, console: Console, settings: QSettings) -> None:
        super().__init__()
        self.console, self.settings = console, settings
        self.setObjectName("mainWindow")
        self.setWindowTitle(f"iiot-hmi {__version__}")
        self.banner = Banner(console.alarms)
        self.trend = TrendView(console.trend, console.fetch_history)
        self.trend.pens_wanted.connect(self._add_pens)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.banner)
        layout.addWidget(self.trend, 1)
        self.setCentralWidget(central)
        self.tree = NamespaceView(console.namespace, console.search_nodes, console.load_path)
        self.tree.add_to_trend.connect(self._add_pens)
        self.faceplate = Faceplate(console.values, console.send_command)
        self.tree.node_selected.connect(self.faceplate.show_node)
        self.alarm_summary = AlarmSummary(console.alarms, console.acknowledge, console.shelve, can_ack=False,
                                          can_shelve=False)  # fmt: skip
        self.alarm_summary.open_trend.connect(self._open_alarm_trend)
        self.journal = AlarmJournal(console.journal)
        self.kpis = KpiPanel(console.kpis)
        self.config = ConfigPanel(console.conditions)
        self.analytics = AnalyticsDocks(console, self.trend, self.tree)
        area = Qt.DockWidgetArea
        self.docks = {
            "tree": self._dock("Plant", self.tree, area.LeftDockWidgetArea),
            "faceplate": self._dock("Faceplate", self.faceplate, area.LeftDockWidgetArea),
            "alarms": self._dock("Alarms", self.alarm_summary, area.BottomDockWidgetArea),
            "journal": self._dock("Alarm journal", self.journal, area.BottomDockWidgetArea),
            "kpis": self._dock("Alarm KPIs", self.kpis, area.RightDockWidgetArea),
            "config": self._dock("Configuration", self.config, area.RightDockWidgetArea),
            "analytics": self._dock("Analytics", _scrolled(self.analytics.panel), area.RightDockWidgetArea),
            "models": self._dock("Anomaly models", self.analytics.models, area.BottomDockWidgetArea),
        }
        self.tabifyDockWidget(self.docks["alarms"], self.docks["journal"])
        self.tabifyDockWidget(self.docks["kpis"], self.docks["config"])
        self.tabifyDockWidget(self.docks["config"], self.docks["analytics"])
        self.tabifyDockWidget(self.docks["journal"], self.docks["models"])
        self.docks["alarms"].raise_()
        self.docks["kpis"].raise_()
        self._sized = False
        self.who = QLabel("not logged in")
        self.who.setObjectName("who")
        self.link = QLabel("")
        self.trend_set_label = QLabel("")
        self.trend_set_label.setObjectName("trendSet")
        self.statusBar().addPermanentWidget(self.trend_set_label)
        self.statusBar().addPermanentWidget(self.link)
        self.statusBar().addPermanentWidget(self.who)
        self._build_menus()
        self._layout_key: str | None = None
        self.apply_permissions(None)
        console.logged_in.connect(self._logged_in)
        console.logged_out.connect(self._logged_out)
        console.link_changed.connect(self._link_changed)
        console.alarms.raised.connect(self._alarm_raised)
        self.silenced = False
        self._beeped = 0.0
        self.resize(1400, 860)
        self._default_state = self.saveState(LAYOUT_VERSION)  # for a user who has saved no layout

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        """A dock in `area`; docks tabbed together take the tallest one's minimum height."""
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_menus(self) -> None:
        session = self.menuBar().addMenu("&Session")
        self.logout_action = QAction("Log out", self, shortcut=QKeySequence("Ctrl+Shift+L"))
        self.logout_action.triggered.connect(self.logout)
        quit_action = QAction("Quit", self, shortcut=QKeySequence(QKeySequence.StandardKey.Quit))
        quit_action.triggered.connect(self.close)
        session.addActions([self.logout_action, quit_action])
        view = self.menuBar().addMenu("&View")
        for number, (key, dock) in enumerate(self.docks.items(), start=1):
            focus = QAction(f"Go to {dock.windowTitle()}", self, shortcut=QKeySequence(f"Ctrl+{number}"))
            focus.triggered.connect(lambda _=False, k=key: self.focus_dock(k))
            view.addAction(focus)
        view.addSeparator()
        for dock in self.docks.values():
            view.addAction(dock.toggleViewAction())
        find = QAction("Find in plant tree", self, shortcut=QKeySequence(QKeySequence.StandardKey.Find))
        find.triggered.connect(self.focus_filter)
        view.addAction(find)
        search = QAction("Search the whole plant", self, shortcut=QKeySequence("Ctrl+Shift+F"))
        search.triggered.connect(self.focus_search)
        view.addAction(search)
        self.trend_sets = TrendSetMenu(self.console, self._capture_trend_set, self._apply_trend_set, self)
        self.trend_sets.message.connect(lambda text: self.statusBar().showMessage(text, 10_000))
        self.trend_sets.current_changed.connect(
            lambda name: self.trend_set_label.setText(f"Trend set: {name}" if name else "")
        )
        self.menuBar().addMenu(self.trend_sets)
        alarms = self.menuBar().addMenu("&Alarms")
        self.ack_action = QAction("Acknowledge selected", self, shortcut=QKeySequence("F9"))
        self.ack_action.triggered.connect(self.alarm_summary.acknowledge_selected)
        self.ack_all_action = QAction("Acknowledge all visible", self, shortcut=QKeySequence("Shift+F9"))
        self.ack_all_action.triggered.connect(self.alarm_summary.acknowledge_visible)
        self.silence_action = QAction("Silence audible alarm", self, shortcut=QKeySequence("Ctrl+M"), checkable=True)
        self.silence_action.toggled.connect(lambda on: setattr(self, "silenced", on))
        alarms.addActions([self.ack_action, self.ack_all_action, self.silence_action])
        self.config_menu = self.menuBar().addMenu("&Configuration")
        show_config = QAction("Alarm conditions", self)
        show_config.triggered.connect(lambda: self.focus_dock("config"))
        self.config_menu.addAction(show_config)

    def focus_filter(self) -> None:
        self.focus_dock("tree")
        self.tree.filter.setFocus()

    def focus_search(self) -> None:
        self.focus_dock("tree")
        self.tree.search.box.setFocus()
        self.tree.search.box.selectAll()

    def focus_dock(self, key: str) -> None:
        dock = self.docks[key]
        dock.show()
        dock.raise_()
        dock.widget().setFocus()

    # -- roles ----------------------------------------------------------------------------
    def apply_permissions(self, me: Me | None) -> None:
        """Hide what the user may not do: ack (operators up), shelve (supervisors), configuration
        (admins and engineers). The server enforces the same; this keeps the screen honest."""
        perms = set(me.permissions) if me else set()
        can_ack, can_shelve = "alarms.ack" in perms, "alarms.shelve" in perms
        can_configure = bool(perms & {"alarms.configure", "namespace.write"})
        for widget in (self.alarm_summary.ack_selected, self.alarm_summary.ack_visible, self.alarm_summary.comment):
            widget.setVisible(can_ack)
        self.alarm_summary.shelve_button.setVisible(can_shelve)
        self.ack_action.setEnabled(can_ack)
        self.ack_all_action.setEnabled(can_ack)
        self.docks["config"].setVisible(can_configure)
        self.docks["config"].toggleViewAction().setVisible(can_configure)
        self.config_menu.menuAction().setVisible(can_configure)
        self.analytics.apply_permissions(perms, self.docks)
        self.faceplate.allow_commands(self.console.send_command if "devices.command" in perms else None)
        for key in ("journal", "kpis"):
            self.docks[key].toggleViewAction().setEnabled("alarms.read" in perms)
        self.logout_action.setEnabled(me is not None)

    def _logged_in(self, me: Me) -> None:
        session = self.console.session
        server = session.base_url if session else ""
        self.who.setText(f"{me.username} @ {me.tenant} · {', '.join(me.roles)}")
        self.setWindowTitle(f"iiot-hmi — {me.tenant} / {me.username} — {server}")
        self.apply_permissions(me)
        self._layout_key = f"layout/{server}/{me.tenant}/{me.username}".replace("://", "_")
        self.restore_layout()
        if self.docks["config"].isVisible():
            self.config.refresh()
        if "alarms.read" in me.permissions:
            self.kpis.refresh()
        self.trend_sets.set_enabled(True)
        self.analytics.logged_in(me)
        self.trend_sets.refresh()

    def _logged_out(self) -> None:
        self.who.setText("not logged in")
        self.apply_permissions(None)
        self.trend_sets.forget()
        self.analytics.logged_out()
        self.tree.search.box.clear()
        self.banner.show_link_problem(None)

    def _link_changed(self, state: LinkState, text: str) -> None:
        self.link.setText(state.value)
        self.banner.show_link_problem(text or None)
        if state is LinkState.AUTH_FAILED:  # 4403: retrying cannot help; log in again
            self.logout()

    # -- layout per user ------------------------------------------------------------------
    def save_layout(self) -> None:
        if self._layout_key is None:
            return
        self.settings.setValue(f"{self._layout_key}/state", self.saveState(LAYOUT_VERSION))
        self.settings.setValue(f"{self._layout_key}/geometry", self.saveGeometry())
        self.settings.setValue(
            f"{self._layout_key}/pens", [[p.node_id, p.path, p.unit] for p in self.console.trend.pens]
        )
        self.settings.sync()

    def restore_layout(self) -> None:
        if self._layout_key is None:
            return
        state = self.settings.value(f"{self._layout_key}/state")
        geometry = self.settings.value(f"{self._layout_key}/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray):
            self.restoreState(state, LAYOUT_VERSION)
        else:  # not the previous user's arrangement: the default one
            self.restoreState(self._default_state, LAYOUT_VERSION)
            self._default_sizes()
        self.apply_permissions(self.console.me)  # a saved layout must not reveal a hidden dock
        pens = self.settings.value(f"{self._layout_key}/pens")
        if isinstance(pens, list) and pens:
            self._add_pens([{"node_id": p[0], "path": p[1], "unit": p[2] or None} for p in pens if len(p) == 3])

    # -- saved trend sets -------------------------------------------------------------------
    def _capture_trend_set(self, name: str) -> TrendSet:
        return TrendSet.capture(name, self.console.trend, self.trend.axes_state())

    async def _apply_trend_set(self, trend_set: TrendSet) -> None:
        """Exactly the saved pens (in their order, so in their colours), time and y axes."""
        self.console.clear_trend()
        self.trend.show_time(trend_set.span_s, trend_set.follow, trend_set.start, trend_set.end)
        await self.console.add_to_trend([p.as_tag() for p in trend_set.pens])
        self.trend.apply_axes(trend_set.axes)
        if not trend_set.follow:
            self.trend.fetch_visible_soon()  # the fixed window itself, one bucket per pixel

    # -- actions --------------------------------------------------------------------------
    @async_slot(list)
    async def _add_pens(self, tags: list[NodeOut] | list[dict[str, Any]]) -> None:
        await self.console.add_to_trend(tags)

    @async_slot(object)
    async def _open_alarm_trend(self, alarm: Alarm) -> None:
        if alarm.source and alarm.path:
            unit = alarm.raw.get("unit")
            await self.console.add_to_trend([{"node_id": alarm.source, "path": alarm.path, "unit": unit}])

    def _alarm_raised(self, alarm: Alarm) -> None:
        """A beep per new unacknowledged alarm, at most one a second (a flood is not a siren)."""
        now = time.monotonic()
        if not self.silenced and now - self._beeped >= 1.0:
            self._beeped = now
            QApplication.beep()

    @async_slot()
    async def logout(self) -> None:
        self.save_layout()
        self._layout_key = None
        await self.console.logout()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        """Default dock sizes, once the window has its size (a saved layout replaces them)."""
        super().showEvent(event)
        if not self._sized:
            self._sized = True
            self._default_sizes()

    def _default_sizes(self) -> None:
        horizontal, vertical = Qt.Orientation.Horizontal, Qt.Orientation.Vertical
        self.resizeDocks([self.docks["tree"]], [440], horizontal)
        self.resizeDocks([self.docks["kpis"]], [280], horizontal)
        self.resizeDocks([self.docks["tree"], self.docks["faceplate"]], [520, 300], vertical)
        self.resizeDocks([self.docks["alarms"]], [300], vertical)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.save_layout()
        super().closeEvent(event)


def _scrolled(panel: QWidget) -> QScrollArea:
    """A tall panel in a scroll area: the analytics panel's ~800 px minimum height, tabbed with
    the KPIs, made the window 1,197 px tall, more than a 1080p screen."""
    area = QScrollArea()
    area.setWidget(panel)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    return area
