"""The wire contract: request and response bodies. The console imports this module only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

FiniteNumber = Annotated[StrictFloat, Field(allow_inf_nan=False)] | StrictInt | StrictBool


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """RFC 7807 problem document; `field` names the input at fault."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


# -- auth -------------------------------------------------------------------------------
class LoginRequest(Body):
    tenant: str = Field(min_length=1, max_length=64)
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)


class RefreshRequest(Body):
    refresh_token: str = Field(min_length=1, max_length=200)


class LogoutRequest(Body):
    refresh_token: str | None = Field(None, max_length=200)


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class Me(BaseModel):
    tenant: str
    tenant_id: int
    username: str
    user_id: int | None
    roles: list[str]
    permissions: list[str]
    is_system_admin: bool
    kind: str


# -- administration -----------------------------------------------------------------------
class TenantCreate(Body):
    name: str = Field(min_length=1, max_length=64)
    display_name: str | None = Field(None, max_length=200)
    admin_username: str = Field(min_length=1, max_length=64)
    admin_password: str = Field(min_length=1, max_length=200)


class TenantUpdate(Body):
    display_name: str | None = Field(None, max_length=200)
    is_active: bool | None = None


class TenantOut(BaseModel):
    id: int
    name: str
    display_name: str
    is_active: bool
    settings: dict[str, Any]
    created_at: datetime | None


class TenantSettings(Body):
    unknown_tags: Literal["create", "reject"] | None = None


class UserCreate(Body):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)
    roles: list[str] = Field(min_length=1)
    display_name: str = Field("", max_length=200)
    email: str | None = Field(None, max_length=320)


class UserUpdate(Body):
    password: str | None = Field(None, min_length=1, max_length=200)
    roles: list[str] | None = None
    display_name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=320)
    is_active: bool | None = None


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    email: str | None
    is_active: bool
    roles: list[str]
    permissions: list[str]
    last_login_at: datetime | None
    created_at: datetime | None


class RoleCreate(Body):
    name: str = Field(min_length=1, max_length=64)
    permissions: list[str]
    description: str = Field("", max_length=500)


class RoleUpdate(Body):
    permissions: list[str] | None = None
    description: str | None = Field(None, max_length=500)


class RoleOut(BaseModel):
    name: str
    description: str
    permissions: list[str]
    builtin: bool


class ApiKeyCreate(Body):
    name: str = Field(min_length=1, max_length=100)
    roles: list[str] = Field(min_length=1)
    expires_at: datetime | None = None


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    roles: list[str]
    created_by: str
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked: bool
    created_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="shown once; store it now")


class AuditOut(BaseModel):
    id: int
    ts: datetime
    actor: str
    action: str
    target: str
    success: bool
    address: str | None
    detail: dict[str, Any]


# -- namespace ------------------------------------------------------------------------------
NodeClassName = Literal["folder", "device", "tag"]
DataTypeName = Literal["Double", "Float", "Int32", "Int64", "UInt16", "Boolean"]


class NodeCreate(Body):
    parent: str | None = Field(None, description="node id or path of the parent; empty for the root")
    node_class: NodeClassName
    browse_name: str = Field(min_length=1, max_length=100)
    display_name: str | None = Field(None, max_length=200)
    description: str = Field("", max_length=2000)
    data_type: DataTypeName | None = None
    unit: str | None = Field(None, max_length=32)
    range_low: Annotated[float, Field(allow_inf_nan=False)] | None = None
    range_high: Annotated[float, Field(allow_inf_nan=False)] | None = None


class NodeUpdate(Body):
    browse_name: str | None = Field(None, min_length=1, max_length=100)
    display_name: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=2000)
    data_type: DataTypeName | None = None
    unit: str | None = Field(None, max_length=32)
    range_low: Annotated[float, Field(allow_inf_nan=False)] | None = None
    range_high: Annotated[float, Field(allow_inf_nan=False)] | None = None


class NodeMove(Body):
    parent: str | None = Field(None, description="new parent (node id or path); null for the root")


class DeviceStatusUpdate(Body):
    status: Literal["unknown", "online", "offline", "maintenance"]


class NodeOut(BaseModel):
    node_id: str
    path: str
    parent_path: str | None = Field(description="path of the parent node; null at the root")
    node_class: NodeClassName
    browse_name: str
    display_name: str
    description: str
    data_type: str | None
    unit: str | None
    range_low: float | None
    range_high: float | None
    status: str | None
    has_children: bool


class NodeSearchOut(BaseModel):
    """`GET /nodes/search`: matches by path; `truncated` when more matched than `limit`."""

    query: str
    nodes: list[NodeOut]
    truncated: bool


