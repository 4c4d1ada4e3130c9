"""The alarm summary as the console holds it: fed by GET /alarms and by alarm events on the
stream, sorted by priority then newest first, filtered by area, priority and state.

A summary may hold 10,000 alarms while events stream in, so nothing per event walks them all:
`changed` says which alarms (and source tags) an event touched, the count of unacknowledged
alarms is kept as they change, the newest one is remembered until it stops being unacknowledged,
and the alarms of each source tag are indexed. Whole-list work (sorting, the worst alarm of every
tag) happens only on a reload or a new filter (`AlarmChange.reset`)."""

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

    def row_key(self) -> tuple[int, float, int]:
        """The summary's order (priority, newest first), made total by the id: a row is found by bisection."""
        return (PRIORITY_RANK.get(self.priority, 9), -(self.active_since or self.changed_at), self.id)


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """What `AlarmStore.changed` carries: the alarms an event added, changed or removed and their
    source tags (before and after), or `reset` when everything may have changed."""

    ids: frozenset[int] = frozenset()
    sources: frozenset[str] = frozenset()
    reset: bool = False


RESET = AlarmChange(reset=True)


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


class AlarmSnapshot:
    """A summary being built from `GET /alarms`, one alarm at a time (the console builds 10,000 in
    short slices between which the GUI runs), then swapped into the store in one cheap step."""

    def __init__(self) -> None:
        self.alarms: dict[int, Alarm] = {}
        self.by_source: dict[str, set[int]] = {}
        self.unacked = 0

    def add(self, item: dict[str, Any]) -> None:
        alarm = Alarm.from_api(item)
        if alarm.state not in ANNUNCIATED:
            return
        before = self.alarms.get(alarm.id)
        if before is not None:  # the same id twice: the later one counts
            self.unacked -= before.unacked
            if before.source:
                self.by_source[before.source].discard(before.id)
        self.alarms[alarm.id] = alarm
        self.unacked += alarm.unacked
        if alarm.source:
            self.by_source.setdefault(alarm.source, set()).add(alarm.id)


class AlarmStore:
    """Alarms on the summary (annunciated states only); `changed` fires after every change."""

    def __init__(self) -> None:
        self.alarms: dict[int, Alarm] = {}
        self.filter = AlarmFilter()
        self.changed: Signal[AlarmChange] = Signal()
        self.raised: Signal[Alarm] = Signal()  # a new unacknowledged alarm (audible alert, banner)
        self._unacked = 0
        self._newest: Alarm | None = None  # the newest unacknowledged alarm, when known
        self._newest_known = True
        self._by_source: dict[str, set[int]] = {}
        self._reloads: list[list[dict[str, Any]]] = []  # events seen while each reload is under way

    def replace_all(self, items: list[dict[str, Any]]) -> None:
        snapshot = AlarmSnapshot()
        for item in items:
            snapshot.add(item)
        self.swap(snapshot)

    def swap(self, snapshot: AlarmSnapshot) -> None:
        """Make a built snapshot the summary: no per-alarm work here."""
        self.alarms, self._by_source, self._unacked = snapshot.alarms, snapshot.by_source, snapshot.unacked
        self._newest_known = False
        self.changed.emit(RESET)

    def begin_reload(self) -> object:
        """A reload starts (its answer may be older than events that arrive meanwhile): from now
        on alarm events are kept for `finish_reload`, which applies those newer than the answer."""
        seen: list[dict[str, Any]] = []
        self._reloads.append(seen)
        return seen

    def cancel_reloads(self) -> None:
        """Reloads under way will not be swapped in (logged out: they are another session's)."""
        self._reloads.clear()

    def finish_reload(self, token: object, snapshot: AlarmSnapshot | None) -> None:
        """Swap in the reload's snapshot (None: the reload failed, keep what is shown), then apply
        again the newest event of each alarm seen meanwhile unless the snapshot is newer."""
        seen = next((r for r in self._reloads if r is token), None)
        if seen is None:
            return
        self._reloads.remove(seen)
        if snapshot is None:
            return
        self.swap(snapshot)
        newest = {int(e["id"]): e for e in seen}
        for alarm_id, event in newest.items():
            known = self.alarms.get(alarm_id)
            if known is None or float(event.get("changed_at") or 0.0) >= known.changed_at:
                self._apply(event, announce=False)  # announced when it arrived

    def apply_event(self, event: dict[str, Any]) -> None:
        """An alarm event from the stream: the alarm as the API shows it after the transition."""
        for seen in self._reloads:
            seen.append(event)
        self._apply(event, announce=True)

    def _apply(self, event: dict[str, Any], announce: bool) -> None:
        alarm = Alarm.from_api(event)
        before = self.alarms.get(alarm.id)
        if before is not None:
            self._forget(before)
        if alarm.state in ANNUNCIATED:
            self.alarms[alarm.id] = alarm
            self._remember(alarm)
        else:
            self.alarms.pop(alarm.id, None)
        if announce and alarm.unacked and (before is None or not before.unacked or event.get("event") == "escalated"):
            self.raised.emit(alarm)
        sources = {a.source for a in (before, alarm) if a is not None and a.source}
        self.changed.emit(AlarmChange(frozenset({alarm.id}), frozenset(sources)))

    def _forget(self, alarm: Alarm) -> None:
        if alarm.unacked:
            self._unacked -= 1
            if self._newest is not None and self._newest.id == alarm.id:
                self._newest, self._newest_known = None, False
        if alarm.source and (ids := self._by_source.get(alarm.source)) is not None:
            ids.discard(alarm.id)
            if not ids:
                del self._by_source[alarm.source]

    def _remember(self, alarm: Alarm) -> None:
        if alarm.unacked:
            self._unacked += 1
            if self._newest_known and (self._newest is None or alarm.changed_at >= self._newest.changed_at):
                self._newest = alarm
        if alarm.source:
            self._by_source.setdefault(alarm.source, set()).add(alarm.id)

    def set_filter(self, alarm_filter: AlarmFilter) -> None:
        self.filter = alarm_filter
        self.changed.emit(RESET)

    def visible(self) -> list[Alarm]:
        """Sorted by priority, then newest first; what the filter lets through."""
        return sorted((a for a in self.alarms.values() if self.filter.accepts(a)), key=Alarm.row_key)

    def unacked(self) -> list[Alarm]:
        return [a for a in self.alarms.values() if a.unacked]

    def unacked_count(self) -> int:
        return self._unacked

    @property
    def newest_known(self) -> bool:
        """Whether `newest_unacked()` answers without walking every alarm."""
        return self._newest_known or self._unacked == 0

    def newest_unacked(self) -> Alarm | None:
        """What the banner shows: the most recent unacknowledged alarm of any priority."""
        if self._unacked == 0:
            return None
        if not self._newest_known:
            self._newest = max(self.unacked(), key=lambda a: a.changed_at, default=None)
            self._newest_known = True
        return self._newest

    def worst_of(self, source: str) -> Alarm | None:
        """The highest-priority alarm of one source tag (its own alarms only)."""
        ids = self._by_source.get(source, ())
        return min((self.alarms[i] for i in ids), key=Alarm.sort_key, default=None)

    def worst_by_source(self) -> dict[str, Alarm]:
        """The highest-priority alarm per source tag, for the tree's alarm column."""
        worst: dict[str, Alarm] = {}
        for alarm in self.alarms.values():
            if alarm.source and (alarm.source not in worst or alarm.sort_key() < worst[alarm.source].sort_key()):
                worst[alarm.source] = alarm
        return worst
