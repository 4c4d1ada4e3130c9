"""One logged-in session: the token pair, refreshed before it runs out, one refresh at a time.

The server treats two refreshes with the same refresh token as theft and ends the session
(docs/protocol.md §1.4), so every refresh goes through one lock and a caller that waited for
it reuses the result instead of refreshing again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import httpx

from hmi.client.errors import ApiError, AuthError, ServerUnreachable
from server.api.schema import Me, TokenResponse

log = logging.getLogger(__name__)

TokensListener = Callable[[TokenResponse], None]


class Session:
    """REST access for one user in one tenant; `request` refreshes once on a 401."""

    def __init__(self, base_url: str, *, timeout: float = 15.0, refresh_at: float = 0.8) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)
        self.refresh_at = refresh_at
        self.tenant = ""
        self.username = ""
        self.me: Me | None = None
        self.tokens: TokenResponse | None = None
        self._generation = 0
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._listeners: list[TokensListener] = []

    # -- lifecycle ------------------------------------------------------------------------
    def on_tokens(self, listener: TokensListener) -> None:
        """Call `listener` after every login and refresh (to store the new refresh token, renew streams)."""
        self._listeners.append(listener)

    @property
    def access_token(self) -> str:
        if self.tokens is None:
            raise AuthError(401, "not logged in")
        return self.tokens.access_token

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http", "ws", 1) + "/api/v1/stream"

    def has_permission(self, permission: str) -> bool:
        return self.me is not None and permission in self.me.permissions

    async def login(self, tenant: str, username: str, password: str) -> Me:
        """Log in; AuthError for any wrong combination, ServerUnreachable when nobody answers."""
        body = {"tenant": tenant, "username": username, "password": password}
        response = await self._send("POST", "/api/v1/auth/login", json=body)
        self.tenant, self.username = tenant, username
        await self._accept(response)
        return await self._load_me()

    async def resume(self, tenant: str, username: str, refresh_token: str) -> Me:
        """Start from a remembered refresh token instead of a password."""
        self.tenant, self.username = tenant, username
        response = await self._send("POST", "/api/v1/auth/refresh", json={"refresh_token": refresh_token})
        await self._accept(response)
        return await self._load_me()

    async def logout(self) -> None:
        """End this session on the server (best effort) and forget the tokens."""
        if self.tokens is not None:
            with contextlib.suppress(ApiError, ServerUnreachable):
                await self.request("POST", "/api/v1/auth/logout", json={"refresh_token": self.tokens.refresh_token})
        self._cancel_timer()
        self.tokens, self.me = None, None

    async def aclose(self) -> None:
        self._cancel_timer()
        await self.http.aclose()

    # -- requests -------------------------------------------------------------------------
    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authenticated request; a 401 refreshes the tokens once and retries."""
        generation = self._generation
        response = await self._send(method, path, headers=self._auth(), **kwargs)
        if response.status_code == 401 and self.tokens is not None:
            await self.refresh(seen=generation)
            response = await self._send(method, path, headers=self._auth(), **kwargs)
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        return response

    async def refresh(self, seen: int | None = None) -> None:
        """Rotate the token pair; when another caller already did since `seen`, do nothing."""
        async with self._lock:
            if seen is not None and seen != self._generation:
                return
            if self.tokens is None:
                raise AuthError(401, "not logged in")
            body = {"refresh_token": self.tokens.refresh_token}
            response = await self._send("POST", "/api/v1/auth/refresh", json=body)
            await self._accept(response)

    @property
    def generation(self) -> int:
        """Counts token changes, so a caller can tell whether a refresh happened meanwhile."""
        return self._generation

    # -- internals ------------------------------------------------------------------------
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"} if self.tokens else {}

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self.http.is_closed:  # a view still refreshing after logout or close: unreachable, not a crash
            raise ServerUnreachable("the session is closed")
        try:
            return await self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"cannot reach {self.base_url}: {exc or type(exc).__name__}") from exc

    async def _accept(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            raise ApiError.from_response(response)
        self.tokens = TokenResponse.model_validate(response.json())
        self._generation += 1
        for listener in self._listeners:
            listener(self.tokens)
        self._schedule_refresh(self.tokens.expires_in * self.refresh_at)

    async def _load_me(self) -> Me:
        self.me = Me.model_validate((await self.request("GET", "/api/v1/auth/me")).json())
        self.tenant, self.username = self.me.tenant, self.me.username
        return self.me

    def _schedule_refresh(self, delay: float) -> None:
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().create_task(self._refresh_later(delay))

    async def _refresh_later(self, delay: float) -> None:
        """Refresh before expiry; on a network error try again soon, never interrupting the user."""
        await asyncio.sleep(delay)
        try:
            async with asyncio.timeout(30):
                await self.refresh(seen=self._generation)
        except ServerUnreachable:
            log.info("token refresh: server unreachable, trying again in 10 s")
            self._timer = None
            self._schedule_refresh(10.0)
        except (ApiError, TimeoutError) as exc:
            log.warning("token refresh failed: %s", exc)

    def _cancel_timer(self) -> None:
        current = asyncio.current_task() if _loop_running() else None
        if self._timer is not None and self._timer is not current:
            self._timer.cancel()
        self._timer = None


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
