"""The plant as field equipment that clients read: a Modbus TCP device and an OPC UA server.

Modbus (unit 1): each device owns a block of 100 holding registers, in plant order (Pump1
at 0, Tank1 at 100, Pump2 at 200, ...); its numeric tags are float32, big-endian words,
one after the other in the order of the device's tags. Booleans are coils, 16 per device
(Pump1's Running is coil 0, Pump2's coil 32). `modbus_connections()` gives the matching
register maps as iiot-server connection configs.

OPC UA (security None, anonymous): Objects/<site>/<area>/<device>/<tag>, node ids
`ns=<idx>;s=<tag path>` in the namespace `urn:iiot-sim:plant`, Double or Boolean values with
the reading's source timestamp, and EngineeringUnits / EURange properties.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from datetime import UTC
from typing import Any

from asyncua import ua
from asyncua.server.server import Server
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from server.sim.plant import DeviceInfo, Frame

log = logging.getLogger("iiot-sim")

REGISTERS_PER_DEVICE = 100
COILS_PER_DEVICE = 16
OPCUA_NAMESPACE = "urn:iiot-sim:plant"
_TABLES = {1: "c", 5: "c", 15: "c", 2: "c", 3: "h", 6: "h", 16: "h", 4: "h"}
"""Function code -> image: input registers mirror the holding registers, discrete inputs the coils."""


def modbus_layout(devices: list[DeviceInfo]) -> dict[str, list[dict[str, Any]]]:
    """Register map items per device path, in the shape of a modbus connection's `registers`."""
    layout: dict[str, list[dict[str, Any]]] = {}
    for k, device in enumerate(devices):
        address, coil = k * REGISTERS_PER_DEVICE, k * COILS_PER_DEVICE
        items: list[dict[str, Any]] = []
        for tag in device.tags:
            if tag.boolean:
                items.append({"tag": tag.name, "table": "coil", "address": coil})
                coil += 1
            else:
                items.append({"tag": tag.name, "table": "holding", "address": address, "type": "float32",
                              "word_order": "big", "unit": tag.unit or None})  # fmt: skip
                address += 2
        layout[device.path] = items
    return layout


def modbus_connections(
    devices: list[DeviceInfo], host: str, port: int, *, poll_interval_s: float = 1.0, path_root: str = ""
) -> list[tuple[str, dict[str, Any]]]:
    """(name, config) per device, ready for `POST /api/v1/connections` with kind "modbus"."""
    out = []
    for path, registers in modbus_layout(devices).items():
        device = f"{path_root.strip('/')}/{path}" if path_root else path
        config = {"host": host, "port": port, "unit_id": 1, "device": device, "poll_interval_s": poll_interval_s,
                  "timeout_s": 2.0, "registers": registers}  # fmt: skip
        out.append((f"sim-{path.replace('/', '-')}", config))
    return out


