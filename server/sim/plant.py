"""The simulated plant: tanks filled by pumps, drained by a daily demand; a boiler heating
against a daily ambient cycle. Simple physics, sensor noise, and injected faults.

Per pump i (`<site>/Area1/Pump<i>`) a level controller sets the speed that keeps tank i
(`<site>/Area1/Tank<i>`) near its set point; flow follows the speed, pressure the affinity
laws, vibration and bearing temperature the speed and the bearing's wear. The boiler
(`<site>/Utilities/Boiler1`) fires harder when it is cold outside.

Deterministic: the same seed, faults and sequence of `step` times give the same readings.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from server.sim.faults import Fault, FaultKind, RandomFaults

Frame = dict[str, dict[str, float]]
"""Device path -> tag -> value (booleans as 0.0 / 1.0)."""


@dataclass(frozen=True, slots=True)
class TagInfo:
    name: str
    unit: str
    low: float
    high: float
    noise: float
    """Standard deviation of the transmitter's noise."""
    boolean: bool = False


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    name: str
    path: str
    kind: str
    tags: tuple[TagInfo, ...]

    def tag(self, name: str) -> TagInfo:
        return next(t for t in self.tags if t.name == name)


PUMP_TAGS = (
    TagInfo("Flow", "m3/h", 0, 150, 0.4),
    TagInfo("Pressure", "bar", 0, 10, 0.03),
    TagInfo("Vibration", "mm/s", 0, 20, 0.08),
    TagInfo("BearingTemp", "°C", 0, 120, 0.15),
    TagInfo("Speed", "rpm", 0, 1800, 2.0),
    TagInfo("Running", "", 0, 1, 0.0, boolean=True),
)
TANK_TAGS = (
    TagInfo("Level", "%", 0, 100, 0.15),
    TagInfo("Inflow", "m3/h", 0, 150, 0.4),
    TagInfo("Outflow", "m3/h", 0, 150, 0.4),
)
BOILER_TAGS = (
    TagInfo("Ambient", "°C", -30, 50, 0.1),
    TagInfo("SupplyTemp", "°C", 0, 120, 0.2),
    TagInfo("ReturnTemp", "°C", 0, 120, 0.2),
    TagInfo("Pressure", "bar", 0, 6, 0.02),
    TagInfo("FiringRate", "%", 0, 100, 0.3),
)

NOMINAL_RPM = 1480.0
MAX_FLOW = 120.0  # m3/h at nominal speed
TANK_VOLUME = 80.0  # m3 for 100 %
LEVEL_SETPOINT = 60.0


def ambient_at(t: float) -> float:
    """Outdoor temperature: 12 °C mean, coldest at 03:00 UTC, warmest at 15:00 UTC."""
    hour = (t % 86_400) / 3600
    return 12.0 + 7.0 * math.sin(2 * math.pi * (hour - 9) / 24)


def demand_factor(t: float) -> float:
    """Consumers draw most in the morning and evening, least at night."""
    hour = (t % 86_400) / 3600
    return 1.0 + 0.25 * math.sin(2 * math.pi * (hour - 6) / 24) + 0.1 * math.sin(2 * math.pi * (hour - 4) / 12)


def _bearing_target(ambient: float, ratio: float, wear: float) -> float:
    """Where a bearing's temperature settles: friction heat grows with speed and with wear."""
    running = ratio > 0.05
    return ambient + (18 + 22 * ratio**2 if running else 0.0) + (35 * wear if running else 0.0)


@dataclass(slots=True)
class _Pump:
    speed: float = NOMINAL_RPM * 0.8
    integral: float = 0.0
    bearing_temp: float = 0.0
    wear: float = 0.0
    tripped: bool = False


@dataclass(slots=True)
class _Tank:
    level: float = LEVEL_SETPOINT
    demand: float = 1.0
    """Slow random walk around 1 that scales the daily demand."""
    base: float = 80.0


@dataclass(slots=True)
class _Boiler:
    supply: float = 70.0


@dataclass(slots=True)
class _Active:
    fault: Fault
    held: float | None = None
    fired: bool = False


@dataclass(slots=True)
class FaultEvent:
    """A fault that began or ended during a step (for the ground truth and the log)."""

    fault: Fault
    started: bool
    device_path: str
    tags: list[str]


