"""Injected faults: what they are, when they happen, and the ground-truth file that says so.

Sensor faults change what a transmitter reports, not the process: `drift` (an offset that
grows to `magnitude` by the fault's end), `stuck` (the value at the fault's start, held),
`spike` (`magnitude` added for the fault's duration, at least one reading). Process faults
change the plant itself: `bearing_wear` (a pump's wear grows over the fault, raising its
vibration slowly and its bearing temperature; repaired at the end) and `pump_trip` (the pump
stops; its tank drains until it restarts at the end).

The ground truth is JSON lines, one object per fault when it starts (the planned `end`
included); if the run stops during a fault, a second line with the same `id`, the actual
`end` and `"truncated": true` follows. Runs append to the same file, and ids start at 1 in
each run: a line's `run` (the run's start time and process id) tells the runs apart, and readers
keep the last line per (run, id).
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any


class FaultKind(StrEnum):
    DRIFT = "drift"
    STUCK = "stuck"
    SPIKE = "spike"
    BEARING_WEAR = "bearing_wear"
    PUMP_TRIP = "pump_trip"

    @property
    def on_sensor(self) -> bool:
        return self in (FaultKind.DRIFT, FaultKind.STUCK, FaultKind.SPIKE)


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault on `device` (a short name such as Pump1), `start` s after the simulation began."""

    kind: FaultKind
    device: str
    start: float
    duration: float
    tag: str | None = None
    magnitude: float | None = None
    id: int = 0

    @property
    def end(self) -> float:
        return self.start + self.duration

    def active(self, elapsed: float) -> bool:
        return self.start <= elapsed < self.end


_SPEC = re.compile(
    r"^(?P<kind>[a-z_]+):(?P<device>[^/@:]+)(?:/(?P<tag>[^@:]+))?@(?P<start>[\d.]+)\+(?P<duration>[\d.]+)"
    r"(?::(?P<magnitude>-?[\d.]+))?$"
)


def parse_fault(spec: str) -> Fault:
    """`kind:Device[/Tag]@start+duration[:magnitude]`, times in seconds from the start of the run.

    Examples: `bearing_wear:Pump1@60+3600`, `drift:Tank1/Level@30+600:15`, `pump_trip:Pump2@120+300`.
    """
    m = _SPEC.match(spec.strip())
    if m is None:
        raise ValueError(f"fault {spec!r}: expected kind:Device[/Tag]@start+duration[:magnitude]")
    try:
        kind = FaultKind(m["kind"])
    except ValueError:
        raise ValueError(f"fault {spec!r}: kind must be one of {', '.join(k.value for k in FaultKind)}") from None
    if kind.on_sensor and not m["tag"]:
        raise ValueError(f"fault {spec!r}: a {kind.value} fault needs a tag (Device/Tag)")
    if not kind.on_sensor and m["tag"]:
        raise ValueError(f"fault {spec!r}: a {kind.value} fault acts on the whole device, not on a tag")
    if kind in (FaultKind.BEARING_WEAR, FaultKind.PUMP_TRIP) and not m["device"].startswith("Pump"):
        raise ValueError(f"fault {spec!r}: {kind.value} needs a pump")
    duration = float(m["duration"])
    if duration <= 0:
        raise ValueError(f"fault {spec!r}: the duration must be positive")
    magnitude = float(m["magnitude"]) if m["magnitude"] else None
    return Fault(kind, m["device"], float(m["start"]), duration, m["tag"], magnitude)


DURATIONS: dict[FaultKind, tuple[float, float]] = {
    FaultKind.DRIFT: (1800, 7200),
    FaultKind.STUCK: (300, 1800),
    FaultKind.SPIKE: (1, 5),
    FaultKind.BEARING_WEAR: (7200, 28_800),
    FaultKind.PUMP_TRIP: (120, 900),
}
"""Random faults' durations in seconds (uniform between the two)."""
WEIGHTS = {
    FaultKind.SPIKE: 4,
    FaultKind.DRIFT: 2,
    FaultKind.STUCK: 2,
    FaultKind.BEARING_WEAR: 1,
    FaultKind.PUMP_TRIP: 1,
}


class RandomFaults:
    """Faults at random times (a Poisson process of `per_hour`), drawn as the run goes on.

    Its own generator, seeded: the same seed gives the same faults whatever else the
    plant draws. `duration_scale` shortens them for quick runs and tests.
    """

    def __init__(
        self, seed: int, per_hour: float, sensors: dict[str, list[str]], *, duration_scale: float = 1.0
    ) -> None:
        self.rng = random.Random(f"faults-{seed}")  # noqa: S311 - simulation, not cryptography
        self.per_hour, self.sensors, self.duration_scale = per_hour, sensors, duration_scale
        self._next = self._gap()

    def _gap(self) -> float:
        return self.rng.expovariate(self.per_hour / 3600.0) if self.per_hour > 0 else float("inf")

    def until(self, elapsed: float) -> list[Fault]:
        """Every fault that starts at or before `elapsed` and was not drawn yet."""
        out: list[Fault] = []
        while self._next <= elapsed:
            kinds = list(WEIGHTS)
            kind = self.rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds])[0]
            devices = sorted(d for d in self.sensors if kind.on_sensor or d.startswith("Pump"))
            device = self.rng.choice(devices)
            tag = self.rng.choice(self.sensors[device]) if kind.on_sensor else None
            low, high = DURATIONS[kind]
            duration = max(0.1, self.rng.uniform(low, high) * self.duration_scale)
            out.append(Fault(kind, device, round(self._next, 3), round(duration, 3), tag))
            self._next += self._gap()
        return out


class GroundTruth:
    """Appends one JSON line per fault as it starts (flushed, so a reader sees it at once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{os.getpid()}"
        self._file: IO[str] | None = None

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def started(self, fault: Fault, t0: float, device_path: str, tags: list[str]) -> None:
        self._write(_record(fault, t0, device_path, tags) | {"run": self.run})

    def truncated(self, fault: Fault, t0: float, device_path: str, tags: list[str], stopped_at: float) -> None:
        cut = replace(fault, duration=max(0.0, stopped_at - t0 - fault.start))
        self._write(_record(cut, t0, device_path, tags) | {"run": self.run, "truncated": True})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _record(fault: Fault, t0: float, device_path: str, tags: list[str]) -> dict[str, Any]:
    start, end = t0 + fault.start, t0 + fault.end
    return {
        "id": fault.id, "kind": fault.kind.value, "device": device_path, "tags": tags,
        "start": round(start, 3), "end": round(end, 3), "start_iso": _iso(start), "end_iso": _iso(end),
        "magnitude": fault.magnitude,
    }  # fmt: skip


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_ground_truth(path: Path) -> list[dict[str, Any]]:
    """The faults of a ground-truth file in start order, the last line of each (run, id) winning."""
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            latest[(str(record.get("run", "")), int(record["id"]))] = record
    return sorted(latest.values(), key=lambda r: (r["start"], r.get("run", ""), r["id"]))
