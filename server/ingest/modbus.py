"""Modbus TCP: each tenant's configured devices, polled by register map (pymodbus client).

A connection (`/api/v1/connections`, kind "modbus") names one device: where it is, how often
to read it, where its values go in the namespace, and its register map. Contiguous
addresses of a table are read in one request (`max_gap` lets a read span small holes).
The `Poller` runs the schedule and the one error path shared by every polled source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from server.bus import Event, Message, Subscription
from server.domain.errors import DomainError
from server.domain.namespace import DataType, NodeClass, check_browse_name
from server.ingest.adapter import Adapter, IngestContext
from server.ingest.polling import Poller, PollError, Reading
from server.storage.repositories.connections import Connection
from server.storage.repositories.nodes import NodeSpec

log = logging.getLogger(__name__)

KIND = "modbus"

Table = Literal["holding", "input", "coil", "discrete"]
ValueType = Literal["int16", "uint16", "int32", "uint32", "float32", "bool"]

WIDTH: dict[str, int] = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "bool": 1}
_STRUCT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f"}
BIT_TABLES = ("coil", "discrete")
MAX_READ = {"holding": 125, "input": 125, "coil": 2000, "discrete": 2000}
"""The protocol's limits per request (registers / bits)."""


def _browse_name(value: str) -> str:
    try:
        return check_browse_name(value)
    except DomainError as exc:
        raise ValueError(exc.detail) from None


class Register(BaseModel):
    """One tag of the register map."""

    model_config = ConfigDict(extra="forbid")

    tag: str = Field(description="browse name of the tag under the device")
    table: Table = "holding"
    address: int = Field(ge=0, le=65535, description="0-based protocol address")
    type: ValueType | None = Field(None, description="bool for coils and discrete inputs; default uint16")
    word_order: Literal["big", "little"] = Field("big", description="which register holds the high word")
    scale: float = Field(1.0, allow_inf_nan=False)
    offset: float = Field(0.0, allow_inf_nan=False)
    unit: str | None = Field(None, max_length=32)

    _check_tag = field_validator("tag")(_browse_name)

    @model_validator(mode="after")
    def _types(self) -> Register:
        if self.table in BIT_TABLES:
            if self.type not in (None, "bool"):
                raise ValueError(f"{self.table} holds bits: type must be bool")
            self.type = "bool"
        elif self.type is None:
            self.type = "uint16"
        elif self.type == "bool":
            raise ValueError(f"{self.table} registers hold numbers: bool is for coils and discrete inputs")
        if self.address + self.width > 65536:
            raise ValueError("the value runs past address 65535")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self

    @property
    def width(self) -> int:
        return WIDTH[self.type or "uint16"]

    def decode(self, words: Sequence[int] | Sequence[bool], at: int) -> float:
        """The engineering value of this item from a block read starting `at` before it."""
        if self.type == "bool":
            return 1.0 if words[at] else 0.0
        regs = [int(w) for w in words[at : at + self.width]]
        if self.word_order == "little":
            regs.reverse()
        raw: float = struct.unpack(">" + _STRUCT[self.type or "uint16"], struct.pack(f">{len(regs)}H", *regs))[0]
        return raw * self.scale + self.offset

    def data_type(self) -> DataType:
        if self.type == "bool":
            return DataType.BOOLEAN
        if (self.scale, self.offset) != (1.0, 0.0):
            return DataType.DOUBLE
        return {"int16": DataType.INT32, "uint16": DataType.UINT16, "int32": DataType.INT32,
                "uint32": DataType.INT64, "float32": DataType.FLOAT}[self.type or "uint16"]  # fmt: skip


