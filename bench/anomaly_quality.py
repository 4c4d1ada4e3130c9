"""Detection quality of the anomaly models on simulator runs with injected faults, beside a
static 3σ threshold on the same data (issue #7 §4).

The plant model of `iiot-sim` (server/sim/plant.py) is stepped in process, one reading a second.
Each run: two days of normal operation (the training range), then `--faults` faults of one kind
separated by 1-3 h of normal operation; sensor faults strike a random numeric tag of a random
device, process faults a random pump; durations and magnitudes as the simulator draws them
(server/sim/faults.py: drift 30-120 min to +10 % of span, stuck 5-30 min, spike 1-5 s of +40 %
of span, bearing wear 2-8 h, trip 2-15 min). In the bearing-wear runs the worn pump trips when
the wear ends (as a worn bearing would end), so "detected before the trip" is measurable. The
faults are written to a ground-truth file as the simulator writes them (GroundTruth) and read
back with read_ground_truth.

One model per device, trained on the run's first two days with the default parameters (10 s
step, 300 s window, contamination 1e-4, 100 trees) by the same code the server runs
(server/ml/training.py, from 10 s buckets equal to the historian's rollups); scored with the
model's threshold (score > 1). Baseline: per tag, mean ± 3σ of the training range's raw
samples; a window is flagged when any sample of any tag of the device is outside (the static
limit alarm an engineer would set); also reported on 10 s means instead of raw samples.

Evaluation is event-level (docs/anomaly.md says why and how):
- flagged windows of a device are merged into alarm episodes (gaps up to 60 s);
- a fault is detected when a flagged window of a device it affects (ground truth `tags`) ends
  in [start, end + 60 s]; the delay is that window's end - the fault's start;
- an episode that overlaps no fault of its device, extended by its settling time (sensor
  faults: window + 60 s; process faults: 1 h — the tank refills, the bearing cools), is a false
  alarm; precision = detected / (detected + false alarms), recall = detected / faults.
Window-level figures are given too (windows overlapping a fault are positives, windows in a
settling time are left out).

The model's defaults (contamination 1e-4, envelope margin 1, forest margin 0.25, squared terms
in the residual fit) were chosen on development runs with seeds 1-105; the default seeds here
start at 1000, so the figures are measured on runs the defaults were not tuned on.

    python -m bench.anomaly_quality [--runs 2] [--faults 8] [--seed 1000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import Row, publish
from server.ml import features as ft
from server.ml.training import TrainParams, train
from server.sim.faults import DURATIONS, Fault, FaultKind, GroundTruth, read_ground_truth
from server.sim.plant import Plant

F64 = npt.NDArray[np.float64]
KINDS = [FaultKind.DRIFT, FaultKind.STUCK, FaultKind.SPIKE, FaultKind.BEARING_WEAR, FaultKind.PUMP_TRIP]
TRAIN_S = 2 * 86_400
STEP = 10.0
MERGE_GAP_S = 60.0
DETECT_SLACK_S = 60.0
SETTLE_S = {"drift": 360.0, "stuck": 360.0, "spike": 360.0, "bearing_wear": 3600.0, "pump_trip": 3600.0}
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


@dataclass
class Sim:
    ts: F64
    data: dict[str, F64]
    """device path -> (samples, tags)"""
    names: dict[str, list[str]]
    truth: list[dict[str, Any]]
    seconds: float = 0.0


def plan(kind: FaultKind, rng: random.Random, n: int, plant: Plant) -> tuple[list[Fault], float]:
    """Faults after the training range; returns them and the run's length in seconds."""
    sensors = plant.sensors()
    pumps = sorted(d for d in sensors if d.startswith("Pump"))
    t = TRAIN_S + rng.uniform(1800, 3600)
    faults = []
    for _ in range(n):
        low, high = DURATIONS[kind]
        duration = rng.uniform(low, high)
        if kind.on_sensor:
            device = rng.choice(sorted(sensors))
            faults.append(Fault(kind, device, t, duration, rng.choice(sensors[device])))
        else:
            device = rng.choice(pumps)
            faults.append(Fault(kind, device, t, duration))
            if kind is FaultKind.BEARING_WEAR:  # the worn bearing ends in a trip
                trip = rng.uniform(*DURATIONS[FaultKind.PUMP_TRIP])
                faults.append(Fault(FaultKind.PUMP_TRIP, device, t + duration, trip))
                duration += trip
        t += duration + rng.uniform(3600, 3 * 3600)
    return faults, t


