"""Frozen programs (issue #6): bundle sizes, PyInstaller build times, the .deb, and start-up times
of the frozen programs against the same programs run from source (the virtualenv's scripts).

    python -m bench.installers                 # the cached bundles (installers.build), built if missing
    python -m bench.installers --rebuild       # rebuild them first (~3.5 min on 2 cores)
    python -m bench.installers --runs 7 --no-doc

Build times are PyInstaller's wall time recorded when each bundle was built (build.json), since
rebuilding costs minutes of a shared machine; `--rebuild` measures them anew. Start-up times are
wall time from spawning the process: `--version` (interpreter and bundle bootstrap only), `check`
on SQLite (configuration, the database, every protocol adapter imported), `run` until /health
answers, and the console's `--self-test` (Qt, the main window rendered offscreen). The page cache
is warm (not dropped: the machine is shared), so "first run" is the first start after the build
rather than a start after a reboot, and the median is over the runs after it.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import Row, publish, wait_for_quiet
from installers import build
from installers.linux.build_deb import build_deb

VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(data: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return base | {"IIOT_DATA_DIR": str(data), "IIOT_HMI_CONFIG_DIR": str(data / "hmi")} | extra


def time_command(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    return time.perf_counter() - t0


def time_until_health(cmd: list[str], env: dict[str, str]) -> float:
    """Spawn `run`, poll /health, stop it with SIGTERM; seconds from spawn to the first 200."""
    port = _free_port()
    env = env | {"IIOT_HTTP_PORT": str(port), "IIOT_COAP_PORT": "0", "IIOT_OPCUA_PORT": "0"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > 120:
                raise RuntimeError(f"{cmd} did not answer /health")
            time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def series(measure: object, runs: int) -> tuple[float, float]:
    """(first run, median of the others)."""
    assert callable(measure)
    values = [float(measure()) for _ in range(runs + 1)]
    return values[0], statistics.median(values[1:])


def fmt_s(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 10 else f"{x:.1f} s"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="timed starts after the first (median)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the bundles to time PyInstaller anew")
    p.add_argument("--backend", default="sqlite", help="accepted for bench.run_all; only SQLite is timed")
    p.add_argument("--no-doc", action="store_true")
    a = p.parse_args(argv)

    server = build.bundle("iiot-server", force=a.rebuild)
    hmi = build.bundle("iiot-hmi", force=a.rebuild)
    onefile_info = next((build.BUILD / "bundles").glob("iiot-hmi-onefile-*/build.json"), None)
    quiet = wait_for_quiet()
    rows: list[Row] = []
    na = "—"

    def row(figure: str, value: str, baseline: str = na, ratio: str = na) -> None:
        rows.append(Row("—", figure, value, baseline, ratio, "— (report)", "n/a"))

    def size_time(size_bytes: float, seconds: float) -> str:
        return f"{size_bytes / 1e6:.0f} MB / {seconds:.0f} s"

    row("iiot-server bundle (onedir), size / PyInstaller build", size_time(server.size_bytes, server.seconds),
        "81 MB (BASELINES.md, another build)")  # fmt: skip
    row("iiot-hmi bundle (onedir), size / PyInstaller build", size_time(hmi.size_bytes, hmi.seconds),
        "239 MB / 35 s (BASELINES.md)")  # fmt: skip
    if onefile_info is not None:
        import json

        info = json.loads(onefile_info.read_text())
        row("iiot-hmi one file, size / PyInstaller build", size_time(info["size_bytes"], info["seconds"]),
            "91 MB / 88 s (BASELINES.md)")  # fmt: skip
    with tempfile.TemporaryDirectory(dir=build.BUILD) as tmp:
        t0 = time.perf_counter()
        deb = build_deb(server.path, hmi.path, Path(tmp), build.version())
        deb_s = time.perf_counter() - t0
        row("iiot-platform .deb (zstd -3), size / assembly", f"{deb.stat().st_size / 1e6:.0f} MB / {deb_s:.1f} s",
            "xz: 3.5 min (BASELINES.md)")  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        subprocess.run([str(server.executable), "migrate"], env=_env(data), check=True, stdout=subprocess.DEVNULL)
        frozen_server, source_server = [str(server.executable)], [str(VENV_BIN / "iiot-server")]
        frozen_hmi, source_hmi = [str(hmi.executable)], [str(VENV_BIN / "iiot-hmi")]
        cases = [
            ("iiot-server --version", frozen_server, source_server, ["--version"], "cmd"),
            ("iiot-server check (SQLite, all adapters imported)", frozen_server, source_server, ["check"], "cmd"),
            ("iiot-server run → first /health answer", frozen_server, source_server, ["run"], "health"),
            ("iiot-hmi --version", frozen_hmi, source_hmi, ["--version"], "cmd"),
            ("iiot-hmi --self-test (Qt, main window rendered)", frozen_hmi, source_hmi, ["--self-test"], "cmd"),
        ]
        onefile = next((build.BUILD / "bundles").glob("iiot-hmi-onefile-*/dist/iiot-hmi"), None)
        if onefile is not None:  # unpacks itself to a temporary directory at every start
            cases.append(("iiot-hmi --self-test, one-file build", [str(onefile)], source_hmi, ["--self-test"], "cmd"))
        for figure, frozen, source, args, kind in cases:
            env = _env(data)

            def measure(cmd: list[str], args: list[str] = args, kind: str = kind, env: dict[str, str] = env) -> float:
                if kind == "health":
                    return time_until_health(cmd + args, env)
                return time_command(cmd + args, env)

            f_first, f_med = series(lambda frozen=frozen: measure(frozen), a.runs)
            s_first, s_med = series(lambda source=source: measure(source), a.runs)
            measured, baseline = f"{fmt_s(f_first)} / {fmt_s(f_med)}", f"{fmt_s(s_first)} / {fmt_s(s_med)}"
            row(f"start: {figure}, frozen (first / median of {a.runs}) vs from source", measured, baseline,
                f"{f_med / s_med:.2f}")  # fmt: skip
    notes = [
        quiet,
        "Bundles: PyInstaller onedir from installers/linux/*.spec (dev tools excluded), sizes of the directories "
        "as built; build times as recorded in build/bundles/*/build.json when they were built"
        + (" (rebuilt for this run)." if a.rebuild else " (not rebuilt for this run)."),
        "Baseline of a start-up row: the same command from source (.venv/bin scripts, bytecode cached). The page cache "
        "is warm; no caches were dropped on this shared machine.",
    ]
    cmd = "python -m bench.installers" + (" --rebuild" if a.rebuild else "") + f" --runs {a.runs}"
    publish("Frozen programs and packages", rows, notes, cmd, write=not a.no_doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
