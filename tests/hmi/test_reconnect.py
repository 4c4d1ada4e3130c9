"""The server restarts under a running console: a clear banner, stale values, reconnect with
back-off, the stream re-subscribed, and the trend's gap filled from history."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from hmi.client import LinkState
from hmi.client.backoff import Backoff
from tests.hmi.conftest import DEVICE, PRESSURE, ConsoleHarness, seed_plant, until
from tests.support import LiveServer, make_settings


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[list[LiveServer]]:
    """A server of its own (this test stops it); the list holds the running instance."""
    servers = [LiveServer(make_settings(tmp_path, f"sqlite:///{tmp_path / 'iiot.db'}")).start()]
    try:
        yield servers
    finally:
        servers[-1].stop()


def test_reconnect_after_the_server_restarts(
    make_console: Callable[[str], ConsoleHarness], own_server: list[LiveServer]
) -> None:
    plant = seed_plant(own_server[0])
    harness = make_console(own_server[0].base)
    harness.console.backoff = Backoff(first_s=1.5, max_s=1.5, jitter=0)  # room to backfill the outage
    harness.login(plant.name, "operator", "operator" * 3)
    console, banner = harness.console, harness.window.banner
    pressure = plant.ids["Pressure"]
    outage: list[float] = []

    async def scenario() -> None:
        await console.add_to_trend([{"node_id": pressure, "path": PRESSURE, "unit": "bar"}])
        pen = console.trend.pens[0]
        plant.send(Pressure=4.2)
        await until(lambda: console.values.get(pressure) and len(pen.live) >= 1, what="a live value")
        assert not banner.link.isVisible() and console.values.quality_text(pressure) == "Good"

        await asyncio.to_thread(own_server[0].stop)
        await until(lambda: banner.link.isVisible(), what="the lost-connection banner")
        assert "stale" in banner.link.text().lower()
        assert console.values.quality_text(pressure) == "Stale"
        assert console.link_state is LinkState.RECONNECTING
        outage.append(time.time())

        restarted = await asyncio.to_thread(LiveServer(own_server[0].settings, fresh=False).start)
        own_server.append(restarted)
        missed = [{"device": DEVICE, "ts": outage[0] - 0.5 + 0.1 * k, "values": {"Pressure": 7.0}} for k in range(3)]
        r = plant.tenant.engineer.post("/api/v1/telemetry", json=missed)  # samples the stream never carried
        assert r.status_code == 201, r.text

        await until(lambda: console.link_state is LinkState.CONNECTED, what="reconnected")
        await until(lambda: not banner.link.isVisible(), what="the banner cleared")
        back = time.time()
        plant.send(Pressure=4.4)
        await until(lambda: (pen.live.last_time() or 0) > back, what="live values after the restart")
        assert console.values.quality_text(pressure) == "Good"
        wanted = np.round([m["ts"] for m in missed], 3)

        def gap_filled() -> bool:
            t, v = pen.live.arrays()
            found = np.isin(np.round(t, 3), wanted)
            return bool(found.sum() == len(wanted) and (v[found] == 7.0).all())

        await until(gap_filled, what="the gap filled from history")

    harness.run(scenario(), timeout=60)
