"""The console at plant scale, without a server: 10,000 alarms updated by events as row inserts,
removals and single-row changes (never a reset), blinking only what is on screen, a banner and a
tree column that don't walk every alarm per event; trend pens whose live tail is reduced per pixel
and a chart that redraws only what changed."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication

from hmi.models.alarms import AlarmStore
from hmi.models.qt_alarms import AlarmTableModel
from hmi.models.ring_buffer import RingBuffer
from hmi.models.trend import History, TrendModel, TrendPen
from hmi.views.alarm_summary import AlarmSummary
from hmi.views.banner import Banner

PRIORITIES = ["urgent", "high", "medium", "low"]


def alarm(i: int, state: str = "unack_active", t: float | None = None, priority: str | None = None) -> dict[str, Any]:
    t = 1_000_000.0 + i if t is None else t
    path = f"Plant1/Area{i % 7}/Dev{i % 50}/T{i % 13}"
    return {"id": i, "name": f"a{i}", "state": state, "priority": priority or PRIORITIES[i % 4], "changed_at": t,
            "active_since": t, "path": path, "source": f"ns=2;s={path}", "message": f"alarm {i}"}  # fmt: skip


def test_ring_buffer_extend_is_append_in_bulk() -> None:
    rng = np.random.default_rng(1)
    for capacity in (5, 64):
        one, bulk = RingBuffer(capacity), RingBuffer(capacity)
        for _ in range(6):
            t = np.sort(rng.uniform(0, 100, rng.integers(1, 40))) + rng.choice([0, 50, 120])
            t[rng.integers(0, len(t))] -= 30  # an out-of-order sample: ignored by both
            v = rng.normal(size=len(t))
            for ti, vi in zip(t, v, strict=True):
                one.append(float(ti), float(vi))
            bulk.extend(t, v)
            assert [a.tolist() for a in one.arrays()] == [a.tolist() for a in bulk.arrays()]
    ring = RingBuffer(10)
    ring.extend(np.arange(25.0), np.arange(25.0))
    ring.drop_before(20.0)
    assert ring.arrays()[0].tolist() == [20.0, 21.0, 22.0, 23.0, 24.0]


def test_pen_display_reduces_the_live_tail_per_pixel_and_keeps_the_newest_sample() -> None:
    pen = TrendPen("n", "Plant/T", "bar", "#000", capacity=20_000)
    pen.set_history(History.from_columns(0, 1000, [0, 500], None, [1, 1], [3, 3], [2, 2]))
    t = np.arange(1000.0, 4600.0)
    v = np.sin(t)
    pen.add_live_many(t, v)
    dt, dy = pen.display(10.0)  # 10 s per pixel: 360 buckets of max and min, then the newest sample
    assert dt[:2].tolist() == [0, 500] and len(dt) == 2 + 2 * 360 + 1
    assert dt[-1] == 4599.0 and dy[-1] == v[-1]
    assert dy[2:-1].max() == v[:-1].max() and dy[2:-1].min() == v[:-1].min()  # spikes survive
    assert pen.display(10.0)[0] is dt  # cached until the pen changes
    assert len(pen.display(0.5)[0]) == len(pen.joined()[0])  # sparser than a pixel: as it is
    pen.add_live(4600.0, 9.0)
    assert pen.display(10.0)[1][-1] == 9.0


def test_alarm_store_keeps_counts_newest_and_worst_per_tag_without_walking_them() -> None:
    store = AlarmStore()
    changes: list[Any] = []
    store.changed.connect(changes.append)
    store.replace_all([alarm(i) for i in range(1000)])
    assert changes[-1].reset and store.unacked_count() == 1000 and not store.newest_known
    assert store.newest_unacked() is not None and store.newest_unacked().id == 999  # type: ignore[union-attr]
    store.apply_event({**alarm(5, "ack_active"), "event": "acknowledged"})
    assert changes[-1].ids == {5} and changes[-1].sources == {alarm(5)["source"]} and not changes[-1].reset
    assert store.unacked_count() == 999 and store.newest_known
    store.apply_event({**alarm(2000, t=2e6), "event": "activated"})
    assert store.newest_unacked().id == 2000 and store.newest_known  # type: ignore[union-attr]
    store.apply_event({**alarm(2000, "normal", t=2e6 + 1), "event": "cleared"})
    assert store.unacked_count() == 999 and not store.newest_known
    assert store.newest_unacked().id == 999  # type: ignore[union-attr]
    source = str(alarm(3)["source"])
    assert store.worst_of(source) == store.worst_by_source()[source]
    assert store.unacked_count() == len(store.unacked())


@pytest.fixture
def app() -> QApplication:
    return QApplication.instance() or QApplication([])  # type: ignore[return-value]


def test_ten_thousand_alarms_change_by_rows_not_resets(app: QApplication) -> None:
    store = AlarmStore()
    store.replace_all([alarm(i) for i in range(10_000)])
    model = AlarmTableModel(store)
    assert [a.id for a in model.rows] == [a.id for a in store.visible()]
    resets, inserted, removed, changed = [0], [0], [0], [0]
    model.modelReset.connect(lambda: resets.__setitem__(0, resets[0] + 1))
    model.rowsInserted.connect(lambda *_: inserted.__setitem__(0, inserted[0] + 1))
    model.rowsRemoved.connect(lambda *_: removed.__setitem__(0, removed[0] + 1))
    model.dataChanged.connect(lambda *_: changed.__setitem__(0, changed[0] + 1))
    began = time.perf_counter()
    for i in range(0, 200, 2):
        store.apply_event({**alarm(i, "ack_active"), "event": "acknowledged"})  # same place: the row changes
    for i in range(1, 200, 2):
        store.apply_event({**alarm(i, t=3e6 + i), "event": "activated"})  # active again: moves to the top
    for i in range(10_000, 10_050):
        store.apply_event({**alarm(i), "event": "activated"})  # new rows
    for i in range(200, 250):
        store.apply_event({**alarm(i, "normal"), "event": "cleared"})  # acknowledged and cleared: gone
    model._apply()  # noqa: SLF001  # the tick's timer
    took = time.perf_counter() - began
    assert resets[0] == 0 and inserted[0] == 150 and removed[0] == 150 and changed[0] == 100
    assert [a.id for a in model.rows] == [a.id for a in store.visible()] and model.rowCount() == 10_000
    assert took < 1.0, f"applying 300 events to 10,000 rows took {took:.2f} s"
    store.apply_event({**alarm(7, "ack_active"), "event": "acknowledged"})
    model._apply()  # noqa: SLF001
    assert model.rows[model.row_of(7)].state == "ack_active"  # type: ignore[index]
    for i in range(300, 3300):  # a quarter of the rows in one tick: one reset is cheaper
        store.apply_event({**alarm(i, "ack_active"), "event": "acknowledged"})
    model._apply()  # noqa: SLF001
    assert resets[0] == 1 and [a.id for a in model.rows] == [a.id for a in store.visible()]


def test_blinking_repaints_only_visible_unacknowledged_rows_and_selection_survives(app: QApplication) -> None:
    store = AlarmStore()
    store.replace_all([alarm(i, "ack_active" if i % 3 else "unack_active") for i in range(10_000)])
    banner = Banner(store)
    summary = AlarmSummary(store, acknowledge=None, shelve=None, can_ack=True, can_shelve=True)  # type: ignore[arg-type]
    summary.resize(900, 400)
    summary.show()
    app.processEvents()
    first, last = summary.visible_rows()
    assert first == 0 and 5 < last < 40
    spans: list[tuple[int, int, int, int]] = []
    summary.model.dataChanged.connect(lambda a, b, *_: spans.append((a.row(), b.row(), a.column(), b.column())))
    summary.model._toggle_blink()  # noqa: SLF001
    assert len(spans) == 1 and first <= spans[0][0] <= spans[0][1] <= last and spans[0][2:] == (0, 1)
    summary.select_row(3)
    chosen = summary.selected()[0].id
    for i in range(10_000, 10_020):  # new alarms above the selection: it stays on the same alarm
        store.apply_event({**alarm(i, priority="urgent", t=5e6 + i), "event": "activated"})
    summary.model._apply()  # noqa: SLF001
    assert [a.id for a in summary.selected()] == [chosen]
    time.sleep(0.06)  # the banner follows a burst every 50 ms
    app.processEvents()
    assert banner.alarm.text().startswith(f"{store.unacked_count()} unacknowledged")
    summary.close()


def test_trend_redraws_only_what_changed(app: QApplication) -> None:
    from hmi.views.trend_view import TrendView

    async def no_fetch(*_: object) -> None:
        return None

    model = TrendModel()
    view = TrendView(model, no_fetch)
    view.resize(1000, 600)
    view.show()
    now = time.time()
    for i in range(20):
        pen = model.add_pen(f"n{i}", f"P/T{i}", ["bar", "°C", "%"][i % 3])
        assert pen is not None
        t = np.arange(now - 3600, now, 1.0)
        pen.add_live_many(t, np.sin(t / 60 + i))
    model.set_span(3600)
    view.redraw()
    app.processEvents()
    drawn = {pen.node_id: view.curves[pen.node_id].line.xData for pen in model.pens}
    assert all(not pen.dirty for pen in model.pens)
    assert all(len(x) < 3600 for x in drawn.values())  # reduced to about two points per pixel
    model.pens[0].add_live(time.time(), 1.0)
    view.redraw()
    assert view.curves["n0"].line.xData is not drawn["n0"]  # the changed pen got new data ...
    assert all(view.curves[p.node_id].line.xData is drawn[p.node_id] for p in model.pens[1:])  # ... no other
    calls: list[int] = []
    view.redraw = lambda: calls.append(1)  # type: ignore[method-assign]
    model.paused = True
    view._last_redraw = 0.0  # noqa: SLF001
    view._tick()  # noqa: SLF001  # nothing changed: no redraw
    assert calls == []
    model.pens[3].add_live(time.time() + 1, 2.0)
    view._tick()  # noqa: SLF001
    assert calls == [1]
    view.close()


def test_a_heartbeat_reporting_dropped_events_asks_for_a_reload() -> None:
    from hmi.client.stream import LiveStream

    class Listener:
        def __init__(self) -> None:
            self.events: list[dict[str, Any]] = []

        def on_values(self, updates: object, snapshot: bool) -> None: ...

        def on_event(self, event: dict[str, Any]) -> None:
            self.events.append(event)

        def on_link(self, state: object, detail: str, lost_at: float | None) -> None: ...

    class FakeSession:
        def on_tokens(self, _: object) -> None: ...

    listener = Listener()
    stream = LiveStream(FakeSession(), listener)  # type: ignore[arg-type]
    for dropped in (0, 0, 3, 3, 5):
        stream._dispatch({"type": "heartbeat", "t": 0.0, "dropped_events": dropped})  # noqa: SLF001
    assert [(e["kind"], e["count"]) for e in listener.events] == [("events_dropped", 3), ("events_dropped", 2)]


def test_pens_added_one_by_one_keep_their_curves_and_removed_ones_go(app: QApplication) -> None:
    from hmi.views.trend_view import TrendView

    async def no_fetch(*_: object) -> None:
        return None

    model = TrendModel()
    view = TrendView(model, no_fetch)
    model.add_pen("a", "P/A", "bar")
    first = view.curves["a"]
    model.add_pen("b", "P/B", "bar")  # same unit: the first pen's curve stays
    assert view.curves["a"] is first and set(view.curves) == {"a", "b"}
    model.add_pen("c", "P/C", "°C")  # a new unit: a new axis, every curve built again
    assert set(view.curves) == {"a", "b", "c"} and view.curves["a"] is not first
    kept = view.curves["a"]
    model.remove_pen("b")
    assert set(view.curves) == {"a", "c"} and view.curves["a"] is kept
    assert len(view.legend.items) == 2
    view.close()


def test_the_live_reduction_reuses_complete_buckets_and_matches_a_fresh_one() -> None:
    rng = np.random.default_rng(3)
    pen = TrendPen("n", "P/T", "bar", "#000", capacity=5_000)
    fresh = TrendPen("m", "P/T", "bar", "#000", capacity=5_000)
    t0 = 1_000_000.0
    pen.add_live_many(np.arange(t0, t0 + 3000), rng.normal(size=3000))
    for step in range(3000, 7000, 7):  # samples keep arriving; the buffer wraps after 5,000
        t = np.arange(t0 + step, t0 + step + 7)
        pen.add_live_many(t, rng.normal(size=7))
        dt, dy = pen.display(4.0)
        fresh.live.clear()
        fresh.add_live_many(*pen.live.arrays())
        ft, fy = fresh.display(4.0)
        if step < 5000:  # before the buffer wraps: exactly what a fresh reduction gives
            assert dt.tolist() == ft.tolist() and dy.tolist() == fy.tolist()
        else:  # after it: the same except the oldest bucket, partly gone from the buffer (one pixel)
            assert dt[2:].tolist() == ft[2:].tolist() and dy[2:].tolist() == fy[2:].tolist()


def test_json_arrays_decode_element_by_element(qloop: Any) -> None:
    import json

    from hmi.client.slices import Slicer, iter_json_array
    from tests.hmi.conftest import run

    async def decode(text: str) -> list[Any]:
        return [item async for item in iter_json_array(text, Slicer(budget_s=0.0), every=1)]

    doc = [{"id": 1, "s": "a, b ] [", "n": None}, [1, [2]], "x", 3.5, True, {}]
    for text in (json.dumps(doc), json.dumps(doc, indent=2), " \n" + json.dumps(doc, separators=(",", ":")) + "\n"):
        assert run(qloop, decode(text)) == doc
    assert run(qloop, decode("[]")) == [] and run(qloop, decode(" [ ] ")) == []
    for bad in ('{"a": 1}', "[1, 2", "[1 2]", "[1,]", "[1] x", ""):
        with pytest.raises(ValueError):
            run(qloop, decode(bad))


def test_the_full_summary_loads_in_slices_and_keeps_events_that_arrive_meanwhile(app: QApplication, qloop: Any) -> None:
    """10,000 alarms parsed and built between turns of the loop (a 10 ms timer keeps ticking),
    swapped in at once; an event newer than the answer survives the swap, an older one does not."""
    import json
    from collections.abc import AsyncIterator
    from pathlib import Path

    from PySide6.QtCore import QTimer

    from hmi.client.credentials import CredentialStore
    from hmi.client.slices import Slicer, iter_json_array
    from hmi.console import Console
    from server.api.schema import Me
    from tests.hmi.conftest import run

    items = [alarm(i, t=1_000_000.0 + i) for i in range(10_000)]
    text = json.dumps(items)
    console = Console(Path("/nonexistent"), CredentialStore.__new__(CredentialStore))
    store = console.alarms
    store.replace_all([alarm(i, t=900_000.0) for i in range(100)])  # shown before the reload
    console.me = Me(tenant="t", tenant_id=1, username="op", user_id=1, roles=["operator"],
                    permissions=["alarms.read"], is_system_admin=False, kind="user")  # fmt: skip
    slicers: list[Slicer] = []
    during: list[int] = []

    class Api:
        async def alarm_items(self, slicer: Slicer) -> AsyncIterator[dict[str, Any]]:
            slicers.append(slicer)
            async for n, item in _enumerate(iter_json_array(text, slicer)):
                if n == 5_000:  # the stream goes on while the answer is being built
                    store.apply_event({**alarm(5, "ack_active", t=2e6), "event": "acknowledged"})  # newer
                    store.apply_event({**alarm(7, "ack_active", t=1.0), "event": "acknowledged"})  # older
                    store.apply_event({**alarm(20_000, t=2e6), "event": "activated"})  # not in the answer
                    during.append(len(store.alarms))
                yield item

    console.api = Api()  # type: ignore[assignment]
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    try:
        run(qloop, console.reload_alarms())
    finally:
        timer.stop()
    assert during == [101]  # meanwhile the old summary was shown, with the events applied to it
    assert slicers[0].yields >= 5 and len(ticks) >= 3  # the loop (and Qt's timers) ran between slices
    assert len(store.alarms) == 10_001 and store.unacked_count() == 10_000
    assert store.alarms[5].state == "ack_active"  # the newer event won
    assert store.alarms[7].state == "unack_active"  # the answer was newer than this event
    assert store.alarms[20_000].state == "unack_active"
    assert store.newest_unacked().id == 20_000  # type: ignore[union-attr]
    assert not store._reloads  # noqa: SLF001  # nothing kept after the reload


async def _enumerate(items: Any) -> Any:
    n = 0
    async for item in items:
        yield n, item
        n += 1


def test_a_summary_read_before_the_stream_answered_is_read_again_once_it_does(app: QApplication) -> None:
    """Alarm events only travel once the stream is up: a summary read before (the stream was slow
    at login) may miss one, so the first connection asks for one more read; later ones don't."""
    import asyncio
    from pathlib import Path

    from hmi.client import LinkState
    from hmi.client.credentials import CredentialStore
    from hmi.console import Console

    console = Console(Path("/nonexistent"), CredentialStore.__new__(CredentialStore))
    asked: list[int] = []
    console.reload_alarms_soon = lambda: asked.append(1)  # type: ignore[method-assign]
    console._stream_up, console._summary_unsynced = asyncio.Event(), True  # noqa: SLF001
    console.on_link(LinkState.CONNECTING, "connecting", None)
    assert asked == []
    console.on_link(LinkState.CONNECTED, "connected", None)
    assert asked == [1] and console._stream_up.is_set()  # noqa: SLF001
    console.on_link(LinkState.CONNECTED, "connected", None)
    assert asked == [1]
    console._stream_up, console._summary_unsynced = asyncio.Event(), False  # noqa: SLF001  # read after: fine
    console.on_link(LinkState.CONNECTED, "connected", None)
    assert asked == [1]
