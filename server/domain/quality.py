"""OPC UA quality, reduced to the three severities a historian and an operator care about."""

from __future__ import annotations

from enum import IntEnum


class Quality(IntEnum):
    """Severity bits of an OPC UA StatusCode (Good 0x0, Uncertain 0x4, Bad 0x8 in the top bits)."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2

    @property
    def label(self) -> str:
        return _LABELS[self]

    @classmethod
    def parse(cls, text: str) -> Quality:
        try:
            return _BY_LABEL[text.strip().lower()]
        except KeyError:
            raise ValueError(f"quality must be one of Good, Uncertain, Bad (got {text!r})") from None

    @property
    def opcua_status(self) -> int:
        """The StatusCode value an OPC UA client expects for this severity."""
        return (0x00000000, 0x40000000, 0x80000000)[self]


_LABELS = {Quality.GOOD: "Good", Quality.UNCERTAIN: "Uncertain", Quality.BAD: "Bad"}
_BY_LABEL = {v.lower(): k for k, v in _LABELS.items()}
