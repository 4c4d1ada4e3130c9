"""Per-condition evaluation of incoming values: each kind keeps only the memory it needs
(the current limit level for the deadband, the previous sample for a rate, a window for a
statistic), so a sample costs the same whatever else is configured."""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from server.alarms.spec import (
    Anomaly,
    Comparator,
    Comparison,
    Deviation,
    Discrete,
    Limit,
    RateOfChange,
    Spec,
    Stale,
    Statistical,
)

MAIN, OTHER = "main", "other"
"""Roles of a condition's inputs: its own tag, and the setpoint or the tag it is compared with."""

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}  # fmt: skip


class Verdict(NamedTuple):
    """A named tuple: one is made per judged sample."""

    condition: bool
    value: float | None = None
    limit: float | None = None
    level: str | None = None


def compare(op: Comparator, a: float, b: float, deadband: float = 0.0, holding: bool = False) -> bool:
    """a op b; while the condition holds, the deadband widens it so noise can't chatter."""
    if op == "==":
        return abs(a - b) <= deadband
    if op == "!=":
        return abs(a - b) > deadband
    if holding and deadband:
        b = b - deadband if op in (">", ">=") else b + deadband
    return _OPS[op](a, b)


class Evaluator:
    """Gets each Good sample of its inputs; returns a verdict when it has one."""

    def sample(self, role: str, ts: float, value: float) -> Verdict | None:
        raise NotImplementedError


class LimitEvaluator(Evaluator):
    _HELD = {None: (), "hi": ("hi",), "hihi": ("hihi", "hi"), "lo": ("lo",), "lolo": ("lolo", "lo")}
    """The levels whose limit a current level holds with the deadband (HiHi holds Hi too)."""

    def __init__(self, spec: Limit) -> None:
        self.spec = spec
        self.level: str | None = None
        self.limits = [(name, limit, high) for name, limit, high in (
            ("hihi", spec.hihi, True), ("hi", spec.hi, True), ("lolo", spec.lolo, False), ("lo", spec.lo, False),
        ) if limit is not None]  # fmt: skip
        self.deadband = spec.deadband

    def sample(self, role: str, ts: float, value: float) -> Verdict:
        held = self._HELD[self.level]
        for name, limit, high in self.limits:
            band = self.deadband if name in held else 0.0
            if (value > limit - band) if high else (value < limit + band):
                self.level = name
                return Verdict(True, value, limit, name)
        self.level = None
        return Verdict(False, value, None, None)


class DeviationEvaluator(Evaluator):
    def __init__(self, spec: Deviation) -> None:
        self.spec = spec
        self.value: float | None = None
        self.setpoint: float | None = None
        self.active = False

    def sample(self, role: str, ts: float, value: float) -> Verdict | None:
        if role == MAIN:
            self.value = value
        else:
            self.setpoint = value
        if self.value is None or self.setpoint is None:
            return None
        band = self.spec.deadband if self.active else 0.0
        self.active = abs(self.value - self.setpoint) > self.spec.limit - band
        return Verdict(self.active, self.value, self.setpoint, "deviation" if self.active else None)


class ComparisonEvaluator(Evaluator):
    def __init__(self, spec: Comparison) -> None:
        self.spec = spec
        self.value: float | None = None
        self.other: float | None = spec.value
        self.active = False

    def sample(self, role: str, ts: float, value: float) -> Verdict | None:
        if role == MAIN:
            self.value = value
        else:
            self.other = value
        if self.value is None or self.other is None:
            return None
        self.active = compare(self.spec.op, self.value, self.other, self.spec.deadband, self.active)
        return Verdict(self.active, self.value, self.other)


class RateEvaluator(Evaluator):
    def __init__(self, spec: RateOfChange) -> None:
        self.spec = spec
        self.last: tuple[float, float] | None = None

    def sample(self, role: str, ts: float, value: float) -> Verdict | None:
        last, self.last = self.last, (ts, value)
        if last is None or ts <= last[0]:
            return None
        rate = (value - last[1]) / (ts - last[0]) * 60.0
        return Verdict(abs(rate) > self.spec.limit_per_min, rate, self.spec.limit_per_min)


class StatisticalEvaluator(Evaluator):
    """Running sums for mean and standard deviation, monotonic queues for min and max: O(1)
    amortised per sample whatever the window."""

    def __init__(self, spec: Statistical) -> None:
        self.spec = spec
        self.window: deque[tuple[float, float]] = deque()
        self.total = self.squares = 0.0
        self.lows: deque[tuple[float, float]] = deque()
        self.highs: deque[tuple[float, float]] = deque()
        self.active = False

    def sample(self, role: str, ts: float, value: float) -> Verdict | None:
        s = self.spec
        if self.window and ts < self.window[-1][0]:
            return None  # late sample: the window is kept in time order
        self.window.append((ts, value))
        self.total += value
        self.squares += value * value
        while self.lows and self.lows[-1][1] >= value:
            self.lows.pop()
        self.lows.append((ts, value))
        while self.highs and self.highs[-1][1] <= value:
            self.highs.pop()
        self.highs.append((ts, value))
        horizon = ts - s.window_s
        while self.window and self.window[0][0] <= horizon:
            _, old = self.window.popleft()
            self.total -= old
            self.squares -= old * old
        while self.lows and self.lows[0][0] <= horizon:
            self.lows.popleft()
        while self.highs and self.highs[0][0] <= horizon:
            self.highs.popleft()
        n = len(self.window)
        if n < s.min_samples:
            return None
        if s.stat == "mean":
            stat = self.total / n
        elif s.stat == "min":
            stat = self.lows[0][1]
        elif s.stat == "max":
            stat = self.highs[0][1]
        else:
            mean = self.total / n
            stat = math.sqrt(max(0.0, self.squares / n - mean * mean) * n / (n - 1)) if n > 1 else 0.0
        self.active = compare(s.op, stat, s.threshold)
        return Verdict(self.active, stat, s.threshold)


class DiscreteEvaluator(Evaluator):
    def __init__(self, spec: Discrete) -> None:
        self.spec = spec

    def sample(self, role: str, ts: float, value: float) -> Verdict:
        return Verdict(value == self.spec.alarm_value, value, self.spec.alarm_value)


class StaleEvaluator(Evaluator):
    """A sample clears it; the engine's timer raises it when none came for `timeout_s`."""

    def __init__(self, spec: Stale) -> None:
        self.spec = spec

    def sample(self, role: str, ts: float, value: float) -> Verdict:
        return Verdict(False, value, self.spec.timeout_s)


class AnomalyEvaluator(Evaluator):
    """Fed anomaly scores (by the ML scorer, through `AlarmEngine.anomaly_score`)."""

    def __init__(self, spec: Anomaly) -> None:
        self.spec = spec
        self.active = False

    def sample(self, role: str, ts: float, value: float) -> Verdict:
        band = self.spec.deadband if self.active else 0.0
        self.active = value > self.spec.threshold - band
        return Verdict(self.active, value, self.spec.threshold)


def evaluator_for(spec: Spec) -> Evaluator:
    if isinstance(spec, Limit):
        return LimitEvaluator(spec)
    if isinstance(spec, Deviation):
        return DeviationEvaluator(spec)
    if isinstance(spec, Comparison):
        return ComparisonEvaluator(spec)
    if isinstance(spec, RateOfChange):
        return RateEvaluator(spec)
    if isinstance(spec, Statistical):
        return StatisticalEvaluator(spec)
    if isinstance(spec, Discrete):
        return DiscreteEvaluator(spec)
    if isinstance(spec, Stale):
        return StaleEvaluator(spec)
    return AnomalyEvaluator(spec)
