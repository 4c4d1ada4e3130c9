"""Screenshot of the console for the README: a server and the plant simulator (1 h of history),
a few alarm conditions, and the console logged in with a trend, the tree and the alarm summary.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot.py docs/screenshot.png

(`scripts/screenshot.sh` does exactly that.)
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hmi_plant import ADMIN, PASSWORD, TENANT, start_plant, tags  # noqa: E402

CONDITIONS = [  # (tag suffix, priority, name, which limit, offset from the present value)
    ("Area1/Pump1/Flow", "high", "Pump1 flow high", "hi", -2.0),
    ("Area1/Tank2/Level", "urgent", "Tank2 level low", "lo", 3.0),
    ("Utilities/Boiler1/SupplyTemp", "medium", "Boiler supply temperature high", "hi", -0.5),
    ("Area1/Pump3/Vibration", "low", "Pump3 vibration high", "hi", -0.05),
    ("Area1/Pump2/BearingTemp", "high", "Pump2 bearing temperature high", "hi", -0.3),
]
PENS = ["Area1/Pump1/Flow", "Area1/Pump1/Pressure", "Area1/Tank1/Level", "Utilities/Boiler1/SupplyTemp"]


if TYPE_CHECKING:
    from hmi.shell import Shell


async def open_console(url: str) -> Shell:
    """The console of every screenshot: a fresh profile, 1600x1000, logged in as the plant's admin,
    the trend over the last hour (shared with screenshot_analytics.py, which started as a copy)."""
    from PySide6.QtWidgets import QApplication

    from hmi.shell import Shell
    from hmi.views.login_dialog import LoginForm

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    shell = Shell(app, Path(tempfile.mkdtemp()), url, TENANT, ADMIN, use_os_keyring=False)
    shell.window.resize(1600, 1000)
    shell.window.show()
    await shell._login(LoginForm(url, TENANT, ADMIN, PASSWORD))  # noqa: SLF001 - what the dialog does
    shell.window.trend.set_span(3600)
    return shell


def run_in_qt(shot: Coroutine[Any, Any, None]) -> None:
    """Run `shot` to its end on a Qt application's event loop (qasync), as the console runs."""
    from PySide6.QtWidgets import QApplication
    from qasync import QEventLoop

    app = QApplication(sys.argv[:1])
    loop = QEventLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        loop.run_until_complete(shot)


async def shoot(url: str, out: Path) -> None:
    shell = await open_console(url)
    window, console = shell.window, shell.console
    by_suffix = {t["path"].split("/", 1)[1]: t for t in tags_cache}
    await console.add_to_trend([{"node_id": by_suffix[s]["node_id"], "path": by_suffix[s]["path"],
                                 "unit": by_suffix[s]["unit"]} for s in PENS])  # fmt: skip
    tree = window.tree
    for _ in range(40):  # expand Plant1 / Area1 / Pump1 as an operator would
        await asyncio.sleep(0.25)
        for path in ("Plant1", "Plant1/Area1", "Plant1/Area1/Pump1"):
            node = console.namespace.node(f"ns=2;s={path}")
            if node is not None:
                tree.tree.expand(tree.proxy.mapFromSource(console.namespace.index_of(node.node_id)))
        flow = console.namespace.node("ns=2;s=Plant1/Area1/Pump1/Flow")
        if flow is not None:
            index = tree.proxy.mapFromSource(console.namespace.index_of(flow.node_id))
            tree.tree.setCurrentIndex(index)
            break
    await asyncio.sleep(2)
    summary = window.alarm_summary
    if summary.model.rowCount() > 2:
        summary.select_row(summary.model.rowCount() - 1)
        summary.comment.setText("checked on site")
        summary.acknowledge_selected()
    await asyncio.sleep(3)
    window.trend.redraw()
    await asyncio.sleep(0.6)  # a blink phase with the colours on
    if not summary.model.blink_on:
        await asyncio.sleep(0.5)
    window.grab().save(str(out), "PNG")
    print(f"saved {out} ({window.width()}x{window.height()})")  # noqa: T201
    await console.close()


tags_cache: list[dict[str, object]] = []


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot.png")
    plant = start_plant(devices=3, backfill="1h")
    try:
        tags_cache.extend(tags(plant))
        by_suffix = {str(t["path"]).split("/", 1)[1]: t for t in tags_cache}
        with plant.api() as api:
            for suffix, priority, name, level, offset in CONDITIONS:
                tag = by_suffix[suffix]
                limit = float(tag["value"]) + offset  # type: ignore[arg-type]
                body = {"name": name, "priority": priority, "spec": {"kind": "limit", "tag": tag["path"], level: limit}}
                api.post("/api/v1/alarms/conditions", json=body).raise_for_status()
        run_in_qt(shoot(plant.url, out))
    finally:
        plant.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
