"""The analytics and anomaly-detection endpoints (`/api/v1/analytics/*`, `/api/v1/anomaly/*`),
typed with the wire schema. A module of its own beside `rest.Api`: it wraps the same session."""

from __future__ import annotations

from typing import Any, Literal

from hmi.client.session import Session
from server.api.schema import (
    AnomalyBandsOut,
    AnomalyModelOut,
    AnomalyMonitoringOut,
    AnomalyWindowsOut,
    CorrelationOut,
    ForecastOut,
    NodeOut,
    NodeSearchOut,
    StatisticsOut,
    TrendOut,
)

ForecastMethod = Literal["auto", "linear", "holt_winters"]
MODELS = "/api/v1/anomaly/models"


class AnalyticsApi:
    """One request per method; errors are ApiError (problem documents) or ServerUnreachable."""

    def __init__(self, session: Session) -> None:
        self.session = session

    async def _get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return (await self.session.request("GET", path, params=clean)).json()

    # -- analytics of a tag over a range ----------------------------------------------------
    async def statistics(self, node: str, start: float, end: float) -> StatisticsOut:
        body = await self._get("/api/v1/analytics/statistics", node=node, start=start, end=end)
        return StatisticsOut.model_validate(body)

    async def trend(self, node: str, start: float, end: float) -> TrendOut:
        return TrendOut.model_validate(await self._get("/api/v1/analytics/trend", node=node, start=start, end=end))

    async def correlation(self, node: str, other: str, start: float, end: float) -> CorrelationOut:
        body = await self._get("/api/v1/analytics/correlation", node=node, other=other, start=start, end=end)
        return CorrelationOut.model_validate(body)

    async def forecast(
        self, node: str, start: float, end: float, horizon: int = 10, confidence: float = 95.0,
        method: ForecastMethod = "auto",
    ) -> ForecastOut:  # fmt: skip
        body = await self._get("/api/v1/analytics/forecast", node=node, start=start, end=end, horizon=horizon,
                               confidence=confidence, method=method)  # fmt: skip
        return ForecastOut.model_validate(body)

    # -- tags to correlate with ---------------------------------------------------------------
    async def search_tags(self, text: str, limit: int = 50) -> NodeSearchOut:
        body = await self._get("/api/v1/nodes/search", q=text, limit=limit, node_class="tag")
        return NodeSearchOut.model_validate(body)

    async def children(self, parent: str) -> list[NodeOut]:
        return [NodeOut.model_validate(n) for n in await self._get("/api/v1/nodes", parent=parent)]

    # -- anomaly models -------------------------------------------------------------------------
    async def models(self, device: str | None = None) -> list[AnomalyModelOut]:
        return [AnomalyModelOut.model_validate(m) for m in await self._get(MODELS, device=device)]

    async def model(self, model_id: int) -> AnomalyModelOut:
        return AnomalyModelOut.model_validate(await self._get(f"{MODELS}/{model_id}"))

    async def train(
        self, device: str, start: float, end: float, *, contamination: float, window_s: int, step_s: int = 10,
        **extra: Any,
    ) -> AnomalyModelOut:  # fmt: skip
        """A new version of the device's model, queued: poll `model(id)` for progress (202)."""
        body = {"device": device, "start": start, "end": end, "contamination": contamination,
                "window_s": window_s, "step_s": step_s} | extra  # fmt: skip
        response = await self.session.request("POST", MODELS, json=body)
        return AnomalyModelOut.model_validate(response.json())

    async def delete_model(self, model_id: int) -> None:
        await self.session.request("DELETE", f"{MODELS}/{model_id}")

    async def monitoring(self, model_id: int, start: float, end: float, bucket_s: float) -> AnomalyMonitoringOut:
        body = await self._get(f"{MODELS}/{model_id}/monitoring", start=start, end=end, bucket_s=bucket_s)
        return AnomalyMonitoringOut.model_validate(body)

    async def predictions(self, device: str, start: float, end: float) -> AnomalyWindowsOut:
        body = await self._get("/api/v1/anomaly/predictions", device=device, start=start, end=end)
        return AnomalyWindowsOut.model_validate(body)

    async def bands(self, node: str, start: float, end: float, max_points: int = 2000) -> AnomalyBandsOut:
        body = await self._get("/api/v1/anomaly/bands", node=node, start=start, end=end, max_points=max_points)
        return AnomalyBandsOut.model_validate(body)
