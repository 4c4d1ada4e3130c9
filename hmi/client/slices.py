"""Long work on the event loop in short slices, so the GUI keeps painting (no Qt here).

A thread would not help with CPU-bound Python: `json.loads` of a 10,000-alarm answer (8 MB) holds
the GIL for its whole ~60 ms wherever it runs. Parsing the array element by element and yielding
to the loop every few milliseconds does: the loop (and Qt, under qasync) runs between slices.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _skip(text: str, index: int) -> int:
    """The index of the first non-whitespace character at or after `index`."""
    match = _WHITESPACE.match(text, index)
    return match.end() if match else index


class Slicer:
    """`await slicer.tick()` after each unit of work: it yields to the loop once `budget_s` of
    work has gone by since the last yield (and costs almost nothing otherwise)."""

    def __init__(self, budget_s: float = 0.008) -> None:
        self.budget_s = budget_s
        self.yields = 0
        self._since = time.perf_counter()

    async def tick(self) -> None:
        if time.perf_counter() - self._since >= self.budget_s:
            await asyncio.sleep(0)
            self.yields += 1
            self._since = time.perf_counter()


async def iter_json_array(text: str, slicer: Slicer, every: int = 32) -> AsyncIterator[Any]:
    """The elements of a JSON array, decoded one by one; `slicer.tick()` every `every` elements.
    Raises ValueError (json.JSONDecodeError) when `text` is not a JSON array."""
    decoder = json.JSONDecoder()
    index = _skip(text, 0)
    if text[index : index + 1] != "[":
        raise json.JSONDecodeError("expected a JSON array", text, index)
    index = _skip(text, index + 1)
    if text[index : index + 1] == "]":
        return
    count = 0
    while True:
        value, index = decoder.raw_decode(text, index)
        yield value
        index = _skip(text, index)
        separator = text[index : index + 1]
        if separator == "]":
            break
        if separator != ",":
            raise json.JSONDecodeError("expected ',' or ']'", text, index)
        index = _skip(text, index + 1)
        count += 1
        if count % every == 0:
            await slicer.tick()
    if _skip(text, index + 1) != len(text):
        raise json.JSONDecodeError("extra data after the array", text, index + 1)
