"""The console's figures from issue 5 §6: frame time, value-to-screen latency, a 10,000-row alarm
list under a stream of alarm events, and memory after an hour.

    python -m bench.hmi_frames                  # all phases, appends the table to docs/benchmarks.md
    python -m bench.hmi_frames --frames-only --no-doc

Phase 1, frames (no server): the console's TrendView with 20 pens of one hour of 1 s live data
in their ring buffers plus decimated history (min/max/avg per bucket, one bucket per pixel, as
the server answers), offscreen at 1280×720. A frame is what the redraw timer's tick does when
following the present, plus a synchronous full repaint of the trend widget: one new sample per
pen, `redraw()` (window moved, setData on every pen), `repaint()`. Baseline in the same run: a
bare pyqtgraph PlotWidget of the same size with 20 PlotDataItems of the same joined data, peak
downsampling and clip-to-view (BASELINES.md's setting), the same window, setData on every curve
and `repaint()` per frame. Two spans: the 1 h preset (the live hour fills the chart) and the 8 h
preset (seven hours of decimated history with its min/max envelope, then the live hour).

Phase 2, live (real server): `iiot-server` and `iiot-sim` as subprocesses (4 devices, 1 h of
backfilled history), 10,000 limit conditions created through the REST API before the console
logs in: most with their high limit far below the tag's value (standing, unacknowledged: the
10,000-row summary), `--chattering` of them with the limit at the present value (the noise makes
them come and go: the stream of alarm events). The console (main window, offscreen, in this
process) logs in, loads the summary, trends 20 pens at the 1 h preset and runs for `--minutes`.
Measured: the longest GUI-thread block (a 10 ms timer's worst lateness) and its distribution,
value → console (sample time to the stream frame handled), value → chart painted (sample time
to the end of the first chart paint that includes it; the chart redraws at most once a second
at this span), the summary's rows and the alarm events applied, RSS every 5 s.

Memory after an hour: before the live run, every pen's ring buffer is filled with an hour of
1 s samples at once (`add_live_many`), the state after an hour of running; RSS is read then and
every 5 s of the real-time run (the live samples keep arriving into the same buffers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402

from bench.common import Row, percentile, publish, wait_for_quiet  # noqa: E402

UNITS = ["°C", "bar", "m³/h", "%", "kW"]
WIDTH, HEIGHT = 1280, 720


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- synthetic pens (phase 1) ---------------------------------------------------------------------
def signal(seed: int, t: np.ndarray) -> np.ndarray:
    """A process value at 1 s: slow sine, random walk and noise (spikes stay in the min/max)."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 0.05, len(t)))
    return 50 + 10 * np.sin(t / (600 + 97 * seed)) + walk + rng.normal(0, 0.4, len(t))


def decimate(t: np.ndarray, v: np.ndarray, start: float, end: float, buckets: int) -> tuple[np.ndarray, ...]:
    """min/max/avg per bucket over [start, end), as GET /history answers a decimated read."""
    edges = np.linspace(start, end, buckets + 1)
    index = np.searchsorted(t, edges)
    bt, lo, hi, avg = [], [], [], []
    for i in range(buckets):
        chunk = v[index[i] : index[i + 1]]
        if len(chunk):
            bt.append(edges[i])
            lo.append(chunk.min())
            hi.append(chunk.max())
            avg.append(chunk.mean())
    return np.array(bt), np.array(lo), np.array(hi), np.array(avg)


def fill_pens(model: Any, pens: int, now: float, span_s: float, buckets: int) -> None:
    """20 pens: an hour of 1 s samples in the ring buffer, decimated history over the window."""
    from hmi.models.trend import History

    for i in range(pens):
        pen = model.add_pen(f"ns=2;s=bench{i}", f"Plant1/Area{i % 4}/Dev{i}/T{i}", UNITS[i % len(UNITS)])
        t = np.arange(now - max(span_s, 3600) - 60, now, 1.0)
        v = signal(i, t)
        bt, lo, hi, avg = decimate(t, v, now - span_s, now, buckets)
        pen.set_history(History(now - span_s, now, bt, avg, lo, hi))
        live = t >= now - 3600
        pen.add_live_many(t[live], v[live])


