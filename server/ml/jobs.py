"""Training jobs: read history on the loop, fit in a worker thread, report progress.

One job runs at a time (the machine's cores belong to ingestion first); others wait queued.
Progress lives in memory for the API, goes to the database at each phase change (so another
server, or a restart, sees where a job got to), and is published on the bus as `anomaly_model`
events, which the WebSocket stream forwards to the tenant's clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from server.bus import Bus, Event
from server.ml import training as tr
from server.ml.model import AnomalyModel
from server.ml.registry import FAILED, QUEUED, READY, TRAINING, ModelRegistry, StoredModel

log = logging.getLogger(__name__)

EVENT_INTERVAL_S = 0.25
"""Progress events at most this often per job (phase changes always)."""

OnReady = Callable[[StoredModel, AnomalyModel], Awaitable[None]]


@dataclass(slots=True)
class Job:
    stored: StoredModel
    tag_ids: list[int]
    tag_node_ids: list[str]
    tag_names: list[str]
    params: tr.TrainParams
    status: str = QUEUED
    progress: float = 0.0
    phase: str = QUEUED
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task[None] | None = None
    last_event: float = 0.0


class TrainingJobs:
    def __init__(self, registry: ModelRegistry, history: tr.HistorySource, bus: Bus, on_ready: OnReady) -> None:
        self.registry, self.history, self.bus, self.on_ready = registry, history, bus, on_ready
        self.jobs: dict[int, Job] = {}
        self._gate = asyncio.Semaphore(1)
        self._saving: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ml-train")

    def submit(
        self, stored: StoredModel, tag_ids: list[int], tag_node_ids: list[str], tag_names: list[str],
        params: tr.TrainParams,
    ) -> Job:  # fmt: skip
        job = Job(stored, tag_ids, tag_node_ids, tag_names, params)
        self.jobs[stored.id] = job
        job.task = asyncio.get_running_loop().create_task(self._run(job), name=f"ml-train-{stored.id}")
        self._publish(job, force=True)
        return job

    def get(self, model_id: int) -> Job | None:
        return self.jobs.get(model_id)

    async def cancel(self, model_id: int) -> None:
        job = self.jobs.get(model_id)
        if job is None or job.task is None:
            return
        job.cancel.set()
        job.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job.task

    async def stop(self) -> None:
        for model_id in list(self.jobs):
            await self.cancel(model_id)
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def _run(self, job: Job) -> None:
        model_id = job.stored.id
        try:
            async with self._gate:
                await self._step(job, TRAINING, 0.0, "reading")
                model, metrics = await self._train(job)
                artifact = await asyncio.get_running_loop().run_in_executor(self._executor, model.dumps)
                features = tr.feature_record(model)
                await self.registry.finish(model_id, artifact, features, metrics, 1.0)
                job.status, job.progress, job.phase = READY, 1.0, READY
                stored = await self.registry.get(job.stored.tenant_id, model_id)
                await self.on_ready(stored, model)
                self._publish(job, force=True)
                log.info("anomaly model %s (%s v%s) trained: %s windows in %.1f s", model_id,
                         job.stored.device_path, job.stored.version, metrics["train_windows"],
                         metrics["fit_seconds"])  # fmt: skip
        except asyncio.CancelledError:
            job.cancel.set()
            await self._failed(job, "cancelled")
            raise
        except tr.NotEnoughData as exc:
            await self._failed(job, str(exc))
        except Exception as exc:
            log.exception("anomaly model %s: training failed", model_id)
            await self._failed(job, f"training failed: {exc}")
        finally:
            self.jobs.pop(model_id, None)

    async def _train(self, job: Job) -> tuple[AnomalyModel, dict[str, Any]]:
        s, p = job.stored, job.params
        start, end = tr.align(s.train_start, s.train_end, p.step_s)
        buckets = await self.history.buckets(job.tag_ids, start, end, p.step_s)
        await self._step(job, TRAINING, 0.25, "features")
        loop = asyncio.get_running_loop()

        def progress(phase: str, fraction: float) -> None:  # on the worker thread
            loop.call_soon_threadsafe(self._progress, job, phase, fraction)

        return await loop.run_in_executor(
            self._executor, lambda: tr.train(buckets, job.tag_node_ids, job.tag_names, p, progress, job.cancel.is_set)
        )

    def _progress(self, job: Job, phase: str, fraction: float) -> None:
        if job.status != TRAINING:
            return
        changed = phase != job.phase
        job.progress, job.phase = max(job.progress, fraction), phase
        if changed:
            task = asyncio.get_running_loop().create_task(self._save(job))
            self._saving.add(task)  # held until done: the loop keeps only weak references to tasks
            task.add_done_callback(self._saving.discard)
        self._publish(job, force=changed)

    async def _step(self, job: Job, status: str, progress: float, phase: str) -> None:
        job.status, job.progress, job.phase = status, progress, phase
        await self._save(job)
        self._publish(job, force=True)

    async def _save(self, job: Job) -> None:
        try:
            await self.registry.progress(job.stored.id, job.status, job.progress, job.phase)
        except Exception as exc:  # progress is informative; the job goes on
            log.warning("anomaly model %s: could not store progress: %s", job.stored.id, exc)

    async def _failed(self, job: Job, error: str) -> None:
        job.status, job.phase, job.error = FAILED, FAILED, error
        try:
            await self.registry.fail(job.stored.id, error)
        except Exception as exc:  # deleted meanwhile, or the database is gone while stopping
            log.info("anomaly model %s: failure not stored (%s)", job.stored.id, exc)
        self._publish(job, force=True)

    def _publish(self, job: Job, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - job.last_event < EVENT_INTERVAL_S:
            return
        job.last_event = now
        s = job.stored
        self.bus.publish(Event(s.tenant_id, "anomaly_model", {
            "id": s.id, "device": s.device_node_id, "path": s.device_path, "version": s.version,
            "status": job.status, "progress": round(job.progress, 4), "phase": job.phase, "error": job.error,
        }))  # fmt: skip
