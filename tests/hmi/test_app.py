"""The console starts (a real Qt window, offscreen)."""

from __future__ import annotations

import subprocess
import sys

from pytestqt.qtbot import QtBot

from hmi.app import build_window


def test_main_window_opens(qtbot: QtBot) -> None:
    window = build_window("http://example:8080")
    qtbot.addWidget(window)  # type: ignore[arg-type]
    window.show()  # type: ignore[attr-defined]
    assert "iiot-hmi" in window.windowTitle()  # type: ignore[attr-defined]
    assert "http://example:8080" in window.centralWidget().text()  # type: ignore[attr-defined]


def test_self_test_and_version_from_the_command_line() -> None:
    r = subprocess.run([sys.executable, "-m", "hmi.app", "--self-test"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-m", "hmi.app", "--version"], capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith("iiot-hmi ")