async def frames(span_s: float, count: int, pens: int) -> dict[str, list[float]]:
    """The console's trend and the bare baseline, alternating blocks of frames."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from hmi.models.trend import TrendModel
    from hmi.views.trend_view import TrendView

    async def no_fetch(*_: object) -> None:
        return None

    from hmi.gc_guard import GuiThreadCollector

    collector = GuiThreadCollector()  # as the console runs: the cyclic collector on a timer, between frames
    model = TrendModel()
    view = TrendView(model, no_fetch)
    view.resize(WIDTH, HEIGHT)
    view.show()
    QApplication.processEvents()
    now = time.time()
    fill_pens(model, pens, now, span_s, max(50, view.plot.width()))
    model.set_span(span_s)
    view._pace_redraw()  # noqa: SLF001
    view.redraw()
    bare = pg.PlotWidget()
    bare.resize(view.plot.width(), view.plot.height())
    bare.show()
    curves = []
    for pen in model.pens:
        c = bare.plot(pen=pg.mkPen(pen.colour, width=1))
        c.setDownsampling(auto=True, method="peak")
        c.setClipToView(True)
        curves.append(c)
    bare.setXRange(model.view_start, model.view_end, padding=0)
    QApplication.processEvents()
    out: dict[str, list[float]] = {"console": [], "console_redraw": [], "console_paint": [], "bare": []}
    rng = np.random.default_rng(7)
    for block in range(count // 10):
        for _ in range(10):  # the console: one new sample per pen, the timer's redraw, a full repaint
            t = time.time()
            for pen in model.pens:
                pen.add_live(t, 50 + rng.normal(0, 1))
            began = time.perf_counter()
            view.redraw()
            mid = time.perf_counter()
            view.grab()  # a full repaint of the trend widget, rendered now
            out["console"].append((time.perf_counter() - began) * 1000)
            out["console_redraw"].append((mid - began) * 1000)
            out["console_paint"].append(view.plot.last_paint_ms)
            await asyncio.sleep(0.02)
        for _ in range(10):  # the baseline: the same data, window and downsampling, no extras
            t = time.time()
            for pen in model.pens:
                pen.add_live(t, 50 + rng.normal(0, 1))
            began = time.perf_counter()
            bare.setXRange(t - span_s, t, padding=0)
            for pen, c in zip(model.pens, curves, strict=True):
                c.setData(*pen.joined())
            bare.grab()
            out["bare"].append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(0.02)
        del block
    out["points"] = [float(sum(len(p.joined()[0]) for p in model.pens))]
    out["envelope_buckets"] = [float(sum(len(e[0]) for p in model.pens if (e := p.envelope()) is not None))]
    view.close()
    bare.close()
    view.deleteLater()
    bare.deleteLater()
    QApplication.processEvents()
    collector.stop()
    return out


def frame_rows(span_name: str, r: dict[str, list[float]]) -> tuple[list[Row], str]:
    c50, c99 = percentile(r["console"], 50), percentile(r["console"], 99)
    b50, b99 = percentile(r["bare"], 50), percentile(r["bare"], 99)
    row = Row("—", f"frame, trend widget, 20 pens, {span_name} preset ({int(r['points'][0]):,} points): "
              "redraw + full repaint, p50 / p99", f"{c50:.1f} / {c99:.1f} ms",
              f"{b50:.1f} / {b99:.1f} ms (bare PlotWidget, same data)", f"{c99 / b99:.2f}", "≤ 33 ms",
              "yes" if c99 <= 33 else "**no**")  # fmt: skip
    note = (f"{span_name}: console redraw p50 {percentile(r['console_redraw'], 50):.1f} ms + chart paint p50 "
            f"{percentile(r['console_paint'], 50):.1f} ms (paintEvent of the plot); "
            f"{len(r['console'])} console and {len(r['bare'])} baseline frames, alternating blocks of 10; "
            f"{int(r['envelope_buckets'][0]):,} envelope buckets drawn")  # fmt: skip
    return [row], note


# -- live against the real server (phase 2) -----------------------------------------------------
def make_conditions(plant: Any, count: int, chattering: int, deadline_s: float) -> tuple[int, float]:
    """`count` limit conditions through the API, 16 requests at a time; `chattering` of them with
    the limit at the tag's value (noise makes them come and go), the rest standing."""
    import httpx

    from bench.hmi_plant import tags

    every = [t for t in tags(plant) if type(t["value"]) in (int, float)]  # not the boolean tags
    priorities = ["urgent", "high", "medium", "low"]
    bodies = []
    for i in range(count):
        tag = every[i % len(every)]
        value = float(tag["value"])
        chatter = value + (i % 3 - 1) * 0.002 * abs(value or 1)
        standing = value - 10 * abs(value or 1) - 1000  # always above it: standing, unacknowledged
        hi = chatter if i < chattering else standing
        bodies.append({"name": f"bench {i} {tag['path']}", "priority": priorities[i % 4],
                       "spec": {"kind": "limit", "tag": tag["path"], "hi": hi}})  # fmt: skip
    started = time.monotonic()
    made = [0]

    async def create() -> None:
        headers = {"Authorization": f"Bearer {plant.token}"}
        async with httpx.AsyncClient(base_url=plant.url, headers=headers, timeout=60,
                                     limits=httpx.Limits(max_connections=16)) as c:  # fmt: skip
            gate = asyncio.Semaphore(16)

            async def one(body: dict[str, Any]) -> None:
                if time.monotonic() - started > deadline_s:
                    return
                async with gate:
                    if time.monotonic() - started > deadline_s:
                        return
                    r = await c.post("/api/v1/alarms/conditions", json=body)
                    made[0] += r.status_code == 201

            await asyncio.gather(*(one(b) for b in bodies))

    asyncio.run(create())
    return made[0], time.monotonic() - started


