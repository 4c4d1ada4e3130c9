"""ISA-18.2 alarm-system performance figures, computed from the journal (and, for standing
alarms, from the engine's current states). Pure functions over journal entries, so the API,
the console and the tests compute them the same way."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from server.alarms.repository import JournalEntry

PERIOD_S = 600.0
FLOOD_PER_PERIOD = 10
"""More than 10 alarms per operator in 10 minutes is a flood (ISA-18.2)."""
STANDING_S = 86_400.0
CHATTER_COUNT, CHATTER_WINDOW_S = 3, 60.0
RAISING = ("activated", "escalated")


@dataclass(frozen=True, slots=True)
class Standing:
    condition_id: int
    name: str
    active_since: float


def kpis(
    entries: Iterable[JournalEntry], *, start: float, end: float, operators: int = 1,
    standing: Iterable[Standing] = (), now: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The figures for [start, end); `operators` is how many operator positions share the load."""
    if end <= start:
        raise ValueError("end must be after start")
    operators = max(1, operators)
    entries = sorted(entries, key=lambda e: (e.ts, e.id))
    raised = [e for e in entries if e.event in RAISING and start <= e.ts < end]
    periods = max(1, math.ceil((end - start) / PERIOD_S))
    per_period = Counter(int((e.ts - start) // PERIOD_S) for e in raised)
    flooded = sum(1 for n in per_period.values() if n / operators > FLOOD_PER_PERIOD)
    names: dict[int, str] = {e.condition_id: e.condition_name for e in entries}
    frequent = Counter(e.condition_id for e in raised).most_common(10)
    chattering = _chattering(raised)
    moment = end if now is None else min(now, end)
    standing_list = [
        {
            "condition": s.condition_id,
            "name": s.name,
            "active_since": s.active_since,
            "active_s": moment - s.active_since,
        }
        for s in standing
        if moment - s.active_since > STANDING_S
    ]
    return {
        "start": start, "end": end, "operators": operators, "period_s": PERIOD_S, "periods": periods,
        "alarms": len(raised),
        "alarms_per_operator_per_10min": len(raised) / periods / operators,
        "peak_per_operator_per_10min": max(per_period.values(), default=0) / operators,
        "flood_periods": flooded,
        "flood_percent": 100.0 * flooded / periods,
        "standing": sorted(standing_list, key=lambda s: s["active_since"]),
        "most_frequent": [{"condition": cid, "name": names.get(cid, ""), "count": n} for cid, n in frequent],
        "chattering": [{"condition": cid, "name": names.get(cid, ""), "bursts": n} for cid, n in chattering],
        "shelved": _shelved(entries, start, end, names, moment),
    }  # fmt: skip


def _chattering(raised: list[JournalEntry]) -> list[tuple[int, int]]:
    """Conditions with ≥ 3 activations inside any 60 s; `bursts` counts such windows that start
    at an activation (a measure of how often it chattered, not only whether)."""
    by_condition: dict[int, list[float]] = defaultdict(list)
    for e in raised:
        by_condition[e.condition_id].append(e.ts)
    found = []
    for cid, times in by_condition.items():
        bursts, j = 0, 0
        for i, t in enumerate(times):
            j = max(j, i)
            while j + 1 < len(times) and times[j + 1] - t < CHATTER_WINDOW_S:
                j += 1
            if j - i + 1 >= CHATTER_COUNT:
                bursts += 1
        if bursts:
            found.append((cid, bursts))
    return sorted(found, key=lambda x: -x[1])


def _shelved(
    entries: list[JournalEntry], start: float, end: float, names: dict[int, str], moment: float
) -> list[dict[str, Any]]:
    """Each shelve with its duration; one still open counts until the range's end or now,
    whichever comes first (a range that reaches into the future must not add time to come)."""
    open_: dict[int, JournalEntry] = {}
    out: list[dict[str, Any]] = []
    for e in entries:
        if e.event == "shelved":
            open_[e.condition_id] = e
        elif e.event in ("unshelved", "disabled") and e.condition_id in open_:
            s = open_.pop(e.condition_id)
            if e.ts >= start and s.ts < end:
                out.append(_shelve_row(s, e.ts, names))
    for s in open_.values():
        if s.ts < end:
            out.append(_shelve_row(s, None, names, max(s.ts, moment)))
    return sorted(out, key=lambda r: r["shelved_at"])


def _shelve_row(
    s: JournalEntry, until: float | None, names: dict[int, str], end: float | None = None
) -> dict[str, Any]:
    stop = until if until is not None else end
    assert stop is not None
    return {
        "condition": s.condition_id, "name": names.get(s.condition_id, ""), "shelved_at": s.ts,
        "unshelved_at": until, "duration_s": stop - s.ts, "by": s.user, "reason": s.comment,
    }  # fmt: skip
