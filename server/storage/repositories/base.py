"""Small helpers shared by the repositories."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from server.domain.errors import Conflict


def utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


def conflict_from(exc: sa.exc.IntegrityError, what: str) -> Conflict:
    return Conflict(f"{what} already exists")
