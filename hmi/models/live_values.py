"""The latest value of every subscribed tag, and whether it is stale (link lost)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hmi.models.events import Signal

QUALITY = {0: "Good", 1: "Uncertain", 2: "Bad"}


@dataclass(slots=True)
class LiveValue:
    t: float
    v: float
    q: int


class LiveValues:
    """Fed by the stream; `changed` carries the node ids that changed (one emit per frame)."""

    def __init__(self) -> None:
        self.values: dict[str, LiveValue] = {}
        self.stale = True
        self.changed: Signal[set[str]] = Signal()
        self.stale_changed: Signal[bool] = Signal()

    def update(self, items: Sequence[tuple[str, float, float, int]]) -> None:
        changed = set()
        for node_id, t, v, q in items:
            current = self.values.get(node_id)
            if current is None or t >= current.t:
                self.values[node_id] = LiveValue(t, v, q)
                changed.add(node_id)
        if changed:
            self.changed.emit(changed)

    def set_stale(self, stale: bool) -> None:
        """Values are kept but marked: an operator must not mistake a frozen number for a live one."""
        if stale != self.stale:
            self.stale = stale
            self.stale_changed.emit(stale)

    def get(self, node_id: str) -> LiveValue | None:
        return self.values.get(node_id)

    def quality_text(self, node_id: str) -> str:
        value = self.values.get(node_id)
        if value is None:
            return ""
        return "Stale" if self.stale else QUALITY.get(value.q, str(value.q))
