"""Console fixtures: a real server (SQLite) with a seeded plant and live samples, and one
`console` fixture that builds the main window against it and cleans up.

Async steps run on a qasync loop driven by `run(...)` from ordinary test functions: the Qt
event loop is the asyncio loop, so widgets repaint while the network is awaited (qtbot.wait*
would hang inside an async test).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
from qasync import QEventLoop

from hmi.client.backoff import Backoff
from hmi.client.credentials import CredentialStore
from hmi.console import Console
from hmi.gc_guard import GuiThreadCollector
from hmi.views.login_dialog import LoginForm
from hmi.views.main_window import MainWindow
from tests.support import LiveServer, TenantHandle, database_url, make_settings

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

T = TypeVar("T")
HARNESS_TASK = "test-harness-run"  # the task `run` drives; cancel_pending leaves it alone
DEVICE = "Plant1/Area1/Pump7"
FLOW, PRESSURE = f"{DEVICE}/Flow", f"{DEVICE}/Pressure"


@pytest.fixture(scope="session")
def hmi_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the console tests, on SQLite (the storage suites cover PostgreSQL)."""
    tmp = tmp_path_factory.mktemp("hmi-live")
    with database_url("sqlite", tmp) as url:
        server = LiveServer(make_settings(tmp, url)).start()
        try:
            yield server
        finally:
            server.stop()


@dataclass
class Plant:
    """A tenant with Plant1/Area1/Pump7 (Flow m³/h, Pressure bar), an hour of history, a Flow
    limit alarm (hi 90), and Pressure samples arriving live every 0.25 s."""

    live: LiveServer
    tenant: TenantHandle
    ids: dict[str, str]
    alarm_id: int
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return self.tenant.name

    def send(self, **values: float) -> None:
        r = self.tenant.engineer.post("/api/v1/telemetry", json={"device": DEVICE, "ts": time.time(), "values": values})
        assert r.status_code == 201, r.text

    def feed(self) -> None:
        i = 0
        while not self.stop.wait(0.25):
            i += 1
            try:
                self.send(Pressure=4.0 + 0.5 * math.sin(i / 8))
            except Exception:  # the server may be restarting (reconnect test)
                time.sleep(0.2)


def seed_plant(live: LiveServer) -> Plant:
    tenant = live.new_tenant("hmi")
    api = tenant.engineer
    ids = {}
    for parent, cls, name, unit in [
        (None, "folder", "Plant1", None), ("Plant1", "folder", "Area1", None),
        ("Plant1/Area1", "device", "Pump7", None),
        (DEVICE, "tag", "Flow", "m3/h"), (DEVICE, "tag", "Pressure", "bar"),
    ]:  # fmt: skip
        body: dict[str, Any] = {"parent": parent, "node_class": cls, "browse_name": name}
        if unit:
            body |= {"unit": unit, "data_type": "Double"}
        r = api.post("/api/v1/nodes", json=body)
        assert r.status_code == 201, r.text
        ids[name] = r.json()["node_id"]
    now = time.time()
    history = [{"device": DEVICE, "ts": now - 3600 + 20 * k, "values": {"Flow": 50.0 + k % 7, "Pressure": 4.0}}
               for k in range(175)]  # fmt: skip
    r = api.post("/api/v1/telemetry", json=history)
    assert r.status_code == 201, r.text
    condition = {"name": "Flow high", "priority": "high", "spec": {"kind": "limit", "tag": FLOW, "hi": 90}}
    r = api.post("/api/v1/alarms/conditions", json=condition)
    assert r.status_code == 201, r.text
    return Plant(live, tenant, ids, int(r.json()["id"]))


@pytest.fixture
def plant(hmi_live: LiveServer) -> Iterator[Plant]:
    p = seed_plant(hmi_live)
    feeder = threading.Thread(target=p.feed, daemon=True)
    feeder.start()
    try:
        yield p
    finally:
        p.stop.set()
        feeder.join(5)


