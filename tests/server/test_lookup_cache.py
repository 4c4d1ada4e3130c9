"""The adapters' lookup cache: one lookup for a burst of misses, failures not kept, expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from server.ingest.lookup_cache import LookupCache


async def test_a_burst_of_misses_shares_one_lookup() -> None:
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return 7

    cache: LookupCache[str, int] = LookupCache(60)
    assert await asyncio.gather(*(cache.get("acme", load) for _ in range(200))) == [7] * 200
    assert calls == 1
    assert await cache.get("acme", load) == 7 and calls == 1


async def test_failures_are_not_kept_and_answers_expire() -> None:
    answers = iter([ValueError("database down"), 1, 2])

    async def load() -> int:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    cache: LookupCache[str, int] = LookupCache(0.05)
    with pytest.raises(ValueError, match="database down"):
        await cache.get("k", load)
    assert await cache.get("k", load) == 1
    assert await cache.get("k", load) == 1
    await asyncio.sleep(0.06)
    assert await cache.get("k", load) == 2


async def test_a_caller_that_gives_up_does_not_cancel_the_others() -> None:
    release = asyncio.Event()

    async def load() -> str:
        await release.wait()
        return "ok"

    cache: LookupCache[str, str] = LookupCache(60)
    impatient = asyncio.ensure_future(cache.get("k", load))
    patient = asyncio.ensure_future(cache.get("k", load))
    await asyncio.sleep(0)
    impatient.cancel()
    release.set()
    assert await patient == "ok"


def test_the_cache_stays_bounded() -> None:
    async def fill() -> int:
        cache: LookupCache[int, int] = LookupCache(60, max_entries=100)
        for k in range(1000):
            await cache.get(k, _const(k))
        return len(cache._entries)

    assert asyncio.run(fill()) <= 100


def _const(value: int) -> Callable[[], Awaitable[int]]:
    async def load() -> int:
        return value

    return load
