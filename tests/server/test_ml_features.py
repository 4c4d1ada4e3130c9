"""Feature windows, the compiled forest, training and the skops artifact (no server)."""

from __future__ import annotations

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import StandardScaler

from server.domain import rollup
from server.ml import features as ft
from server.ml.forest import CompiledForest, ForestSet
from server.ml.model import AnomalyModel, UntrustedArtifact
from server.ml.training import Cancelled, NotEnoughData, TrainParams, train
from server.sim.faults import Fault, FaultKind
from tests.ml_support import T0, plant_run, trained


def test_buckets_from_samples_mean_spread_count() -> None:
    col = np.array([0, 0, 1, 0, 1, 1])
    ts = np.array([0.5, 3.0, 9.9, 10.0, 12.0, 25.0])
    v = np.array([1.0, 3.0, 5.0, 10.0, 7.0, 9.0])
    b = ft.buckets_from_samples(col, ts, v, 2, 10, 0, 30)
    assert b.t.tolist() == [0, 10, 20]
    np.testing.assert_array_equal(b.count, [[2, 1], [1, 1], [0, 1]])
    np.testing.assert_array_equal(b.mean[:2], [[2, 5], [10, 7]])
    assert np.isnan(b.mean[2, 0]) and b.mean[2, 1] == 9
    np.testing.assert_array_equal(b.spread[:2], [[2, 0], [0, 0]])


def test_rollups_give_the_same_buckets_as_raw_samples() -> None:
    """Training reads the historian's 10 s rollups; the live scorer folds raw samples: equal."""
    run = plant_run(1800)
    col, ts, v = run.columns()
    raw = ft.buckets_from_samples(col, ts, v, len(run.names), 30, T0, T0 + 1800)
    r = rollup.aggregate(col.astype(np.int64), ts, v, 10)
    parts = []
    for j in range(len(run.names)):
        m = r.tag_id == j
        parts.append((r.bucket[m], r.vsum[m], r.vmin[m], r.vmax[m], r.count[m]))
    from_rollups = ft.buckets_from_rollups(parts, 30, T0, T0 + 1800)
    for name in ("mean", "spread", "count"):
        np.testing.assert_allclose(getattr(from_rollups, name), getattr(raw, name), rtol=1e-12, atol=1e-9)


def test_rolling_matches_a_plain_loop_far_from_zero() -> None:
    rng = np.random.default_rng(1)
    x = 1e6 + rng.normal(0, 0.01, size=(500, 2))  # a level in millions, noise in hundredths
    m, s = ft.rolling(x, 30)
    assert np.isnan(m[:29]).all()
    for i in (29, 100, 499):
        w = x[i - 29 : i + 1]
        np.testing.assert_allclose(m[i], w.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(s[i], w.std(axis=0, ddof=1), rtol=1e-6)


def test_carry_forward_stops_after_its_limit() -> None:
    x = np.array([[1.0], [np.nan], [np.nan], [np.nan], [4.0]])
    np.testing.assert_array_equal(ft.carry_forward(x, 2)[:, 0][:3], [1, 1, 1])
    assert np.isnan(ft.carry_forward(x, 2)[3, 0])


def test_residual_fit_learns_the_relation_between_tags() -> None:
    rng = np.random.default_rng(2)
    n = 2000
    t = T0 + 10 * np.arange(n, dtype=np.float64)
    a = np.cumsum(rng.normal(0, 1, n)) + 100
    mean = np.column_stack([a, 0.5 * a + 3 + rng.normal(0, 0.01, n)])
    b = ft.Buckets(t, mean, np.ones_like(mean), np.full_like(mean, 10))
    state, _ = ft.fit_state(b, 10)
    res = ft.residuals(t, mean, state.beta, state.level)
    assert np.std(res[:, 1]) < 0.02  # the second tag is explained by the first
    assert not np.any(state.beta[ft.tod_rows(2)] != 0)  # < 1 day: no daily-cycle regressors


@pytest.mark.parametrize("kind", ["stuck", "spike"])
def test_sensor_faults_stand_out_in_their_pooled_column(kind: str) -> None:
    run = plant_run(3 * 3600)
    model, _ = trained(run, 2 * 3600)
    assert isinstance(model, AnomalyModel)
    values = run.values.copy()
    j = run.names.index("Flow")
    k0 = 2 * 3600 + 1200
    if kind == "stuck":
        values[k0 : k0 + 600, j] = values[k0, j]
    else:
        values[k0 : k0 + 3, j] += 60.0
    faulty = type(run)(run.ts, values, run.names)
    b = faulty.buckets(T0 + 2 * 3600, T0 + 3 * 3600)
    scored = model.score_buckets(b)
    inside = (scored.t > T0 + k0) & (scored.t <= T0 + k0 + 600 + 10)
    assert scored.score[inside].max() > 1.0
    assert scored.score[~inside & (scored.t < T0 + k0 - 100)].max() < 1.0
    first = int(np.flatnonzero(inside & (scored.score > 1.0))[0])  # what gave it away, at once
    assert scored.t[first] == T0 + k0 + 10
    # stuck: only the flat spread tells at once; a spike moves the mean too (Flow leaves Speed's line)
    expected = {"spread_low"} if kind == "stuck" else {"spread_high", "delta", "deviation", "residual"}
    assert scored.top_feature[first] in expected
    assert run.names[scored.top_tag[first]] == "Flow"


def test_compiled_forest_equals_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5000, 8))
    probe = rng.normal(scale=3, size=(700, 8))
    for forest in (
        IsolationForest(n_estimators=60, random_state=0).fit(x),
        IsolationForest(n_estimators=30, max_features=0.5, max_samples=100, random_state=1).fit(x),
    ):
        np.testing.assert_allclose(CompiledForest(forest).score(probe), -forest.score_samples(probe), rtol=1e-12)
        np.testing.assert_allclose(CompiledForest(forest).score(probe[:1]), -forest.score_samples(probe[:1]))


