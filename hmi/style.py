"""Colours and paths shared by models and views (Qt-free). ISA-101: grey surroundings, muted
process colours, and saturated colour only for abnormal states, so an alarm stands out."""

from __future__ import annotations

from pathlib import Path

# Same hues as the alarm e-mails (docs/alarms.md): urgent red, high orange, medium amber, low blue.
PRIORITY_COLOURS = {"urgent": "#d32f2f", "high": "#ef6c00", "medium": "#f2b600", "low": "#1e73be"}
PRIORITY_TEXT = {"urgent": "#ffffff", "high": "#000000", "medium": "#000000", "low": "#ffffff"}
STALE_TEXT = "#8a8a8a"
BAD_TEXT = "#9c27b0"  # bad quality: magenta, as many control systems do
UNCERTAIN_TEXT = "#6d5d00"
BACKGROUND = "#d4d4d4"


def assets_dir() -> Path:
    """`assets/` next to the package in a checkout; a frozen build puts it beside the executable."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "assets", here / "assets"):
        if candidate.is_dir():
            return candidate
    return here.parent / "assets"
