"""Console entry point: QApplication + qasync loop, the main window, the login dialog.

`iiot-hmi --server URL [--tenant T --username U]` opens the login dialog prefilled (or logs in
with a remembered refresh token); `--self-test` opens the main window offscreen, renders it
and exits 0 (the installers check a build with it); `--version` prints the version.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hmi import __version__

DEFAULT_SERVER = "http://127.0.0.1:8080"


def default_config_dir() -> Path:
    """Per-user settings: %APPDATA%\\iiot-hmi on Windows, $XDG_CONFIG_HOME/iiot-hmi elsewhere."""
    if os.environ.get("IIOT_HMI_CONFIG_DIR"):
        return Path(os.environ["IIOT_HMI_CONFIG_DIR"])
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "iiot-hmi"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "iiot-hmi"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="iiot-hmi", description="Operator console for iiot-server")
    parser.add_argument("--version", action="version", version=f"iiot-hmi {__version__}")
    parser.add_argument("--server", default=os.environ.get("IIOT_HMI_SERVER", DEFAULT_SERVER))
    parser.add_argument("--tenant", default=os.environ.get("IIOT_HMI_TENANT", ""))
    parser.add_argument("--username", default=os.environ.get("IIOT_HMI_USERNAME", ""))
    parser.add_argument("--config-dir", type=Path, default=None, help="settings and remembered logins")
    parser.add_argument("--self-test", action="store_true", help="open the main window offscreen, render, exit 0")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.self_test:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtWidgets import QApplication
    from qasync import QEventLoop

    from hmi.shell import Shell

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    loop = QEventLoop(app)
    asyncio.set_event_loop(loop)
    shell = Shell(app, args.config_dir or default_config_dir(), args.server, args.tenant, args.username)
    with loop:
        if args.self_test:
            ok, size = loop.run_until_complete(shell.self_test())
            print(f"iiot-hmi self-test: window rendered {size}: {'ok' if ok else 'FAILED'}")
            return 0 if ok else 1
        return int(loop.run_until_complete(shell.run()))


if __name__ == "__main__":
    sys.exit(main())
