"""An hour of the simulated plant, with faults, through a real server's pipeline and alarm
engine, and the ISA-18.2 alarm KPIs over it (issue #4: "the KPI endpoint on an hour of
simulator data"). `scripts/kpi_hour.sh` runs it against a fresh server and prints the KPIs;
`tests/server/test_alarm_kpi_hour.py` runs the same and checks them against the journal.

The hour: `iiot-sim --backfill 1h` simulates the hour before now in a few seconds, each
reading with its own time, then runs live for `live_s` seconds. Meanwhile a shift supervisor
shelves the chattering alarm (people act on the server's clock, so that happens live). The
KPIs cover the last hour, ending once the live seconds are over.

What happens in it (seconds after the hour began), with the alarms each fault causes:

- 300-3300 bearing wear on Pump1: vibration creeps up (Hi, then HiHi), cleared by the repair;
- 660-825 a loose wire on Pump1's pressure transmitter: 12 spikes 15 s apart, each a new
  alarm: the chattering alarm, and a flood of the 10 minutes it falls in;
- 1500-2100 Pump2 trips: the trip itself, its flow low, and Tank2's level low as it drains.

The limits hold at any time of day (the plant's demand, and so its speeds, follow the clock).

Usage: `python -m server.sim.kpi_hour --server URL --tenant T --username admin` (password in
$IIOT_SIM_PASSWORD); the tenant must be fresh (its conditions and tags are created here, and a
backfill only judges values newer than a tag's last one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from server.sim.plant import Plant
from server.sim.publishers import Platform
from server.simulator import parser as sim_parser
from server.simulator import run as sim_run

log = logging.getLogger("iiot-sim")

HOUR_S = 3600.0
DEVICES = 2
SITE = "Plant1"
FAULTS = [
    "bearing_wear:Pump1@300+3000",
    *(f"spike:Pump1/Pressure@{660 + 15 * i}+1:6" for i in range(12)),
    "pump_trip:Pump2@1500+600",
]
CONDITIONS: list[dict[str, Any]] = [
    {"name": "Pump1 vibration", "priority": "medium", "message": "{name}: {value} mm/s ({level} limit {limit})",
     "spec": {"kind": "limit", "tag": "Plant1/Area1/Pump1/Vibration", "hi": 7.0, "hihi": 9.5, "deadband": 0.5}},
    {"name": "Pump1 discharge pressure", "priority": "high",
     "spec": {"kind": "limit", "tag": "Plant1/Area1/Pump1/Pressure", "hi": 6.0, "deadband": 0.2}},
    {"name": "Pump2 tripped", "priority": "high", "message": "{name}",
     "spec": {"kind": "discrete", "tag": "Plant1/Area1/Pump2/Running", "alarm_value": 0}},
    {"name": "Pump2 flow low", "priority": "medium",
     "spec": {"kind": "limit", "tag": "Plant1/Area1/Pump2/Flow", "lo": 10.0, "deadband": 2.0}},
    {"name": "Tank2 level low", "priority": "medium",
     "spec": {"kind": "limit", "tag": "Plant1/Area1/Tank2/Level", "lo": 54.0, "deadband": 1.0}},
]  # fmt: skip
"""No on/off delays: those run on the server's clock, which a backfill does not advance."""
CHATTERING = "Pump1 discharge pressure"
SHELVE_REASON = "loose wiring on the pressure transmitter; instrument technician called"
SUPERVISOR = "shift-supervisor"
WATCH = "Plant1/Area1/Pump1/Flow"
"""The tag whose newest time says the backfill is over and the run is live."""


@dataclass(frozen=True, slots=True)
class HourResult:
    start: float
    end: float
    kpis: dict[str, Any]
    conditions: dict[str, int]
    """Condition ids by name."""
    ground_truth: Path
    shelved_at: float


