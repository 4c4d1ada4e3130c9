"""Role-based access: permissions, the built-in roles, and the matrix between them."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    NAMESPACE_READ = "namespace.read"
    NAMESPACE_WRITE = "namespace.write"
    HISTORY_READ = "history.read"
    TELEMETRY_WRITE = "telemetry.write"
    DEVICES_COMMAND = "devices.command"
    ALARMS_READ = "alarms.read"
    ALARMS_ACK = "alarms.ack"
    ALARMS_SHELVE = "alarms.shelve"
    ALARMS_MANAGE = "alarms.manage"
    ALARMS_CONFIGURE = "alarms.configure"
    AUDIT_READ = "audit.read"
    USERS_MANAGE = "users.manage"
    ROLES_MANAGE = "roles.manage"
    APIKEYS_MANAGE = "apikeys.manage"
    TENANT_SETTINGS = "tenant.settings"


P = Permission

_VIEWER = frozenset({P.NAMESPACE_READ, P.HISTORY_READ, P.ALARMS_READ})
_OPERATOR = _VIEWER | {P.ALARMS_ACK, P.DEVICES_COMMAND}
_SUPERVISOR = _OPERATOR | {P.ALARMS_SHELVE, P.ALARMS_MANAGE, P.AUDIT_READ}
_ENGINEER = _OPERATOR | {
    P.NAMESPACE_WRITE,
    P.TELEMETRY_WRITE,
    P.ALARMS_CONFIGURE,
    P.AUDIT_READ,
}

BUILTIN_ROLES: dict[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "engineer": frozenset(_ENGINEER),
    "supervisor": frozenset(_SUPERVISOR),
    "operator": frozenset(_OPERATOR),
    "viewer": _VIEWER,
}
"""Engineers configure, supervisors shelve and manage alarms, operators acknowledge and
command, viewers only look; admins hold every permission of their tenant."""


def parse_permissions(names: list[str]) -> frozenset[Permission]:
    from server.domain.errors import InvalidInput

    known = {p.value for p in Permission}
    unknown = sorted(set(names) - known)
    if unknown:
        raise InvalidInput(
            f"unknown permission(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}",
            field="permissions",
        )
    return frozenset(Permission(n) for n in names)


def permission_matrix_markdown() -> str:
    """The matrix as documented in docs/security.md; generated so the doc can't drift."""
    roles = list(BUILTIN_ROLES)
    lines = ["| permission | " + " | ".join(roles) + " |", "|---|" + "---|" * len(roles)]
    for perm in Permission:
        marks = ["✓" if perm in BUILTIN_ROLES[r] else "" for r in roles]
        lines.append(f"| `{perm.value}` | " + " | ".join(marks) + " |")
    return "\n".join(lines)
