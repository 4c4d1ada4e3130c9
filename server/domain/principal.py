"""Who is calling: a user or an API key, always inside exactly one tenant."""

from __future__ import annotations

from dataclasses import dataclass

from server.domain.errors import Forbidden
from server.domain.permissions import Permission


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: int
    tenant_name: str
    subject: str
    """Username, or `apikey:<name>` for a machine; this is what the audit trail records."""
    user_id: int | None
    roles: tuple[str, ...]
    permissions: frozenset[Permission]
    is_system_admin: bool = False
    kind: str = "user"
    expires_at: float | None = None

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def require(self, *permissions: Permission) -> None:
        missing = [p.value for p in permissions if p not in self.permissions]
        if missing:
            raise Forbidden(f"this needs the permission {', '.join(missing)}, which {self.subject!r} does not hold")
