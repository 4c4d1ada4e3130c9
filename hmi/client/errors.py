"""What can go wrong talking to the server, in words an operator can read."""

from __future__ import annotations

import httpx


class ApiError(Exception):
    """The server answered with a problem document (RFC 7807)."""

    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail, self.field = status, detail, field

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """Read the problem document; fall back to the reason phrase when the body is not one."""
        detail, field = response.reason_phrase, None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            detail = str(body.get("detail") or detail)
            field = body.get("field")
        error = AuthError if response.status_code in (401, 429) else cls
        return error(response.status_code, detail, field)


class AuthError(ApiError):
    """Log in again (401), or wait (429): retrying the same request will not help."""


class ServerUnreachable(Exception):
    """No answer at all: the server is down or the URL is wrong."""
