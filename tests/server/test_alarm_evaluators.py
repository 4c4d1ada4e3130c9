"""Condition kinds (server/alarms/evaluators.py) and their validation (server/alarms/spec.py)."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from pydantic import ValidationError

from server.alarms import evaluators as ev
from server.alarms.spec import ConditionConfig, Limit, Statistical, Window
from server.domain.alarms import Priority


def limit_run(values: list[float], **spec: float) -> list[str | None]:
    e = ev.LimitEvaluator(Limit(tag="T", **spec))
    return [e.sample(ev.MAIN, float(i), v).level for i, v in enumerate(values)]


def test_limit_levels_with_deadband() -> None:
    levels = limit_run([50, 91, 89, 87.9, 101, 99, 97.9, 9, 11, 12.1, 4], hihi=100, hi=90, lo=10, lolo=5, deadband=2)
    assert levels == [None, "hi", "hi", None, "hihi", "hihi", "hi", "lo", "lo", None, "lolo"]


def test_a_noisy_value_on_a_limit_does_not_chatter_with_a_deadband() -> None:
    rng = random.Random(7)
    noisy = [90 + rng.uniform(-0.5, 0.5) for _ in range(500)]
    changes = lambda levels: sum(1 for a, b in zip(levels, levels[1:], strict=False) if a != b)  # noqa: E731
    assert changes(limit_run(noisy, hi=90)) > 50  # without a deadband it flips constantly
    assert changes(limit_run(noisy, hi=90, deadband=1.0)) <= 1


def test_deviation_comparison_rate_and_discrete() -> None:
    from server.alarms.spec import Comparison, Deviation, Discrete, RateOfChange

    d = ev.DeviationEvaluator(Deviation(tag="T", setpoint_tag="S", limit=5, deadband=1))
    assert d.sample(ev.MAIN, 1, 50) is None  # no setpoint yet
    assert d.sample(ev.OTHER, 1, 48).condition is False  # type: ignore[union-attr]
    assert d.sample(ev.MAIN, 2, 54).condition is True  # type: ignore[union-attr]
    assert d.sample(ev.MAIN, 3, 52.5).condition is True  # type: ignore[union-attr]  # inside the deadband
    assert d.sample(ev.OTHER, 4, 49).condition is False  # type: ignore[union-attr]  # the setpoint moved
    c = ev.ComparisonEvaluator(Comparison(tag="A", op=">", other_tag="B"))
    assert c.sample(ev.MAIN, 1, 5) is None
    assert c.sample(ev.OTHER, 1, 4).condition is True  # type: ignore[union-attr]
    k = ev.ComparisonEvaluator(Comparison(tag="A", op="<=", value=3))
    assert k.sample(ev.MAIN, 1, 3).condition is True  # type: ignore[union-attr]
    r = ev.RateEvaluator(RateOfChange(tag="T", limit_per_min=6))
    assert r.sample(ev.MAIN, 0, 10) is None
    v = r.sample(ev.MAIN, 10, 11.5)  # 1.5 in 10 s = 9 per minute
    assert v is not None and v.condition and v.value == pytest.approx(9.0)
    assert r.sample(ev.MAIN, 20, 12).condition is False  # type: ignore[union-attr]
    assert ev.DiscreteEvaluator(Discrete(tag="Trip")).sample(ev.MAIN, 0, 1.0).condition is True


@pytest.mark.parametrize("stat", ["mean", "min", "max", "stddev"])
def test_statistics_over_a_time_window_match_numpy(stat: str) -> None:
    rng = np.random.default_rng(3)
    ts = np.cumsum(rng.uniform(0.1, 2.0, 400))
    values = rng.normal(50, 5, 400)
    e = ev.StatisticalEvaluator(Statistical(tag="T", stat=stat, window_s=30, op=">", threshold=0, min_samples=2))  # type: ignore[arg-type]
    fn = {"mean": np.mean, "min": np.min, "max": np.max, "stddev": lambda x: np.std(x, ddof=1)}[stat]
    for i in range(len(ts)):
        got = e.sample(ev.MAIN, float(ts[i]), float(values[i]))
        window = values[(ts > ts[i] - 30) & (ts <= ts[i])]
        if len(window) < 2:
            assert got is None
            continue
        assert got is not None and got.value == pytest.approx(float(fn(window)), rel=1e-9, abs=1e-9)


def test_weekly_windows_with_time_zone_and_midnight() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    night = Window(days=["mon"], start="22:00", end="06:00", tz="Europe/Berlin")
    at = lambda *a: datetime(*a, tzinfo=berlin).timestamp()  # noqa: E731
    assert night.contains(at(2026, 11, 30, 23, 0))  # Monday 23:00
    assert night.contains(at(2026, 12, 1, 5, 59))  # Tuesday early: Monday's window
    assert not night.contains(at(2026, 12, 1, 6, 0))
    assert not night.contains(at(2026, 12, 1, 23, 0))  # Tuesday night: not a Monday
    assert night.next_edge(at(2026, 11, 30, 12, 0)) == at(2026, 11, 30, 22, 0)
    absolute = Window(from_ts=100, to_ts=200)
    assert absolute.contains(150) and not absolute.contains(200) and absolute.next_edge(150) == 200


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"name": "x", "spec": {"kind": "limit", "tag": "T"}}, "at least one"),
        ({"name": "x", "spec": {"kind": "limit", "tag": "T", "hi": 10, "lo": 20}}, "rise strictly"),
        ({"name": "x", "spec": {"kind": "comparison", "tag": "T", "op": ">"}}, "either"),
        ({"name": "x", "spec": {"kind": "nope", "tag": "T"}}, "union_tag_invalid|does not match"),
        ({"name": "x", "spec": {"kind": "limit", "tag": "T", "hi": 1}, "message": "{oops}"}, "template"),
        (
            {
                "name": "x",
                "spec": {"kind": "limit", "tag": "T", "hi": 1},
                "schedule": [{"start": "25:00", "end": "01:00"}],
            },
            "HH:MM",
        ),  # fmt: skip
        ({"name": "x", "spec": {"kind": "limit", "tag": "T", "hi": 1}, "bogus": 1}, "Extra inputs"),
    ],
)
def test_bad_conditions_are_refused_with_a_reason(doc: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        ConditionConfig.model_validate(doc)


def test_limit_levels_map_to_priorities() -> None:
    limit = {"kind": "limit", "tag": "T", "hi": 1}
    c = ConditionConfig.model_validate({"name": "x", "priority": "high", "spec": limit})
    assert c.priority_for("hi") is Priority.HIGH and c.priority_for("hihi") is Priority.URGENT
    c = ConditionConfig.model_validate(
        {"name": "x", "priority": "low", "priorities": {"lo": "medium"}, "spec": {"kind": "limit", "tag": "T", "lo": 1}}
    )
    assert c.priority_for("lo") is Priority.MEDIUM and c.priority_for(None) is Priority.LOW


# -- KPIs (server/alarms/kpis.py) --------------------------------------------------------------


def _entry(i: int, cid: int, ts: float, event: str = "activated", user: str = "system", comment: str = "") -> Any:
    from server.alarms.repository import JournalEntry

    return JournalEntry(i, cid, f"C{cid}", "", ts, event, "normal", "unack_active", "high", None, None, user, comment)


def test_kpis_flood_frequency_chattering_standing_and_shelving() -> None:
    from server.alarms.kpis import Standing, kpis

    start = 1_000_000.0
    entries = [_entry(i, 1, start + i) for i in range(12)]  # 12 in the first 10 min: a flood (> 10)
    entries += [_entry(100 + i, 2, start + 700 + i * 100) for i in range(3)]  # spread out: no chatter
    entries += [_entry(200, 3, start + 1300, "shelved", "sam", "work"), _entry(201, 3, start + 1500, "unshelved")]
    entries += [_entry(202, 4, start + 1700, "shelved", "sam", "open")]
    out = kpis(entries, start=start, end=start + 3600, operators=1,
               standing=[Standing(5, "C5", start - 2 * 86_400), Standing(6, "C6", start)])  # fmt: skip
    assert out["periods"] == 6 and out["alarms"] == 15
    assert out["alarms_per_operator_per_10min"] == pytest.approx(15 / 6)
    assert out["flood_periods"] == 1 and out["flood_percent"] == pytest.approx(100 / 6)
    assert [f["condition"] for f in out["most_frequent"]] == [1, 2]
    assert [c["condition"] for c in out["chattering"]] == [1]  # ≥ 3 within 60 s
    assert [s["condition"] for s in out["standing"]] == [5]  # active for more than 24 h
    shelved = {s["condition"]: s for s in out["shelved"]}
    assert shelved[3]["duration_s"] == 200 and shelved[3]["by"] == "sam"
    assert shelved[4]["unshelved_at"] is None and shelved[4]["duration_s"] == 1900  # still shelved at the end
    assert kpis(entries, start=start, end=start + 3600, operators=2)["flood_periods"] == 0  # 6 each
    # a range reaching past now: an open shelve counts until now, not until the range's end
    early = {s["condition"]: s for s in kpis(entries, start=start, end=start + 3600, now=start + 2000)["shelved"]}
    assert early[4]["unshelved_at"] is None and early[4]["duration_s"] == 300
