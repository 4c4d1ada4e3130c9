"""Commands to devices (being built for issue #3: published to MQTT `.../commands`)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["devices"])
