"""The REST endpoints the console uses, typed with the wire schema where the server has one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from hmi.client.session import Session
from hmi.client.slices import Slicer, iter_json_array
from server.api.schema import (
    HistoryOut,
    NodeOut,
    NodeSearchOut,
    UserSettingKey,
    UserSettingOut,
    ValueOut,
)


def _ref(ref: str) -> str:
    """Node references go into URL paths fully encoded (docs/protocol.md §3)."""
    return quote(ref, safe="")


class Api:
    """Thin async wrappers; every method is one request, errors are ApiError/ServerUnreachable."""

    def __init__(self, session: Session) -> None:
        self.session = session

    async def _get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return (await self.session.request("GET", path, params=clean)).json()

    async def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return (await self.session.request("POST", path, json=body or {})).json()

    # -- namespace and data ---------------------------------------------------------------
    async def children(self, parent: str | None = None) -> list[NodeOut]:
        return [NodeOut.model_validate(n) for n in await self._get("/api/v1/nodes", parent=parent)]

    async def search_nodes(self, text: str, limit: int = 50) -> NodeSearchOut:
        """Nodes anywhere in the tree (browsed or not) whose name or path holds `text`."""
        return NodeSearchOut.model_validate(await self._get("/api/v1/nodes/search", q=text, limit=limit))

    async def node(self, ref: str) -> NodeOut:
        return NodeOut.model_validate(await self._get(f"/api/v1/nodes/{_ref(ref)}"))

    async def values(self, nodes: list[str]) -> list[ValueOut]:
        if not nodes:
            return []
        response = await self.session.request("GET", "/api/v1/values", params=[("node", n) for n in nodes])
        return [ValueOut.model_validate(v) for v in response.json()]

    async def history(self, node: str, start: float, end: float, max_points: int = 2000) -> HistoryOut:
        """Raw when the range holds few samples, else min/max/avg buckets (decimated on the server)."""
        body = await self._get("/api/v1/history", node=node, start=start, end=end, max_points=max_points)
        return HistoryOut.model_validate(body)

    async def command(self, device: str, command: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"command": command, "args": args or {}}
        result: dict[str, Any] = await self._post(f"/api/v1/devices/{_ref(device)}/commands", body)
        return result

    # -- alarms ---------------------------------------------------------------------------
    async def alarms(self, states: list[str] | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._get("/api/v1/alarms", state=states)
        return result

    async def _items(self, path: str, slicer: Slicer, **params: Any) -> AsyncIterator[Any]:
        """A JSON array answer decoded element by element in short slices (`slicer`): 10,000 alarms
        are 8 MB of JSON, about 60 ms of `json.loads` in one piece (docs/hmi.md, Alarms)."""
        clean = {k: v for k, v in params.items() if v is not None}
        text = (await self.session.request("GET", path, params=clean)).text
        await slicer.tick()
        async for item in iter_json_array(text, slicer):
            yield item

    def alarm_items(self, slicer: Slicer, states: list[str] | None = None) -> AsyncIterator[dict[str, Any]]:
        """`GET /alarms`, alarm by alarm."""
        return self._items("/api/v1/alarms", slicer, state=states)

    def condition_items(self, slicer: Slicer) -> AsyncIterator[dict[str, Any]]:
        """`GET /alarms/conditions`, condition by condition."""
        return self._items("/api/v1/alarms/conditions", slicer)

    async def acknowledge(self, ids: list[int] | None, comment: str | None = None) -> int:
        """`ids=None` acknowledges every visible unacknowledged alarm; returns how many were."""
        body: dict[str, Any] = {"comment": comment or None}
        if ids is not None:
            body["ids"] = ids
        return int((await self._post("/api/v1/alarms/acknowledge", body))["acknowledged"])

    async def shelve(self, alarm_id: int, reason: str, duration_s: float | None) -> dict[str, Any]:
        result: dict[str, Any] = await self._post(
            f"/api/v1/alarms/{alarm_id}/shelve", {"reason": reason, "duration_s": duration_s}
        )
        return result

    async def unshelve(self, alarm_id: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._post(f"/api/v1/alarms/{alarm_id}/unshelve")
        return result

    async def journal(self, start: float, end: float, **filters: Any) -> list[dict[str, Any]]:
        body = await self._get("/api/v1/alarms/journal", start=start, end=end, **filters)
        entries: list[dict[str, Any]] = body["entries"]
        return entries

    async def kpis(self, start: float, end: float) -> dict[str, Any]:
        result: dict[str, Any] = await self._get("/api/v1/alarms/kpis", start=start, end=end)
        return result

    async def conditions(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._get("/api/v1/alarms/conditions")
        return result

    # -- the user's own settings (saved trend sets) ----------------------------------------
    @staticmethod
    def _setting(key: str) -> str:
        return f"/api/v1/me/settings/{_ref(key)}"

    async def setting_keys(self, prefix: str = "") -> list[UserSettingKey]:
        return [UserSettingKey.model_validate(k) for k in await self._get("/api/v1/me/settings", prefix=prefix)]

    async def setting(self, key: str) -> UserSettingOut:
        return UserSettingOut.model_validate(await self._get(self._setting(key)))

    async def put_setting(self, key: str, value: Any, *, overwrite: bool = True) -> UserSettingOut:
        """ApiError 409 when the key exists and `overwrite` is False; 413 above 64 KiB."""
        params = {"overwrite": "true" if overwrite else "false"}
        response = await self.session.request("PUT", self._setting(key), params=params, json={"value": value})
        return UserSettingOut.model_validate(response.json())

    async def rename_setting(self, key: str, to: str, *, overwrite: bool = False) -> UserSettingOut:
        body = await self._post(self._setting(key) + "/rename", {"to": to, "overwrite": overwrite})
        return UserSettingOut.model_validate(body)

    async def delete_setting(self, key: str) -> None:
        await self.session.request("DELETE", self._setting(key))
