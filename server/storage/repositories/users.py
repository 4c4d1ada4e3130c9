"""Users and roles of a tenant; a user may hold several roles, permissions are their union."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.domain.errors import Conflict, InvalidInput, NotFound
from server.domain.permissions import Permission, parse_permissions
from server.storage.database import Database
from server.storage.repositories.base import now, utc
from server.storage.schema import roles, user_roles, users


@dataclass(slots=True)
class Role:
    id: int
    name: str
    description: str
    permissions: frozenset[Permission]
    builtin: bool


@dataclass(slots=True)
class User:
    id: int
    tenant_id: int
    username: str
    display_name: str
    email: str | None
    is_active: bool
    is_system_admin: bool
    roles: list[str]
    permissions: frozenset[Permission]
    last_login_at: datetime | None
    created_at: datetime | None
    password_hash: str = ""


def check_username(username: str, field: str = "username") -> str:
    if not username or len(username) > 64 or username != username.strip() or not username.isprintable():
        raise InvalidInput("username must be 1-64 printable characters without surrounding spaces", field=field)
    return username


def _role(row: sa.Row[Any]) -> Role:
    return Role(row.id, row.name, row.description, frozenset(Permission(p) for p in row.permissions), row.builtin)


class RoleRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self, tenant_id: int) -> list[Role]:
        async with self.db.connect() as conn:
            rows = await conn.execute(sa.select(roles).where(roles.c.tenant_id == tenant_id).order_by(roles.c.id))
            return [_role(r) for r in rows]

    async def get(self, tenant_id: int, name: str) -> Role:
        async with self.db.connect() as conn:
            row = (
                await conn.execute(sa.select(roles).where(roles.c.tenant_id == tenant_id, roles.c.name == name))
            ).first()
        if row is None:
            raise NotFound(f"role {name!r} not found")
        return _role(row)

    async def create(self, tenant_id: int, name: str, permissions: list[str], description: str = "") -> Role:
        perms = parse_permissions(permissions)
        if not name or len(name) > 64:
            raise InvalidInput("role name must be 1-64 characters", field="name")
        async with self.db.begin() as conn:
            taken = await conn.scalar(sa.select(roles.c.id).where(roles.c.tenant_id == tenant_id, roles.c.name == name))
            if taken:
                raise Conflict(f"role {name!r} already exists", field="name")
            await conn.execute(
                roles.insert().values(
                    tenant_id=tenant_id, name=name, description=description, permissions=sorted(perms), builtin=False
                )
            )
        return await self.get(tenant_id, name)

    async def update(
        self, tenant_id: int, name: str, *, permissions: list[str] | None = None, description: str | None = None
    ) -> Role:
        role = await self.get(tenant_id, name)
        if role.builtin:
            raise Conflict(f"built-in role {name!r} cannot be changed; create a custom role instead")
        values: dict[str, Any] = {}
        if permissions is not None:
            values["permissions"] = sorted(parse_permissions(permissions))
        if description is not None:
            values["description"] = description
        if values:
            async with self.db.begin() as conn:
                await conn.execute(
                    roles.update().where(roles.c.tenant_id == tenant_id, roles.c.id == role.id).values(**values)
                )
        return await self.get(tenant_id, name)

    async def delete(self, tenant_id: int, name: str) -> None:
        role = await self.get(tenant_id, name)
        if role.builtin:
            raise Conflict(f"built-in role {name!r} cannot be deleted")
        async with self.db.begin() as conn:
            held = await conn.scalar(
                sa.select(sa.func.count()).select_from(user_roles).where(user_roles.c.role_id == role.id)
            )
            if held:
                raise Conflict(f"role {name!r} is held by {held} user(s); remove it from them first")
            await conn.execute(roles.delete().where(roles.c.tenant_id == tenant_id, roles.c.id == role.id))

    async def resolve(self, tenant_id: int, names: list[str]) -> list[Role]:
        if not names:
            raise InvalidInput("at least one role is required", field="roles")
        async with self.db.connect() as conn:
            rows = (
                await conn.execute(sa.select(roles).where(roles.c.tenant_id == tenant_id, roles.c.name.in_(names)))
            ).all()
        found = {r.name for r in rows}
        missing = [n for n in names if n not in found]
        if missing:
            raise InvalidInput(f"unknown role(s): {', '.join(missing)}", field="roles")
        return [_role(r) for r in rows]


class UserRepository:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.roles = RoleRepository(db)

    async def _load(self, tenant_id: int, where: sa.ColumnElement[bool]) -> list[User]:
        async with self.db.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(users).where(users.c.tenant_id == tenant_id, where).order_by(users.c.username)
                )
            ).all()
            if not rows:
                return []
            grants = (
                await conn.execute(
                    sa.select(user_roles.c.user_id, roles.c.name, roles.c.permissions)
                    .join(roles, roles.c.id == user_roles.c.role_id)
                    .where(user_roles.c.user_id.in_([r.id for r in rows]), roles.c.tenant_id == tenant_id)
                )
            ).all()
        by_user: dict[int, list[tuple[str, list[str]]]] = {}
        for g in grants:
            by_user.setdefault(g.user_id, []).append((g.name, g.permissions))
        result = []
        for r in rows:
            held = sorted(by_user.get(r.id, []))
            perms = frozenset(Permission(p) for _, ps in held for p in ps)
            result.append(
                User(
                    r.id, r.tenant_id, r.username, r.display_name, r.email, r.is_active, r.is_system_admin,
                    [n for n, _ in held], perms, utc(r.last_login_at), utc(r.created_at), r.password_hash,
                )
            )  # fmt: skip
        return result

    async def get(self, tenant_id: int, user_id: int) -> User:
        found = await self._load(tenant_id, users.c.id == user_id)
        if not found:
            raise NotFound(f"user {user_id} not found")
        return found[0]

    async def by_username(self, tenant_id: int, username: str) -> User | None:
        found = await self._load(tenant_id, users.c.username == username)
        return found[0] if found else None

    async def all(self, tenant_id: int) -> list[User]:
        return await self._load(tenant_id, sa.true())

    async def create(
        self,
        tenant_id: int,
        username: str,
        password_hash: str,
        role_names: list[str],
        *,
        display_name: str = "",
        email: str | None = None,
        is_system_admin: bool = False,
    ) -> User:
        check_username(username)
        found = await self.roles.resolve(tenant_id, role_names)
        async with self.db.begin() as conn:
            taken = await conn.scalar(
                sa.select(users.c.id).where(users.c.tenant_id == tenant_id, users.c.username == username)
            )
            if taken:
                raise Conflict(f"user {username!r} already exists", field="username")
            user_id = await conn.scalar(
                users.insert()
                .values(
                    tenant_id=tenant_id,
                    username=username,
                    display_name=display_name or username,
                    email=email,
                    password_hash=password_hash,
                    is_system_admin=is_system_admin,
                )
                .returning(users.c.id)
            )
            await conn.execute(user_roles.insert(), [{"user_id": user_id, "role_id": r.id} for r in found])
        return await self.get(tenant_id, user_id)

    async def update(
        self,
        tenant_id: int,
        user_id: int,
        *,
        role_names: list[str] | None = None,
        display_name: str | None = None,
        email: str | None = None,
        is_active: bool | None = None,
        password_hash: str | None = None,
    ) -> User:
        await self.get(tenant_id, user_id)
        values: dict[str, Any] = {}
        for key, value in (
            ("display_name", display_name),
            ("email", email),
            ("is_active", is_active),
            ("password_hash", password_hash),
        ):
            if value is not None:
                values[key] = value
        found = await self.roles.resolve(tenant_id, role_names) if role_names is not None else None
        async with self.db.begin() as conn:
            if values:
                await conn.execute(
                    users.update().where(users.c.tenant_id == tenant_id, users.c.id == user_id).values(**values)
                )
            if found is not None:
                await conn.execute(user_roles.delete().where(user_roles.c.user_id == user_id))
                await conn.execute(user_roles.insert(), [{"user_id": user_id, "role_id": r.id} for r in found])
        return await self.get(tenant_id, user_id)

    async def delete(self, tenant_id: int, user_id: int) -> None:
        async with self.db.begin() as conn:
            result = await conn.execute(users.delete().where(users.c.tenant_id == tenant_id, users.c.id == user_id))
        if result.rowcount == 0:
            raise NotFound(f"user {user_id} not found")

    async def touch_login(self, tenant_id: int, user_id: int) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                users.update().where(users.c.tenant_id == tenant_id, users.c.id == user_id).values(last_login_at=now())
            )

    async def count_with_permission(self, tenant_id: int, permission: Permission) -> int:
        """Active users holding a permission; guards against locking a tenant out of administration."""
        return sum(1 for u in await self.all(tenant_id) if u.is_active and permission in u.permissions)
