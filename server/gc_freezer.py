"""Keeps long-lived objects out of full garbage collections.

Start-up freezes what it built (`gc.freeze()` in `Server.start`), but configuration made at
run time — thousands of alarm conditions created through the API, a big namespace import —
is long-lived too, and every full collection walks it again: with 10k conditions created after
start-up, full collections took 160–260 ms and stopped the event loop (the alarm benchmark's
p99). After a burst of configuration changes has settled, this collects once and freezes what
is left, as start-up does.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from server.bus import Bus, Event, Message

log = logging.getLogger(__name__)

KINDS = frozenset({"namespace", "alarm_conditions", "connections"})
"""Bus events that mean long-lived objects were created."""


class GcFreezer:
    def __init__(self, bus: Bus, *, settle_s: float = 10.0) -> None:
        self.bus, self.settle_s = bus, settle_s
        self._handle: asyncio.TimerHandle | None = None
        self._subscription = bus.subscribe(None, self._on_message)
        self.freezes = 0

    def _on_message(self, message: Message) -> None:
        if isinstance(message, Event) and message.kind in KINDS:
            if self._handle is not None:
                self._handle.cancel()  # wait until the burst is over
            self._handle = asyncio.get_running_loop().call_later(self.settle_s, self.freeze)

    def freeze(self) -> None:
        self._handle = None
        started = time.perf_counter()
        gc.collect()
        gc.freeze()
        self.freezes += 1
        log.info("gc: froze %d objects after configuration changes (%.0f ms)", gc.get_freeze_count(),
                 (time.perf_counter() - started) * 1000)  # fmt: skip

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._subscription.close()
