"""The KPI endpoint on an hour of simulator data (issue #4): `iiot-sim --backfill` simulates the
hour before now with its faults, posts it over HTTP with the readings' own times, the real
pipeline and alarm engine judge it, a supervisor shelves the chattering alarm while the run is
live, and GET /alarms/kpis over the last hour must agree with the journal — and the journal
with the simulator's ground truth: alarms carry the process time of the sample that caused
them, an hour in the past, not the time the backfill ran."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from server.alarms.kpis import CHATTER_COUNT, CHATTER_WINDOW_S, FLOOD_PER_PERIOD, PERIOD_S, RAISING
from server.sim.faults import read_ground_truth
from server.sim.kpi_hour import CHATTERING, SHELVE_REASON, SUPERVISOR, HourResult, run_hour
from tests.support import LiveServer, TenantHandle

SHELVE_S = 3.0
MS = 0.001
"""The ground truth's times are rounded to the millisecond."""


@pytest.mark.timeout(150)
def test_kpis_over_an_hour_of_simulated_plant_agree_with_the_journal_and_the_faults(
    live: LiveServer, tenant: TenantHandle, tmp_path: Path
) -> None:
    began = time.monotonic()
    hour: HourResult = asyncio.run(run_hour(live.base, tenant.name, "admin", "admin-password",
                                            ground_truth=tmp_path / "truth.jsonl", live_s=8,
                                            shelve_s=SHELVE_S))  # fmt: skip
    took = time.monotonic() - began
    k = hour.kpis
    assert k["start"] == pytest.approx(hour.start) and k["end"] == pytest.approx(hour.end)
    operator = tenant.users["operator"]
    journal = operator.get("/api/v1/alarms/journal", params={"start": hour.start - 60, "end": hour.end + 60}).json()
    entries: list[dict[str, Any]] = journal["entries"]
    raised = [e for e in entries if e["event"] in RAISING and hour.start <= e["ts"] < hour.end]
    names = {v: n for n, v in hour.conditions.items()}

    # -- the figures, recomputed from the journal --------------------------------------------
    assert k["periods"] == 6 and k["operators"] == 1
    assert k["alarms"] == len(raised) == 17  # 12 spikes, Hi + HiHi vibration, the trip and its two
    assert k["alarms_per_operator_per_10min"] == pytest.approx(len(raised) / 6)
    per_period = Counter(int((e["ts"] - hour.start) // PERIOD_S) for e in raised)
    assert k["peak_per_operator_per_10min"] == max(per_period.values())
    flooded = [p for p, n in per_period.items() if n > FLOOD_PER_PERIOD]
    assert k["flood_periods"] == len(flooded) == 1 and k["flood_percent"] == pytest.approx(100 / 6)
    by_condition = Counter(e["condition"] for e in raised)
    top = [(f["name"], f["count"]) for f in k["most_frequent"]]
    assert sorted(top) == sorted((names[c], n) for c, n in by_condition.most_common(10))
    assert [n for _, n in top] == sorted(by_condition.values(), reverse=True)[:10]
    assert k["most_frequent"][0] == {"condition": hour.conditions[CHATTERING], "name": CHATTERING, "count": 12}
    chattering = {c for c in by_condition if _chatters(sorted(e["ts"] for e in raised if e["condition"] == c))}
    assert {c["condition"] for c in k["chattering"]} == chattering == {hour.conditions[CHATTERING]}
    assert k["standing"] == []  # nothing can have been active for 24 h in an hour of data
    assert [(s["name"], s["by"], s["reason"]) for s in k["shelved"]] == [(CHATTERING, SUPERVISOR, SHELVE_REASON)]
    shelve = k["shelved"][0]
    assert shelve["unshelved_at"] is not None  # expired by itself (`unshelved` by system) before the end
    assert shelve["duration_s"] == pytest.approx(SHELVE_S, abs=0.5)
    unshelved = [e for e in entries if e["event"] == "unshelved"]
    assert [(e["user"], e["condition"]) for e in unshelved] == [("system", hour.conditions[CHATTERING])]

    # -- the journal against the ground truth: process times, caused by the faults ------------
    faults = read_ground_truth(hour.ground_truth)
    spikes = sorted(f["start"] for f in faults if f["kind"] == "spike")
    pressure = sorted(e["ts"] for e in raised if e["name"] == CHATTERING)
    assert len(spikes) == len(pressure) == 12
    lags = [p - s for p, s in zip(pressure, spikes, strict=True)]
    assert all(-MS <= lag < 1.5 for lag in lags), lags  # the spike's own reading (truth: ms rounded)
    assert pressure[0] < time.time() - 2500  # an hour ago in process time, not when it was posted
    trip = next(f for f in faults if f["kind"] == "pump_trip")
    tripped = [e for e in raised if e["name"] == "Pump2 tripped"]
    assert len(tripped) == 1 and -MS <= tripped[0]["ts"] - trip["start"] < 1.5
    for name in ("Pump2 flow low", "Tank2 level low"):  # consequences of the trip, raised during it
        caused = [e for e in raised if e["name"] == name]
        assert len(caused) == 1 and trip["start"] - MS <= caused[0]["ts"] < trip["end"] + MS, (name, caused)
    wear = next(f for f in faults if f["kind"] == "bearing_wear")
    vibration = [(e["event"], e["level"]) for e in raised if e["name"] == "Pump1 vibration"]
    assert vibration == [("activated", "hi"), ("escalated", "hihi")]
    worn = [e["ts"] - wear["start"] for e in raised if e["name"] == "Pump1 vibration"]
    assert all(0 < t < wear["end"] - wear["start"] + MS for t in worn), worn
    cleared = [e for e in entries if e["name"] == "Pump1 vibration" and e["event"] == "cleared"]
    assert len(cleared) == 1 and cleared[0]["ts"] >= wear["end"] - MS  # the repair cleared it
    stats = operator.get("/api/v1/alarms/engine").json()
    assert stats["samples"] >= 5 * 3600  # every second of the hour, on each watched tag
    assert took < 60, f"the hour took {took:.0f} s"


def _chatters(times: list[float]) -> bool:
    n = CHATTER_COUNT
    return any(times[i + n - 1] - times[i] < CHATTER_WINDOW_S for i in range(len(times) - n + 1))
