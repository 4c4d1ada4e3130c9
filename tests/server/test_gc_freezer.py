"""The gc freezer (server/gc_freezer.py): configuration bursts end in one freeze."""

from __future__ import annotations

import asyncio
import gc

from server.bus import Bus, Event
from server.gc_freezer import GcFreezer


async def test_a_burst_of_configuration_changes_ends_in_one_freeze() -> None:
    bus = Bus()
    freezer = GcFreezer(bus, settle_s=0.05)
    try:
        for i in range(5):  # a burst: each change postpones the freeze
            bus.publish(Event(1, "alarm_conditions", {"id": i, "action": "configured"}))
            await asyncio.sleep(0.01)
        bus.publish(Event(1, "alarm", {"id": 1}))  # not configuration: no freeze for it
        assert freezer.freezes == 0
        await asyncio.sleep(0.15)
        assert freezer.freezes == 1 and gc.get_freeze_count() > 0
    finally:
        freezer.close()
        gc.unfreeze()
