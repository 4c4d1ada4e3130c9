"""Anomaly detection as the API offers it: train (a background job), list, get, delete, score
on demand, predictions over a range, monitoring and trend bands.

Every call checks the caller's permission and resolves devices and tags inside the caller's
tenant, so another tenant's device or model is simply not found. Training and deleting need
`alarms.configure` (a model drives anomaly alarms: it is alarm configuration); reading,
scoring on demand, bands and monitoring need `history.read` (they are views of history).
Range computations over many windows run in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from server.domain.errors import Conflict, InvalidInput, NotFound
from server.domain.namespace import Node, NodeClass
from server.domain.permissions import Permission
from server.domain.principal import Principal
from server.ml import features as ft
from server.ml import monitoring as mon
from server.ml import training as tr
from server.ml.jobs import TrainingJobs
from server.ml.model import AnomalyModel, Scored, UntrustedArtifact
from server.ml.registry import READY, ModelRegistry, StoredModel
from server.ml.scorer import AnomalyScorer
from server.storage.repositories.audit import AuditRepository
from server.storage.repositories.nodes import NodeRepository

log = logging.getLogger(__name__)

MAX_TRAIN_RANGE_S = 400 * 86_400
MAX_SCORE_RANGE_S = 31 * 86_400
"""Predictions, monitoring and bands score every window of the range (30 days of 10 s: ~1 s)."""
MAX_SCORE_SAMPLES = 100_000
MAX_WINDOWS_OUT = 50_000
CACHE_MODELS = 32
THREAD_BUCKETS = 2_000
"""Ranges with more buckets than this are scored in a worker thread, not on the loop."""


class AnomalyService:
    def __init__(
        self, registry: ModelRegistry, nodes: NodeRepository, history: tr.HistorySource, scorer: AnomalyScorer,
        audit: AuditRepository, jobs: TrainingJobs | None = None, clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.registry, self.nodes, self.history, self.scorer, self.audit = registry, nodes, history, scorer, audit
        self.jobs = jobs or TrainingJobs(registry, history, scorer.bus, self._ready)
        self.clock = clock
        self._cache: OrderedDict[int, AnomalyModel] = OrderedDict()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Jobs cut off by the last stop are marked failed; every device's newest ready model
        goes to the scorer."""
        await self.registry.interrupted()
        entries = []
        for stored in await self.registry.active():
            try:
                model = await self._load(stored)
                tags = await self._model_tags(stored.tenant_id, model)
            except (UntrustedArtifact, NotFound) as exc:
                log.error("anomaly model %s (%s) is not scored: %s", stored.id, stored.device_path, exc)
                continue
            entries.append((stored.tenant_id, stored.device_node_id, stored.id, stored.version, model,
                            [t.id for t in tags]))  # fmt: skip
        await self.scorer.activate_many(entries, primer=self.history.buckets)

    async def stop(self) -> None:
        await self.jobs.stop()

    async def _ready(self, stored: StoredModel, model: AnomalyModel) -> None:
        self._remember(stored.id, model)
        await self._activate(stored, model)

    async def _activate(self, stored: StoredModel, model: AnomalyModel) -> None:
        tags = await self._model_tags(stored.tenant_id, model)
        await self.scorer.activate(
            stored.tenant_id, stored.device_node_id, stored.id, stored.version, model, [t.id for t in tags],
            primer=self.history.buckets,
        )  # fmt: skip

    async def _model_tags(self, tenant_id: int, model: AnomalyModel) -> list[Node]:
        out = []
        for node_id in model.tags:
            try:
                out.append(await self.nodes.get(tenant_id, node_id))
            except NotFound:
                raise NotFound(f"tag {node_id} of the model no longer exists; train a new version") from None
        return out

    async def _load(self, stored: StoredModel) -> AnomalyModel:
        cached = self._cache.get(stored.id)
        if cached is not None:
            self._cache.move_to_end(stored.id)
            return cached
        data = await self.registry.artifact(stored.tenant_id, stored.id)
        model = await asyncio.to_thread(AnomalyModel.loads, data)
        self._remember(stored.id, model)
        return model

    def _remember(self, model_id: int, model: AnomalyModel) -> None:
        self._cache[model_id] = model
        while len(self._cache) > CACHE_MODELS:
            self._cache.popitem(last=False)

    # -- registry -------------------------------------------------------------------------

    async def train(
        self, who: Principal, device_ref: str, start: float, end: float, params: tr.TrainParams,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        who.require(Permission.ALARMS_CONFIGURE)
        device = await self._device(who, device_ref)
        _check_params(params)
        if end <= start:
            raise InvalidInput("end must be after start", field="end")
        if end - start > MAX_TRAIN_RANGE_S:
            raise InvalidInput(f"a training range may span at most {MAX_TRAIN_RANGE_S // 86_400} days", field="start")
        if end > self.clock() + 300:
            raise InvalidInput("the training range ends in the future", field="end")
        need = (tr.MIN_WINDOWS + params.window) * params.step_s
        if end - start < need:
            raise InvalidInput(
                f"the range must span at least {need} s ({tr.MIN_WINDOWS} windows of {params.step_s} s plus the "
                f"{params.window_s} s window)", field="start",
            )  # fmt: skip
        chosen = await self._tags(who, device, tags)
        stored = await self.registry.create(who.tenant_id, device.id, params.as_dict(), start, end, who.subject)
        await self.audit.record(who.tenant_id, who.subject, "anomaly.model.train", str(stored.id), detail={
            "device": device.path, "version": stored.version, "start": start, "end": end, "params": params.as_dict(),
            "tags": [t.path for t in chosen],
        })  # fmt: skip
        self.jobs.submit(stored, [t.id for t in chosen], [t.node_id for t in chosen], [t.browse_name for t in chosen],
                         params)  # fmt: skip
        return self._out(stored)

    async def models(self, who: Principal, device_ref: str | None = None) -> list[dict[str, Any]]:
        who.require(Permission.HISTORY_READ)
        device_id = (await self._device(who, device_ref)).id if device_ref else None
        return [self._out(m) for m in await self.registry.models(who.tenant_id, device_id)]

    async def get(self, who: Principal, model_id: int) -> dict[str, Any]:
        who.require(Permission.HISTORY_READ)
        return self._out(await self.registry.get(who.tenant_id, model_id))

    async def delete(self, who: Principal, model_id: int) -> None:
        who.require(Permission.ALARMS_CONFIGURE)
        stored = await self.registry.get(who.tenant_id, model_id)
        await self.jobs.cancel(model_id)
        await self.registry.delete(who.tenant_id, model_id)
        self._cache.pop(model_id, None)
        await self.audit.record(who.tenant_id, who.subject, "anomaly.model.delete", str(model_id),
                                detail={"device": stored.device_path, "version": stored.version})  # fmt: skip
        live = self.scorer.live(who.tenant_id, stored.device_node_id)
        if live is not None and live.model_id == model_id:
            following = await self.registry.active_for(who.tenant_id, stored.device_id)
            if following is None:
                self.scorer.deactivate(who.tenant_id, stored.device_node_id)
            else:
                await self._activate(following, await self._load(following))

    def _out(self, m: StoredModel) -> dict[str, Any]:
        job = self.jobs.get(m.id)
        live = self.scorer.live(m.tenant_id, m.device_node_id)
        active = live is not None and live.model_id == m.id
        return {
            "id": m.id, "device": m.device_node_id, "path": m.device_path, "version": m.version,
            "status": job.status if job else m.status, "progress": job.progress if job else m.progress,
            "phase": job.phase if job else m.phase, "error": job.error if job and job.error else m.error,
            "params": m.params, "features": m.features, "metrics": m.metrics, "train_start": m.train_start,
            "train_end": m.train_end, "threshold": m.threshold, "trained_by": m.trained_by,
            "created_at": m.created_at, "finished_at": m.finished_at, "artifact_sha256": m.artifact_sha256,
            "active": active, "live": live.stats.as_dict() if active and live else None,
        }  # fmt: skip

    # -- scoring ------------------------------------------------------------------------

    async def _ready_model(self, who: Principal, model_id: int) -> tuple[StoredModel, AnomalyModel]:
        stored = await self.registry.get(who.tenant_id, model_id)
        if stored.status != READY:
            raise Conflict(f"model {model_id} is {stored.status}, not ready", field="model")
        return stored, await self._load(stored)

    async def _device_model(
        self, who: Principal, device_ref: str, model_id: int | None
    ) -> tuple[StoredModel, AnomalyModel]:
        device = await self._device(who, device_ref)
        if model_id is not None:
            stored, model = await self._ready_model(who, model_id)
            if stored.device_id != device.id:
                raise InvalidInput(f"model {model_id} belongs to {stored.device_path}, not {device.path}",
                                   field="model")  # fmt: skip
            return stored, model
        stored_or_none = await self.registry.active_for(who.tenant_id, device.id)
        if stored_or_none is None:
            raise NotFound(f"{device.path} has no trained anomaly model", field="device")
        return stored_or_none, await self._load(stored_or_none)

    async def _range_buckets(
        self, who: Principal, model: AnomalyModel, start: float, end: float, warm: bool = True
    ) -> ft.Buckets:
        if end <= start:
            raise InvalidInput("end must be after start", field="end")
        if end - start > MAX_SCORE_RANGE_S:
            raise InvalidInput(f"the range may span at most {MAX_SCORE_RANGE_S // 86_400} days", field="start")
        tags = await self._model_tags(who.tenant_id, model)
        lo, hi = tr.align(start, end, model.step)
        if warm:  # the first windows of the range need the buckets before it
            lo -= (model.window - 1) * model.step
        return await self.history.buckets([t.id for t in tags], lo, max(hi, lo), model.step)

    async def _scored(self, model: AnomalyModel, b: ft.Buckets) -> Scored:
        if len(b) > THREAD_BUCKETS:
            return await asyncio.to_thread(model.score_buckets, b)
        return model.score_buckets(b)

    async def predictions(
        self, who: Principal, device_ref: str, start: float, end: float, model_id: int | None = None
    ) -> dict[str, Any]:
        who.require(Permission.HISTORY_READ)
        stored, model = await self._device_model(who, device_ref, model_id)
        scored = await self._scored(model, await self._range_buckets(who, model, start, end))
        return _windows(stored, model, scored)

    async def score(
        self, who: Principal, model_id: int, *, samples: list[tuple[float, dict[str, float]]] | None = None,
        start: float | None = None, end: float | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Score the caller's samples (each a time and values by tag name or node id), or a
        range of history. Windows need `window` buckets: the first ones of the samples only
        fill the window and get no score."""
        who.require(Permission.HISTORY_READ)
        stored, model = await self._ready_model(who, model_id)
        if samples is None:
            if start is None or end is None:
                raise InvalidInput("give samples, or start and end", field="samples")
            b = await self._range_buckets(who, model, start, end)
        else:
            b = _samples_to_buckets(model, samples)
        return _windows(stored, model, await self._scored(model, b))

    async def monitoring(
        self, who: Principal, model_id: int, start: float, end: float, bucket_s: float
    ) -> dict[str, Any]:
        who.require(Permission.HISTORY_READ)
        stored, model = await self._ready_model(who, model_id)
        if bucket_s < model.step:
            raise InvalidInput(f"bucket_s must be at least the model's step ({model.step:g} s)", field="bucket_s")
        b = await self._range_buckets(who, model, start, end)
        finished = stored.finished_at.timestamp() if stored.finished_at else self.clock()
        age = max(0.0, (self.clock() - finished) / 86_400)
        result = await asyncio.to_thread(
            mon.monitor, model, b, bucket_s, age_days=age, train_span_s=stored.train_end - stored.train_start
        )
        live = self.scorer.live(who.tenant_id, stored.device_node_id)
        out = {"model": stored.id, "device": stored.device_node_id, "path": stored.device_path, "start": start,
               "end": end, "bucket_s": bucket_s, **result.as_dict(), "contamination": model.contamination,
               "live": live.stats.as_dict() if live is not None and live.model_id == stored.id else None}  # fmt: skip
        return out

    async def bands(
        self, who: Principal, tag_ref: str, start: float, end: float, *, max_points: int, k: float,
        method: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """method None: `expected` when the tag's device has a model with this tag, else `rolling`."""
        who.require(Permission.HISTORY_READ)
        tag = await self.nodes.get(who.tenant_id, tag_ref)
        if tag.node_class is not NodeClass.TAG:
            raise InvalidInput(f"{tag.path!r} is a {tag.node_class.value}; bands are drawn for tags", field="node")
        device = await self._device_of(who, tag)
        stored: StoredModel | None = None
        model: AnomalyModel | None = None
        if device is not None:
            stored = await self.registry.active_for(who.tenant_id, device.id)
            if stored is not None:
                model = await self._load(stored)
        if model is not None and tag.node_id not in model.tags:
            model, stored = None, None  # the tag is not among the model's inputs
        method = method or ("expected" if model is not None else "rolling")
        if method == "expected" and model is None:
            raise NotFound(f"{tag.path} has no trained model for an 'expected' band; use method=rolling",
                           field="method")  # fmt: skip
        step = model.step if model is not None else 10.0
        window = model.window if model is not None else 30
        if end <= start:
            raise InvalidInput("end must be after start", field="end")
        if end - start > MAX_SCORE_RANGE_S:
            raise InvalidInput(f"the range may span at most {MAX_SCORE_RANGE_S // 86_400} days", field="start")
        lo, hi = tr.align(start, end, step)
        lo_warm = lo - (window - 1) * step
        if model is not None:
            tags = await self._model_tags(who.tenant_id, model)
            column = model.tags.index(tag.node_id)
            b = await self.history.buckets([t.id for t in tags], lo_warm, max(hi, lo_warm), step)
        else:
            column = 0
            b = await self.history.buckets([tag.id], lo_warm, max(hi, lo_warm), step)

        def compute() -> tuple[mon.Band, Scored | None]:
            bd = mon.band(b, column, model=model, method=method, k=k, window=window, step=step)
            keep = bd.t >= lo
            bd = mon.Band(bd.t[keep], bd.center[keep], bd.lower[keep], bd.upper[keep], bd.resolution_s, bd.method)
            return mon.decimate(bd, max_points), model.score_buckets(b) if model is not None else None

        bd, scored = await (asyncio.to_thread(compute) if len(b) > THREAD_BUCKETS else _now(compute))
        anomalies = []
        if scored is not None and model is not None:
            hit = np.flatnonzero((scored.score > 1.0) & (scored.t > lo))
            for i in hit[:1000].tolist():
                anomalies.append({"start": float(scored.t[i] - step), "end": float(scored.t[i]),
                                  "score": float(scored.score[i]), "feature": scored.top_feature[i],
                                  "tag": model.tag_names[scored.top_tag[i]]})  # fmt: skip
        return {
            "node_id": tag.node_id, "path": tag.path, "unit": tag.unit, "start": start, "end": end,
            "method": bd.method, "k": k, "model": stored.id if stored else None, "resolution_s": bd.resolution_s,
            "count": int(bd.t.size), "t": bd.t.tolist(), "center": _json(bd.center), "lower": _json(bd.lower),
            "upper": _json(bd.upper), "anomalies": anomalies,
        }  # fmt: skip

    # -- lookups --------------------------------------------------------------------------

    async def _device(self, who: Principal, ref: str) -> Node:
        node = await self.nodes.get(who.tenant_id, ref)
        if node.node_class is not NodeClass.DEVICE:
            raise InvalidInput(f"{node.path!r} is a {node.node_class.value}, not a device", field="device")
        return node

    async def _device_of(self, who: Principal, tag: Node) -> Node | None:
        parent = tag.parent_id
        while parent is not None:
            found = await self.nodes.by_ids(who.tenant_id, [parent])
            if not found:
                return None
            if found[0].node_class is NodeClass.DEVICE:
                return found[0]
            parent = found[0].parent_id
        return None

    async def _tags(self, who: Principal, device: Node, refs: list[str] | None) -> list[Node]:
        below = await self.nodes.children(who.tenant_id, device.node_id)
        children = [n for n in below if n.node_class is NodeClass.TAG]
        if refs is None:
            if not children:
                raise InvalidInput(f"{device.path} has no tags", field="device")
            return children
        by_name = {n.browse_name: n for n in children} | {n.node_id: n for n in children} | {
            n.path: n for n in children}  # fmt: skip
        chosen = []
        for ref in refs:
            node = by_name.get(ref)
            if node is None:
                raise InvalidInput(f"{device.path} has no tag {ref!r}", field="tags")
            if node not in chosen:
                chosen.append(node)
        if not chosen:
            raise InvalidInput("choose at least one tag", field="tags")
        return chosen


async def _now(fn: Callable[[], Any]) -> Any:
    return fn()


def _json(a: Any) -> list[float | None]:
    return [None if math.isnan(x) else x for x in np.asarray(a, dtype=np.float64).tolist()]


def _check_params(p: tr.TrainParams) -> None:
    if p.step_s % tr.TIER or not tr.TIER <= p.step_s <= 3600:
        raise InvalidInput(f"step_s must be a multiple of {tr.TIER} between {tr.TIER} and 3600", field="step_s")
    if p.window_s % p.step_s or not 3 <= p.window_s // p.step_s <= 360:
        raise InvalidInput("window_s must be a multiple of step_s, 3 to 360 steps long", field="window_s")


def _samples_to_buckets(model: AnomalyModel, samples: list[tuple[float, dict[str, float]]]) -> ft.Buckets:
    column = {name: j for j, name in enumerate(model.tag_names)} | {n: j for j, n in enumerate(model.tags)}
    cols, stamps, values = [], [], []
    for i, (ts, vals) in enumerate(samples):
        for name, v in vals.items():
            j = column.get(name)
            if j is None:
                raise InvalidInput(f"the model has no input {name!r}; inputs: {', '.join(model.tag_names)}",
                                   field=f"samples[{i}].values.{name}")  # fmt: skip
            cols.append(j)
            stamps.append(ts)
            values.append(v)
    if not stamps:
        raise InvalidInput("no samples", field="samples")
    if len(stamps) > MAX_SCORE_SAMPLES:
        raise InvalidInput(f"at most {MAX_SCORE_SAMPLES} values per call", field="samples")
    ts_arr = np.asarray(stamps)
    lo = math.floor(float(ts_arr.min()) / model.step) * model.step
    hi = (math.floor(float(ts_arr.max()) / model.step) + 1) * model.step
    return ft.buckets_from_samples(np.asarray(cols, dtype=np.int64), ts_arr, np.asarray(values), len(model.tags),
                                   model.step, lo, hi)  # fmt: skip


def _windows(stored: StoredModel, model: AnomalyModel, s: Scored) -> dict[str, Any]:
    """Columnar windows (t = window end); truncated to the newest MAX_WINDOWS_OUT."""
    n = s.t.size
    cut = max(0, n - MAX_WINDOWS_OUT)
    return {
        "model": stored.id, "version": stored.version, "device": stored.device_node_id, "path": stored.device_path,
        "step_s": model.step, "window_s": model.window * model.step, "threshold": 1.0, "count": n - cut,
        "truncated": cut > 0, "t": s.t[cut:].tolist(), "score": s.score[cut:].tolist(),
        "forest": s.forest[cut:].tolist(), "envelope": s.envelope[cut:].tolist(),
        "anomalous": (s.score[cut:] > 1.0).tolist(), "feature": s.top_feature[cut:],
        "tag": [model.tag_names[j] for j in s.top_tag[cut:]],
    }  # fmt: skip
