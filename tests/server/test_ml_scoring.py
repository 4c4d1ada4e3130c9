"""The live scorer (micro-batches from the bus), monitoring and bands, in process."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from server.bus import Bus, Event, Message, ValueBatch
from server.domain.quality import Quality
from server.domain.sample import TagUpdate
from server.ml import features as ft
from server.ml import monitoring as mon
from server.ml.forest import ForestSet
from server.ml.model import AnomalyModel
from server.ml.scorer import AnomalyScorer
from tests.ml_support import T0, Run, plant_run, trained

TENANT, DEVICE = 5, "ns=2;s=Plant1/Area1/Pump1"


class Sink:
    def __init__(self) -> None:
        self.scores: list[tuple[int, str, float, float]] = []

    def anomaly_score(self, tenant_id: int, device_node_id: str, score: float, ts: float | None = None) -> None:
        assert ts is not None
        self.scores.append((tenant_id, device_node_id, ts, score))


@pytest.fixture(scope="module")
def pump() -> tuple[Run, AnomalyModel]:
    run = plant_run(3 * 3600)
    model, _ = trained(run, 2 * 3600)
    assert isinstance(model, AnomalyModel)
    return run, model


def _updates(run: Run, k: int, tag_ids: list[int], quality: Quality = Quality.GOOD) -> list[TagUpdate]:
    return [TagUpdate(TENANT, tid, f"t{tid}", f"p{tid}", float(run.ts[k]), float(run.values[k, j]), quality)
            for j, tid in enumerate(tag_ids)]  # fmt: skip


async def test_live_scores_equal_the_batch_scores(
    pump: tuple[Run, AnomalyModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    run, model = pump
    bus, sink = Bus(), Sink()
    scorer = AnomalyScorer(bus, sink, flush_interval=3600)  # flushed by hand below
    tag_ids = list(range(100, 100 + len(run.names)))
    await scorer.activate(TENANT, DEVICE, 1, 1, model, tag_ids)
    await scorer.start()
    calls: list[int] = []
    original = ForestSet.score

    def counted(self: ForestSet, x: Any, forest: Any) -> Any:
        calls.append(x.shape[0])
        return original(self, x, forest)

    monkeypatch.setattr(ForestSet, "score", counted)
    try:
        start = 2 * 3600
        for k in range(start, start + 1200):  # 20 minutes in one flush (a catch-up): bucket by bucket
            bus.publish(ValueBatch(TENANT, _updates(run, k, tag_ids)))
        assert scorer.flush() == 120 - 30  # the first 29 buckets fill the window, the last is still open
        assert calls == [1] * 90
        calls.clear()
        for k in range(start + 1200, start + 1800):  # then a flush every 10 s of data
            bus.publish(ValueBatch(TENANT, _updates(run, k, tag_ids)))
            if k % 10 == 5:
                scorer.flush()
        scorer.flush()
    finally:
        await scorer.stop()
    assert calls == [1] * 60  # then a bucket per flush
    ref = model.score_buckets(run.buckets(T0 + start, T0 + start + 1790))
    got = {ts: s for _, _, ts, s in sink.scores}
    assert len(got) == ref.t.size == 150
    np.testing.assert_allclose([got[t] for t in ref.t.tolist()], ref.score, rtol=1e-9, atol=1e-12)
    assert scorer.live(TENANT, DEVICE) is not None
    assert scorer.models[(TENANT, DEVICE)].stats.windows == 150


async def test_late_bad_and_foreign_samples_are_not_scored(pump: tuple[Run, AnomalyModel]) -> None:
    run, model = pump
    bus, sink = Bus(), Sink()
    scorer = AnomalyScorer(bus, sink, flush_interval=3600)
    tag_ids = list(range(200, 200 + len(run.names)))

    async def primer(ids: list[int], start: float, end: float, step: float) -> ft.Buckets:
        assert ids == tag_ids
        return run.buckets(start, end, step)

    scorer.clock = lambda: float(run.ts[7200])  # "now": the primer reads the window before it
    await scorer.activate(TENANT, DEVICE, 1, 1, model, tag_ids, primer)
    await scorer.start()
    for k in range(7200, 7230):
        bus.publish(ValueBatch(TENANT, _updates(run, k, tag_ids)))
        bus.publish(ValueBatch(TENANT + 1, _updates(run, k, tag_ids)))  # another tenant's tag ids
    bus.publish(ValueBatch(TENANT, _updates(run, 7100, tag_ids)))  # late: its bucket was judged
    bus.publish(ValueBatch(TENANT, _updates(run, 7231, tag_ids, Quality.BAD)))
    await scorer.stop()
    # primed: the first live buckets are scored at once (no 5-minute warm-up)
    assert [ts for *_, ts, _ in sink.scores] == [T0 + 7210, T0 + 7220]
    assert scorer.models[(TENANT, DEVICE)].stats.late == len(tag_ids)
    assert scorer.samples == 31 * len(tag_ids)


async def test_an_anomaly_flip_is_published_and_the_loop_flushes_by_itself(pump: tuple[Run, AnomalyModel]) -> None:
    run, model = pump
    bus, sink = Bus(), Sink()
    events: list[dict[str, Any]] = []

    def on(m: Message) -> None:
        if isinstance(m, Event) and m.kind == "anomaly":
            events.append(m.data)

    bus.subscribe(TENANT, on)
    scorer = AnomalyScorer(bus, sink, flush_interval=0.02)
    tag_ids = list(range(300, 300 + len(run.names)))
    await scorer.activate(TENANT, DEVICE, 9, 2, model, tag_ids)
    await scorer.start()
    try:
        flow = run.names.index("Flow")
        for k in range(7200, 7800):
            ups = _updates(run, k, tag_ids)
            if 7500 <= k < 7503:
                ups[flow] = ups[flow]._replace(value=ups[flow].value + 60.0)
            bus.publish(ValueBatch(TENANT, ups))
            if k % 50 == 0:
                await asyncio.sleep(0.03)
        await asyncio.sleep(0.1)
    finally:
        await scorer.stop()
    assert events and events[0]["anomalous"] is True and events[0]["tag"] == "Flow"
    assert events[0]["model"] == 9 and events[0]["version"] == 2
    assert abs(events[0]["t"] - (T0 + 7510)) <= 10
    assert any(e["anomalous"] is False for e in events[1:])  # and back to normal after the spike
    assert scorer.latencies and max(scorer.latencies) < 1.0


def _steady(seconds: int, seed: int = 4) -> Run:
    """A stationary device: a slow AR(1) process, a tag proportional to it, and a noisy one."""
    rng = np.random.default_rng(seed)
    a = np.empty(seconds)
    a[0] = 0.0
    shocks = rng.normal(0, 0.05, seconds)
    for k in range(1, seconds):
        a[k] = 0.999 * a[k - 1] + shocks[k]
    values = np.column_stack([50 + a, 100 + 2 * a + rng.normal(0, 0.05, seconds), rng.normal(20, 0.5, seconds)])
    return Run(T0 + np.arange(seconds, dtype=np.float64), values, ["A", "B", "C"])


def test_monitoring_sees_drift_and_recommends_a_retrain() -> None:
    run = _steady(4 * 3600)
    model, _ = trained(run, 3 * 3600)
    assert isinstance(model, AnomalyModel)
    same = mon.monitor(model, run.buckets(T0 + 3 * 3600, T0 + 4 * 3600), 600, age_days=1, train_span_s=3 * 3600)
    assert same.windows > 300 and same.psi < 0.25 and same.rate < 0.01
    assert not any("PSI" in r for r in same.reasons)
    assert [r for r in same.reasons if "shorter than a day" in r]  # 3 h of training: said so
    assert sum(s["windows"] for s in same.series) == same.windows and len(same.series) == 7
    shifted_values = run.values.copy()
    shifted_values[:, 1] += 3.0  # B leaves its relation to A: a new normal, or a fault
    shifted = Run(run.ts, shifted_values, run.names)
    moved = mon.monitor(model, shifted.buckets(T0 + 3 * 3600, T0 + 4 * 3600), 600, age_days=200,
                        train_span_s=86_400 * 2)  # fmt: skip
    assert moved.retrain and moved.psi > 0.25 and moved.rate > 0.5 and moved.ks > 0.5
    text = " ".join(moved.reasons)
    assert "PSI" in text and "anomalous" in text and "200 days" in text and "residual" in text
    assert "shorter than a day" not in text


def test_bands_follow_the_tag_and_a_spike_leaves_them(pump: tuple[Run, AnomalyModel]) -> None:
    run, model = pump
    j = run.names.index("Flow")
    values = run.values.copy()
    values[8000:8003, j] += 60.0
    b = Run(run.ts, values, run.names).buckets(T0 + 2 * 3600, T0 + 3 * 3600)
    for method in ("expected", "rolling"):
        bd = mon.band(b, j, model=model, method=method, k=4.0, window=model.window, step=model.step)
        ok = ~np.isnan(bd.center)
        inside = (b.mean[:, j] >= bd.lower) & (b.mean[:, j] <= bd.upper)
        spike = int((8000 - 7200) // 10)
        assert not inside[spike]
        assert inside[ok].mean() > 0.97
    no_model = mon.band(b, j, model=None, method="rolling", k=3.0, window=30, step=10)
    assert np.isnan(no_model.center[:29]).all() and not np.isnan(no_model.center[29:]).any()
    small = mon.decimate(bd, 100)
    assert small.t.size <= 100 and small.resolution_s == 40
    assert np.nanmax(small.upper) == np.nanmax(bd.upper) and np.nanmin(small.lower) == np.nanmin(bd.lower)
    with pytest.raises(ValueError, match="needs a trained model"):
        mon.band(b, j, model=None, method="expected", k=3, window=30, step=10)


async def test_one_flush_scores_every_device_in_one_walk(
    pump: tuple[Run, AnomalyModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Devices with different models and shapes (6 and 3 tags): a flush walks every device of a
    shape at once (a catch-up, bucket after bucket), and each device's scores equal those of
    its own history scored alone."""
    run, pump_model = pump
    steady = _steady(3 * 3600)
    steady_model, _ = trained(steady, 2 * 3600)
    assert isinstance(steady_model, AnomalyModel)
    bus, sink = Bus(), Sink()
    scorer = AnomalyScorer(bus, sink, flush_interval=3600)
    devices = {
        "pumpA": (run, pump_model, 1000),
        "pumpB": (run, pump_model, 2000),
        "steady": (steady, steady_model, 3000),
    }
    for name, (r, model, base) in devices.items():
        await scorer.activate(TENANT, name, 1, 1, model, list(range(base, base + len(r.names))))
    await scorer.start()
    walks: list[int] = []
    original = ForestSet.score
    monkeypatch.setattr(ForestSet, "score", lambda self, x, f: walks.append(x.shape[0]) or original(self, x, f))
    start = 2 * 3600
    for k in range(start, start + 900):
        for name, (r, _, base) in devices.items():
            values = r.values[k] + (0.5 if name == "pumpB" else 0.0)  # pumpB reads a little higher
            ups = [TagUpdate(TENANT, base + j, "", "", float(r.ts[k]), float(v), Quality.GOOD)
                   for j, v in enumerate(values)]  # fmt: skip
            bus.publish(ValueBatch(TENANT, ups))
        if k % 10 == 5 and k > start + 400:
            scorer.flush()
    await scorer.stop()
    # the first flush catches up 40 buckets: 11 judged, one walk per shape and bucket; then a
    # walk per shape and flush, holding all its devices (pumpA and pumpB share one)
    assert walks[:22] == [2, 1] * 11 and walks[22:] == [2, 1] * 49
    for name, (r, model, _) in devices.items():
        values = r.values + (0.5 if name == "pumpB" else 0.0)
        ref = model.score_buckets(Run(r.ts, values, r.names).buckets(T0 + start, T0 + start + 890))
        got = {ts: s for _, dev, ts, s in sink.scores if dev == name}
        assert len(got) == ref.t.size == 60
        np.testing.assert_allclose([got[t] for t in ref.t.tolist()], ref.score, rtol=1e-9, atol=1e-12)
