"""Telemetry in, latest values and history out."""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query
from fastapi.responses import StreamingResponse

from server.api.deps import Caller, Ctx
from server.api.schema import HistoryOut, TelemetryAccepted, TelemetryItem, ValueOut
from server.domain.errors import DomainError, InvalidInput, PayloadTooLarge
from server.domain.permissions import Permission
from server.domain.quality import Quality
from server.domain.timeutil import iso, to_epoch
from server.ingest.pipeline import DeviceValues
from server.storage.historian.reader import HistoryResult

router = APIRouter(tags=["data"])


@router.post("/telemetry", response_model=TelemetryAccepted, status_code=201)
async def telemetry(
    body: Annotated[TelemetryItem | list[TelemetryItem], Body()], who: Caller, ctx: Ctx
) -> TelemetryAccepted:
    """One object or a list; all or nothing. Answers once the samples are committed."""
    who.require(Permission.TELEMETRY_WRITE)
    items = body if isinstance(body, list) else [body]
    if not items:
        raise InvalidInput("the batch is empty", field="body")
    total = sum(len(i.values) for i in items)
    if total > ctx.settings.max_telemetry_items:
        raise PayloadTooLarge(
            f"{total} values in one request; at most {ctx.settings.max_telemetry_items}", field="body"
        )
    decoded = [
        DeviceValues(
            device=i.device,
            values={k: float(v) for k, v in i.values.items()},
            ts=to_epoch(i.ts) if i.ts is not None else None,
            quality=Quality.parse(i.quality),
        )
        for i in items
    ]
    try:
        result = await ctx.pipeline.ingest(who.tenant_id, decoded, source="http")
    except DomainError as exc:
        # Name the field the way the client sent it: "[2].device" in a list, "device" alone.
        if not isinstance(body, list) and exc.field and exc.field.startswith("[0]."):
            exc.field = exc.field[4:]
        raise
    return TelemetryAccepted(accepted=result.accepted, created_tags=result.created_tags)


@router.get("/values", response_model=list[ValueOut])
async def values(
    who: Caller,
    ctx: Ctx,
    node: Annotated[list[str] | None, Query(description="tag node ids or paths")] = None,
    under: str | None = Query(None, max_length=2000, description="every tag below this node"),
) -> list[ValueOut]:
    if node and len(node) > 1000:
        raise InvalidInput("at most 1000 nodes per request", field="node")
    found = await ctx.history.latest(who, node, under)
    return [
        ValueOut(
            node_id=v.node.node_id,
            path=v.node.path,
            unit=v.node.unit,
            ts=v.ts,
            time=iso(v.ts) if v.ts is not None else None,
            value=v.value,
            quality=v.quality.label if v.quality is not None else None,
        )  # fmt: skip
        for v in found
    ]


@router.get("/history", response_model=HistoryOut)
async def history(
    who: Caller,
    ctx: Ctx,
    node: str = Query(max_length=2000, description="tag node id or path"),
    start: datetime | None = Query(None, description="ISO 8601 or epoch seconds; default end - 1 h"),
    end: datetime | None = Query(None, description="default now"),
    max_points: int = Query(2000, description="raw when the range holds fewer samples, else min/max buckets"),
    format: Literal["json", "csv"] = "json",
) -> HistoryOut | StreamingResponse:
    t_end = to_epoch(end) if end else time.time()
    t_start = to_epoch(start) if start else t_end - 3600
    tag, result = await ctx.history.read(who, node, t_start, t_end, max_points)
    if format == "csv":
        name = tag.path.replace("/", "_")
        return StreamingResponse(
            _csv(result), media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}.csv"'}
        )
    out = HistoryOut(
        node_id=tag.node_id, path=tag.path, unit=tag.unit, start=t_start, end=t_end, mode="raw",
        resolution_s=result.resolution_s, count=0, t=[],
    )  # fmt: skip
    if result.raw is not None:
        out.t, out.value, out.quality = result.raw.ts.tolist(), result.raw.value.tolist(), result.raw.quality.tolist()
    elif result.decimated is not None:
        d = result.decimated
        out.mode = "decimated"
        out.t, out.min, out.max, out.avg = d.t.tolist(), d.vmin.tolist(), d.vmax.tolist(), d.avg.tolist()
        out.first, out.last, out.samples = d.first.tolist(), d.last.tolist(), d.count.tolist()
    out.count = len(out.t)
    return out


def _csv(result: HistoryResult) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    if result.raw is not None:
        writer.writerow(["time", "value", "quality"])
        r = result.raw
        for t, v, q in zip(r.ts.tolist(), r.value.tolist(), r.quality.tolist(), strict=True):
            writer.writerow([iso(t), repr(v), Quality(q).label])
    elif result.decimated is not None:
        writer.writerow(["bucket_start", "min", "max", "avg", "first", "last", "samples"])
        d = result.decimated
        for row in zip(
            d.t.tolist(), d.vmin.tolist(), d.vmax.tolist(), d.avg.tolist(), d.first.tolist(), d.last.tolist(),
            d.count.tolist(), strict=True,
        ):  # fmt: skip
            writer.writerow([iso(row[0]), *(repr(x) if not math.isnan(x) else "" for x in row[1:6]), row[6]])
    yield buf.getvalue()