class ModbusPlantServer:
    """A pymodbus TCP server whose registers follow the plant, tick by tick."""

    def __init__(self, devices: list[DeviceInfo], host: str = "127.0.0.1", port: int = 5020, unit: int = 1) -> None:
        self.devices, self.host, self.port, self.unit = devices, host, port, unit
        self.layout = modbus_layout(devices)
        self.image: dict[str, list[int]] = {"h": [0] * (len(devices) * REGISTERS_PER_DEVICE)}
        self.bits = [False] * (len(devices) * COILS_PER_DEVICE)
        self.requests = 0
        self._server: ModbusTcpServer | None = None

    async def _serve(
        self, fc: int, start: int, address: int, count: int, regs: list[int], values: Any
    ) -> None:  # pymodbus calls this before answering: copy the current image into its block
        self.requests += 1
        if _TABLES.get(fc) == "c":
            regs[: len(self.bits) // 16] = SimUtils.bitsToRegisters(self.bits)
        else:
            regs[: len(self.image["h"])] = self.image["h"]

    def update(self, frame: Frame) -> None:
        for path, items in self.layout.items():
            values = frame.get(path, {})
            for item in items:
                value = values.get(item["tag"])
                if value is None:
                    continue
                if item["table"] == "coil":
                    self.bits[item["address"]] = bool(value)
                else:
                    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
                    self.image["h"][item["address"] : item["address"] + 2] = [hi, lo]

    async def start(self) -> None:
        words = len(self.image["h"])
        bits = [SimData(0, count=len(self.bits), values=False, datatype=DataType.BITS)]
        regs = [SimData(0, count=words, values=0, datatype=DataType.REGISTERS)]
        device = SimDevice(self.unit, simdata=(bits, list(bits), regs, list(regs)), action=self._serve)
        self._server = ModbusTcpServer(device, address=(self.host, self.port))
        await self._server.serve_forever(background=True)
        log.info("modbus: serving the plant on %s:%d (unit %d)", self.host, self.port, self.unit)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None


def _node_id(path: str, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(path), ua.Int16(ns))


class OpcUaPlantServer:
    """An asyncua server with the plant's devices and tags, values written every tick."""

    def __init__(self, devices: list[DeviceInfo], host: str = "127.0.0.1", port: int = 4841) -> None:
        self.devices, self.host, self.port = devices, host, port
        self.endpoint = f"opc.tcp://{host}:{port}/iiot-sim/"
        self.server = Server()
        self.ns = 0
        self._variables: dict[str, tuple[ua.NodeId, ua.VariantType]] = {}

    async def start(self) -> None:
        server = self.server
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("iiot-sim plant")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.ns = await server.register_namespace(OPCUA_NAMESPACE)
        nodes: dict[str, Any] = {}
        for device in self.devices:
            parts = device.path.split("/")
            parent = server.nodes.objects
            for depth, name in enumerate(parts):
                path = "/".join(parts[: depth + 1])
                if path not in nodes:
                    node_id = _node_id(path, self.ns)
                    last = depth == len(parts) - 1
                    nodes[path] = await (
                        parent.add_object(node_id, self._name(name))
                        if last
                        else parent.add_folder(node_id, self._name(name))
                    )
                parent = nodes[path]
            for tag in device.tags:
                kind = ua.VariantType.Boolean if tag.boolean else ua.VariantType.Double
                node_id = _node_id(f"{device.path}/{tag.name}", self.ns)
                var = await parent.add_variable(
                    node_id, self._name(tag.name), False if tag.boolean else 0.0, varianttype=kind
                )
                if not tag.boolean:
                    units = ua.EUInformation(
                        DisplayName=ua.LocalizedText(tag.unit), Description=ua.LocalizedText(tag.unit)
                    )
                    await var.add_property(_node_id(f"{device.path}/{tag.name}/EngineeringUnits", self.ns),
                                           "EngineeringUnits", units)  # fmt: skip
                    await var.add_property(_node_id(f"{device.path}/{tag.name}/EURange", self.ns), "EURange",
                                           ua.Range(Low=tag.low, High=tag.high))  # fmt: skip
                self._variables[f"{device.path}/{tag.name}"] = (node_id, kind)
        await server.start()
        log.info("opcua: serving the plant at %s (namespace %s = %d)", self.endpoint, OPCUA_NAMESPACE, self.ns)

    def _name(self, name: str) -> ua.QualifiedName:
        return ua.QualifiedName(ua.String(name), ua.UInt16(self.ns))

    async def update(self, ts: float, frame: Frame) -> None:
        when = ua.DateTime.fromtimestamp(ts, UTC)
        for path, values in frame.items():
            for name, value in values.items():
                found = self._variables.get(f"{path}/{name}")
                if found is None:
                    continue
                node_id, kind = found
                variant = ua.Variant(bool(value) if kind is ua.VariantType.Boolean else float(value), kind)
                await self.server.write_attribute_value(
                    node_id, ua.DataValue(variant, SourceTimestamp=when, ServerTimestamp=when)
                )

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.server.stop()
