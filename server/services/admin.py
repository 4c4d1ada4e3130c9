"""Tenants, users and roles, with the invariants an administrator relies on."""

from __future__ import annotations

from typing import Any

from server.domain.errors import Conflict, Forbidden, InvalidInput
from server.domain.permissions import Permission, parse_permissions
from server.domain.principal import Principal
from server.security.passwords import hash_password
from server.services.auth import AuthService
from server.storage.repositories.audit import AuditRepository
from server.storage.repositories.credentials import ApiKeyRepository, RefreshTokenRepository
from server.storage.repositories.tenants import Tenant, TenantRepository, check_tenant_name
from server.storage.repositories.users import Role, RoleRepository, User, UserRepository, check_username


class AdminService:
    def __init__(
        self,
        tenants: TenantRepository,
        users: UserRepository,
        roles: RoleRepository,
        refresh_tokens: RefreshTokenRepository,
        audit: AuditRepository,
        auth: AuthService,
        api_keys: ApiKeyRepository,
        bcrypt_rounds: int = 12,
    ) -> None:
        self.tenants, self.users, self.roles, self.api_keys = tenants, users, roles, api_keys
        self.refresh_tokens, self.audit, self.auth = refresh_tokens, audit, auth
        self.bcrypt_rounds = bcrypt_rounds

    # -- tenants (system administrators only) -----------------------------------------
    @staticmethod
    def _system(who: Principal) -> None:
        if not who.is_system_admin:
            raise Forbidden("only a system administrator manages tenants")

    async def create_tenant(
        self, who: Principal | None, name: str, display_name: str | None, admin_username: str, admin_password: str
    ) -> tuple[Tenant, User]:
        """A tenant always starts with an administrator, so it is never unmanageable."""
        if who is not None:
            self._system(who)
        # Validate everything first: a tenant without its administrator must never be left behind.
        check_tenant_name(name)
        check_username(admin_username, field="admin_username")
        try:
            password_hash = await hash_password(admin_password, self.bcrypt_rounds)
        except InvalidInput as exc:
            raise InvalidInput(exc.detail, field="admin_password") from None
        tenant = await self.tenants.create(name, display_name)
        try:
            admin = await self.users.create(
                tenant.id, admin_username, password_hash, ["admin"], is_system_admin=who is None
            )
        except BaseException:
            await self.tenants.delete(tenant.id)
            raise
        actor = who.subject if who else "system"
        await self.audit.record(who.tenant_id if who else tenant.id, actor, "tenant.create", name)
        await self.audit.record(tenant.id, actor, "user.create", admin_username, detail={"roles": ["admin"]})
        return tenant, admin

    async def list_tenants(self, who: Principal) -> list[Tenant]:
        self._system(who)
        return await self.tenants.all()

    async def update_tenant(self, who: Principal, tenant_id: int, **changes: Any) -> Tenant:
        self._system(who)
        if changes.get("is_active") is False and tenant_id == who.tenant_id:
            raise Conflict("you cannot disable your own tenant")
        tenant = await self.tenants.update(tenant_id, **changes)
        await self.audit.record(who.tenant_id, who.subject, "tenant.update", tenant.name, detail=_clean(changes))
        self.auth.forget(tenant_id)
        return tenant

    async def tenant_settings(self, who: Principal) -> dict[str, Any]:
        who.require(Permission.NAMESPACE_READ)
        return (await self.tenants.get(who.tenant_id)).settings

    async def update_settings(self, who: Principal, settings: dict[str, Any]) -> dict[str, Any]:
        who.require(Permission.TENANT_SETTINGS)
        tenant = await self.tenants.update(who.tenant_id, settings=settings)
        await self.audit.record(who.tenant_id, who.subject, "tenant.settings", tenant.name, detail=settings)
        return tenant.settings

    # -- users ------------------------------------------------------------------------
    async def list_users(self, who: Principal) -> list[User]:
        who.require(Permission.USERS_MANAGE)
        return await self.users.all(who.tenant_id)

    async def get_user(self, who: Principal, user_id: int) -> User:
        if who.user_id != user_id:
            who.require(Permission.USERS_MANAGE)
        return await self.users.get(who.tenant_id, user_id)

    async def create_user(
        self, who: Principal, username: str, password: str, roles: list[str], display_name: str, email: str | None
    ) -> User:
        who.require(Permission.USERS_MANAGE)
        await self._grantable(who, roles)
        password_hash = await hash_password(password, self.bcrypt_rounds)
        user = await self.users.create(
            who.tenant_id, username, password_hash, roles, display_name=display_name, email=email
        )
        await self.audit.record(who.tenant_id, who.subject, "user.create", username, detail={"roles": roles})
        return user

    async def update_user(self, who: Principal, user_id: int, changes: dict[str, Any]) -> User:
        own = who.user_id == user_id
        admin_fields = {"roles", "is_active"} & {k for k, v in changes.items() if v is not None}
        if not own or admin_fields:
            who.require(Permission.USERS_MANAGE)
        target = await self.users.get(who.tenant_id, user_id)
        self._guard_system_admin(who, target)
        if changes.get("roles") is not None:
            await self._grantable(who, changes["roles"])
        password_hash = None
        if changes.get("password"):
            password_hash = await hash_password(changes["password"], self.bcrypt_rounds)
        if target.is_active and Permission.USERS_MANAGE in target.permissions:
            losing = changes.get("is_active") is False
            if changes.get("roles") is not None:
                kept = await self.roles.resolve(who.tenant_id, changes["roles"])
                losing |= not any(Permission.USERS_MANAGE in r.permissions for r in kept)
            if losing and await self.users.count_with_permission(who.tenant_id, Permission.USERS_MANAGE) <= 1:
                raise Conflict("this is the tenant's last user administrator")
        user = await self.users.update(
            who.tenant_id, user_id, role_names=changes.get("roles"), display_name=changes.get("display_name"),
            email=changes.get("email"), is_active=changes.get("is_active"), password_hash=password_hash,
        )  # fmt: skip
        if password_hash or changes.get("is_active") is False:
            await self.refresh_tokens.revoke_user(who.tenant_id, user_id)
        detail = {k: v for k, v in changes.items() if k != "password" and v is not None}
        if password_hash:
            detail["password"] = "changed"
        await self.audit.record(who.tenant_id, who.subject, "user.update", target.username, detail=detail)
        self.auth.forget(who.tenant_id)
        return user

    async def delete_user(self, who: Principal, user_id: int) -> None:
        who.require(Permission.USERS_MANAGE)
        target = await self.users.get(who.tenant_id, user_id)
        self._guard_system_admin(who, target)
        if target.id == who.user_id:
            raise Conflict("you cannot delete yourself")
        if (
            target.is_active
            and Permission.USERS_MANAGE in target.permissions
            and (await self.users.count_with_permission(who.tenant_id, Permission.USERS_MANAGE) <= 1)
        ):
            raise Conflict("this is the tenant's last user administrator")
        await self.users.delete(who.tenant_id, user_id)
        await self.audit.record(who.tenant_id, who.subject, "user.delete", target.username)
        self.auth.forget(who.tenant_id)

    @staticmethod
    def _guard_system_admin(who: Principal, target: User) -> None:
        """Nobody changes a user more powerful than themselves (password resets would be a takeover)."""
        if target.id == who.user_id:
            return
        if target.is_system_admin and not who.is_system_admin:
            raise Forbidden("only a system administrator may change a system administrator")
        stronger = sorted(p.value for p in target.permissions - who.permissions)
        if stronger:
            raise Forbidden(f"{target.username!r} holds permissions you do not: {', '.join(stronger)}")

    async def _grantable(self, who: Principal, role_names: list[str]) -> None:
        """Nobody hands out permissions they do not hold themselves."""
        granted = frozenset(p for r in await self.roles.resolve(who.tenant_id, role_names) for p in r.permissions)
        if not granted <= who.permissions:
            extra = sorted(p.value for p in granted - who.permissions)
            raise Forbidden(f"you cannot grant permissions you do not hold: {', '.join(extra)}")

    # -- roles ------------------------------------------------------------------------
    async def list_roles(self, who: Principal) -> list[Role]:
        who.require(Permission.NAMESPACE_READ)
        return await self.roles.all(who.tenant_id)

    async def create_role(self, who: Principal, name: str, permissions: list[str], description: str) -> Role:
        who.require(Permission.ROLES_MANAGE)
        _within(who, permissions)
        role = await self.roles.create(who.tenant_id, name, permissions, description)
        await self.audit.record(who.tenant_id, who.subject, "role.create", name, detail={"permissions": permissions})
        return role

    async def update_role(
        self, who: Principal, name: str, permissions: list[str] | None, description: str | None
    ) -> Role:
        who.require(Permission.ROLES_MANAGE)
        before = await self.roles.get(who.tenant_id, name)
        if permissions is not None:
            _within(who, permissions)
        role = await self.roles.update(who.tenant_id, name, permissions=permissions, description=description)
        if (
            Permission.USERS_MANAGE in before.permissions
            and Permission.USERS_MANAGE not in role.permissions
            and await self.users.count_with_permission(who.tenant_id, Permission.USERS_MANAGE) == 0
        ):
            await self.roles.update(
                who.tenant_id, name, permissions=sorted(before.permissions), description=before.description
            )
            raise Conflict("this change would leave the tenant without a user administrator")
        await self.audit.record(who.tenant_id, who.subject, "role.update", name, detail={"permissions": permissions})
        self.auth.forget(who.tenant_id)
        return role

    async def delete_role(self, who: Principal, name: str) -> None:
        who.require(Permission.ROLES_MANAGE)
        holders = [k.name for k in await self.api_keys.all(who.tenant_id) if not k.revoked and name in k.roles]
        if holders:
            raise Conflict(f"role {name!r} is held by API key(s) {', '.join(holders)}; revoke them first")
        await self.roles.delete(who.tenant_id, name)
        await self.audit.record(who.tenant_id, who.subject, "role.delete", name)
        self.auth.forget(who.tenant_id)


def _within(who: Principal, permissions: list[str]) -> None:
    """A role can't be given more than its author holds: roles.manage is not a master key."""
    extra = sorted(p.value for p in parse_permissions(permissions) - who.permissions)
    if extra:
        raise Forbidden(f"you cannot put permissions you do not hold into a role: {', '.join(extra)}")


def _clean(changes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in changes.items() if v is not None}
