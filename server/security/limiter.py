"""Brute-force protection for login: failures per tenant+user and per client address."""

from __future__ import annotations

import math
import time
from collections import deque

from server.domain.errors import TooManyRequests


class LoginLimiter:
    """Sliding window in memory; with several servers each one limits on its own (documented)."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._failures[key]
        return q

    def check(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            q = self._recent(key, now)
            if len(q) >= self.max_failures:
                retry = max(1, math.ceil(q[0] + self.window_s - now))
                raise TooManyRequests(f"too many failed logins; try again in {retry} s", retry_after=retry)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)
        if len(self._failures) > 100_000:  # bound memory under a spray attack
            for key in list(self._failures)[:50_000]:
                self._recent(key, now)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
