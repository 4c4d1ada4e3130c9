"""The server as a Windows service (pywin32's service framework), in layers that can be tested
without Windows:

- `ServiceRunner` runs the server on its own event loop until `stop()` is called from another
  thread (the Service Control Manager calls SvcStop on one thread, SvcDoRun runs on another):
  plain asyncio, no pywin32.
- `make_service_class(modules)` builds the `win32serviceutil.ServiceFramework` subclass from
  the pywin32 modules it is given, so tests hand it stand-ins and drive SvcDoRun/SvcStop.
- `main(argv)` is `iiot-service.exe`: with no argument (how the SCM starts it) it hosts the
  service; otherwise `install | start | stop | restart | remove | debug` go to pywin32's
  `HandleCommandLine`, with `--startup auto` added to `install` (the service starts at boot).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import logging.handlers
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from server.config import Settings, load_settings

SERVICE_NAME = "iiot-server"
DISPLAY_NAME = "IIoT Platform server"
DESCRIPTION = "Historian, alarms and live data for the IIoT platform (iiot-server run)."
COMMANDS = ("install", "update", "remove", "start", "stop", "restart", "debug")

log = logging.getLogger("iiot-server.service")

Serve = Callable[[Settings, asyncio.Event], Awaitable[None]]


def service_config_path(environ: Mapping[str, str]) -> Path | None:
    """The configuration the service reads: `IIOT_CONFIG` when set (system environment), else
    `%PROGRAMDATA%\\iiot\\iiot.toml` when the installer wrote one, else defaults only."""
    if environ.get("IIOT_CONFIG"):
        return Path(environ["IIOT_CONFIG"])
    base = environ.get("PROGRAMDATA")
    if base:
        candidate = Path(base) / "iiot" / "iiot.toml"
        if candidate.is_file():
            return candidate
    return None


def load_service_settings() -> Settings:
    return load_settings(service_config_path(os.environ))


async def serve_until(settings: Settings, stop: asyncio.Event) -> None:
    """Run the real server until `stop` is set, then let it shut down as on SIGTERM (the
    historian flushes). A stop during start-up waits for start-up to finish first, so the
    exit stack that start() builds is always unwound by serve()."""
    from server.app import Server

    server = Server(settings)
    serving = asyncio.create_task(server.serve(install_signal_handlers=False))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        # Server.serve() creates .http once start() has returned; it offers nothing to await.
        while not serving.done() and getattr(server, "http", None) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        http = getattr(server, "http", None)
        if http is not None:
            http.should_exit = True
        await serving
    finally:
        stopping.cancel()


class ServiceRunner:
    """Runs the server in the calling thread until `stop()` is called from any thread."""

    def __init__(self, load: Callable[[], Settings] = load_service_settings, serve: Serve = serve_until) -> None:
        self._load = load
        self._serve = serve
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = threading.Event()
        self.settings: Settings | None = None

    def run(self) -> None:
        """Load the configuration, log to `<data_dir>/logs/iiot-server.log` (a service has no
        console), serve until stopped. Errors propagate: SvcDoRun reports them."""
        self.settings = self._load()
        root = logging.getLogger()
        level = root.level
        handler = _file_logging(self.settings)
        try:
            asyncio.run(self._main(self.settings))
        finally:
            if handler is not None:
                root.removeHandler(handler)
                handler.close()
            root.setLevel(level)

    async def _main(self, settings: Settings) -> None:
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stop_requested.is_set():  # stopped before it could start
            return
        await self._serve(settings, self._stop)

    def stop(self) -> None:
        """Thread-safe; also valid before `run()` has got going (then run returns at once)."""
        self._stop_requested.set()
        loop, event = self._loop, self._stop
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(event.set)


def _file_logging(settings: Settings) -> logging.Handler | None:
    try:
        logs = settings.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            logs / "iiot-server.log", maxBytes=10_000_000, backupCount=5, encoding="utf-8"
        )
    except OSError as exc:
        log.warning("no log file: %s", exc)
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return handler


def make_service_class(win32: Any, runner_factory: Callable[[], ServiceRunner] = ServiceRunner) -> type[Any]:
    """The ServiceFramework subclass; `win32` has the attributes win32serviceutil, win32service
    and servicemanager (the real pywin32 modules on Windows, stand-ins in tests)."""
    framework: type[Any] = win32.win32serviceutil.ServiceFramework

    class IiotService(framework):  # type: ignore[misc]
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION
        # Frozen, the service host is this executable itself (no pythonservice.exe).
        _exe_name_ = sys.executable if getattr(sys, "frozen", False) else None

        def __init__(self, args: Sequence[str]) -> None:
            super().__init__(args)
            self.runner = runner_factory()

        def SvcStop(self) -> None:  # noqa: N802 - pywin32's name
            self.ReportServiceStatus(win32.win32service.SERVICE_STOP_PENDING)
            self.runner.stop()

        def SvcDoRun(self) -> None:  # noqa: N802 - pywin32's name
            win32.servicemanager.LogInfoMsg(f"{SERVICE_NAME}: starting")
            try:
                self.runner.run()
            except BaseException as exc:
                win32.servicemanager.LogErrorMsg(f"{SERVICE_NAME}: stopped on an error: {exc!r}")
                raise
            win32.servicemanager.LogInfoMsg(f"{SERVICE_NAME}: stopped")

    return IiotService


def command_line(argv: Sequence[str]) -> list[str]:
    """pywin32 wants options before the command; `install` without `--startup` gets `auto`."""
    args = list(argv)
    if "install" in args[1:] and not any(a == "--startup" or a.startswith("--startup=") for a in args):
        args[1:1] = ["--startup", "auto"]
    return args


def import_pywin32() -> Any:
    """The three pywin32 modules, or one clear line where they don't exist."""
    try:
        return SimpleNamespace(
            win32serviceutil=importlib.import_module("win32serviceutil"),
            win32service=importlib.import_module("win32service"),
            servicemanager=importlib.import_module("servicemanager"),
        )
    except ImportError:
        raise SystemExit("iiot-service: needs Windows and pywin32 (on Linux use the systemd unit)") from None


def main(argv: Sequence[str] | None = None, win32: Any = None) -> int:
    args = list(sys.argv if argv is None else argv)
    win32 = win32 or import_pywin32()
    cls = make_service_class(win32)
    if len(args) == 1:  # started by the Service Control Manager
        win32.servicemanager.Initialize()
        win32.servicemanager.PrepareToHostSingle(cls)
        win32.servicemanager.StartServiceCtrlDispatcher()
        return 0
    result = win32.win32serviceutil.HandleCommandLine(cls, argv=command_line(args))
    return int(result or 0)
