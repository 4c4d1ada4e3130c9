"""Data for the anomaly tests: the simulator's plant, stepped in process (1 s per step)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from server.ml import features as ft
from server.ml.training import TrainParams, train
from server.sim.faults import Fault
from server.sim.plant import Plant

T0 = 1_700_000_000.0  # a multiple of 10: buckets line up with the run
F64 = npt.NDArray[np.float64]


@dataclass
class Run:
    ts: F64
    values: F64
    """(samples, tags) of one device."""
    names: list[str]

    def columns(self) -> tuple[npt.NDArray[np.int64], F64, F64]:
        n, j = self.values.shape
        return np.tile(np.arange(j), n), np.repeat(self.ts, j), self.values.reshape(-1)

    def buckets(self, start: float, end: float, step: float = 10.0) -> ft.Buckets:
        col, ts, v = self.columns()
        return ft.buckets_from_samples(col, ts, v, self.values.shape[1], step, start, end)


def plant_run(seconds: int, *, seed: int = 7, device: str = "Pump1", faults: list[Fault] | None = None,
              t0: float = T0) -> Run:  # fmt: skip
    plant = Plant(seed=seed, pumps=1, faults=faults)
    info = plant.by_name[device]
    names = [t.name for t in info.tags]
    ts = t0 + np.arange(seconds, dtype=np.float64)
    values = np.empty((seconds, len(names)))
    for k in range(seconds):
        frame, _ = plant.step(float(ts[k]))
        row = frame[info.path]
        values[k] = [row[n] for n in names]
    return Run(ts, values, names)


def trained(run: Run, seconds: int, params: TrainParams | None = None) -> tuple[object, dict[str, object]]:
    """A model of the run's first `seconds`."""
    b = run.buckets(run.ts[0], run.ts[0] + seconds)
    return train(b, [f"tag:{n}" for n in run.names], run.names, params or TrainParams(), lambda *_: None)