class ConnectionConfig(BaseModel):
    """A Modbus TCP device of a tenant, as engineers configure it."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255, description="Modbus unit (slave) id")
    timeout_s: float = Field(2.0, gt=0, le=60, description="per request, and for connecting")
    poll_interval_s: float = Field(1.0, ge=0.05, le=86_400)
    device: str = Field(min_length=1, max_length=1000, description="device path, e.g. Plant1/Area1/PLC1")
    registers: list[Register] = Field(min_length=1, max_length=5000)
    max_gap: int = Field(0, ge=0, le=100, description="unused addresses a read may span to save a request")
    offline_after: int = Field(3, ge=1, le=1000, description="failed polls in a row before the device is offline")

    @field_validator("device")
    @classmethod
    def _path(cls, value: str) -> str:
        parts = [p for p in value.strip().strip("/").split("/") if p]
        if not parts:
            raise ValueError("empty device path")
        return "/".join(_browse_name(p) for p in parts)

    @model_validator(mode="after")
    def _unique(self) -> ConnectionConfig:
        seen: set[str] = set()
        for reg in self.registers:
            if reg.tag in seen:
                raise ValueError(f"tag {reg.tag!r} appears twice in the register map")
            seen.add(reg.tag)
        return self


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: `count` registers or bits of `table` from `start`."""

    table: Table
    start: int
    count: int
    items: tuple[Register, ...]


def plan_reads(registers: Sequence[Register], max_gap: int = 0) -> list[Block]:
    """Group the map into as few requests as the protocol's limits and `max_gap` allow."""
    blocks: list[Block] = []
    for table in ("holding", "input", "coil", "discrete"):
        items = sorted((r for r in registers if r.table == table), key=lambda r: (r.address, r.width))
        current: list[Register] = []
        start = end = 0
        for reg in items:
            reg_end = reg.address + reg.width
            if current and reg.address <= end + max_gap and max(end, reg_end) - start <= MAX_READ[table]:
                current.append(reg)
                end = max(end, reg_end)
                continue
            if current:
                blocks.append(Block(table, start, end - start, tuple(current)))
            current, start, end = [reg], reg.address, reg_end
        if current:
            blocks.append(Block(table, start, end - start, tuple(current)))
    return blocks


