"""The caller's own documents: settings that follow a user from one workstation to another
(the console's saved trend sets). Tenant and user come from the token: there is no way to name
another user's settings, so there is nothing to refuse but API keys (they have none)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response

from server.api.deps import Caller, Ctx
from server.api.schema import UserSettingIn, UserSettingKey, UserSettingOut, UserSettingRename
from server.domain.errors import Unavailable
from server.services.user_settings import UserSettingsService
from server.storage.repositories.user_settings import UserSetting

router = APIRouter(prefix="/me", tags=["me"])


def _service(ctx: Any) -> UserSettingsService:
    if ctx.user_settings is None:
        raise Unavailable("user settings are not available on this server")
    service: UserSettingsService = ctx.user_settings
    return service


def _out(setting: UserSetting) -> UserSettingOut:
    return UserSettingOut(key=setting.key, value=setting.value, updated_at=setting.updated_at.timestamp())


@router.get("/settings", response_model=list[UserSettingKey], summary="Your settings' keys (no values)")
async def list_settings(
    who: Caller, ctx: Ctx, prefix: str = Query("", max_length=200, description="e.g. trendset/")
) -> list[UserSettingKey]:
    found = await _service(ctx).keys(who, prefix)
    return [UserSettingKey(key=s.key, updated_at=s.updated_at.timestamp()) for s in found]


@router.post("/settings/{key:path}/rename", response_model=UserSettingOut)
async def rename_setting(key: str, body: UserSettingRename, who: Caller, ctx: Ctx) -> UserSettingOut:
    """409 when `to` exists (unless `overwrite`), 404 when `key` does not."""
    return _out(await _service(ctx).rename(who, key, body.to, overwrite=body.overwrite))


@router.get("/settings/{key:path}", response_model=UserSettingOut)
async def get_setting(key: str, who: Caller, ctx: Ctx) -> UserSettingOut:
    return _out(await _service(ctx).get(who, key))


@router.put("/settings/{key:path}", response_model=UserSettingOut)
async def put_setting(
    key: str,
    body: UserSettingIn,
    who: Caller,
    ctx: Ctx,
    overwrite: bool = Query(True, description="false: 409 when the key exists already"),
) -> UserSettingOut:
    """Store a JSON document under `key` (at most 64 KiB, 413 above)."""
    return _out(await _service(ctx).put(who, key, body.value, overwrite=overwrite))


@router.delete("/settings/{key:path}", status_code=204)
async def delete_setting(key: str, who: Caller, ctx: Ctx) -> Response:
    await _service(ctx).delete(who, key)
    return Response(status_code=204)
