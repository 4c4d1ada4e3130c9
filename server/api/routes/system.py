"""Liveness, readiness (the database answers), ingest counters and status counts."""

from __future__ import annotations

import base64
import time
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from server import __version__
from server.api.deps import Caller, Ctx
from server.api.problems import problem
from server.api.schema import StatusOut
from server.domain.errors import Forbidden
from server.domain.permissions import Permission

router = APIRouter(tags=["system"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up; says nothing about its dependencies (that is /ready)."""
    return {"status": "ok", "version": __version__}


@router.get("/ready", response_model=None)
async def ready(ctx: Ctx) -> dict[str, Any] | JSONResponse:
    try:
        await ctx.db.check(wait_s=3)
    except Exception as exc:
        return problem(503, f"database not ready: {exc}")
    if ctx.writer.stats.failures and ctx.writer.queued > ctx.writer.max_pending // 2:
        return problem(503, "historian is failing to write and its queue is filling")
    return {"status": "ready", "database": ctx.db.dialect}


@router.get("/api/v1/status", response_model=StatusOut)
async def status(who: Caller, ctx: Ctx) -> StatusOut:
    who.require(Permission.NAMESPACE_READ)
    counts = await ctx.nodes.counts(who.tenant_id)
    return StatusOut(
        tenant=who.tenant_name, folders=counts["folders"], devices=counts["devices"], tags=counts["tags"],
        devices_by_status={k.removeprefix("devices_"): v for k, v in counts.items() if k.startswith("devices_")},
        samples_written=ctx.writer.stats.samples, historian_commits=ctx.writer.stats.batches,
        historian_queue=ctx.writer.queued,
        stream_clients=ctx.stream_clients, uptime_s=time.monotonic() - ctx.started_at,
    )  # fmt: skip


@router.get("/api/v1/ingest/dead-letters")
async def dead_letters(
    who: Caller,
    ctx: Ctx,
    source: str | None = Query(None, max_length=32),
    limit: int = Query(100, ge=1, le=1000),
    unattributed: bool = Query(False, description="system administrators: payloads no tenant could be named for"),
) -> list[dict[str, Any]]:
    """What the adapters received but could not use, newest first (payload base64, max 64 KiB)."""
    who.require(Permission.NAMESPACE_WRITE)
    if unattributed and not who.is_system_admin:
        raise Forbidden("only a system administrator sees payloads that belong to no tenant")
    assert ctx.dead_letters is not None
    found = await ctx.dead_letters.query(who.tenant_id, source=source, limit=limit, unattributed=unattributed)
    return [
        {
            "id": d.id,
            "received_at": d.received_at.isoformat(),
            "source": d.source,
            "origin": d.origin,
            "reason": d.reason,
            "detail": d.detail,
            "payload_size": d.payload_size,
            "payload": base64.b64encode(d.payload).decode(),
        }  # fmt: skip
        for d in found
    ]


@router.get("/api/v1/ingest/stats")
async def ingest_stats(who: Caller, ctx: Ctx) -> dict[str, Any]:
    """The caller's tenant's counters per adapter since start; system administrators see all."""
    who.require(Permission.NAMESPACE_READ)
    return ctx.pipeline.stats_for(None if who.is_system_admin else who.tenant_id)