class ModbusSource:
    """One configured device: connects lazily, reads its blocks, drops the link on any failure."""

    kind = KIND

    def __init__(self, ctx: IngestContext, conn: Connection, config: ConnectionConfig) -> None:
        self.ctx, self.config = ctx, config
        self.connection_id, self.name = conn.id, conn.name
        self.label = f"tenant {conn.tenant_id} connection {conn.name!r} ({config.host}:{config.port})"
        self.tenant_id = conn.tenant_id
        self.device = config.device
        self.tags = [r.tag for r in config.registers]
        self.interval_s = config.poll_interval_s
        self.blocks = plan_reads(config.registers, config.max_gap)
        self.timeout_s = config.timeout_s * (len(self.blocks) + 1)  # connect + each request
        self.offline_after = config.offline_after
        self._client: AsyncModbusTcpClient | None = None
        self._was_connected = False

    async def prepare(self) -> None:
        specs = [
            NodeSpec(NodeClass.TAG, r.tag, data_type=r.data_type(), unit=r.unit, description=_describe(r))
            for r in self.config.registers
        ]
        await self.ctx.namespace.ensure_device(self.tenant_id, self.device, specs, actor=f"modbus:{self.name}")

    async def poll(self) -> Reading:
        try:
            client = await self._connect()
            values: dict[str, float] = {}
            bad: dict[str, str] = {}
            for block in self.blocks:
                response = await self._read(client, block)
                words: Sequence[int] | Sequence[bool] = (
                    response.bits if block.table in BIT_TABLES else response.registers
                )
                if response.isError():
                    why = f"device answered exception code {response.exception_code}"
                elif len(words) < block.count:
                    why = f"short answer ({len(words)} of {block.count})"
                else:
                    why = ""
                for reg in block.items:
                    if why:
                        bad[reg.tag] = why
                    else:
                        values[reg.tag] = reg.decode(words, reg.address - block.start)
            return Reading(values, bad)
        except ConnectionException as exc:
            self._drop()
            raise PollError("connection", str(exc)) from None
        except ModbusIOException:
            self._drop()
            raise PollError("timeout", f"no answer within {self.config.timeout_s:g} s") from None
        except ModbusException as exc:
            self._drop()
            raise PollError("protocol", str(exc)) from None
        except BaseException:  # cancelled by the poll deadline, or anything else: start afresh
            self._drop()
            raise

    async def _connect(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        cfg = self.config
        # reconnect_delay=0: no reconnecting behind our back, the poll schedule decides.
        client = AsyncModbusTcpClient(
            cfg.host, port=cfg.port, timeout=cfg.timeout_s, retries=0, reconnect_delay=0, name=f"modbus-{self.name}"
        )
        if not await client.connect():
            client.close()
            raise PollError("connection", f"cannot connect to {cfg.host}:{cfg.port}")
        if self._was_connected:
            self.ctx.stats(KIND, self.tenant_id).reconnects += 1
        self._was_connected = True
        self._client = client
        return client

    async def _read(self, client: AsyncModbusTcpClient, block: Block) -> ModbusPDU:
        unit = self.config.unit_id
        if block.table == "holding":
            return await client.read_holding_registers(block.start, count=block.count, device_id=unit)
        if block.table == "input":
            return await client.read_input_registers(block.start, count=block.count, device_id=unit)
        if block.table == "coil":
            return await client.read_coils(block.start, count=block.count, device_id=unit)
        return await client.read_discrete_inputs(block.start, count=block.count, device_id=unit)

    def _drop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    async def close(self) -> None:
        self._drop()


def _describe(reg: Register) -> str:
    where = f"{reg.table} {reg.address}"
    if reg.type == "bool":
        return f"Modbus {where}"
    return f"Modbus {where} {reg.type} {reg.word_order}-endian words, x{reg.scale:g} {reg.offset:+g}"


class ModbusAdapter:
    """Polls every enabled Modbus connection of every tenant; follows changes as they are made."""

    name = KIND

    def __init__(self, ctx: IngestContext, *, resync_s: float = 60.0, log_every_s: float = 600.0) -> None:
        self.ctx = ctx
        self.resync_s = resync_s
        """Also reload now and then: a tenant deactivated or a missed event is picked up."""
        self.poller = Poller(ctx, log_every_s=log_every_s)
        self._configs: dict[Hashable, tuple[int, str, dict[str, object]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        # pymodbus logs every failed request at ERROR with a frame dump; the poller logs a
        # rate-limited reason instead. Only when nobody configured pymodbus's logger.
        pymodbus_log = logging.getLogger("pymodbus")
        if pymodbus_log.level == logging.NOTSET:
            pymodbus_log.setLevel(logging.CRITICAL)
        self._subscription = self.ctx.bus.subscribe(None, self._on_message)
        self._task = asyncio.create_task(self._run(), name="modbus-connections")

    def _on_message(self, message: Message) -> None:
        if isinstance(message, Event) and message.kind == "connections" and message.data.get("connection_kind") == KIND:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception:
                log.exception("modbus: cannot load the connections; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.resync_s)

    async def reconcile(self) -> None:
        """Poll exactly the enabled connections of active tenants, each with its current config."""
        wanted: dict[Hashable, tuple[Connection, ConnectionConfig]] = {}
        active: dict[int, bool] = {}
        for conn in await self.ctx.connections.enabled_everywhere(KIND):
            if conn.tenant_id not in active:
                try:
                    active[conn.tenant_id] = (await self.ctx.tenants.get(conn.tenant_id)).is_active
                except DomainError:
                    active[conn.tenant_id] = False
            if not active[conn.tenant_id]:
                continue
            try:
                wanted[conn.id] = (conn, ConnectionConfig.model_validate(conn.config))
            except ValidationError as exc:
                self.ctx.stats(KIND, conn.tenant_id).rejected["invalid_config"] += 1
                log.warning("modbus: connection %r of tenant %d is invalid: %s", conn.name, conn.tenant_id, exc)
        for key in self.poller.running():
            if key not in wanted or self._configs.get(key) != _signature(*wanted[key]):
                await self.poller.remove(key)
                self._configs.pop(key, None)
                log.info("modbus: stopped polling connection %s", key)
        for key, (conn, config) in wanted.items():
            if key not in self.poller:
                self.poller.add(key, ModbusSource(self.ctx, conn, config))
                self._configs[key] = _signature(conn, config)
                log.info(
                    "modbus: polling %r of tenant %d every %g s", conn.name, conn.tenant_id, config.poll_interval_s
                )

    async def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.poller.stop()


def _signature(conn: Connection, config: ConnectionConfig) -> tuple[int, str, dict[str, object]]:
    return conn.tenant_id, conn.name, config.model_dump()


def build(ctx: IngestContext) -> list[Adapter]:
    """Always runs: which devices it polls is per-tenant configuration, loaded at start."""
    return [ModbusAdapter(ctx)]
