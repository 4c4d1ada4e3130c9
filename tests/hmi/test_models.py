"""The Qt-free models: ring buffer, trend joining, alarm ordering and filters (no display needed)."""

from __future__ import annotations

import numpy as np

from hmi.client.backoff import Backoff
from hmi.models.alarms import AlarmFilter, AlarmStore
from hmi.models.events import Signal
from hmi.models.ring_buffer import RingBuffer
from hmi.models.trend import History, TrendPen


def test_ring_buffer_wraps_without_reallocating_and_drops_late_samples() -> None:
    ring = RingBuffer(4)
    storage = ring._t  # noqa: SLF001
    for t in range(1, 7):
        ring.append(float(t), t * 10.0)
    ring.append(3.0, 0.0)  # older than the newest: ignored
    t, v = ring.arrays()
    assert t.tolist() == [3.0, 4.0, 5.0, 6.0] and v.tolist() == [30.0, 40.0, 50.0, 60.0]
    assert ring._t is storage  # noqa: SLF001
    ring.drop_before(5.0)
    assert ring.arrays()[0].tolist() == [5.0, 6.0]


def test_pen_joins_history_before_the_live_tail_and_fills_gaps() -> None:
    pen = TrendPen("n", "Plant/T", "bar", "#000", capacity=100)
    pen.set_history(History.from_columns(0, 100, [0, 10, 20, 30], None, [1, 1, 1, 1], [3, 3, 3, 3], [2, 2, 2, 2]))
    for t in (25.0, 26.0, 40.0):
        pen.add_live(t, 5.0)
    t, y = pen.joined()
    assert t.tolist() == [0, 10, 20, 25, 26, 40] and y.tolist() == [2, 2, 2, 5, 5, 5]
    env = pen.envelope()
    assert env is not None and env[0].tolist() == [0, 10, 20]
    pen.fill_gap(np.array([30.0, 35.0]), np.array([7.0, 8.0]))  # what the stream missed
    assert pen.live.arrays()[0].tolist() == [25, 26, 30, 35, 40]
    assert pen.value_at(36.0) == 8.0 and pen.value_at(-1.0) is None


def alarm(i: int, priority: str, state: str, t: float, path: str = "Plant1/Area1/Pump7/Flow") -> dict[str, object]:
    return {"id": i, "name": f"a{i}", "state": state, "priority": priority, "changed_at": t, "active_since": t,
            "path": path, "source": f"ns=2;s={path}"}  # fmt: skip


def test_alarm_store_sorts_by_priority_then_newest_and_filters() -> None:
    store = AlarmStore()
    raised: list[int] = []
    store.raised.connect(lambda a: raised.append(a.id))
    other_area = alarm(3, "low", "unack_active", 20, "Plant2/X/Y/Z")
    store.replace_all([alarm(1, "low", "unack_active", 10), alarm(2, "urgent", "ack_active", 5), other_area,
                       alarm(4, "high", "normal", 30)])  # fmt: skip
    assert [a.id for a in store.visible()] == [2, 3, 1]  # normal alarms are not on the summary
    store.apply_event({**alarm(5, "high", "unack_active", 40), "event": "activated"})
    assert raised == [5] and store.newest_unacked() is not None and store.newest_unacked().id == 5  # type: ignore[union-attr]
    store.set_filter(AlarmFilter(area="Plant1", priorities=frozenset({"low", "high"})))
    assert [a.id for a in store.visible()] == [5, 1]
    store.apply_event({**alarm(5, "high", "shelved", 41), "event": "shelved"})
    assert 5 not in store.alarms


def test_signals_hold_methods_weakly_and_backoff_doubles() -> None:
    class Listener:
        def __init__(self) -> None:
            self.got: list[int] = []

        def on(self, value: int) -> None:
            self.got.append(value)

    signal: Signal[int] = Signal()
    listener = Listener()
    signal.connect(listener.on)
    signal.emit(1)
    assert listener.got == [1]
    del listener
    signal.emit(2)  # a dead listener is dropped, not called
    assert signal._listeners == []  # noqa: SLF001
    backoff = Backoff(first_s=1, max_s=5, jitter=0)
    assert [backoff.next_delay() for _ in range(5)] == [1, 2, 4, 5, 5]
    backoff.reset()
    assert backoff.next_delay() == 1