async def live(url: str, pens: list[dict[str, Any]], minutes: float) -> dict[str, Any]:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from bench.hmi_plant import ADMIN, PASSWORD, TENANT, open_console
    from hmi.views.login_dialog import LoginForm

    console, window, collector = open_console("frames")
    to_console: list[float] = []
    pending_chart: list[float] = []  # newest sample times handled, waiting for a chart paint
    to_chart: list[float] = []
    events = [0]
    on_values, on_event = console.on_values, console.on_event

    def timed_values(updates, snapshot):  # type: ignore[no-untyped-def]
        on_values(updates, snapshot)
        if not snapshot and updates:
            now = time.time()
            newest = max(u.t for u in updates)
            to_console.append(now - newest)
            if any(console.trend.pen(u.node_id) is not None for u in updates):
                pending_chart.append(newest)

    def counted_event(event):  # type: ignore[no-untyped-def]
        events[0] += event.get("kind") == "alarm"
        on_event(event)

    console.on_values, console.on_event = timed_values, counted_event  # type: ignore[method-assign]
    plot = window.trend.plot
    painted = [plot.painted_at]
    drawn_upto = [0.0]  # newest sample time given to the chart by the last redraw
    redraw = window.trend.redraw

    redraws: list[float] = []
    chart_paints: list[float] = []

    def timed_redraw() -> None:
        redraw()
        redraws.append(window.trend.last_redraw_ms)
        drawn_upto[0] = max((p.live.last_time() or 0.0) for p in console.trend.pens) if console.trend.pens else 0.0

    window.trend.redraw = timed_redraw  # type: ignore[method-assign]

    def check_paint() -> None:  # a sample is on screen when a paint after the redraw that drew it ends
        if plot.painted_at != painted[0]:
            painted[0] = plot.painted_at
            chart_paints.append(plot.last_paint_ms)
            keep = []
            for t in pending_chart:
                if t <= drawn_upto[0]:
                    to_chart.append(plot.painted_at - t)
                else:
                    keep.append(t)
            pending_chart[:] = keep

    blocked: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        blocked.append(now - last[0] - 0.010)
        last[0] = now
        check_paint()

    probe = QTimer()
    probe.timeout.connect(tick)
    probe.start(10)
    began = time.monotonic()
    last[0] = time.perf_counter()
    await console.login(LoginForm(url, TENANT, ADMIN, PASSWORD))  # the first summary is loaded with it
    while window.alarm_summary.model.rowCount() < len(console.alarms.alarms):  # noqa: ASYNC110  # the table's tick
        await asyncio.sleep(0.01)
    login_s = time.monotonic() - began
    login_block = max(blocked, default=0.0)
    rows_at_login = window.alarm_summary.model.rowCount()
    window.trend.set_span(3600)
    await console.add_to_trend(pens)
    for _ in range(50):  # history arrives, then an hour of 1 s samples fills every ring buffer
        await asyncio.sleep(0.1)
    now = time.time()
    for i, pen in enumerate(console.trend.pens):  # the hour before the first live sample, merged in
        first = pen.live.first_time() or now
        t = np.arange(first - 3600, first - 0.5, 1.0)
        pen.fill_gap(t, signal(i, t))
    memory: list[tuple[float, float]] = [(0.0, rss_mb())]
    await asyncio.sleep(0.5)
    blocked.clear()
    redraws.clear()
    chart_paints.clear()
    last[0] = time.perf_counter()
    rows: list[int] = []
    start = time.monotonic()
    while time.monotonic() - start < minutes * 60:
        await asyncio.sleep(5)
        rows.append(window.alarm_summary.model.rowCount())
        memory.append((time.monotonic() - start, rss_mb()))
        if len(memory) % 6 == 0:
            print(f"  {memory[-1][0]:5.0f} s  rss {memory[-1][1]:.0f} MB  rows {rows[-1]}  events {events[0]}  "
                  f"blocked max {max(blocked) * 1000:.0f} ms", flush=True)  # fmt: skip
    probe.stop()
    points = sum(len(p.joined()[0]) for p in console.trend.pens)
    await console.close()
    collector.stop()
    QApplication.processEvents()
    return {"to_console": to_console, "to_chart": to_chart, "blocked": blocked, "rows": rows, "memory": memory,
            "events": events[0], "login_s": login_s, "rows_at_login": rows_at_login, "login_block": login_block,
            "points": points, "paints": chart_paints, "redraws": redraws, "pens": len(console.trend.pens)}  # fmt: skip


