"""Why an analysis can't be answered; each maps to a 422 problem document naming the cause."""

from __future__ import annotations

from server.domain.errors import InvalidInput


class NotEnoughData(InvalidInput):
    """Too few usable samples for the statistic asked (an empty range has none)."""


class UndefinedResult(InvalidInput):
    """The maths has no answer for this data, e.g. a correlation with a constant series."""


class NonFiniteData(InvalidInput):
    """NaN or infinite values in the data: refused rather than silently dropped."""
