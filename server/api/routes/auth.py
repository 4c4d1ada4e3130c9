"""Login, token refresh, logout, and who am I."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from server.api.deps import Caller, Ctx, client_address
from server.api.schema import LoginRequest, LogoutRequest, Me, RefreshRequest, TokenResponse

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login", response_model=TokenResponse)
async def login(body: LoginRequest, request: Request, ctx: Ctx) -> TokenResponse:
    pair = await ctx.auth.login(body.tenant, body.username, body.password, client_address(request))
    return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.post("/refresh", response_model=TokenResponse)
async def refresh(body: RefreshRequest, request: Request, ctx: Ctx) -> TokenResponse:
    """Rotates: the old refresh token stops working; presenting it again revokes the session."""
    pair = await ctx.auth.refresh(body.refresh_token, client_address(request))
    return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.post("/logout", status_code=204)
async def logout(who: Caller, request: Request, ctx: Ctx, body: LogoutRequest | None = None) -> Response:
    await ctx.auth.logout(who, body.refresh_token if body else None, client_address(request))
    return Response(status_code=204)


@router.get("/me", response_model=Me)
async def me(who: Caller) -> Me:
    return Me(
        tenant=who.tenant_name,
        tenant_id=who.tenant_id,
        username=who.subject,
        user_id=who.user_id,
        roles=list(who.roles),
        permissions=sorted(p.value for p in who.permissions),
        is_system_admin=who.is_system_admin,
        kind=who.kind,
    )
