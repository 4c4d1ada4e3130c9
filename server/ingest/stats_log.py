"""Logs the adapters' counters periodically, so a plant engineer sees ingest health in the log."""

from __future__ import annotations

import asyncio
import logging

from server.ingest.pipeline import IngestPipeline

log = logging.getLogger("iiot.ingest")


class StatsLogger:
    def __init__(self, pipeline: IngestPipeline, interval_s: float = 60.0) -> None:
        self.pipeline, self.interval_s = pipeline, interval_s
        self._last: dict[str, dict[str, object]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ingest-stats-log")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.log_once()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.log_once()

    def log_once(self) -> None:
        """One line per adapter whose counters moved since the last line."""
        current = self.pipeline.stats_for(None)
        for source, counters in current.items():
            if counters != self._last.get(source):
                log.info(
                    "%s: received %s, accepted %s, rejected %s, dead-lettered %s, reconnects %s",
                    source, counters["received"], counters["accepted"], counters["rejected"] or 0,
                    counters["dead_lettered"], counters["reconnects"],
                )  # fmt: skip
        self._last = current
