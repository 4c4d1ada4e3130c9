"""Short-lived answers of slow lookups (tenant by name, principal by API key) for the adapters.

A flood of messages must not become a flood of queries: an answer is kept for `ttl_s`, and
when it expires, the messages that arrive together wait for one lookup instead of each
starting its own (which also opened and closed the database pool's overflow connections at
every expiry, seen in the AMQP benchmark). Failures are not kept: the next caller asks again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LookupCache(Generic[K, V]):
    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._pending: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        hit = self._entries.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(load())
            self._pending[key] = pending
            pending.add_done_callback(partial(self._done, key))
        return await asyncio.shield(pending)  # a caller that gives up doesn't cancel the others' lookup

    def _done(self, key: K, done: asyncio.Future[V]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if done.cancelled() or done.exception() is not None:
            return
        if len(self._entries) >= self.max_entries:  # keys come from the network: stay bounded
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl_s, done.result())