def run_qasync(coro: Any) -> Any:
    from PySide6.QtWidgets import QApplication
    from qasync import QEventLoop

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setQuitOnLastWindowClosed(False)  # the frames phase closes its windows; the loop must go on
    loop = QEventLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        return loop.run_until_complete(coro)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=200, help="console frames per span (as many baseline frames)")
    p.add_argument("--pens", type=int, default=20)
    p.add_argument("--minutes", type=float, default=3.0, help="real-time run against the server")
    p.add_argument("--conditions", type=int, default=10_000)
    p.add_argument("--chattering", type=int, default=1_000)
    p.add_argument("--create-deadline", type=float, default=300.0, help="seconds for creating the conditions")
    p.add_argument("--backfill", default="1h", help="history the simulator writes before the run")
    p.add_argument("--frames-only", action="store_true")
    p.add_argument("--no-doc", action="store_true", help="print only, do not append to docs/benchmarks.md")
    a = p.parse_args(argv)
    quiet = wait_for_quiet()
    print(quiet, flush=True)
    table: list[Row] = []
    notes: list[str] = []

    async def both_spans() -> list[tuple[str, dict[str, list[float]]]]:
        return [(name, await frames(span, a.frames, a.pens)) for name, span in (("1 h", 3600.0), ("8 h", 8 * 3600.0))]

    for name, r in run_qasync(both_spans()):
        rows, note = frame_rows(name, r)
        table += rows
        notes.append(note)
    if not a.frames_only:
        from bench.hmi_plant import start_plant, tags

        print(f"starting server + simulator ({a.backfill} of backfilled history) ...", flush=True)
        plant = start_plant(devices=4, backfill=a.backfill)
        try:
            made, took = make_conditions(plant, a.conditions, a.chattering, a.create_deadline)
            print(f"{made} alarm conditions in {took:.0f} s; waiting 12 s for the server's gc freeze", flush=True)
            time.sleep(12)
            pens = [{"node_id": t["node_id"], "path": t["path"], "unit": t["unit"]} for t in tags(plant)][: a.pens]
            r = run_qasync(live(plant.url, pens, a.minutes))
        finally:
            plant.stop()
        blocked = [b * 1000 for b in r["blocked"]]
        worst = max(blocked)
        over = sum(b > 50 for b in blocked)
        memory: list[tuple[float, float]] = r["memory"]
        after_hour, end = memory[0][1], memory[-1][1]
        warm = next((m for t, m in memory if t >= 60), memory[0][1])
        lat, chart = r["to_console"], r["to_chart"]
        table += [
            Row("sqlite", f"longest GUI-thread block, {max(r['rows']):,}-row alarm summary, {r['events']:,} alarm "
                f"events applied in {a.minutes:g} min (10 ms probe)", f"{worst:.0f} ms",
                f"p99 {percentile(blocked, 99):.0f} ms, {over} ticks > 50 ms", "–", "≤ 100 ms",
                "yes" if worst <= 100 else "**no**"),
            Row("sqlite", "value → console (stream frame handled) p50 / p99",
                f"{percentile(lat, 50) * 1000:.0f} / {percentile(lat, 99) * 1000:.0f} ms", "50 ms stream coalescing",
                "–", "< 500 ms p99", "yes" if percentile(lat, 99) < 0.5 else "**no**"),
            Row("sqlite", "value → chart painted p50 / p99 (1 h preset: the chart redraws at most once a second)",
                f"{percentile(chart, 50) * 1000:.0f} / {percentile(chart, 99) * 1000:.0f} ms", "1 s redraw pace",
                "–", "— (report)", "n/a"),
            Row("sqlite", f"RSS after an hour of 1 s data in {r['pens']} pens ({r['points']:,} points) → after 1 "
                f"min → end of the {a.minutes:g}-min run", f"{after_hour:.0f} → {warm:.0f} → {end:.0f} MB",
                "–", "–", "growth < 5 % after warm-up", "yes" if end - warm < 0.05 * warm else "**no**"),
        ]  # fmt: skip
        notes += [
            f"live: 4 simulated devices at 1 s, {made:,} limit conditions created through the API in {took:.0f} s "
            f"({a.chattering:,} chattering at the tag's value, the rest standing); console logged in afterwards "
            f"(login + first summary of {r['rows_at_login']:,} rows: {r['login_s']:.1f} s, longest GUI block during it "
            f"{r['login_block'] * 1000:.0f} ms; GET /alarms and the conditions decoded and built in slices, the "
            f"summary swapped in and sorted once), main window 1600×1000 offscreen, {r['pens']} pens at the 1 h "
            "preset; server and simulator as subprocesses on the "
            "same 2 cores",
            f"the chart in the live run (main window, 20 pens, the 1 h preset): {len(r['redraws'])} redraws, p50 / p99 "
            f"{percentile(r['redraws'], 50):.1f} / {percentile(r['redraws'], 99):.1f} ms; {len(r['paints'])} paints "
            f"(paintEvent of the plot), p50 / p99 {percentile(r['paints'], 50):.1f} / "
            f"{percentile(r['paints'], 99):.1f} ms",
        ]  # fmt: skip
    notes.append(quiet)
    notes.append("frames: offscreen Qt ('offscreen' platform, raster), trend widget 1280×720; frame = one new sample "
                 "per pen + redraw() + grab() of the trend widget (a full repaint); the console's frame includes the "
                 "legend, the per-unit axes, the date axis, the grid, the toolbar, the cursor readout and the "
                 "envelopes, the baseline only the 20 curves and its two axes")  # fmt: skip
    publish("Console frames, latency, 10k alarms, memory (iiot-hmi)", table, notes,
            "python -m bench.hmi_frames " + " ".join(argv or sys.argv[1:]), write=not a.no_doc)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