class _TestLoop(QEventLoop):  # type: ignore[misc]
    """qasync's run_until_complete processes Qt events once more after the loop stopped, and
    pytest-qt processes them between tests: callbacks then run with no running loop. Between
    two `run` calls this loop stays the thread's running loop, so they find it."""

    def run_forever(self) -> Any:
        try:
            return super().run_forever()
        finally:
            asyncio.events._set_running_loop(self)


@pytest.fixture(scope="package")
def qloop(qapp: QApplication) -> Iterator[QEventLoop]:
    loop = _TestLoop(qapp)
    asyncio.set_event_loop(loop)
    collector = GuiThreadCollector()  # the server's thread must never free a QObject
    try:
        yield loop
    finally:  # the rest of the suite (pytest-asyncio, asyncio.run) must see no running loop
        collector.stop()
        loop.close()
        asyncio.events._set_running_loop(None)
        asyncio.set_event_loop(None)


def run(loop: QEventLoop, awaitable: Awaitable[T], timeout: float = 30) -> T:
    """Drive the qasync loop (and so Qt) until `awaitable` is done. Every wait on the console's
    loop goes through here, set-up and teardown included: a wait with no bound hangs the run,
    and pytest-timeout cannot end it (its exception raised inside a Qt slot or an asyncio
    callback is caught and logged there, so the test goes on waiting)."""

    backup: list[asyncio.TimerHandle] = []

    def exit_again() -> None:
        app = QApplication.instance()
        assert app is not None
        app.exit()
        backup.append(loop.call_later(0.2, exit_again))

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(awaitable, timeout)
        finally:  # qasync's own stop (QApplication.exit) is now and then lost: exit again until it ends
            backup.append(loop.call_later(0.2, exit_again))

    try:
        return loop.run_until_complete(loop.create_task(bounded(), name=HARNESS_TASK))
    finally:
        for handle in backup:
            handle.cancel()


async def until(check: Callable[[], Any], timeout: float = 15, what: str = "condition") -> Any:
    """Await (never block) until `check()` is true; Qt keeps processing events meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {result!r}")
        await asyncio.sleep(0.05)


@dataclass
class ConsoleHarness:
    """The main window and its controller, logged out until `login` is called."""

    loop: QEventLoop
    config_dir: Path
    console: Console
    window: MainWindow
    server: str

    def run(self, awaitable: Awaitable[T], timeout: float = 30) -> T:
        return run(self.loop, awaitable, timeout)

    def login(self, tenant: str, username: str, password: str, remember: bool = False) -> None:
        self.run(self.console.login(LoginForm(self.server, tenant, username, password, remember)))


@pytest.fixture
def make_console(qloop: QEventLoop, tmp_path: Path) -> Iterator[Callable[..., ConsoleHarness]]:
    """Builds consoles against a server URL; every one is closed after the test. Each has a config
    directory of its own (another workstation) unless given one (the same workstation again)."""
    made: list[ConsoleHarness] = []

    def make(server: str, config_dir: Path | None = None) -> ConsoleHarness:
        if config_dir is None:
            config_dir = tmp_path / f"config{len(made)}"
            config_dir.mkdir()
        credentials = CredentialStore(config_dir, use_os_keyring=False)
        console = Console(config_dir, credentials, Backoff(first_s=0.2, max_s=1.0))
        window = MainWindow(console, QSettings(str(config_dir / "console.ini"), QSettings.Format.IniFormat))
        window.show()
        harness = ConsoleHarness(qloop, config_dir, console, window, server)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        run(qloop, harness.console.close())
    run(qloop, cancel_pending())
    for harness in made:  # delete the windows while their models (owned by the consoles) still exist
        harness.window.close()
        harness.window.deleteLater()
    run(qloop, asyncio.sleep(0.05))


async def cancel_pending() -> None:
    """End what the test left running (slots still awaiting), so nothing runs off the loop later:
    pytest-qt processes Qt events between tests, outside run_until_complete."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me and t.get_name() != HARNESS_TASK]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
def console(make_console: Callable[[str], ConsoleHarness], plant: Plant) -> ConsoleHarness:
    """The main window against the seeded server, logged in as the tenant's operator."""
    harness = make_console(plant.live.base)
    harness.login(plant.name, "operator", "operator" * 3)
    return harness
