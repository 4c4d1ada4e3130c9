"""Notification set-up (channels, escalation policies, on-call schedules, webhook allowlist),
each user's preferences, the delivery log, and a test send."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field

from server.api.deps import Caller, Ctx
from server.domain.errors import Unavailable
from server.domain.timeutil import to_epoch
from server.notify.service import NotifyService

router = APIRouter(prefix="/notifications", tags=["notifications"])
Kind = Literal["channels", "policies", "schedules"]
KIND = {"channels": "channel", "policies": "policy", "schedules": "schedule"}


def _service(ctx: Any) -> NotifyService:
    if ctx.notify is None:
        raise Unavailable("notifications are not running")
    service: NotifyService = ctx.notify
    return service


class AllowlistIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allowlist: list[str] = Field(max_length=200, description="host names, addresses or networks (CIDR)")


@router.get("/allowlist")
async def get_allowlist(who: Caller, ctx: Ctx) -> dict[str, list[str]]:
    return {"allowlist": await _service(ctx).allowlist(who)}


@router.put("/allowlist")
async def put_allowlist(body: AllowlistIn, who: Caller, ctx: Ctx) -> dict[str, list[str]]:
    """Webhook targets on private, loopback or link-local addresses must be named here."""
    return {"allowlist": await _service(ctx).set_allowlist(who, body.allowlist)}


@router.get("/preferences")
async def get_preferences(who: Caller, ctx: Ctx) -> dict[str, Any]:
    return await _service(ctx).preferences(who)


@router.put("/preferences")
async def put_preferences(who: Caller, ctx: Ctx, body: dict[str, Any] = Body()) -> dict[str, Any]:
    """Your own: enabled, email (default: your account's), min_priority."""
    return await _service(ctx).set_preferences(who, body)


@router.get("/deliveries")
async def deliveries(
    who: Caller,
    ctx: Ctx,
    start: datetime | None = Query(None, description="default end - 24 h"),
    end: datetime | None = None,
    condition: int | None = None,
) -> list[dict[str, Any]]:
    t_end = to_epoch(end) if end else time.time()
    t_start = to_epoch(start) if start else t_end - 86_400
    found = await _service(ctx).deliveries(who, start=t_start, end=t_end, condition_id=condition)
    return [
        {
            "ts": d.ts,
            "condition": d.condition_id,
            "episode": d.episode,
            "route": d.route,
            "step": d.step,
            "target": d.target,
            "channel": d.channel,
            "attempt": d.attempt,
            "outcome": d.outcome,
            "status": d.status,
            "detail": d.detail,
        }  # fmt: skip
        for d in found
    ]


@router.get("/schedules/{name}/on-call")
async def on_call(name: str, who: Caller, ctx: Ctx, at: datetime | None = None) -> dict[str, Any]:
    moment = to_epoch(at) if at else time.time()
    return {"schedule": name, "at": moment, "user": await _service(ctx).on_call(who, name, moment)}


@router.post("/channels/{name}/test")
async def test_channel(name: str, who: Caller, ctx: Ctx) -> dict[str, Any]:
    attempts = await _service(ctx).test(who, name)
    return {"attempts": [{"ts": a.ts, "outcome": a.outcome, "status": a.status, "detail": a.detail} for a in attempts]}


@router.get("/{kind}")
async def list_objects(kind: Kind, who: Caller, ctx: Ctx) -> list[dict[str, Any]]:
    return await _service(ctx).all(who, KIND[kind])


@router.get("/{kind}/{name}")
async def get_object(kind: Kind, name: str, who: Caller, ctx: Ctx) -> dict[str, Any]:
    return await _service(ctx).get(who, KIND[kind], name)


@router.put("/{kind}/{name}")
async def put_object(kind: Kind, name: str, who: Caller, ctx: Ctx, body: dict[str, Any] = Body()) -> dict[str, Any]:
    """Create or replace. Secrets (SMTP password, webhook secret) are shown masked; send the
    mask back unchanged to keep the stored value."""
    return await _service(ctx).put(who, KIND[kind], name, body)


@router.delete("/{kind}/{name}", status_code=204)
async def delete_object(kind: Kind, name: str, who: Caller, ctx: Ctx) -> None:
    await _service(ctx).delete(who, KIND[kind], name)
