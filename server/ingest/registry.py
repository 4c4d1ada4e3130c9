"""Which adapters run: each protocol module decides from the settings (a URL or port set)."""

from __future__ import annotations

from pydantic import BaseModel

from server import opcua_server
from server.ingest import amqp, coap, modbus, mqtt, opcua_client
from server.ingest.adapter import Adapter, IngestContext

MODULES = (mqtt, coap, amqp, opcua_client, modbus, opcua_server)


def connection_kinds() -> dict[str, type[BaseModel]]:
    """Connection kinds the API accepts, each validated by the module that runs it."""
    return {opcua_client.KIND: opcua_client.ConnectionConfig, modbus.KIND: modbus.ConnectionConfig}


def build_adapters(ctx: IngestContext) -> list[Adapter]:
    adapters: list[Adapter] = []
    for module in MODULES:
        adapters.extend(module.build(ctx))
    return adapters
