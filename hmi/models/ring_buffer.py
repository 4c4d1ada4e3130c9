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

    def extend(self, t: Array, v: Array) -> None:
        """Append many samples at once (numpy, no per-sample Python), with `append`'s rule: a sample
        not newer than every one before it is ignored."""
        t = np.asarray(t, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        if not len(t):
            return
        last = self.last_time()
        before = np.maximum.accumulate(np.concatenate(([-np.inf if last is None else last], t[:-1])))
        keep = t > before
        t, v = t[keep], v[keep]
        n = len(t)
        if n >= self.capacity:
            self._t[:], self._v[:] = t[-self.capacity :], v[-self.capacity :]
            self._start, self._size = 0, self.capacity
            return
        at = (self._start + self._size + np.arange(n)) % self.capacity
        self._t[at], self._v[at] = t, v
        overflow = self._size + n - self.capacity
        if overflow > 0:
            self._start = (self._start + overflow) % self.capacity
            self._size = self.capacity
        else:
            self._size += n

    def first_time(self) -> float | None:
        return float(self._t[self._start]) if self._size else None

    def last_time(self) -> float | None:
        return float(self._t[(self._start + self._size - 1) % self.capacity]) if self._size else None

    def drop_before(self, t: float) -> None:
        """Forget samples older than `t` (history covers them now)."""
        times, _ = self.arrays()
        gone = int(np.searchsorted(times, t, side="left"))
        self._start = (self._start + gone) % self.capacity
        self._size -= gone

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
