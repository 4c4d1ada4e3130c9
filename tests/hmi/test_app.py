"""The console starts: `--self-test` renders the main window offscreen, `--version` answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_self_test_and_version_from_the_command_line(tmp_path: object) -> None:
    env_cfg = ["--config-dir", str(tmp_path)]
    r = subprocess.run([sys.executable, "-m", "hmi.app", "--self-test", *env_cfg], capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-m", "hmi.app", "--version"], capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith("iiot-hmi ")


def test_the_demo_command_line_opens_the_login_prefilled(qloop: object, tmp_path: Path) -> None:
    """`make demo` runs `iiot-hmi --server URL --tenant demo --username admin`."""
    from PySide6.QtWidgets import QApplication

    from hmi.app import parse_args
    from hmi.shell import Shell

    args = parse_args(["--server", "http://127.0.0.1:8080", "--tenant", "demo", "--username", "admin"])
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    shell = Shell(app, tmp_path, args.server, args.tenant, args.username, use_os_keyring=False)
    dialog = shell.login_dialog()
    assert (dialog.server.text(), dialog.tenant.text(), dialog.username.text()) == (
        "http://127.0.0.1:8080", "demo", "admin")  # fmt: skip
    assert dialog.password.text() == "" and "0600" in dialog.keyring_note.text()
    shell.collector.stop(enable_gc=False)  # the tests' own collector keeps running
    shell.window.close()
    shell.window.deleteLater()
