"""The Windows service wrapper without Windows: the runner serves the real server until another
thread stops it, the ServiceFramework subclass driven through stand-in pywin32 modules, the
command line handed to pywin32; and the NSIS installer script compiled by makensis around
stand-in payload files."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from installers import build
from server import winservice
from server.config import Settings
from server.storage.database import Database
from tests.installers.conftest import need
from tests.support import free_port


class FakeFramework:
    """What pywin32's ServiceFramework does for a subclass, minus the Service Control Manager."""

    def __init__(self, args: Any) -> None:
        self.args = args
        self.statuses: list[int] = []

    def ReportServiceStatus(self, status: int) -> None:  # noqa: N802 - pywin32's name
        self.statuses.append(status)


def fake_pywin32() -> SimpleNamespace:
    events: list[tuple[str, Any]] = []
    servicemanager = SimpleNamespace(
        LogInfoMsg=lambda msg: events.append(("info", msg)),
        LogErrorMsg=lambda msg: events.append(("error", msg)),
        Initialize=lambda: events.append(("initialize", None)),
        PrepareToHostSingle=lambda cls: events.append(("host", cls)),
        StartServiceCtrlDispatcher=lambda: events.append(("dispatch", None)),
    )
    util = SimpleNamespace(
        ServiceFramework=FakeFramework,
        HandleCommandLine=lambda cls, argv: events.append(("command", (cls, argv))) or 0,
    )
    return SimpleNamespace(
        win32serviceutil=util, win32service=SimpleNamespace(SERVICE_STOP_PENDING=3), servicemanager=servicemanager,
        events=events,
    )  # fmt: skip


def settings_for(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, http_port=free_port(), coap_port=0, opcua_port=0)


def test_runner_serves_the_real_server_until_stopped_from_another_thread(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    db = Database(settings.database_url)
    asyncio.run(db.migrate())
    asyncio.run(db.dispose())
    runner = winservice.ServiceRunner(load=lambda: settings)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            runner.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=run)  # as SvcDoRun: not the main thread, no signal handlers
    thread.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            assert httpx.get(f"http://127.0.0.1:{settings.http_port}/health", timeout=2).json()["status"] == "ok"
            break
        except httpx.TransportError:
            assert thread.is_alive() and time.monotonic() < deadline, errors
            time.sleep(0.2)
    runner.stop()  # as SvcStop, from the control handler's thread
    thread.join(timeout=30)
    assert not thread.is_alive() and not errors, errors
    log = (tmp_path / "logs" / "iiot-server.log").read_text()
    assert "iiot-server started" in log and "historian flushed" in log


def test_stop_before_the_runner_has_started_returns_at_once(tmp_path: Path) -> None:
    served: list[Settings] = []

    async def serve(settings: Settings, stop: asyncio.Event) -> None:
        served.append(settings)

    runner = winservice.ServiceRunner(load=lambda: settings_for(tmp_path), serve=serve)
    runner.stop()
    runner.run()
    assert served == []


def test_stop_during_start_up_waits_for_it_then_stops(tmp_path: Path) -> None:
    """A stop that arrives while the server is still starting is not lost."""
    settings = settings_for(tmp_path)
    db = Database(settings.database_url)
    asyncio.run(db.migrate())
    asyncio.run(db.dispose())
    runner = winservice.ServiceRunner(load=lambda: settings)
    thread = threading.Thread(target=runner.run)
    thread.start()
    while runner._loop is None:  # the loop exists, the server is starting
        time.sleep(0.001)
    runner.stop()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert "historian flushed" in (tmp_path / "logs" / "iiot-server.log").read_text()


def test_service_class_runs_and_stops_through_the_framework(tmp_path: Path) -> None:
    win32 = fake_pywin32()
    calls: list[str] = []

    class Runner:
        def run(self) -> None:
            calls.append("run")

        def stop(self) -> None:
            calls.append("stop")

    cls = winservice.make_service_class(win32, runner_factory=Runner)  # type: ignore[arg-type]
    assert cls._svc_name_ == "iiot-server" and cls._svc_display_name_ == "IIoT Platform server"
    service = cls(["iiot-server"])
    service.SvcDoRun()
    service.SvcStop()
    assert calls == ["run", "stop"] and service.statuses == [3]
    assert [kind for kind, _ in win32.events] == ["info", "info"]


def test_service_class_reports_a_failed_start_to_the_event_log() -> None:
    win32 = fake_pywin32()

    class Broken:
        def run(self) -> None:
            raise RuntimeError("database unreachable")

        def stop(self) -> None:
            pass

    service = winservice.make_service_class(win32, runner_factory=Broken)(["iiot-server"])  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        service.SvcDoRun()
    assert win32.events[-1][0] == "error" and "database unreachable" in win32.events[-1][1]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["iiot-service", "install"], ["iiot-service", "--startup", "auto", "install"]),
        (["iiot-service", "--startup", "manual", "install"], ["iiot-service", "--startup", "manual", "install"]),
        (["iiot-service", "start"], ["iiot-service", "start"]),
        (["iiot-service", "stop"], ["iiot-service", "stop"]),
        (["iiot-service", "remove"], ["iiot-service", "remove"]),
    ],
)
def test_commands_go_to_pywin32(argv: list[str], expected: list[str]) -> None:
    win32 = fake_pywin32()
    assert winservice.main(argv, win32=win32) == 0
    kind, (cls, handed) = win32.events[-1]
    assert kind == "command" and handed == expected and cls._svc_name_ == "iiot-server"


def test_no_argument_hosts_the_service_for_the_scm() -> None:
    win32 = fake_pywin32()
    assert winservice.main(["iiot-service.exe"], win32=win32) == 0
    assert [kind for kind, _ in win32.events] == ["initialize", "host", "dispatch"]


def test_without_pywin32_one_clear_line() -> None:
    with pytest.raises(SystemExit, match="needs Windows and pywin32"):
        winservice.main(["iiot-service", "install"])


def test_service_configuration_path(tmp_path: Path) -> None:
    assert winservice.service_config_path({"IIOT_CONFIG": "C:/x.toml"}) == Path("C:/x.toml")
    assert winservice.service_config_path({"PROGRAMDATA": str(tmp_path)}) is None
    (tmp_path / "iiot").mkdir()
    (tmp_path / "iiot" / "iiot.toml").write_text("[server]\n")
    assert winservice.service_config_path({"PROGRAMDATA": str(tmp_path)}) == tmp_path / "iiot" / "iiot.toml"


def test_makensis_compiles_the_installer_script(tmp_path: Path) -> None:
    """With -WX: a warning (an unused define, a missing file) fails the compile."""
    makensis = need("makensis")
    server, hmi = build.stand_in_payload(tmp_path / "payload")
    setup = build.build_nsis(server, hmi, tmp_path / "out", makensis=makensis)
    head = setup.read_bytes()[:2]
    assert head == b"MZ" and setup.stat().st_size > 50_000
    script = (build.ROOT / "installers" / "windows" / "iiot-platform.nsi").read_text()
    for needle in ('iiot-service.exe" install', 'iiot-service.exe" start', 'iiot-service.exe" remove',
                   "CreateShortcut", "WriteUninstaller", "/PURGE"):  # fmt: skip
        assert needle in script, needle


def test_makensis_refuses_a_missing_payload(tmp_path: Path) -> None:
    makensis = need("makensis")
    server, _hmi = build.stand_in_payload(tmp_path / "payload")
    with pytest.raises(subprocess.CalledProcessError):
        build.build_nsis(server, tmp_path / "no-such-dir", tmp_path / "out", makensis=makensis)