def test_one_walk_over_many_forests_equals_scikit_learn_per_row() -> None:
    """The live scorer's path: rows of different devices, each in its own forest (of different
    sizes), in one walk."""
    rng = np.random.default_rng(4)
    forests = [IsolationForest(n_estimators=n, random_state=i).fit(rng.normal(size=(2000, 8)))
               for i, n in enumerate((40, 100, 15))]  # fmt: skip
    both = ForestSet([CompiledForest(f) for f in forests])
    x = rng.normal(scale=2, size=(1500, 8))
    which = rng.integers(0, 3, 1500)
    expected = np.empty(1500)
    for k, f in enumerate(forests):
        expected[which == k] = -f.score_samples(x[which == k])
    np.testing.assert_allclose(both.score(x, which), expected, rtol=1e-12)


def test_training_reports_progress_and_metrics() -> None:
    run = plant_run(2 * 3600)
    seen: list[tuple[str, float]] = []
    b = run.buckets(T0, T0 + 2 * 3600)
    model, metrics = train(b, ["a"] * 6, run.names, TrainParams(n_estimators=40), lambda p, f: seen.append((p, f)))
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] >= 0.9
    assert {p for p, _ in seen} >= {"features", "validating", "training", "scoring"}
    assert len(model.forest.estimators_) == 40
    assert metrics["train_windows"] == 720 - 29 - 0  # every bucket after the first full window
    assert metrics["train_anomaly_rate"] <= 0.01
    assert metrics["holdout_windows"] > 100


def test_training_refuses_too_little_data_and_stops_when_cancelled() -> None:
    run = plant_run(1200)
    with pytest.raises(NotEnoughData, match="at least"):
        train(run.buckets(T0, T0 + 1200), ["a"] * 6, run.names, TrainParams(), lambda *_: None)
    big = plant_run(3600)
    with pytest.raises(Cancelled):
        train(big.buckets(T0, T0 + 3600), ["a"] * 6, big.names, TrainParams(), lambda *_: None, lambda: True)


def test_skops_round_trip_scores_the_same() -> None:
    run = plant_run(2 * 3600, faults=[Fault(FaultKind.SPIKE, "Pump1", 6000, 3, "Pressure", 4.0)])
    model, _ = trained(run, 5000)
    assert isinstance(model, AnomalyModel)
    data = model.dumps()
    assert data[:2] == b"PK"  # a zip (skops), not a pickle
    again = AnomalyModel.loads(data)
    b = run.buckets(T0, T0 + 2 * 3600)
    np.testing.assert_array_equal(again.score_buckets(b).score, model.score_buckets(b).score)
    assert again.meta() == model.meta()


def test_an_artifact_with_an_untrusted_type_is_refused() -> None:
    from fractions import Fraction

    run = plant_run(2 * 3600)
    model, _ = trained(run, 2 * 3600)
    assert isinstance(model, AnomalyModel)
    doc = sio.loads(model.dumps(), trusted=sio.get_untrusted_types(data=model.dumps()))
    doc["meta"]["threshold"] = Fraction(1, 3)  # any type outside the list refuses the whole file
    with pytest.raises(UntrustedArtifact, match="fractions.Fraction"):
        AnomalyModel.loads(sio.dumps(doc))
    doc["meta"]["threshold"] = 0.5
    doc["forest"] = StandardScaler()  # trusted by skops, but not a model
    with pytest.raises(UntrustedArtifact, match="does not hold"):
        AnomalyModel.loads(sio.dumps(doc))
    with pytest.raises(UntrustedArtifact, match="not a model artifact"):
        AnomalyModel.loads(b"\x80\x04K\x01.")  # a pickle is not even read
