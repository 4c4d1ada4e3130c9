"""Latest value per tag, in memory; the historian is asked only on a cold miss."""

from __future__ import annotations

from server.domain.quality import Quality
from server.storage.historian.store import SampleStore

LiveValue = tuple[float, float, Quality]


class LiveCache:
    def __init__(self, store: SampleStore) -> None:
        self._store = store
        self._values: dict[int, LiveValue] = {}
        self._known_empty: set[int] = set()

    def offer(self, tag_id: int, ts: float, value: float, quality: Quality) -> bool:
        """Keep the value if it is the newest; returns whether it advanced the live value."""
        current = self._values.get(tag_id)
        if current is not None and ts < current[0]:
            return False
        self._values[tag_id] = (ts, value, quality)
        if current is None:
            self._known_empty.discard(tag_id)
        return True

    async def get(self, tag_ids: list[int]) -> dict[int, LiveValue]:
        cold = [t for t in tag_ids if t not in self._values and t not in self._known_empty]
        if cold:
            stored = await self._store.latest_many(cold)
            for tag_id in cold:
                found = stored.get(tag_id)
                if found is None:
                    self._known_empty.add(tag_id)
                elif tag_id not in self._values:  # a live value may have arrived meanwhile
                    self._values[tag_id] = (found[0], found[1], Quality(found[2]))
        return {t: self._values[t] for t in tag_ids if t in self._values}

    def drop(self, tag_ids: list[int]) -> None:
        for tag_id in tag_ids:
            self._values.pop(tag_id, None)
            self._known_empty.discard(tag_id)
