"""The simulator's tick loop: step the plant, record faults, update the servers, publish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from server.sim.faults import GroundTruth
from server.sim.plant import DeviceInfo, Frame, Plant
from server.sim.publishers import Publisher
from server.sim.servers import ModbusPlantServer, OpcUaPlantServer

log = logging.getLogger("iiot-sim")


TelemetrySender = Callable[[list[dict[str, Any]]], Awaitable[None]]
"""Posts one telemetry batch (`[{"device", "ts", "values"}, ...]`); raises when it was refused."""


@dataclass(frozen=True, slots=True)
class Backfill:
    """Simulate the `span_s` before the run starts, as fast as the server takes it: every reading
    keeps its own time (`period` apart, as live), posted in batches of about `batch_values`."""

    span_s: float
    send: TelemetrySender
    batch_values: int = 5000


def assign(transports: list[str], devices: list[DeviceInfo], split: bool) -> dict[str, list[DeviceInfo]]:
    """Which devices each transport sends: all of them, or with `split` one transport per
    device, round robin (each device then appears once in the namespace, not once per transport)."""
    if not split or not transports:
        return {t: list(devices) for t in transports}
    return {t: devices[i :: len(transports)] for i, t in enumerate(transports)}


@dataclass(slots=True)
class Simulation:
    plant: Plant
    publishers: list[Publisher] = field(default_factory=list)
    modbus: ModbusPlantServer | None = None
    opcua: OpcUaPlantServer | None = None
    ground_truth: GroundTruth | None = None
    period: float = 1.0
    count: int | None = None
    routes: dict[str, list[str]] | None = None
    """Device paths per publisher name (see `assign`); default: every device over each."""
    clock: Callable[[], float] = time.time
    backfill: Backfill | None = None
    ticks: int = 0
    """Live ticks (what `count` limits)."""
    backfilled: int = 0
    """Ticks simulated and posted by the backfill."""
    last: Frame = field(default_factory=dict)

    def _routes(self) -> dict[str, list[str]]:
        paths = [d.path for d in self.plant.devices]
        return {p.name: (self.routes or {}).get(p.name, paths) for p in self.publishers}

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        started: list[Publisher] = []
        try:
            if self.modbus is not None:
                await self.modbus.start()
            if self.opcua is not None:
                await self.opcua.start()
            for publisher in self.publishers:
                await publisher.start()
                started.append(publisher)
            if self.backfill is not None:
                await self._backfill(self.backfill, stop)
            await self._loop(stop)
        finally:
            self._truncate_open_faults()
            for publisher in reversed(started):
                with contextlib.suppress(Exception):
                    await publisher.stop()
            if self.opcua is not None:
                await self.opcua.stop()
            if self.modbus is not None:
                await self.modbus.stop()
            if self.ground_truth is not None:
                self.ground_truth.close()

    async def _loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        routes = self._routes()
        next_at = loop.time()
        while not stop.is_set() and (self.count is None or self.ticks < self.count):
            await self.tick(routes)
            next_at += self.period
            now = loop.time()
            if next_at <= now:  # a slow tick: skip the missed slots, keep the grid
                next_at += (math.floor((now - next_at) / self.period) + 1) * self.period
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), next_at - now)

    async def _backfill(self, backfill: Backfill, stop: asyncio.Event) -> None:
        """The plant runs through the span in process time, then the live loop carries on from the
        same state. Batches go one after the other, in time order: the server judges alarms on
        values that advance a tag, so order is what makes the alarms' times right. Every device
        is sent (over HTTP, whatever `--publish` says: only it carries past times in one request)."""
        end = self.clock()
        start = end - backfill.span_s
        steps = max(0, math.ceil(backfill.span_s / self.period))
        batch: list[dict[str, Any]] = []
        values = 0
        log.info("backfill: %d readings per device from %.0f s ago", steps, backfill.span_s)
        for k in range(steps):
            if stop.is_set():
                break
            ts = start + k * self.period
            if ts >= end:
                break
            frame = self._step(ts)
            for path, readings in frame.items():
                batch.append({"device": path, "ts": ts, "values": readings})
                values += len(readings)
            self.backfilled += 1
            if values >= backfill.batch_values:
                await backfill.send(batch)
                batch, values = [], 0
        if batch:
            await backfill.send(batch)
        log.info("backfill: %d readings per device sent; now live", self.backfilled)

    def _step(self, ts: float) -> Frame:
        """Advance the plant to ts; log fault starts and ends and write them to the ground truth."""
        frame, events = self.plant.step(ts)
        for event in events:
            fault = event.fault
            what = f"{fault.kind.value} on {event.device_path}" + (f"/{fault.tag}" if fault.tag else "")
            if event.started:
                log.info("fault %d started: %s for %.0f s", fault.id, what, fault.duration)
                if self.ground_truth is not None and self.plant.t0 is not None:
                    self.ground_truth.started(fault, self.plant.t0, event.device_path, event.tags)
            else:
                log.info("fault %d ended: %s", fault.id, what)
        self.last = frame
        return frame

    async def tick(self, routes: dict[str, list[str]] | None = None) -> Frame:
        routes = routes or self._routes()
        ts = self.clock()
        frame = self._step(ts)
        if self.modbus is not None:
            self.modbus.update(frame)
        if self.opcua is not None:
            try:
                await self.opcua.update(ts, frame)
            except Exception:
                log.exception("opcua: could not update the values")
        sends = [
            asyncio.wait_for(p.publish(ts, {path: frame[path] for path in routes[p.name]}), max(self.period, 2.0))
            for p in self.publishers
        ]
        for publisher, result in zip(
            self.publishers, await asyncio.gather(*sends, return_exceptions=True), strict=True
        ):
            if isinstance(result, BaseException):
                publisher.dropped += len(routes[publisher.name])
                log.warning("%s: a tick was not sent in time (%s)", publisher.name, type(result).__name__)
        self.ticks += 1
        return frame

    def _truncate_open_faults(self) -> None:
        if self.ground_truth is None or self.plant.t0 is None or self.plant.t is None:
            return
        for fault in self.plant.active_faults():
            if self.plant.t < self.plant.t0 + fault.end:
                device = self.plant.by_name[fault.device]
                self.ground_truth.truncated(
                    fault, self.plant.t0, device.path, self.plant.affected_tags(fault), self.plant.t
                )
