"""Time conversions kept in one place: the platform runs on UTC epoch seconds internally."""

from __future__ import annotations

from datetime import UTC, datetime

EPOCH_2000 = 946_684_800.0


def to_epoch(moment: datetime) -> float:
    """Epoch seconds of an aware datetime; a naive one is taken as UTC (devices often omit it)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def from_epoch(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def iso(ts: float) -> str:
    return from_epoch(ts).isoformat().replace("+00:00", "Z")
