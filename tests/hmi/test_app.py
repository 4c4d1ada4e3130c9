"""The console starts: `--self-test` renders the main window offscreen, `--version` answers."""

from __future__ import annotations

import subprocess
import sys


def test_self_test_and_version_from_the_command_line(tmp_path: object) -> None:
    env_cfg = ["--config-dir", str(tmp_path)]
    r = subprocess.run([sys.executable, "-m", "hmi.app", "--self-test", *env_cfg], capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-m", "hmi.app", "--version"], capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith("iiot-hmi ")