# -- telemetry, values, history ---------------------------------------------------------------
class TelemetryItem(Body):
    device: str = Field(min_length=1, max_length=2000, description="node id or path of the device")
    ts: datetime | None = Field(None, description="ISO 8601; a time without zone is UTC; default: arrival")
    values: dict[str, FiniteNumber] = Field(min_length=1)
    quality: Literal["Good", "Uncertain", "Bad", "good", "uncertain", "bad"] = "Good"


class TelemetryAccepted(BaseModel):
    accepted: int
    created_tags: list[str]


class ValueOut(BaseModel):
    node_id: str
    path: str
    unit: str | None
    ts: float | None = Field(description="epoch seconds (UTC)")
    time: str | None
    value: float | None
    quality: str | None


class HistoryOut(BaseModel):
    """Columnar: one array per field, `t` in epoch seconds; raw has value/quality, decimated min/max/avg."""

    node_id: str
    path: str
    unit: str | None
    start: float
    end: float
    mode: Literal["raw", "decimated"]
    resolution_s: float | None
    count: int
    t: list[float]
    value: list[float] | None = None
    quality: list[int] | None = None
    min: list[float] | None = None
    max: list[float] | None = None
    avg: list[float] | None = None
    first: list[float] | None = None
    last: list[float] | None = None
    samples: list[int] | None = None


class StatusOut(BaseModel):
    tenant: str
    folders: int
    devices: int
    tags: int
    devices_by_status: dict[str, int]
    samples_written: int
    historian_commits: int
    historian_queue: int
    stream_clients: int
    uptime_s: float


# -- the caller's own settings (/me/settings) ------------------------------------------------
class UserSettingIn(Body):
    value: Any = Field(description="any JSON document, at most 64 KiB as compact JSON")


class UserSettingRename(Body):
    to: str = Field(min_length=1, max_length=200, description="the new key")
    overwrite: bool = Field(False, description="replace a document already stored under `to`")


class UserSettingKey(BaseModel):
    key: str
    updated_at: float = Field(description="epoch seconds (UTC)")


class UserSettingOut(UserSettingKey):
    value: Any


# -- analytics (/analytics/*) ----------------------------------------------------------------
class Bounds(BaseModel):
    """Where the exact value is guaranteed to lie when the figure is an estimate from rollups."""

    low: float
    high: float


class AnalyticsBasis(BaseModel):
    """What a figure was computed from: raw samples, or rollup buckets of `resolution_s`."""

    node_id: str
    path: str
    unit: str | None
    start: float
    end: float
    source: Literal["raw", "rollup"]
    resolution_s: float | None = Field(description="bucket width when source is rollup")
    samples: int = Field(description="samples behind the figures (Bad quality left out)")
    points: int = Field(description="what the maths ran on: samples, or buckets")
    approximate: list[str] = Field(default_factory=list, description="figures that are estimates (see `bounds`)")
    bounds: dict[str, Bounds] = Field(default_factory=dict)


class SeriesOut(BaseModel):
    """Columnar like HistoryOut; decimated points are bucket means, averaged weighted by `samples`."""

    node_id: str
    path: str
    unit: str | None
    start: float
    end: float
    mode: Literal["raw", "decimated"]
    resolution_s: float | None
    count: int
    window: int | None = Field(description="moving-average window in points (buckets when decimated)")
    window_s: float | None = Field(description="moving-average window in seconds, trailing (t - window_s, t]")
    t: list[float]
    value: list[float]
    samples: list[int] | None = None
    moving_average: list[float | None]
    rate_per_min: list[float | None]


class StatisticsOut(AnalyticsBasis):
    count: int
    mean: float
    median: float
    std: float = Field(description="sample standard deviation (n - 1)")
    variance: float
    min: float
    max: float
    range: float
    percentiles: dict[str, float] = Field(description="p25, p50, p75, p95 (linear interpolation)")
    cv: float | None = Field(description="std / mean; null when the mean is 0")
    iqr: float


class TrendOut(AnalyticsBasis):
    slope_per_s: float
    slope_per_hour: float
    r2: float
    direction: Literal["increasing", "decreasing", "stable"]
    threshold_per_hour: float = Field(description="|slope| per hour at or below which the trend is stable")
    threshold_source: Literal["given", "relative"]
    t0: float = Field(description="time of the first sample; intercept is the fitted value there")
    intercept: float
    fitted_end: float = Field(description="the fitted value at the last sample")


class CorrelationOut(BaseModel):
    node_id: str
    path: str
    other_node_id: str
    other_path: str
    start: float
    end: float
    source: Literal["raw", "rollup"]
    resolution_s: float | None
    r: float
    p_value: float = Field(description="two-sided, no-correlation null hypothesis")
    n: int = Field(description="aligned pairs the coefficient is computed on")
    strength: Literal["very weak", "weak", "moderate", "strong", "very strong"]
    direction: Literal["positive", "negative", "none"]
    step_s: float
    tolerance_s: float
    grid_points: int


