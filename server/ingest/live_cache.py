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
        self._known_empty.discard(tag_id)
        return True

    async def get(self, tag_ids: list[int]) -> dict[int, LiveValue]:
        result: dict[int, LiveValue] = {}
        for tag_id in tag_ids:
            value = self._values.get(tag_id)
            if value is None and tag_id not in self._known_empty:
                stored = await self._store.latest(tag_id)
                if stored is None:
                    self._known_empty.add(tag_id)
                else:
                    value = (stored[0], stored[1], Quality(stored[2]))
                    if tag_id not in self._values:
                        self._values[tag_id] = value
            if value is not None:
                result[tag_id] = value
        return result

    def drop(self, tag_ids: list[int]) -> None:
        for tag_id in tag_ids:
            self._values.pop(tag_id, None)
            self._known_empty.discard(tag_id)
