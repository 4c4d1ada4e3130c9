"""What an engineer configures: a condition's kind, its inputs and how it alarms.

Stored as JSON with the condition (`alarm_conditions.spec`) and validated here on every write,
so the engine only ever sees specs that make sense (a Lo above a Hi is refused, not ignored).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from server.domain.alarms import Priority
from server.domain.commands import COMMAND_PATTERN

Comparator = Literal[">", ">=", "<", "<=", "==", "!="]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Window(_Strict):
    """A weekly window (days + HH:MM start and end in a time zone; an end before the start
    runs past midnight) or an absolute one (`from_ts`/`to_ts`, epoch seconds)."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    start: str | None = Field(None, description="HH:MM")
    end: str | None = Field(None, description="HH:MM")
    tz: str = "UTC"
    from_ts: float | None = None
    to_ts: float | None = None

    @model_validator(mode="after")
    def _shape(self) -> Window:
        weekly = self.start is not None or self.end is not None or self.days is not None
        absolute = self.from_ts is not None or self.to_ts is not None
        if weekly == absolute:
            raise ValueError("a window is either weekly (days, start, end) or absolute (from_ts, to_ts)")
        if weekly:
            if self.start is None or self.end is None or not _HHMM.match(self.start) or not _HHMM.match(self.end):
                raise ValueError("a weekly window needs start and end as HH:MM")
            try:
                ZoneInfo(self.tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {self.tz!r}") from None
        elif self.from_ts is None or self.to_ts is None or self.to_ts <= self.from_ts:
            raise ValueError("an absolute window needs from_ts < to_ts")
        return self

    def contains(self, ts: float) -> bool:
        if self.from_ts is not None and self.to_ts is not None:
            return self.from_ts <= ts < self.to_ts
        local = datetime.fromtimestamp(ts, ZoneInfo(self.tz))
        start, end = _parse(self.start), _parse(self.end)
        days = set(self.days or DAYS)
        now = local.time()
        if start <= end:
            return DAYS[local.weekday()] in days and start <= now < end
        # past midnight: the part after midnight belongs to the previous day's window
        if now >= start:
            return DAYS[local.weekday()] in days
        return now < end and DAYS[(local.weekday() - 1) % 7] in days

    def next_edge(self, ts: float) -> float | None:
        """The next time after ts at which `contains` may change (a timer for the engine)."""
        if self.from_ts is not None and self.to_ts is not None:
            edges = [e for e in (self.from_ts, self.to_ts) if e > ts]
            return min(edges) if edges else None
        zone = ZoneInfo(self.tz)
        local = datetime.fromtimestamp(ts, zone)
        best: float | None = None
        for offset in range(8):
            day = (local + timedelta(days=offset)).date()
            for hhmm in (self.start, self.end):
                edge = datetime.combine(day, _parse(hhmm), zone).timestamp()
                if edge > ts and (best is None or edge < best):
                    best = edge
            if best is not None:
                return best
        return best


def _parse(hhmm: str | None) -> time:
    assert hhmm is not None
    h, m = hhmm.split(":")
    return time(int(h), int(m))


class SuppressWhen(_Strict):
    """Suppression by design: e.g. `{"tag": "Pump7/Running", "op": "==", "value": 0}`."""

    tag: str
    op: Comparator = "=="
    value: float


class CommandAction(_Strict):
    """Not an alarm but a rule on the same condition: "publish a command when X". Runs once per
    transition of the alarm (`on`), as `system` on the condition's behalf, through the same
    audited path as a person's command."""

    on: Literal["activated", "cleared", "acknowledged"]
    kind: Literal["command"]
    device: str = Field(min_length=1, max_length=2000, description="node id or path of a device of this tenant")
    command: str = Field(min_length=1, max_length=100, pattern=COMMAND_PATTERN, description="e.g. 'stop'")
    args: dict[str, Any] = Field(default_factory=dict, description="any JSON object; passed to the device as is")
    expires_in_s: int = Field(60, ge=1, le=86_400, description="not delivered by then: dropped, never late")

    @field_validator("args")
    @classmethod
    def _small(cls, v: dict[str, Any]) -> dict[str, Any]:
        """Stored with every version of the condition and in every audit record: kept small."""
        if len(json.dumps(v, default=str)) > 16_384:
            raise ValueError("args: at most 16 KB of JSON")
        return v


class _Base(_Strict):
    on_delay_s: float = Field(0.0, ge=0, le=3600, description="must hold this long before it alarms")
    off_delay_s: float = Field(0.0, ge=0, le=3600, description="must be clear this long before it clears")


class Limit(_Base):
    kind: Literal["limit"] = "limit"
    tag: str
    hihi: float | None = None
    hi: float | None = None
    lo: float | None = None
    lolo: float | None = None
    deadband: float = Field(0.0, ge=0, description="the value must come back this far inside the limit to clear")

    @model_validator(mode="after")
    def _order(self) -> Limit:
        given = [(n, v) for n, v in (("lolo", self.lolo), ("lo", self.lo), ("hi", self.hi), ("hihi", self.hihi))
                 if v is not None]  # fmt: skip
        if not given:
            raise ValueError("a limit condition needs at least one of hihi, hi, lo, lolo")
        values = [v for _, v in given]
        if values != sorted(values) or len(set(values)) != len(values):
            raise ValueError("limits must rise strictly: lolo < lo < hi < hihi")
        return self


class Deviation(_Base):
    kind: Literal["deviation"] = "deviation"
    tag: str
    setpoint_tag: str
    limit: float = Field(gt=0, description="alarm when |value − setpoint| exceeds this")
    deadband: float = Field(0.0, ge=0)


class Comparison(_Base):
    kind: Literal["comparison"] = "comparison"
    tag: str
    op: Comparator
    other_tag: str | None = None
    value: float | None = None
    deadband: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _one_side(self) -> Comparison:
        if (self.other_tag is None) == (self.value is None):
            raise ValueError("compare the tag with either other_tag or a constant value")
        return self


class RateOfChange(_Base):
    kind: Literal["rate_of_change"] = "rate_of_change"
    tag: str
    limit_per_min: float = Field(gt=0, description="alarm when the value changes faster than this per minute")


class Statistical(_Base):
    kind: Literal["statistical"] = "statistical"
    tag: str
    stat: Literal["mean", "min", "max", "stddev"]
    window_s: float = Field(gt=0, le=86_400)
    op: Comparator
    threshold: float
    min_samples: int = Field(2, ge=1)


class Discrete(_Base):
    kind: Literal["discrete"] = "discrete"
    tag: str
    alarm_value: float = Field(1.0, description="the state that alarms, e.g. 1 = tripped")


class Stale(_Base):
    kind: Literal["stale"] = "stale"
    tag: str
    timeout_s: float = Field(gt=0, le=86_400, description="alarm when no sample arrived for this long")


class Anomaly(_Base):
    kind: Literal["anomaly"] = "anomaly"
    device: str
    threshold: float = Field(description="alarm when the anomaly score is above this")
    deadband: float = Field(0.0, ge=0)


Spec = Annotated[
    Limit | Deviation | Comparison | RateOfChange | Statistical | Discrete | Stale | Anomaly,
    Field(discriminator="kind"),
]


class ConditionConfig(_Strict):
    """A condition as the API takes it (the id, version and tenant come from the server)."""

    name: str = Field(min_length=1, max_length=200)
    spec: Spec
    priority: Priority = Priority.MEDIUM
    priorities: dict[Literal["hihi", "hi", "lo", "lolo"], Priority] = Field(
        default_factory=dict, description="limit alarms: a priority per level (default: HiHi/LoLo one above)"
    )
    message: str = Field(
        "{name}: {value} ({level} limit {limit})", max_length=500,
        description="placeholders {name} {path} {value} {limit} {level} {unit}",
    )  # fmt: skip
    latch: bool = False
    max_shelve_s: float = Field(8 * 3600, gt=0, le=30 * 86_400)
    group: str | None = Field(None, max_length=200, description="first-out group")
    schedule: list[Window] = Field(default_factory=list, description="evaluated only inside these windows")
    maintenance: list[Window] = Field(default_factory=list, description="suppressed inside these windows")
    suppress_when: SuppressWhen | None = None
    suppress_when_offline: bool = True
    notify: list[str] = Field(default_factory=list, description="notification routes (channel or policy names)")
    actions: list[CommandAction] = Field(
        default_factory=list, max_length=10, description="commands sent as the alarm activates, clears or is acked"
    )
    enabled: bool = True

    @field_validator("message")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            v.format(name="", path="", value="", limit="", level="", unit="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"bad message template: {exc}") from None
        return v

    def inputs(self) -> list[str]:
        """Every node reference the condition reads (tags, and the device of an anomaly)."""
        s = self.spec
        refs: list[str] = []
        if isinstance(s, Anomaly):
            refs.append(s.device)
        else:
            refs.append(s.tag)
        if isinstance(s, Deviation):
            refs.append(s.setpoint_tag)
        if isinstance(s, Comparison) and s.other_tag:
            refs.append(s.other_tag)
        if self.suppress_when is not None:
            refs.append(self.suppress_when.tag)
        return refs

    def priority_for(self, level: str | None) -> Priority:
        if level is None:
            return self.priority
        if level in self.priorities:
            return self.priorities[level]
        if level in ("hihi", "lolo"):
            order = list(Priority)
            return order[max(0, order.index(self.priority) - 1)]
        return self.priority
