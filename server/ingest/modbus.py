"""modbus ingestion adapter (being built for issue #3)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from server.ingest.adapter import Adapter, IngestContext

KIND = "modbus"


class ConnectionConfig(BaseModel):
    """Placeholder until the adapter defines its connection settings."""

    model_config = ConfigDict(extra="allow")


def build(ctx: IngestContext) -> list[Adapter]:
    """The adapters this module runs for the given settings (none yet)."""
    return []
