"""Anomaly detection: models (train as a background job, list, get, delete), scoring on demand,
predictions of a device over a range, monitoring, and adaptive bands for trends."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from server.api.deps import Caller, Ctx
from server.api.schema import (
    AnomalyBandsOut,
    AnomalyModelOut,
    AnomalyMonitoringOut,
    AnomalyScoreRequest,
    AnomalyTrain,
    AnomalyWindowsOut,
)
from server.domain.errors import Unavailable
from server.domain.timeutil import to_epoch
from server.ml.service import AnomalyService
from server.ml.training import TrainParams

router = APIRouter(prefix="/anomaly", tags=["anomaly"])


def _service(ctx: Any) -> AnomalyService:
    if ctx.anomaly is None:
        raise Unavailable("anomaly detection is not running")
    service: AnomalyService = ctx.anomaly
    return service


def _range(start: datetime | None, end: datetime | None, default_s: float) -> tuple[float, float]:
    t_end = to_epoch(end) if end else time.time()
    return (to_epoch(start) if start else t_end - default_s), t_end


StartLastHour = Annotated[datetime | None, Query(description="default end - 1 h")]
EndNow = Annotated[datetime | None, Query(description="default now")]


def _last_hour(start: datetime | None, end: datetime | None) -> tuple[float, float]:
    """The range of /predictions and /bands (the last hour by default): declared and defaulted once,
    so the two stay in step, and /bands keeps the range of the /history it is drawn beside."""
    return _range(start, end, 3600)


@router.post("/models", response_model=AnomalyModelOut, status_code=202)
async def train(body: AnomalyTrain, who: Caller, ctx: Ctx, response: Response) -> dict[str, Any]:
    """A new version of the device's model, trained in the background: poll the model (or
    watch `anomaly_model` events on the stream) for `progress` until `status` is ready."""
    params = TrainParams(step_s=body.step_s, window_s=body.window_s, contamination=body.contamination,
                         n_estimators=body.n_estimators, margin=body.margin, forest_margin=body.forest_margin,
                         seed=body.seed)  # fmt: skip
    out = await _service(ctx).train(who, body.device, to_epoch(body.start), to_epoch(body.end), params, body.tags)
    response.headers["Location"] = f"/api/v1/anomaly/models/{out['id']}"
    return out


@router.get("/models", response_model=list[AnomalyModelOut])
async def list_models(
    who: Caller, ctx: Ctx, device: str | None = Query(None, max_length=2000, description="only this device's")
) -> list[dict[str, Any]]:
    return await _service(ctx).models(who, device)


@router.get("/models/{model_id}", response_model=AnomalyModelOut)
async def get_model(model_id: int, who: Caller, ctx: Ctx) -> dict[str, Any]:
    return await _service(ctx).get(who, model_id)


@router.delete("/models/{model_id}", status_code=204)
async def delete_model(model_id: int, who: Caller, ctx: Ctx) -> Response:
    """Cancels a job still running; the device's previous ready version (if any) takes over."""
    await _service(ctx).delete(who, model_id)
    return Response(status_code=204)


@router.post("/models/{model_id}/score", response_model=AnomalyWindowsOut)
async def score(model_id: int, body: AnomalyScoreRequest, who: Caller, ctx: Ctx) -> dict[str, Any]:
    if body.samples is not None:
        samples = [(to_epoch(s.ts), {k: float(v) for k, v in s.values.items()}) for s in body.samples]
        return await _service(ctx).score(who, model_id, samples=samples)
    start = to_epoch(body.start) if body.start else None
    end = to_epoch(body.end) if body.end else None
    return await _service(ctx).score(who, model_id, start=start, end=end)


@router.get("/models/{model_id}/monitoring", response_model=AnomalyMonitoringOut)
async def monitoring(
    model_id: int, who: Caller, ctx: Ctx,
    start: datetime | None = Query(None, description="default end - 24 h"),
    end: datetime | None = Query(None, description="default now"),
    bucket_s: float = Query(3600, ge=10, le=7 * 86_400, description="anomaly rate per bucket of this width"),
) -> dict[str, Any]:  # fmt: skip
    """Anomaly rate over time, score drift against the training distribution, and whether to retrain."""
    t_start, t_end = _range(start, end, 86_400)
    return await _service(ctx).monitoring(who, model_id, t_start, t_end, bucket_s)


@router.get("/predictions", response_model=AnomalyWindowsOut)
async def predictions(
    who: Caller, ctx: Ctx,
    device: str = Query(max_length=2000, description="node id or path of the device"),
    start: StartLastHour = None,
    end: EndNow = None,
    model: int | None = Query(None, description="a version of the device's model; default the active one"),
) -> dict[str, Any]:  # fmt: skip
    """Scores of every window of the device over the range, from its history."""
    t_start, t_end = _last_hour(start, end)
    return await _service(ctx).predictions(who, device, t_start, t_end, model)


@router.get("/bands", response_model=AnomalyBandsOut)
async def bands(
    who: Caller, ctx: Ctx,
    node: str = Query(max_length=2000, description="tag node id or path"),
    start: StartLastHour = None,
    end: EndNow = None,
    max_points: int = Query(2000, ge=10, le=20_000),
    k: float = Query(3.0, gt=0, le=20, description="half-width in learned standard deviations"),
    method: Literal["expected", "rolling"] | None = Query(
        None, description="expected: from the device's other tags (needs a model); rolling: the tag's rolling mean. "
        "Default: expected when the device has a model with this tag, else rolling",
    ),
) -> dict[str, Any]:  # fmt: skip
    """The band to draw around a tag's trend, with the device's anomalous windows as markers;
    fetch it beside GET /history with the same node, start and end."""
    t_start, t_end = _last_hour(start, end)
    return await _service(ctx).bands(who, node, t_start, t_end, max_points=max_points, k=k, method=method)