async def run_hour(
    server: str, tenant: str, username: str, password: str, *, ground_truth: Path, live_s: int = 10,
    shelve_s: float = HOUR_S, seed: int = 42,
) -> HourResult:  # fmt: skip
    """Set the plant and its conditions up, backfill the hour with its faults, shelve the
    chattering alarm while live, and return the KPIs of the last hour."""
    admin = Platform(server, tenant, username, password)
    await admin.login()
    supervisor_password = secrets.token_urlsafe(16)
    try:
        r = await admin.http.post("/api/v1/users", json={"username": SUPERVISOR, "password": supervisor_password,
                                                         "roles": ["supervisor"]})  # fmt: skip
        _check(r, "creating the shift supervisor (use a fresh tenant)")
        await admin.build(Plant(seed=seed, pumps=DEVICES, site=SITE).devices)
        ids: dict[str, int] = {}
        for condition in CONDITIONS:
            r = await admin.http.post("/api/v1/alarms/conditions", json=condition)
            _check(r, f"creating condition {condition['name']!r} (use a fresh tenant)")
            ids[condition["name"]] = int(r.json()["id"])

        args = sim_parser().parse_args([
            "--server", server, "--tenant", tenant, "--username", username, "--password", password,
            "--devices", str(DEVICES), "--site", SITE, "--seed", str(seed), "--period", "1",
            "--backfill", str(HOUR_S), "--count", str(live_s), "--no-build", "--ground-truth", str(ground_truth),
            *(a for f in FAULTS for a in ("--fault", f)),
        ])  # fmt: skip
        launched = time.time()
        simulation = asyncio.create_task(sim_run(args))
        await _until_live(admin, launched, simulation)

        supervisor = Platform(server, tenant, SUPERVISOR, supervisor_password)
        await supervisor.login()
        try:
            r = await supervisor.http.post(f"/api/v1/alarms/{ids[CHATTERING]}/shelve",
                                           json={"reason": SHELVE_REASON, "duration_s": shelve_s})  # fmt: skip
            _check(r, "shelving the chattering alarm")
            shelved_at = time.time()
        finally:
            await supervisor.close()
        await simulation

        end = time.time()
        start = end - HOUR_S
        r = await admin.http.get("/api/v1/alarms/kpis", params={"start": start, "end": end})
        _check(r, "reading the KPIs")
        return HourResult(start, end, r.json(), ids, ground_truth, shelved_at)
    finally:
        await admin.close()


async def _until_live(admin: Platform, launched: float, simulation: asyncio.Task[Any]) -> None:
    """The backfill is over when the watched tag holds a value stamped after the launch."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if simulation.done():
            simulation.result()  # raises what went wrong
            raise RuntimeError("the simulator ended before it went live")
        r = await admin.http.get("/api/v1/values", params={"node": WATCH})
        if r.status_code == 200 and r.json() and (r.json()[0]["ts"] or 0) >= launched:
            return
        await asyncio.sleep(0.2)
    simulation.cancel()
    raise RuntimeError("the backfill did not finish within 5 minutes")


def _check(r: httpx.Response, what: str) -> None:
    if r.status_code >= 300:
        raise RuntimeError(f"{what}: {r.status_code} {r.text[:300]}")


def main(argv: Sequence[str] | None = None) -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m server.sim.kpi_hour", description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default=env("IIOT_SIM_SERVER", "http://127.0.0.1:8080"))
    p.add_argument("--tenant", default=env("IIOT_SIM_TENANT", "demo"))
    p.add_argument("--username", default=env("IIOT_SIM_USERNAME", "admin"))
    p.add_argument("--password", default=env("IIOT_SIM_PASSWORD", ""), help="default: $IIOT_SIM_PASSWORD")
    p.add_argument("--live", type=int, default=10, help="live seconds after the backfill (the supervisor acts then)")
    p.add_argument("--ground-truth", default="", help="where the faults are written (default: a temp file)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.password:
        print("kpi_hour: set --password or IIOT_SIM_PASSWORD", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        truth = Path(args.ground_truth) if args.ground_truth else Path(tmp, "ground-truth.jsonl")
        try:
            result = asyncio.run(run_hour(args.server, args.tenant, args.username, args.password,
                                          ground_truth=truth, live_s=args.live))  # fmt: skip
        except (RuntimeError, httpx.HTTPError, OSError) as exc:
            print(f"kpi_hour: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(result.kpis, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