class ForecastSelection(BaseModel):
    holdout: int = Field(description="steps held out to compare the methods (0: no comparison)")
    holdout_rmse: dict[str, float]
    not_applicable: dict[str, str]


class ForecastOut(AnalyticsBasis):
    method: Literal["linear", "holt_winters"]
    step_s: float
    horizon: int
    confidence: float = Field(description="percent")
    t: list[float]
    value: list[float]
    lower: list[float]
    upper: list[float]
    rmse: float = Field(description="in-sample: sqrt(SSE / n)")
    r2: float
    n: int
    params: dict[str, float]
    selection: ForecastSelection


# -- anomaly detection (server/ml; docs/anomaly.md) --------------------------------------------
class AnomalyTrain(Body):
    device: str = Field(min_length=1, max_length=2000, description="node id or path of the device")
    start: datetime = Field(description="training range: ISO 8601 or epoch seconds")
    end: datetime
    tags: list[str] | None = Field(
        None, min_length=1, max_length=500, description="browse names or node ids; default: every tag of the device"
    )
    step_s: int = Field(10, ge=10, le=3600, description="bucket width, a multiple of 10 (the finest rollup)")
    window_s: int = Field(300, ge=30, le=360 * 3600, description="rolling window, a multiple of step_s (3-360 steps)")
    contamination: float = Field(1e-4, gt=0, le=0.1, description="share of training windows above the threshold")
    n_estimators: int = Field(100, ge=10, le=500, description="trees of the IsolationForest")
    margin: float = Field(1.0, gt=0, le=100, description="envelope margin, in training extents beyond the edge")
    forest_margin: float = Field(0.25, ge=0, le=10, description="forest margin, in (threshold - median) units")
    seed: int = Field(0, ge=0, le=2**31 - 1)


class AnomalyModelOut(BaseModel):
    """A model version: `status` queued/training/ready/failed with `progress` 0-1 and `phase`."""

    id: int
    device: str
    path: str
    version: int
    status: Literal["queued", "training", "ready", "failed"]
    progress: float
    phase: str
    error: str | None
    params: dict[str, Any]
    features: dict[str, Any] = Field(description="the feature set: columns, per-tag centres and scales, envelope")
    metrics: dict[str, Any]
    train_start: float
    train_end: float
    threshold: float | None = Field(description="scores are normalised: 1.0 is the model's threshold")
    trained_by: str
    created_at: datetime | None
    finished_at: datetime | None
    artifact_sha256: str | None
    active: bool = Field(description="the version the live scorer uses for the device (newest ready)")
    live: dict[str, Any] | None = Field(description="live scoring counters of the active version")


class AnomalySample(Body):
    ts: datetime = Field(description="ISO 8601 or epoch seconds")
    values: dict[str, FiniteNumber] = Field(min_length=1, description="by tag browse name or node id")


class AnomalyScoreRequest(Body):
    """Either `samples` (scored as the live scorer would, windows after the first `window`) or a
    history range `start`/`end`."""

    samples: list[AnomalySample] | None = Field(None, min_length=1, max_length=100_000)
    start: datetime | None = None
    end: datetime | None = None


class AnomalyWindowsOut(BaseModel):
    """Columnar scores per window, `t` = end of the window's last bucket; score > 1.0 is anomalous.
    `feature`/`tag`: the pooled feature and tag that stood out most in the window."""

    model: int
    version: int
    device: str
    path: str
    step_s: float
    window_s: float
    threshold: float
    count: int
    truncated: bool
    t: list[float]
    score: list[float]
    forest: list[float]
    envelope: list[float]
    anomalous: list[bool]
    feature: list[str]
    tag: list[str]


class AnomalyRateBucket(BaseModel):
    t: float = Field(description="bucket start (a multiple of bucket_s), by window end")
    windows: int
    anomalous: int
    rate: float


class AnomalyMonitoringOut(BaseModel):
    model: int
    device: str
    path: str
    start: float
    end: float
    bucket_s: float
    windows: int
    anomalous: int
    anomaly_rate: float
    contamination: float
    series: list[AnomalyRateBucket]
    drift: dict[str, Any] = Field(description="psi and ks of the scores against training, feature_shift")
    retrain: dict[str, Any] = Field(description="recommended (bool) and the reasons")
    live: dict[str, Any] | None


class AnomalyBandsOut(BaseModel):
    """A tag's adaptive band, `t` = bucket start (as /history's decimated mode), values null
    before the first full window; `anomalies`: the device's anomalous windows in the range."""

    node_id: str
    path: str
    unit: str | None
    start: float
    end: float
    method: Literal["expected", "rolling"]
    k: float
    model: int | None
    resolution_s: float
    count: int
    t: list[float]
    center: list[float | None]
    lower: list[float | None]
    upper: list[float | None]
    anomalies: list[dict[str, Any]]
