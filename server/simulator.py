"""A small plant that sends telemetry over HTTP: feeds the demo and manual tests.

`iiot-sim` builds Site/Area/PumpN devices with a few tags and sends one value per tag per
period, shaped like real process data (daily cycle, noise, occasional spikes).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import random
import sys
import time
from collections.abc import Sequence

import httpx

log = logging.getLogger("iiot-sim")

TAGS = {"Flow": ("m3/h", 0, 120), "Pressure": ("bar", 0, 10), "Temperature": ("°C", 0, 120), "Speed": ("rpm", 0, 3000)}


def value(tag: str, device: int, t: float, rng: random.Random) -> float:
    day = math.sin(2 * math.pi * (t % 86_400) / 86_400)
    fast = math.sin(2 * math.pi * t / (300 + 37 * device))
    base = {"Flow": 60 + 20 * day + 5 * fast, "Pressure": 5 + day + 0.3 * fast, "Temperature": 55 + 8 * day + 2 * fast,
            "Speed": 1450 + 40 * fast}[tag]  # fmt: skip
    spike = 25 if rng.random() < 0.001 else 0
    return round(base + rng.gauss(0, 0.5) + spike, 3)


class Simulator:
    def __init__(self, server: str, tenant: str, username: str, password: str, devices: int, site: str) -> None:
        self.http = httpx.AsyncClient(base_url=server, timeout=10)
        self.tenant, self.username, self.password = tenant, username, password
        self.devices, self.site = devices, site
        self.rng = random.Random(42)
        self.refresh_token = ""
        self.expires = 0.0

    async def login(self) -> None:
        r = await self.http.post(
            "/api/v1/auth/login", json={"tenant": self.tenant, "username": self.username, "password": self.password}
        )
        r.raise_for_status()
        self._use(r.json())

    def _use(self, tokens: dict[str, object]) -> None:
        self.http.headers["Authorization"] = f"Bearer {tokens['access_token']}"
        self.refresh_token = str(tokens["refresh_token"])
        self.expires = time.monotonic() + float(str(tokens["expires_in"])) * 0.8

    async def ensure_token(self) -> None:
        if time.monotonic() < self.expires:
            return
        r = await self.http.post("/api/v1/auth/refresh", json={"refresh_token": self.refresh_token})
        if r.status_code == 200:
            self._use(r.json())
        else:
            await self.login()

    async def build(self) -> list[str]:
        paths = []
        for parent, cls, name in [(None, "folder", self.site), (self.site, "folder", "Area1")]:
            await self._node(parent, cls, name)
        for d in range(1, self.devices + 1):
            device = f"{self.site}/Area1/Pump{d}"
            await self._node(f"{self.site}/Area1", "device", f"Pump{d}")
            for tag, (unit, low, high) in TAGS.items():
                await self._node(device, "tag", tag, unit=unit, range_low=low, range_high=high)
            await self.http.put(f"/api/v1/devices/{device}/status", json={"status": "online"})
            paths.append(device)
        return paths

    async def _node(self, parent: str | None, cls: str, name: str, **extra: object) -> None:
        r = await self.http.post(
            "/api/v1/nodes", json={"parent": parent, "node_class": cls, "browse_name": name, **extra}
        )
        if r.status_code not in (201, 409):
            raise RuntimeError(f"creating {name}: {r.status_code} {r.text}")

    async def run(self, period: float, count: int | None) -> None:
        await self.login()
        devices = await self.build()
        log.info("simulating %d devices every %.2f s", len(devices), period)
        sent = 0
        backoff = 1.0
        next_at = time.monotonic()
        while count is None or sent < count:
            now = time.time()
            batch = [
                {"device": device, "ts": now, "values": {tag: value(tag, i, now, self.rng) for tag in TAGS}}
                for i, device in enumerate(devices)
            ]
            try:
                await self.ensure_token()
                r = await self.http.post("/api/v1/telemetry", json=batch)
                if r.status_code >= 400:
                    log.warning("server refused a batch: %s %s", r.status_code, r.text[:200])
                backoff = 1.0
            except httpx.HTTPError as exc:
                log.warning("server unreachable (%s); retrying in %.0f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30)
                continue
            sent += 1
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await self.http.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iiot-sim", description="Send simulated plant telemetry to iiot-server")
    parser.add_argument("--server", default=os.environ.get("IIOT_SIM_SERVER", "http://127.0.0.1:8080"))
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default=os.environ.get("IIOT_SIM_PASSWORD", ""))
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--site", default="Plant1")
    parser.add_argument("--period", type=float, default=1.0, help="seconds between values")
    parser.add_argument("--count", type=int, default=None, help="stop after this many periods")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not args.password:
        print("iiot-sim: error: set --password or IIOT_SIM_PASSWORD", file=sys.stderr)
        return 2
    sim = Simulator(args.server, args.tenant, args.username, args.password, args.devices, args.site)
    try:
        asyncio.run(sim.run(args.period, args.count))
    except KeyboardInterrupt:
        return 0
    except (httpx.HTTPError, RuntimeError) as exc:
        print(f"iiot-sim: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
