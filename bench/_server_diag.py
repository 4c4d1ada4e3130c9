"""Diagnostic launcher for `bench.ingest_latency --gc-log/--gc-freeze`: the unmodified server CLI,
plus a gc callback that records every collection's generation and pause, written as JSON at exit.
On SIGUSR1 it runs gc.collect() + gc.freeze() (what a `gc.freeze()` at the end of start-up in
`server.app` would do); the benchmark sends it once the server is set up, to measure the effect.
With IIOT_BENCH_PROFILE=<file> set (any benchmark that starts `ServerProcess`), the server's main
thread runs under cProfile and the stats are written to that file at exit (`python -m pstats`).

    python -m bench._server_diag run      # same arguments as python -m server.cli
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import signal
import sys
import time

from server import app as _app  # noqa: F401  (import the whole server before freezing)
from server.cli import main

_log = os.environ.get("IIOT_BENCH_GC_LOG", "")
_events: list[tuple[int, float, float]] = []  # (generation, start perf_counter, pause s)
_start = [0.0]


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _start[0] = time.perf_counter()
    else:
        now = time.perf_counter()
        _events.append((info["generation"], now, now - _start[0]))


def _freeze(*_: object) -> None:
    gc.collect()
    gc.freeze()
    _events.append((-1, time.perf_counter(), float(gc.get_freeze_count())))


def _dump() -> None:
    if _log:
        with open(_log, "w", encoding="utf-8") as f:
            json.dump({"events": _events, "tracked": len(gc.get_objects())}, f)


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _freeze)
    if _log:
        gc.callbacks.append(_on_gc)
        atexit.register(_dump)
    _profile = os.environ.get("IIOT_BENCH_PROFILE", "")
    if _profile:
        import cProfile

        profiler = cProfile.Profile()
        try:
            code = profiler.runcall(main)
        finally:
            profiler.dump_stats(_profile)
        sys.exit(code)
    sys.exit(main())
