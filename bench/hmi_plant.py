"""A running plant for the console's soak test and screenshot: `iiot-server` and `iiot-sim` as
subprocesses on a temporary data directory, plus alarm conditions that keep the summary busy."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
TENANT, ADMIN, PASSWORD = "demo", "admin", "demo-admin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningPlant:
    url: str
    data_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    token: str = ""

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def start_plant(devices: int = 3, backfill: str = "30m", period: float = 1.0, faults: int = 0) -> RunningPlant:
    """Server + simulator; returns once the simulator's tags have values and history."""
    data = Path(tempfile.mkdtemp(prefix="iiot-hmi-plant-"))
    port = free_port()
    env = os.environ | {"IIOT_DATA_DIR": str(data), "IIOT_HTTP_PORT": str(port), "IIOT_ADMIN_PASSWORD": PASSWORD,
                        "IIOT_OPCUA_PORT": "0", "IIOT_COAP_PORT": "0", "IIOT_LOG_LEVEL": "warning"}  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    plant = RunningPlant(url, data)
    subprocess.run([BIN / "iiot-server", "init", "--tenant", TENANT, "--admin", ADMIN], env=env, check=True,
                   capture_output=True)  # fmt: skip
    log = (data / "server.log").open("wb")
    plant.procs.append(subprocess.Popen([BIN / "iiot-server", "run"], env=env, stdout=log, stderr=log))
    for _ in range(120):
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    sim = [BIN / "iiot-sim", "--server", url, "--tenant", TENANT, "--username", ADMIN, "--devices", str(devices),
           "--publish", "http", "--period", str(period), "--backfill", backfill]  # fmt: skip
    if faults:
        sim += ["--random-faults", str(faults)]
    sim_log = (data / "simulator.log").open("wb")
    plant.procs.append(subprocess.Popen(sim, env=env | {"IIOT_SIM_PASSWORD": PASSWORD}, stdout=sim_log,
                                        stderr=sim_log))  # fmt: skip
    r = httpx.post(url + "/api/v1/auth/login", json={"tenant": TENANT, "username": ADMIN, "password": PASSWORD})
    plant.token = r.raise_for_status().json()["access_token"]
    with plant.api() as api:
        deadline, newest = time.monotonic() + 300, 0.0
        while time.monotonic() < deadline:  # live once the newest sample keeps moving after the backfill
            r = api.get("/api/v1/values")
            values = r.json() if r.status_code == 200 else []
            live = [v["ts"] for v in values if v["ts"] and v["ts"] > time.time() - 10]
            if len(live) >= devices * 6 and newest and max(live) > newest:
                return plant
            newest = max(live, default=0.0)
            time.sleep(2)
    plant.stop()
    raise RuntimeError("the simulator did not start; see its log")


def tags(plant: RunningPlant) -> list[dict[str, Any]]:
    """Every tag with its latest value, by path."""
    with plant.api() as api:
        return sorted((v for v in api.get("/api/v1/values").json() if v["value"] is not None), key=lambda v: v["path"])


def busy_conditions(plant: RunningPlant, count: int) -> int:
    """Limit alarms with their high limit at the tag's present value: noise makes them come and go."""
    priorities = ["urgent", "high", "medium", "low"]
    made = 0
    every = tags(plant)
    with plant.api() as api:
        for i, tag in enumerate(t for t in every for _ in range(count // len(every) + 1)):
            if made >= count:
                break
            offset = (i % 3 - 1) * 0.002 * abs(tag["value"] or 1)
            body = {"name": f"busy {i} {tag['path']}", "priority": priorities[i % 4],
                    "spec": {"kind": "limit", "tag": tag["path"], "hi": tag["value"] + offset}}  # fmt: skip
            if api.post("/api/v1/alarms/conditions", json=body).status_code == 201:
                made += 1
    return made


def open_console(name: str) -> tuple[Any, Any, Any]:
    """The console's main window as `iiot-hmi` builds it, with a throwaway config directory and
    no OS keyring: (console, window, GUI-thread collector). Call it with a QApplication running."""
    from PySide6.QtCore import QSettings

    from hmi.client.credentials import CredentialStore
    from hmi.console import Console
    from hmi.gc_guard import GuiThreadCollector
    from hmi.views.main_window import MainWindow

    config = Path(os.environ.get("TMPDIR", "/tmp")) / f"hmi-{name}-{os.getpid()}"
    config.mkdir(exist_ok=True)
    console = Console(config, CredentialStore(config, use_os_keyring=False))
    window = MainWindow(console, QSettings(str(config / "console.ini"), QSettings.Format.IniFormat))
    collector = GuiThreadCollector(parent=console)
    collector.freeze()  # as hmi/shell.py does
    window.resize(1600, 1000)
    window.show()
    return console, window, collector
