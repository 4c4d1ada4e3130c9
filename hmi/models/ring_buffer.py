"""Preallocated numpy ring buffers for the live tail of a trend: appending never allocates."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


class RingBuffer:
    """Times and values in two preallocated arrays; the oldest sample is overwritten when full."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._t = np.zeros(capacity)
        self._v = np.zeros(capacity)
        self._start = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, t: float, v: float) -> None:
        """Append a sample; an out-of-order one (older than the newest) is ignored."""
        if self._size and t <= self._t[(self._start + self._size - 1) % self.capacity]:
            return
        end = (self._start + self._size) % self.capacity
        self._t[end], self._v[end] = t, v
        if self._size < self.capacity:
            self._size += 1
        else:
            self._start = (self._start + 1) % self.capacity

    def first_time(self) -> float | None:
        return float(self._t[self._start]) if self._size else None

    def last_time(self) -> float | None:
        return float(self._t[(self._start + self._size - 1) % self.capacity]) if self._size else None

    def drop_before(self, t: float) -> None:
        """Forget samples older than `t` (history covers them now)."""
        while self._size and self._t[self._start] < t:
            self._start = (self._start + 1) % self.capacity
            self._size -= 1

    def clear(self) -> None:
        self._start = self._size = 0

    def arrays(self) -> tuple[Array, Array]:
        """Copies in time order (two slices at most)."""
        end = self._start + self._size
        if end <= self.capacity:
            return self._t[self._start : end].copy(), self._v[self._start : end].copy()
        wrap = end - self.capacity
        return (
            np.concatenate((self._t[self._start :], self._t[:wrap])),
            np.concatenate((self._v[self._start :], self._v[:wrap])),
        )