class Plant:
    def __init__(
        self,
        *,
        seed: int = 42,
        pumps: int = 3,
        site: str = "Plant1",
        faults: list[Fault] | None = None,
        random_faults: RandomFaults | None = None,
    ) -> None:
        if pumps < 1:
            raise ValueError("the plant needs at least one pump")
        self.rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        self.site = site
        self.devices: list[DeviceInfo] = []
        for i in range(1, pumps + 1):
            self.devices.append(DeviceInfo(f"Pump{i}", f"{site}/Area1/Pump{i}", "pump", PUMP_TAGS))
            self.devices.append(DeviceInfo(f"Tank{i}", f"{site}/Area1/Tank{i}", "tank", TANK_TAGS))
        self.devices.append(DeviceInfo("Boiler1", f"{site}/Utilities/Boiler1", "boiler", BOILER_TAGS))
        self.by_name = {d.name: d for d in self.devices}
        self.pumps = [_Pump() for _ in range(pumps)]
        self.tanks = [_Tank(level=LEVEL_SETPOINT + self.rng.uniform(-5, 5), base=70 + 10 * i) for i in range(pumps)]
        self.boiler = _Boiler()
        self.t0: float | None = None
        self.t: float | None = None
        self.random_faults = random_faults
        self._pending: list[Fault] = []
        self._active: list[_Active] = []
        self._next_id = 1
        for fault in faults or []:
            self.add_fault(fault)

    # -- faults ---------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        device = self.by_name.get(fault.device)
        if device is None:
            raise ValueError(f"fault on unknown device {fault.device!r}; devices: {', '.join(self.by_name)}")
        if fault.tag is not None and fault.tag not in {t.name for t in device.tags if not t.boolean}:
            raise ValueError(f"{fault.device} has no numeric tag {fault.tag!r}")
        if not fault.kind.on_sensor and device.kind != "pump":
            raise ValueError(f"{fault.kind.value} needs a pump, not {fault.device}")
        numbered = Fault(fault.kind, fault.device, fault.start, fault.duration, fault.tag, fault.magnitude,
                         self._next_id)  # fmt: skip
        self._next_id += 1
        self._pending.append(numbered)
        self._pending.sort(key=lambda f: (f.start, f.id))
        return numbered

    def affected_tags(self, fault: Fault) -> list[str]:
        """The tag paths whose readings the fault changes (the anomaly's extent)."""
        device = self.by_name[fault.device]
        if fault.tag is not None:
            return [f"{device.path}/{fault.tag}"]
        names = ["Vibration", "BearingTemp"]
        if fault.kind is FaultKind.PUMP_TRIP:
            names = ["Flow", "Pressure", "Speed", "Running", "Vibration", "BearingTemp"]
            tank = self.by_name[fault.device.replace("Pump", "Tank")]
            return [f"{device.path}/{n}" for n in names] + [f"{tank.path}/Inflow", f"{tank.path}/Level"]
        return [f"{device.path}/{n}" for n in names]

    def active_faults(self) -> list[Fault]:
        return [a.fault for a in self._active]

    def _update_faults(self, elapsed: float) -> list[FaultEvent]:
        if self.random_faults is not None:
            for fault in self.random_faults.until(elapsed):
                self.add_fault(fault)
        events: list[FaultEvent] = []
        still: list[_Active] = []
        for active in self._active:
            # A spike shorter than a period still shows once.
            if elapsed >= active.fault.end and (active.fired or active.fault.kind is not FaultKind.SPIKE):
                events.append(self._event(active.fault, started=False))
            else:
                still.append(active)
        self._active = still
        while self._pending and self._pending[0].start <= elapsed:
            fault = self._pending.pop(0)
            if elapsed >= fault.end and fault.kind is not FaultKind.SPIKE:
                continue  # entirely between two steps: it never showed
            self._active.append(_Active(fault))
            events.append(self._event(fault, started=True))
        return events

    def _event(self, fault: Fault, *, started: bool) -> FaultEvent:
        return FaultEvent(fault, started, self.by_name[fault.device].path, self.affected_tags(fault))

    def _process_fault(self, kind: FaultKind, pump: int) -> _Active | None:
        name = f"Pump{pump + 1}"
        return next((a for a in self._active if a.fault.kind is kind and a.fault.device == name), None)

    # -- physics --------------------------------------------------------------------------

    def step(self, t: float) -> tuple[Frame, list[FaultEvent]]:
        """Advance the plant to time `t` (epoch seconds) and read every transmitter."""
        if self.t0 is None:
            self.t0 = t
            self._settle(t)
        dt = min(max(t - (self.t if self.t is not None else t), 0.0), 60.0)
        self.t = t
        events = self._update_faults(t - self.t0)
        ambient = ambient_at(t)
        truth: Frame = {}
        for i, (pump, tank) in enumerate(zip(self.pumps, self.tanks, strict=True)):
            truth.update(self._pump_and_tank(i, pump, tank, t, dt, ambient))
        truth[self.by_name["Boiler1"].path] = self._boiler(t, dt, ambient)
        return self._read(truth, t), events

    def _settle(self, t: float) -> None:
        """Start in a steady state: bearings warm, boiler at its set point."""
        ambient = ambient_at(t)
        for pump, tank in zip(self.pumps, self.tanks, strict=True):
            outflow = tank.base * demand_factor(t) * math.sqrt(tank.level / LEVEL_SETPOINT)
            pump.speed = outflow / MAX_FLOW * NOMINAL_RPM
            pump.integral = min(max(pump.speed / NOMINAL_RPM - 0.75 - 0.02 * (LEVEL_SETPOINT - tank.level), -0.4), 0.4)
            pump.bearing_temp = _bearing_target(ambient, pump.speed / NOMINAL_RPM, 0.0)
        self.boiler.supply = self._boiler_setpoint(ambient)

    def _pump_and_tank(self, i: int, pump: _Pump, tank: _Tank, t: float, dt: float, ambient: float) -> Frame:
        rng = self.rng
        wear = self._process_fault(FaultKind.BEARING_WEAR, i)
        pump.wear = 0.0 if wear is None else min(1.0, ((t - (self.t0 or t)) - wear.fault.start) / wear.fault.duration)
        pump.tripped = self._process_fault(FaultKind.PUMP_TRIP, i) is not None
        # Level controller (PI) on the tank: a lower level asks for more speed.
        error = LEVEL_SETPOINT - tank.level
        if not pump.tripped:
            pump.integral = min(max(pump.integral + 0.0008 * error * dt, -0.4), 0.4)
            command = min(max(0.75 + 0.02 * error + pump.integral, 0.3), 1.1) * NOMINAL_RPM
        else:
            command = 0.0
        pump.speed += (command - pump.speed) * (1 - math.exp(-dt / 4.0))
        ratio = pump.speed / NOMINAL_RPM
        flow = MAX_FLOW * ratio if ratio > 0.05 else 0.0
        pressure = max(0.0, 1.0 + 5.5 * ratio**2 - 0.00015 * flow**2) if ratio > 0.05 else 1.0
        vibration = (1.2 + 1.6 * ratio**2 if ratio > 0.05 else 0.05) + 9.0 * pump.wear**2
        target = _bearing_target(ambient, ratio, pump.wear)
        pump.bearing_temp += (target - pump.bearing_temp) * (1 - math.exp(-dt / 900.0))
        tank.demand = min(max(tank.demand + rng.gauss(0, 0.002) * math.sqrt(dt), 0.7), 1.3)
        outflow = tank.base * demand_factor(t) * tank.demand * math.sqrt(max(tank.level, 0.0) / LEVEL_SETPOINT)
        tank.level = min(max(tank.level + (flow - outflow) * dt / 3600 / TANK_VOLUME * 100, 0.0), 100.0)
        device, tank_dev = self.devices[2 * i], self.devices[2 * i + 1]
        running = 0.0 if pump.tripped else 1.0
        return {
            device.path: {"Flow": flow, "Pressure": pressure, "Vibration": vibration,
                          "BearingTemp": pump.bearing_temp, "Speed": pump.speed, "Running": running},
            tank_dev.path: {"Level": tank.level, "Inflow": flow, "Outflow": outflow},
        }  # fmt: skip

    @staticmethod
    def _boiler_setpoint(ambient: float) -> float:
        return 60 + 20 * min(max((18 - ambient) / 25, 0.0), 1.0)  # weather-compensated

    def _boiler(self, t: float, dt: float, ambient: float) -> dict[str, float]:
        load = min(max((18 - ambient) / 25, 0.05), 1.0)
        setpoint = self._boiler_setpoint(ambient)
        firing = min(max(100 * load + 4 * (setpoint - self.boiler.supply), 0.0), 100.0)
        target = ambient + (firing / 100) * 90
        self.boiler.supply += (min(target, setpoint + 5) - self.boiler.supply) * (1 - math.exp(-dt / 300.0))
        supply = self.boiler.supply
        return {"Ambient": ambient, "SupplyTemp": supply, "ReturnTemp": supply - (5 + 15 * load),
                "Pressure": 1.5 + 0.01 * supply, "FiringRate": firing}  # fmt: skip

    # -- transmitters ---------------------------------------------------------------------

    def _read(self, truth: Frame, t: float) -> Frame:
        """What the transmitters report: the truth, noise, and the sensor faults."""
        elapsed = t - (self.t0 or t)
        out: Frame = {}
        for device in self.devices:
            values = truth[device.path]
            reading: dict[str, float] = {}
            for tag in device.tags:
                value = values[tag.name]
                if not tag.boolean:
                    value += self.rng.gauss(0, tag.noise)
                    value = min(max(value, tag.low), tag.high)
                reading[tag.name] = value
            out[device.path] = reading
        for active in self._active:
            fault = active.fault
            if not fault.kind.on_sensor or fault.tag is None:
                continue
            device = self.by_name[fault.device]
            span = device.tag(fault.tag).high - device.tag(fault.tag).low
            readings = out[device.path]
            if fault.kind is FaultKind.DRIFT:
                size = fault.magnitude if fault.magnitude is not None else 0.1 * span
                readings[fault.tag] += size * min(1.0, (elapsed - fault.start) / fault.duration)
            elif fault.kind is FaultKind.STUCK:
                if active.held is None:
                    active.held = readings[fault.tag]
                readings[fault.tag] = active.held
            elif fault.kind is FaultKind.SPIKE:
                readings[fault.tag] += fault.magnitude if fault.magnitude is not None else 0.4 * span
                active.fired = True
        return {path: {k: round(v, 4) for k, v in values.items()} for path, values in out.items()}

    def sensors(self) -> dict[str, list[str]]:
        """Numeric tags per device short name (where sensor faults may strike)."""
        return {d.name: [t.name for t in d.tags if not t.boolean] for d in self.devices}


@dataclass(slots=True)
class Snapshot:
    """The latest frame and its time, shared by the servers that expose the plant."""

    ts: float = 0.0
    frame: Frame = field(default_factory=dict)
