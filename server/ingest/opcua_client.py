"""opcua_client ingestion adapter (being built for issue #3)."""

from __future__ import annotations

from server.ingest.adapter import Adapter, IngestContext


def build(ctx: IngestContext) -> list[Adapter]:
    """The adapters this module runs for the given settings (none yet)."""
    return []
