"""Alarms: the summary, acknowledgement, shelving, suppression, the journal, and the
conditions engineers configure. Errors are problem documents like everywhere else."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Body, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from server.alarms.service import AlarmFilter, AlarmService, parse_config
from server.api.deps import Caller, Ctx
from server.domain.alarms import Priority
from server.domain.errors import Conflict, Unavailable
from server.domain.timeutil import iso, to_epoch

router = APIRouter(tags=["alarms"])


def _service(ctx: Any) -> AlarmService:
    if ctx.alarms is None:
        raise Unavailable("the alarm engine is not running")
    service: AlarmService = ctx.alarms
    return service


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AckIn(_Body):
    ids: list[int] | None = Field(None, max_length=10_000, description="these alarms; omit for all visible")
    comment: str | None = Field(None, max_length=2000)
    area: str | None = Field(None, description="with no ids: only alarms in this subtree")
    priority: list[Priority] | None = None


class ShelveIn(_Body):
    reason: str = Field(min_length=1, max_length=2000)
    duration_s: float | None = Field(None, description="timed shelve; omit for one-shot (until the alarm clears)")


class CommentIn(_Body):
    comment: str = Field(min_length=1, max_length=2000)


class OptionalCommentIn(_Body):
    comment: str | None = Field(None, max_length=2000)


class ReasonIn(_Body):
    reason: str | None = Field(None, max_length=2000)


# -- the summary -------------------------------------------------------------------------


@router.get("/alarms")
async def list_alarms(
    who: Caller,
    ctx: Ctx,
    area: str | None = Query(None, max_length=2000, description="node id or path: that subtree only"),
    priority: list[Priority] | None = Query(None),
    state: list[str] | None = Query(
        None, description="e.g. shelved; default the annunciated: unack_active, ack_active, unack_rtn"
    ),
    include_normal: bool = False,
) -> list[dict[str, Any]]:
    """Alarms sorted by priority, then newest first."""
    return await _service(ctx).alarms(who, AlarmFilter(area, priority, state, include_normal))


@router.post("/alarms/acknowledge")
async def acknowledge(body: AckIn, who: Caller, ctx: Ctx) -> dict[str, Any]:
    """With `ids`: those alarms. Without: every unacknowledged alarm the filter shows."""
    visible = AlarmFilter(body.area, body.priority)
    results = await _service(ctx).acknowledge(who, body.ids, body.comment, visible)
    return {
        "acknowledged": sum(1 for r in results if r.ok),
        "results": [{"id": r.id, "ok": r.ok, "state": r.state, "detail": r.detail} for r in results],
    }


@router.get("/alarms/journal", response_model=None)
async def journal(
    who: Caller,
    ctx: Ctx,
    start: datetime | None = Query(None, description="default end - 24 h"),
    end: datetime | None = Query(None, description="default now"),
    condition: int | None = None,
    event: list[str] | None = Query(None, description="e.g. activated, acknowledged, shelved"),
    priority: list[Priority] | None = Query(None),
    area: str | None = Query(None, max_length=2000),
    limit: int = Query(10_000, ge=1, le=100_000),
    format: Literal["json", "csv"] = "json",
) -> dict[str, Any] | StreamingResponse:
    t_end = to_epoch(end) if end else time.time()
    t_start = to_epoch(start) if start else t_end - 86_400
    entries = await _service(ctx).journal(
        who, start=t_start, end=t_end, condition_id=condition, events=event, priorities=priority, area=area,
        limit=limit,
    )  # fmt: skip
    rows = [
        {
            "id": e.id,
            "ts": e.ts,
            "condition": e.condition_id,
            "name": e.condition_name,
            "source": e.source,
            "event": e.event,
            "from_state": e.from_state,
            "to_state": e.to_state,
            "priority": e.priority,
            "value": e.value,
            "level": e.level,
            "user": e.user,
            "comment": e.comment,
        }  # fmt: skip
        for e in entries
    ]
    if format == "csv":
        disposition = 'attachment; filename="alarm-journal.csv"'
        return StreamingResponse(_csv(rows), media_type="text/csv", headers={"Content-Disposition": disposition})
    return {"start": t_start, "end": t_end, "count": len(rows), "entries": rows}


@router.get("/alarms/kpis")
async def alarm_kpis(
    who: Caller,
    ctx: Ctx,
    start: datetime | None = Query(None, description="default end - 24 h"),
    end: datetime | None = Query(None, description="default now"),
    operators: int = Query(1, ge=1, le=1000, description="operator positions sharing the load"),
) -> dict[str, Any]:
    """Alarms per operator per 10 min, flood share, standing, most frequent, chattering, shelved."""
    t_end = to_epoch(end) if end else time.time()
    t_start = to_epoch(start) if start else t_end - 86_400
    return await _service(ctx).kpis(who, start=t_start, end=t_end, operators=operators)


@router.get("/alarms/engine")
async def engine_stats(who: Caller, ctx: Ctx) -> dict[str, Any]:
    """Samples judged, transitions, and the time the engine spent on them (this tenant's)."""
    return _service(ctx).engine_stats(who)


def _csv(rows: list[dict[str, Any]]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["time", "condition", "name", "source", "event", "from", "to", "priority", "value", "level",
                     "user", "comment"])  # fmt: skip
    for r in rows:
        writer.writerow([
            iso(r["ts"]), r["condition"], r["name"], r["source"], r["event"], r["from_state"], r["to_state"],
            r["priority"], "" if r["value"] is None else repr(r["value"]), r["level"] or "", r["user"],
            r["comment"] or "",
        ])  # fmt: skip
    yield buf.getvalue()


# -- conditions (engineers) ---------------------------------------------------------------


@router.get("/alarms/conditions")
async def list_conditions(who: Caller, ctx: Ctx) -> list[dict[str, Any]]:
    return await _service(ctx).conditions(who)


@router.post("/alarms/conditions", status_code=201)
async def create_condition(who: Caller, ctx: Ctx, body: dict[str, Any] = Body()) -> dict[str, Any]:
    """The body is a condition (see docs/alarms.md): name, spec {kind, ...}, priority, ..."""
    return await _service(ctx).create(who, parse_config(body))


@router.get("/alarms/conditions/{condition_id}")
async def get_condition(condition_id: int, who: Caller, ctx: Ctx) -> dict[str, Any]:
    return await _service(ctx).condition(who, condition_id)


@router.put("/alarms/conditions/{condition_id}")
async def update_condition(
    condition_id: int, who: Caller, ctx: Ctx, body: dict[str, Any] = Body(),
    version: int | None = Query(None, description="refuse (409) unless the condition is at this version"),
) -> dict[str, Any]:  # fmt: skip
    return await _service(ctx).update(who, condition_id, parse_config(body), version)


@router.delete("/alarms/conditions/{condition_id}", status_code=204)
async def delete_condition(condition_id: int, who: Caller, ctx: Ctx) -> None:
    await _service(ctx).delete(who, condition_id)


# -- one alarm ---------------------------------------------------------------------------


@router.get("/alarms/{condition_id}")
async def get_alarm(condition_id: int, who: Caller, ctx: Ctx) -> dict[str, Any]:
    return await _service(ctx).alarm(who, condition_id)


@router.post("/alarms/{condition_id}/acknowledge")
async def acknowledge_one(condition_id: int, who: Caller, ctx: Ctx, body: OptionalCommentIn | None = None) -> Any:
    service = _service(ctx)
    results = await service.acknowledge(who, [condition_id], body.comment if body else None)
    if not results[0].ok:
        raise Conflict(results[0].detail or "not acknowledged")
    return await service.alarm(who, condition_id)


@router.post("/alarms/{condition_id}/comment")
async def comment(condition_id: int, body: CommentIn, who: Caller, ctx: Ctx) -> dict[str, Any]:
    return await _service(ctx).comment(who, condition_id, body.comment)


@router.post("/alarms/{condition_id}/reset")
async def reset(condition_id: int, who: Caller, ctx: Ctx, body: OptionalCommentIn | None = None) -> dict[str, Any]:
    return await _service(ctx).reset(who, condition_id, body.comment if body else None)


@router.post("/alarms/{condition_id}/shelve")
async def shelve(condition_id: int, body: ShelveIn, who: Caller, ctx: Ctx) -> dict[str, Any]:
    return await _service(ctx).shelve(who, condition_id, body.reason, body.duration_s)


@router.post("/alarms/{condition_id}/unshelve")
async def unshelve(condition_id: int, who: Caller, ctx: Ctx, body: OptionalCommentIn | None = None) -> dict[str, Any]:
    return await _service(ctx).unshelve(who, condition_id, body.comment if body else None)


@router.post("/alarms/{condition_id}/suppress")
async def suppress(condition_id: int, body: ReasonIn, who: Caller, ctx: Ctx) -> dict[str, Any]:
    return await _service(ctx).suppress(who, condition_id, True, body.reason)


@router.post("/alarms/{condition_id}/unsuppress")
async def unsuppress(condition_id: int, who: Caller, ctx: Ctx, body: ReasonIn | None = None) -> dict[str, Any]:
    return await _service(ctx).suppress(who, condition_id, False, body.reason if body else None)


@router.post("/alarms/{condition_id}/out-of-service")
async def out_of_service(condition_id: int, body: ReasonIn, who: Caller, ctx: Ctx) -> dict[str, Any]:
    return await _service(ctx).out_of_service(who, condition_id, True, body.reason)


@router.post("/alarms/{condition_id}/in-service")
async def in_service(condition_id: int, who: Caller, ctx: Ctx, body: ReasonIn | None = None) -> dict[str, Any]:
    return await _service(ctx).out_of_service(who, condition_id, False, body.reason if body else None)
