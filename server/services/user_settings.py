"""The caller's own settings documents (`/me/settings`): keys checked, values size-limited, and
always the caller's own — the tenant and the user come from the token, never from the request."""

from __future__ import annotations

import json
import re
from typing import Any

from server.domain.errors import Forbidden, InvalidInput, PayloadTooLarge
from server.domain.principal import Principal
from server.storage.repositories.user_settings import UserSetting, UserSettingsRepository

MAX_KEY_CHARS = 200
MAX_VALUE_BYTES = 64 * 1024
"""A saved trend set of 32 pens is about 5 KB."""
MAX_KEYS_PER_USER = 500
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def check_key(key: str, field: str = "key") -> str:
    """1–200 characters, no control characters, `/`-separated segments that are not empty,
    not `.` or `..`, and not padded with spaces (e.g. `trendset/Pump 7 start-up`)."""
    if not key or len(key) > MAX_KEY_CHARS:
        raise InvalidInput(f"a key is 1–{MAX_KEY_CHARS} characters", field=field)
    if _FORBIDDEN_CHARS.search(key):
        raise InvalidInput("a key holds no control characters", field=field)
    for segment in key.split("/"):
        if not segment or segment in (".", "..") or segment != segment.strip():
            raise InvalidInput(
                "a key is made of '/'-separated names, none empty, '.', '..' or padded with spaces", field=field
            )
    return key


def value_size(value: Any) -> int:
    """The stored size: compact JSON in UTF-8."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


class UserSettingsService:
    def __init__(self, repo: UserSettingsRepository) -> None:
        self.repo = repo

    @staticmethod
    def _owner(who: Principal) -> tuple[int, int]:
        if who.kind != "user" or who.user_id is None:
            raise Forbidden("settings belong to users; an API key has none")
        return who.tenant_id, who.user_id

    async def keys(self, who: Principal, prefix: str = "") -> list[UserSetting]:
        tenant_id, user_id = self._owner(who)
        return await self.repo.keys(tenant_id, user_id, prefix, limit=MAX_KEYS_PER_USER)

    async def get(self, who: Principal, key: str) -> UserSetting:
        tenant_id, user_id = self._owner(who)
        return await self.repo.get(tenant_id, user_id, check_key(key))

    async def put(self, who: Principal, key: str, value: Any, *, overwrite: bool = True) -> UserSetting:
        """Store `value` under `key`; 413 above 64 KiB, 409 for an existing key without `overwrite`."""
        tenant_id, user_id = self._owner(who)
        check_key(key)
        size = value_size(value)
        if size > MAX_VALUE_BYTES:
            raise PayloadTooLarge(f"a setting's value is at most {MAX_VALUE_BYTES} bytes as JSON, not {size}",
                                  field="value")  # fmt: skip
        if not await self.repo.exists(tenant_id, user_id, key) and (
            await self.repo.count(tenant_id, user_id) >= MAX_KEYS_PER_USER
        ):
            raise InvalidInput(f"a user keeps at most {MAX_KEYS_PER_USER} settings; delete some first", field="key")
        return await self.repo.put(tenant_id, user_id, key, value, overwrite=overwrite)

    async def rename(self, who: Principal, key: str, new_key: str, *, overwrite: bool = False) -> UserSetting:
        tenant_id, user_id = self._owner(who)
        check_key(key)
        check_key(new_key, "to")
        if new_key != key:
            await self.repo.rename(tenant_id, user_id, key, new_key, overwrite=overwrite)
        return await self.repo.get(tenant_id, user_id, new_key)

    async def delete(self, who: Principal, key: str) -> None:
        tenant_id, user_id = self._owner(who)
        await self.repo.delete(tenant_id, user_id, check_key(key))
