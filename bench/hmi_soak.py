"""Soak test of the console: 20 live pens and a busy alarm list for N minutes (default 10).

    python -m bench.hmi_soak                 # 10 minutes, offscreen, appends to docs/benchmarks.md
    python -m bench.hmi_soak --minutes 1 --no-doc

A real server and the plant simulator run as subprocesses; the console runs in this process
(offscreen Qt, qasync loop) logged in as the demo admin. Measured: the chart's redraw and
render time with 20 pens of history + live data, how long the GUI thread was ever blocked (a
10 ms timer's worst lateness), value-to-screen latency (sample time to the frame reaching the
console), the alarm rows and transitions seen, and resident memory over the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from bench.common import Row, percentile, publish  # noqa: E402
from bench.hmi_plant import ADMIN, PASSWORD, TENANT, busy_conditions, open_console, start_plant, tags  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def soak(url: str, pens: list[dict[str, object]], minutes: float) -> dict[str, object]:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from hmi.views.login_dialog import LoginForm

    console, window, collector = open_console("soak")
    latencies: list[float] = []
    transitions = [0]
    on_values, on_event = console.on_values, console.on_event

    def timed_values(updates, snapshot):  # type: ignore[no-untyped-def]
        if not snapshot and updates:
            latencies.append(time.time() - max(u.t for u in updates))
        on_values(updates, snapshot)

    def counted_event(event):  # type: ignore[no-untyped-def]
        transitions[0] += event.get("kind") == "alarm"
        on_event(event)

    console.on_values, console.on_event = timed_values, counted_event  # type: ignore[method-assign]
    await console.login(LoginForm(url, TENANT, ADMIN, PASSWORD))
    window.trend.set_span(3600)
    await console.add_to_trend(pens)
    blocked = [0.0]
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        blocked[0] = max(blocked[0], now - last[0] - 0.010)
        last[0] = now

    probe = QTimer()
    probe.timeout.connect(tick)
    probe.start(10)
    redraws: list[float] = []
    renders: list[float] = []
    memory: list[tuple[float, float]] = []
    rows: list[int] = []
    start = time.monotonic()
    while time.monotonic() - start < minutes * 60:
        await asyncio.sleep(5)
        began = time.perf_counter()
        window.trend.redraw()
        redraws.append((time.perf_counter() - began) * 1000)
        for pen in console.trend.pens:
            pen.dirty = True
        began = time.perf_counter()
        window.trend.plot.grab()  # a full repaint of the chart
        renders.append((time.perf_counter() - began) * 1000 + redraws[-1])
        rows.append(window.alarm_summary.model.rowCount())
        memory.append((time.monotonic() - start, rss_mb()))
        if len(memory) % 12 == 0:
            print(f"  {memory[-1][0]:5.0f} s  rss {memory[-1][1]:.0f} MB  rows {rows[-1]}  "
                  f"render {renders[-1]:.1f} ms  blocked max {blocked[0] * 1000:.0f} ms", flush=True)  # fmt: skip
    points = sum(len(p.joined()[0]) for p in console.trend.pens)
    probe.stop()
    await console.close()
    collector.stop()
    QApplication.processEvents()
    return {"redraws": redraws, "renders": renders, "memory": memory, "rows": rows, "latencies": latencies,
            "blocked_ms": blocked[0] * 1000, "transitions": transitions[0], "points": points}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--pens", type=int, default=20)
    p.add_argument("--conditions", type=int, default=200)
    p.add_argument("--backend", default="sqlite", help="accepted for run_all; the soak uses SQLite")
    p.add_argument("--no-doc", action="store_true", help="print only, do not append to docs/benchmarks.md")
    a = p.parse_args(argv)
    print("starting server + simulator (1 h of backfilled history) ...", flush=True)
    plant = start_plant(devices=4, backfill="1h")
    try:
        made = busy_conditions(plant, a.conditions)
        pens = [{"node_id": t["node_id"], "path": t["path"], "unit": t["unit"]} for t in tags(plant)][: a.pens]
        print(f"{made} alarm conditions, {len(pens)} pens; soaking {a.minutes:g} min ...", flush=True)
        from PySide6.QtWidgets import QApplication
        from qasync import QEventLoop

        app = QApplication.instance() or QApplication(sys.argv[:1])
        loop = QEventLoop(app)
        asyncio.set_event_loop(loop)
        with loop:
            r = loop.run_until_complete(soak(plant.url, pens, a.minutes))
    finally:
        plant.stop()
    memory: list[tuple[float, float]] = r["memory"]  # type: ignore[assignment]
    warm = next((m for t, m in memory if t >= 120), memory[0][1])  # after 2 min of warm-up
    end = memory[-1][1]
    growth = end - warm
    renders: list[float] = r["renders"]  # type: ignore[assignment]
    lat: list[float] = r["latencies"]  # type: ignore[assignment]
    rows_seen: list[int] = r["rows"]  # type: ignore[assignment]
    p99_render = percentile(renders, 99)
    note = f"{a.minutes:g} min, {len(pens)} pens, {made} busy conditions"
    table = [
        Row("sqlite", f"chart redraw + full render, 20 pens ({r['points']} points), p99", f"{p99_render:.1f} ms",
            "33 ms (30 fps)", f"{p99_render / 33:.2f}", "≤ 33 ms", "yes" if p99_render <= 33 else "no"),
        Row("sqlite", "longest GUI-thread block (10 ms probe)", f"{r['blocked_ms']:.0f} ms", "–", "–", "≤ 100 ms",
            "yes" if float(r["blocked_ms"]) <= 100 else "no"),  # type: ignore[arg-type]
        Row("sqlite", "value-to-console latency p50 / p99", f"{percentile(lat, 50) * 1000:.0f} / "
            f"{percentile(lat, 99) * 1000:.0f} ms", "50 ms flush", "–", "< 500 ms p99",
            "yes" if percentile(lat, 99) < 0.5 else "no"),
        Row("sqlite", "alarm transitions seen / summary rows (max)", f"{r['transitions']} / {max(rows_seen)}", "–",
            "–", "no freeze", "yes"),
        Row("sqlite", "RSS after warm-up → end", f"{warm:.0f} → {end:.0f} MB ({growth:+.0f} MB)", "–", "–",
            "growth < 10 %", "yes" if growth < 0.10 * warm else "no"),
    ]  # fmt: skip
    notes = [note, "console offscreen (Qt 'offscreen' platform) in the benchmark process; server and simulator "
             "as subprocesses on the same 2 cores",
             "render = redraw() (setData on every pen) + grab() of the chart"]  # fmt: skip
    publish("Console soak (iiot-hmi)", table, notes, "python -m bench.hmi_soak " + " ".join(argv or sys.argv[1:]),
            write=not a.no_doc)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
