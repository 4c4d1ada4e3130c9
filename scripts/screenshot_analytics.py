"""The analytics screenshot for the README (#7): a trend of Pump1 with its anomaly band, anomaly
markers where a flow spike was injected, a forecast with its interval, the analytics panel and the
model list.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_analytics.py \
        docs/screenshot-analytics.png
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hmi_plant import start_plant, tags  # noqa: E402
from scripts.screenshot import open_console, run_in_qt  # noqa: E402

DEVICE = "Plant1/Area1/Pump1"
PENS = [f"{DEVICE}/Flow", f"{DEVICE}/Pressure"]
SPIKE_AGO_S = 900  # a minute of flow 40 m³/h too high, 15 minutes ago


async def shoot(url: str, out: Path, by_path: dict[str, dict[str, object]]) -> None:
    shell = await open_console(url)
    window, console = shell.window, shell.console
    await console.add_to_trend([{"node_id": by_path[p]["node_id"], "path": p, "unit": by_path[p]["unit"]}
                                for p in PENS])  # fmt: skip
    analytics = window.analytics
    assert console.api is not None
    flow = await console.api.node(PENS[0])
    analytics.panel.show_node(flow)
    window.focus_dock("analytics")
    window.focus_dock("models")
    for _ in range(60):
        await asyncio.sleep(0.5)
        if analytics.panel.stats_status.text().endswith(")") and analytics.models.table.rowCount():
            break
    analytics.models.table.selectRow(0)  # the model's monitoring below the list
    for _ in range(60):
        await asyncio.sleep(0.5)
        if analytics.models.monitoring.result is not None:
            break
    analytics.panel.horizon.setValue(60)
    analytics.panel.compute_forecast()
    for _ in range(60):
        await asyncio.sleep(0.25)
        if analytics.panel.draw_button.isEnabled():
            break
    analytics.panel.draw_button.click()
    for _ in range(120):  # the trend pauses over the forecast's horizon and fetches bands again
        await asyncio.sleep(0.25)
        if analytics.overlays.forecast_items and analytics.overlays.bands and analytics.overlays.markers:
            break
    await asyncio.sleep(2)
    window.trend.redraw()
    await asyncio.sleep(0.5)
    window.grab().save(str(out), "PNG")
    print(f"saved {out} ({window.width()}x{window.height()})")  # noqa: T201
    await console.close()


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot-analytics.png")
    plant = start_plant(devices=2, backfill="2h")
    try:
        by_path = {str(t["path"]): t for t in tags(plant)}
        now = time.time()
        with plant.api() as api:
            base = float(by_path[PENS[0]]["value"])
            spike = [{"device": DEVICE, "ts": now - SPIKE_AGO_S + k + 0.5, "values": {"Flow": base + 40.0}}
                     for k in range(60)]  # fmt: skip
            api.post("/api/v1/telemetry", json=spike).raise_for_status()
            start = float(int(now - 7200 + 120) // 10 * 10)
            body = {"device": DEVICE, "start": start, "end": now - 1800, "window_s": 60, "contamination": 0.001}
            model = api.post("/api/v1/anomaly/models", json=body).raise_for_status().json()
            for _ in range(240):
                model = api.get(f"/api/v1/anomaly/models/{model['id']}").json()
                if model["status"] in ("ready", "failed"):
                    break
                time.sleep(0.5)
            print(f"model {model['id']}: {model['status']} {model.get('error') or ''}")  # noqa: T201
        run_in_qt(shoot(plant.url, out, by_path))
    finally:
        plant.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