def simulate(kind: FaultKind, seed: int, n_faults: int, truth_path: Path) -> Sim:
    rng = random.Random(f"{kind.value}-{seed}")
    plant = Plant(seed=seed)
    faults, length = plan(kind, rng, n_faults, plant)
    for f in faults:
        plant.add_fault(f)
    truth = GroundTruth(truth_path)
    n = int(length)
    ts = T0 + np.arange(n, dtype=np.float64)
    data = {d.path: np.empty((n, len(d.tags))) for d in plant.devices}
    names = {d.path: [t.name for t in d.tags] for d in plant.devices}
    started = time.perf_counter()
    for k in range(n):
        frame, events = plant.step(float(ts[k]))
        for e in events:  # as server/sim/runner.py writes the ground truth
            if e.started and plant.t0 is not None:
                truth.started(e.fault, plant.t0, e.device_path, e.tags)
        for d in plant.devices:
            row = frame[d.path]
            data[d.path][k] = [row[t] for t in names[d.path]]
    truth.close()
    records = [r for r in read_ground_truth(truth_path) if r["run"] == truth.run]
    return Sim(ts, data, names, records, time.perf_counter() - started)


def buckets(sim: Sim, device: str, start: float, end: float) -> ft.Buckets:
    v = sim.data[device]
    n, j = v.shape
    return ft.buckets_from_samples(np.tile(np.arange(j), n), np.repeat(sim.ts, j), v.reshape(-1), j, STEP, start, end)


@dataclass
class Flags:
    """Per device: window ends and whether each window is flagged."""

    t: dict[str, F64] = field(default_factory=dict)
    flag: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)


