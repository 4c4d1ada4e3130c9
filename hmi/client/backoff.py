"""Reconnect delays: doubling with jitter, so a restarted server is not hit by every console at once."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    first_s: float = 0.5
    max_s: float = 15.0
    jitter: float = 0.2
    attempts: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        base = min(self.max_s, self.first_s * 2**self.attempts)
        self.attempts += 1
        return float(base) * (1 + self.jitter * (2 * self._rng.random() - 1))  # noqa: S311 - jitter, not crypto

    def reset(self) -> None:
        self.attempts = 0
