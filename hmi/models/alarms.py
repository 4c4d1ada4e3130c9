"""The alarm summary as the console holds it: fed by GET /alarms and by alarm events on the
stream, sorted by priority then newest first, filtered by area, priority and state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hmi.models.events import Signal

PRIORITY_RANK = {"urgent": 0, "high": 1, "medium": 2, "low": 3}
ANNUNCIATED = frozenset({"unack_active", "ack_active", "unack_rtn"})
UNACKED = frozenset({"unack_active", "unack_rtn"})


@dataclass(frozen=True, slots=True)
class Alarm:
    """The fields the console shows; `raw` keeps the server's whole answer for the faceplate."""

    id: int
    name: str
    state: str
    priority: str
    message: str
    path: str | None
    source: str | None
    changed_at: float
    active_since: float | None
    first_out: bool
    acked: bool
    value: float | None
    raw: dict[str, Any] = field(compare=False, repr=False)

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Alarm:
        return cls(
            id=int(d["id"]), name=str(d.get("name", "")), state=str(d.get("state", "normal")),
            priority=str(d.get("priority", "medium")), message=str(d.get("message") or d.get("name", "")),
            path=d.get("path"), source=d.get("source"), changed_at=float(d.get("changed_at") or 0.0),
            active_since=d.get("active_since"), first_out=bool(d.get("first_out")), acked=bool(d.get("acked")),
            value=d.get("value"), raw=d,
        )  # fmt: skip

    @property
    def unacked(self) -> bool:
        return self.state in UNACKED

    @property
    def area(self) -> str:
        """The path without its last two segments (device/tag), e.g. Plant1/Area1."""
        parts = (self.path or "").split("/")
        return "/".join(parts[:-2]) if len(parts) > 2 else (parts[0] if parts else "")

    def sort_key(self) -> tuple[int, float]:
        return (PRIORITY_RANK.get(self.priority, 9), -(self.active_since or self.changed_at))


@dataclass
class AlarmFilter:
    area: str = ""
    priorities: frozenset[str] = frozenset()
    states: frozenset[str] = frozenset()

    def accepts(self, alarm: Alarm) -> bool:
        if self.area and not (alarm.path or "").startswith(self.area):
            return False
        if self.priorities and alarm.priority not in self.priorities:
            return False
        return not self.states or alarm.state in self.states


class AlarmStore:
    """Alarms on the summary (annunciated states only); `changed` fires after every change."""

    def __init__(self) -> None:
        self.alarms: dict[int, Alarm] = {}
        self.filter = AlarmFilter()
        self.changed: Signal[None] = Signal()
        self.raised: Signal[Alarm] = Signal()  # a new unacknowledged alarm (audible alert, banner)

    def replace_all(self, items: list[dict[str, Any]]) -> None:
        self.alarms = {a.id: a for a in map(Alarm.from_api, items) if a.state in ANNUNCIATED}
        self.changed.emit(None)

    def apply_event(self, event: dict[str, Any]) -> None:
        """An alarm event from the stream: the alarm as the API shows it after the transition."""
        alarm = Alarm.from_api(event)
        before = self.alarms.get(alarm.id)
        if alarm.state in ANNUNCIATED:
            self.alarms[alarm.id] = alarm
        else:
            self.alarms.pop(alarm.id, None)
        if alarm.unacked and (before is None or not before.unacked or event.get("event") == "escalated"):
            self.raised.emit(alarm)
        self.changed.emit(None)

    def set_filter(self, alarm_filter: AlarmFilter) -> None:
        self.filter = alarm_filter
        self.changed.emit(None)

    def visible(self) -> list[Alarm]:
        """Sorted by priority, then newest first; what the filter lets through."""
        return sorted((a for a in self.alarms.values() if self.filter.accepts(a)), key=Alarm.sort_key)

    def unacked(self) -> list[Alarm]:
        return [a for a in self.alarms.values() if a.unacked]

    def newest_unacked(self) -> Alarm | None:
        """What the banner shows: the most recent unacknowledged alarm of any priority."""
        return max(self.unacked(), key=lambda a: a.changed_at, default=None)

    def worst_by_source(self) -> dict[str, Alarm]:
        """The highest-priority alarm per source tag, for the tree's alarm column."""
        worst: dict[str, Alarm] = {}
        for alarm in self.alarms.values():
            if alarm.source and (alarm.source not in worst or alarm.sort_key() < worst[alarm.source].sort_key()):
                worst[alarm.source] = alarm
        return worst