def episodes(t: F64, flag: npt.NDArray[np.bool_]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for end in t[flag].tolist():
        if out and end - out[-1][1] <= MERGE_GAP_S + STEP:
            out[-1][1] = end
        else:
            out.append([end - STEP, end])
    return [(a, b) for a, b in out]


def affected(record: dict[str, Any], device: str) -> bool:
    return any(tag.startswith(device + "/") for tag in record["tags"])


@dataclass
class Score:
    faults: int = 0
    detected: int = 0
    false_alarms: int = 0
    delays: list[float] = field(default_factory=list)
    w_tp: int = 0
    w_fp: int = 0
    w_fn: int = 0
    before_trip: list[bool] = field(default_factory=list)
    lead_s: list[float] = field(default_factory=list)

    def add(self, other: Score) -> None:
        for name in ("faults", "detected", "false_alarms", "w_tp", "w_fp", "w_fn"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.delays += other.delays
        self.before_trip += other.before_trip
        self.lead_s += other.lead_s

    @property
    def precision(self) -> float:
        return self.detected / max(1, self.detected + self.false_alarms)

    @property
    def recall(self) -> float:
        return self.detected / max(1, self.faults)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def window_f1(self) -> float:
        return 2 * self.w_tp / max(1, 2 * self.w_tp + self.w_fp + self.w_fn)


def evaluate(flags: Flags, truth: list[dict[str, Any]], kinds: set[str]) -> dict[str, Score]:
    """Scores per fault kind (false alarms go to the run's own kind)."""
    out: dict[str, Score] = {}
    run_kind = next(iter(kinds))
    for record in truth:
        s = out.setdefault(record["kind"], Score())
        s.faults += 1
        best: float | None = None
        for device, t in flags.t.items():
            if not affected(record, device):
                continue
            hit = flags.flag[device] & (t > record["start"]) & (t <= record["end"] + DETECT_SLACK_S)
            if hit.any():
                first = float(t[np.argmax(hit)])
                best = first if best is None else min(best, first)
        if best is not None:
            s.detected += 1
            s.delays.append(best - record["start"])
        if record["kind"] == "bearing_wear":
            ok = best is not None and best < record["end"]
            s.before_trip.append(ok)
            if ok and best is not None:
                s.lead_s.append(record["end"] - best)
    run = out.setdefault(run_kind, Score())
    for device, t in flags.t.items():
        mine = [r for r in truth if affected(r, device)]
        for a, b in episodes(t, flags.flag[device]):
            if not any(a < r["end"] + SETTLE_S[r["kind"]] and b > r["start"] for r in mine):
                run.false_alarms += 1
        positive = np.zeros(t.size, bool)
        settling = np.zeros(t.size, bool)
        for r in mine:
            positive |= (t > r["start"]) & (t - STEP < r["end"])
            settling |= (t - STEP >= r["end"]) & (t - STEP < r["end"] + SETTLE_S[r["kind"]])
        judged = ~settling | positive
        f = flags.flag[device]
        run.w_tp += int((f & positive & judged).sum())
        run.w_fp += int((f & ~positive & judged).sum())
        run.w_fn += int((~f & positive & judged).sum())
    return out


def detect(sim: Sim, params: TrainParams) -> tuple[Flags, Flags, Flags, Flags, Flags, float, float]:
    """Flags of the models (combined, forest alone, envelope alone) and of both baselines."""
    model_f, forest_f, env_f, base_raw, base_mean = Flags(), Flags(), Flags(), Flags(), Flags()
    train_s = score_s = 0.0
    start = T0
    split = T0 + TRAIN_S
    end = float(np.floor(sim.ts[-1] / STEP) * STEP)
    for device, values in sim.data.items():
        names = sim.names[device]
        started = time.perf_counter()
        model, _ = train(buckets(sim, device, start, split), names, names, params, lambda *_: None)
        train_s += time.perf_counter() - started
        started = time.perf_counter()
        test = buckets(sim, device, split - model.window * STEP, end)
        scored = model.score_buckets(test)
        score_s += time.perf_counter() - started
        keep = scored.t > split
        t = scored.t[keep]
        for flags, value in ((model_f, scored.score), (forest_f, scored.forest), (env_f, scored.envelope)):
            flags.t[device], flags.flag[device] = t, value[keep] > 1.0
        _baseline(sim, device, values, split, end, base_raw, base_mean)
    return model_f, forest_f, env_f, base_raw, base_mean, train_s, score_s


def _baseline(sim: Sim, device: str, values: F64, split: float, end: float, raw: Flags, means: Flags) -> None:
    train = sim.ts < split
    mu, sd = values[train].mean(axis=0), values[train].std(axis=0)
    test = (sim.ts >= split) & (sim.ts < end)
    outside = (np.abs(values[test] - mu) > 3 * sd).any(axis=1)
    idx = ((sim.ts[test] - split) // STEP).astype(np.int64)
    n = int(round((end - split) / STEP))
    flag = np.zeros(n, bool)
    np.logical_or.at(flag, idx, outside)
    t = split + STEP * (np.arange(n) + 1)
    raw.t[device], raw.flag[device] = t, flag
    b = buckets(sim, device, T0, end)
    tr = b.t < split
    bmu, bsd = np.nanmean(b.mean[tr], axis=0), np.nanstd(b.mean[tr], axis=0)
    te = ~tr
    means.t[device] = b.t[te] + STEP
    means.flag[device] = (np.abs(b.mean[te] - bmu) > 3 * bsd).any(axis=1)


def fmt_delay(values: list[float]) -> str:
    if not values:
        return "—"
    m = float(np.median(values))
    return f"{m:.0f} s" if m < 600 else f"{m / 60:.0f} min"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=2, help="runs (seeds) per fault kind")
    p.add_argument("--faults", type=int, default=8, help="faults per run")
    p.add_argument("--seed", type=int, default=1000, help="first seed (1-105 were used to choose the defaults)")
    p.add_argument("--backend", default="both", help="ignored: no database is involved")
    p.add_argument("--no-doc", action="store_true")
    a = p.parse_args(argv)
    params = TrainParams()
    totals: dict[str, dict[str, Score]] = {name: {} for name in ("model", "forest", "envelope", "raw3s", "mean3s")}
    sim_s = train_s = score_s = 0.0
    windows = 0
    tmp = Path(tempfile.mkdtemp(prefix="iiot-anomaly-quality-"))
    for kind in KINDS:
        for r in range(a.runs):
            seed = a.seed + 100 * r + KINDS.index(kind)
            sim = simulate(kind, seed, a.faults, tmp / "ground-truth.jsonl")
            sim_s += sim.seconds
            flags = detect(sim, params)
            train_s += flags[5]
            score_s += flags[6]
            windows += sum(f.size for f in flags[0].t.values())
            for name, f in zip(totals, flags[:5], strict=True):
                for k, s in evaluate(f, sim.truth, {kind.value}).items():
                    totals[name].setdefault(k, Score()).add(s)
            m = totals["model"].get(kind.value, Score())
            print(f"  {kind.value} run {r + 1}/{a.runs} (seed {seed}): {sim.ts.size / 3600:.0f} h simulated in "
                  f"{sim.seconds:.0f} s; model so far F1 {m.f1:.2f}", flush=True)  # fmt: skip

    def overall(name: str) -> Score:
        s = Score()
        for v in totals[name].values():
            s.add(v)
        return s

    model, raw, mean = overall("model"), overall("raw3s"), overall("mean3s")
    base_name, base = ("raw samples", raw) if raw.f1 >= mean.f1 else ("10 s means", mean)
    base_totals = totals["raw3s"] if base is raw else totals["mean3s"]
    rows = []
    for kind in KINDS:
        s, b = totals["model"].get(kind.value, Score()), base_totals.get(kind.value, Score())
        rows.append(Row(
            "—", f"F1 {kind.value} (P {s.precision:.2f} / R {s.recall:.2f}, {s.detected}/{s.faults} faults, "
            f"{s.false_alarms} false; delay median {fmt_delay(s.delays)})", f"{s.f1:.2f}",
            f"{b.f1:.2f} (P {b.precision:.2f} / R {b.recall:.2f}; delay {fmt_delay(b.delays)})",
            f"{s.f1 / b.f1:.2f}" if b.f1 else "∞", "—", "—",
        ))  # fmt: skip
    goal_ok = model.f1 >= 0.8 and model.f1 >= base.f1 + 0.2
    rows.append(Row(
        "—", f"F1 overall, event-level (P {model.precision:.2f} / R {model.recall:.2f}; {model.detected}/"
        f"{model.faults} faults, {model.false_alarms} false alarms)", f"{model.f1:.2f}",
        f"{base.f1:.2f} (static 3σ on {base_name})", f"{model.f1 / base.f1:.2f}" if base.f1 else "∞",
        "≥ 0.8 and ≥ baseline + 0.2", "yes" if goal_ok else "**no**",
    ))  # fmt: skip
    wear = totals["model"].get("bearing_wear", Score())
    bwear = base_totals.get("bearing_wear", Score())
    ok = bool(wear.before_trip) and all(wear.before_trip)
    rows.append(Row(
        "—", f"bearing wear detected before the pump trips (lead time median {fmt_delay(wear.lead_s)})",
        f"{sum(wear.before_trip)}/{len(wear.before_trip)}",
        f"{sum(bwear.before_trip)}/{len(bwear.before_trip)} (lead {fmt_delay(bwear.lead_s)})", "—", "all",
        "yes" if ok else "**no**",
    ))  # fmt: skip
    forest, env = overall("forest"), overall("envelope")
    notes = [
        f"{a.runs} runs per fault kind × {a.faults} faults (bearing-wear runs add a trip after each wear), seeds "
        f"from {a.seed} (the defaults were chosen on seeds 1-105); each run trains on its first 2 days and is "
        f"judged on the rest; {windows:,} device windows judged; 7 devices, 37 tags. Simulation {sim_s:.0f} s, "
        f"training {train_s:.0f} s "
        f"({train_s / (a.runs * len(KINDS) * 7):.2f} s per model on 2 days), scoring {score_s:.1f} s.",
        "Event-level: a fault is detected when a flagged window of a device it affects ends in [start, end + 60 s]; "
        "flagged windows merge into episodes across gaps ≤ 60 s; an episode overlapping no fault of its device "
        "(+ settling: 360 s after sensor faults, 1 h after process faults) is a false alarm; precision = detected "
        "/ (detected + false alarms). Per-kind false alarms are those of that kind's runs.",
        f"Window-level F1 (windows overlapping a fault = positives; settling windows left out): model "
        f"{model.window_f1:.2f}, 3σ raw {raw.window_f1:.2f}, 3σ 10 s means {mean.window_f1:.2f}. Window-level "
        "recall is low by nature for slow faults: the first minutes of a drift or a wear are invisible to anyone.",
        f"Baselines, event-level F1: static 3σ on raw samples {raw.f1:.2f} (P {raw.precision:.2f} / R "
        f"{raw.recall:.2f}), on 10 s means {mean.f1:.2f} (P {mean.precision:.2f} / R {mean.recall:.2f}); the "
        "table compares with the better of the two.",
        f"What each part of the score does (same runs): forest alone F1 {forest.f1:.2f} (P {forest.precision:.2f}"
        f" / R {forest.recall:.2f}; {forest.detected} faults, {forest.false_alarms} false alarms), envelope alone "
        f"{env.f1:.2f} (P {env.precision:.2f} / R {env.recall:.2f}; {env.detected} faults, {env.false_alarms} false"
        f" alarms), both (the model's score) {model.f1:.2f} ({model.detected} faults, {model.false_alarms} false "
        "alarms).",
    ]
    publish("Anomaly detection quality on injected faults", rows, notes,
            "python -m bench.anomaly_quality " + " ".join(argv or []), write=not a.no_doc)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
