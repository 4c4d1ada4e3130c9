"""A platform alarm as an OPC UA Part 9 condition: its type, its fields and their values (no I/O).

What it describes, for `conditions.py` (which fires the events and, when conditions are nodes,
builds them) and `condition_methods.py` (which answers the method calls):

- `ConditionInfo`, what the OPC UA server knows of one alarm condition: taken on the platform's
  loop from the alarm engine (`snapshot`), with the alarm as the API shows it (`view`).
- The type: `ExclusiveLimitAlarmType` for a limit condition, `OffNormalAlarmType` for a discrete
  one, `AlarmConditionType` for every other kind.
- `children`: the condition's fields by browse path (`ActiveState/Id`): the event fields a
  client selects and, when conditions are nodes, the instance's variables and objects.
- `field_values`: each field's value for an alarm state.
- `METHODS`: the Part 9 methods, by the standard method ids clients call with the ConditionId.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from asyncua import ua

from server.domain.namespace import NodeClass
from server.domain.permissions import Permission
from server.opcua.common import ObjectIds, std, to_datetime

if TYPE_CHECKING:
    from server.alarms.engine import Runtime
    from server.alarms.service import AlarmService

LIMIT_LEVELS = {"hihi": "HighHigh", "hi": "High", "lo": "Low", "lolo": "LowLow"}
"""Platform limit level -> Part 9 limit state (and `<state>Limit` property)."""
LIMIT_STATES = {
    "hihi": ObjectIds.ExclusiveLimitStateMachineType_HighHigh, "hi": ObjectIds.ExclusiveLimitStateMachineType_High,
    "lo": ObjectIds.ExclusiveLimitStateMachineType_Low, "lolo": ObjectIds.ExclusiveLimitStateMachineType_LowLow,
}  # fmt: skip
SHELVING_STATES = {
    "unshelved": ("Unshelved", ObjectIds.ShelvedStateMachineType_Unshelved),
    "timed": ("TimedShelved", ObjectIds.ShelvedStateMachineType_TimedShelved),
    "one_shot": ("OneShotShelved", ObjectIds.ShelvedStateMachineType_OneShotShelved),
}
CLASSES = {
    "stale": (ObjectIds.SystemConditionClassType, "System"),
    "statistical": (ObjectIds.StatisticalConditionClassType, "Statistical"),
}
"""Condition class by kind (communication loss is the system's); every other kind is Process."""
PROCESS_CLASS = (ObjectIds.ProcessConditionClassType, "Process")


def condition_type(kind: str | None) -> int:
    if kind == "limit":
        return ObjectIds.ExclusiveLimitAlarmType
    if kind == "discrete":
        return ObjectIds.OffNormalAlarmType
    return ObjectIds.AlarmConditionType


@dataclass(frozen=True, slots=True)
class ConditionInfo:
    """One alarm condition as the platform has it (taken on the platform's loop)."""

    id: int
    tenant_id: int
    name: str
    kind: str | None
    source: str | None
    """The platform node id of its source (a tag, or the device of an anomaly); None when unresolved."""
    source_is_tag: bool
    limits: tuple[tuple[str, float], ...]
    """A limit condition's configured levels: ("hi", 90.0), ..."""
    max_shelve_s: float
    on_delay_s: float
    off_delay_s: float
    view: dict[str, Any] = field(compare=False)
    """The alarm as `GET /alarms/{id}` shows it; a bus event adds `event`, `user` and `comment`."""

    @property
    def type_id(self) -> int:
        return condition_type(self.kind)

    def structure(self) -> tuple[object, ...]:
        """What cannot change in place: a change deletes and adds the condition's nodes again."""
        return (self.type_id, self.name, self.source, tuple(level for level, _ in self.limits))


def describe(rt: Runtime, view: dict[str, Any]) -> ConditionInfo:
    """On the platform's loop: a condition of the alarm engine, read and copied."""
    spec = rt.config.spec
    kind = getattr(spec, "kind", None)
    limits: list[tuple[str, float]] = []
    if kind == "limit":
        for level in LIMIT_LEVELS:
            value = getattr(spec, level, None)
            if isinstance(value, int | float):
                limits.append((level, float(value)))
    source = rt.source
    return ConditionInfo(
        rt.id, rt.tenant_id, rt.name, kind, source.node_id if source else None,
        source is not None and source.node_class is NodeClass.TAG, tuple(limits), float(rt.config.max_shelve_s),
        float(getattr(spec, "on_delay_s", 0.0)), float(getattr(spec, "off_delay_s", 0.0)), dict(view),
    )  # fmt: skip


async def snapshot(service: AlarmService, tenant_id: int, ids: frozenset[int] | None = None) -> list[ConditionInfo]:
    """Every condition of a tenant (or those of `ids`) with its alarm, on the platform's loop."""
    engine = service.engine
    if ids is None:
        found = [rt for rt in list(engine.runtimes.values()) if rt.tenant_id == tenant_id]
    else:  # one condition's change must not cost a pass over every tenant's conditions
        found = [rt for i in sorted(ids) if (rt := engine.runtimes.get(i)) is not None and rt.tenant_id == tenant_id]
    return [describe(rt, engine.view(rt)) for rt in found]


# -- the nodes of a condition ----------------------------------------------------------------------------

PROP, VAR, OBJECT, METHOD = "property", "variable", "object", "method"


@dataclass(frozen=True, slots=True)
class Child:
    path: str
    """Browse path below the condition, `/`-separated names in namespace 0; also the event field."""
    node_class: str
    data_type: int = 0
    type_definition: int = 0

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def parent(self) -> str:
        return self.path.rsplit("/", 1)[0] if "/" in self.path else ""


N = ObjectIds
_TWO_STATE = N.TwoStateVariableType
_COND_VAR = N.ConditionVariableType


def _two_state(name: str, *, transition: bool = False) -> list[Child]:
    out = [Child(name, VAR, N.LocalizedText, _TWO_STATE), Child(f"{name}/Id", PROP, N.Boolean)]
    if transition:
        out.append(Child(f"{name}/TransitionTime", PROP, N.UtcTime))
    return out


def _cond_var(name: str, data_type: int) -> list[Child]:
    return [Child(name, VAR, data_type, _COND_VAR), Child(f"{name}/SourceTimestamp", PROP, N.UtcTime)]


COMMON: tuple[Child, ...] = (
    *(Child(n, PROP, t) for n, t in (
        ("EventId", N.ByteString), ("EventType", N.NodeId), ("SourceNode", N.NodeId), ("SourceName", N.String),
        ("Time", N.UtcTime), ("ReceiveTime", N.UtcTime), ("Message", N.LocalizedText), ("Severity", N.UInt16),
        ("ConditionClassId", N.NodeId), ("ConditionClassName", N.LocalizedText), ("ConditionName", N.String),
        ("BranchId", N.NodeId), ("Retain", N.Boolean), ("ClientUserId", N.String), ("InputNode", N.NodeId),
        ("SuppressedOrShelved", N.Boolean), ("MaxTimeShelved", N.Duration), ("OnDelay", N.Duration),
        ("OffDelay", N.Duration),
    )),
    *_two_state("EnabledState"), *_cond_var("Quality", N.StatusCode), *_cond_var("LastSeverity", N.UInt16),
    *_cond_var("Comment", N.LocalizedText), *_two_state("AckedState", transition=True),
    *_two_state("ActiveState", transition=True), *_two_state("SuppressedState"), *_two_state("OutOfServiceState"),
    *_two_state("LatchedState"),
    Child("FirstInGroupFlag", VAR, N.Boolean, N.BaseDataVariableType),
    Child("ShelvingState", OBJECT, type_definition=N.ShelvedStateMachineType),
    Child("ShelvingState/CurrentState", VAR, N.LocalizedText, N.FiniteStateVariableType),
    Child("ShelvingState/CurrentState/Id", PROP, N.NodeId),
    Child("ShelvingState/UnshelveTime", PROP, N.Duration),
)  # fmt: skip
LIMIT_CHILDREN: tuple[Child, ...] = (
    Child("LimitState", OBJECT, type_definition=N.ExclusiveLimitStateMachineType),
    Child("LimitState/CurrentState", VAR, N.LocalizedText, N.FiniteStateVariableType),
    Child("LimitState/CurrentState/Id", PROP, N.NodeId),
)
OFF_NORMAL_CHILDREN: tuple[Child, ...] = (Child("NormalState", PROP, N.NodeId),)


def children(info: ConditionInfo) -> list[Child]:
    """The condition's variables and objects (methods are in METHODS)."""
    out = list(COMMON)
    if info.type_id == N.ExclusiveLimitAlarmType:
        out += LIMIT_CHILDREN
        out += [Child(f"{LIMIT_LEVELS[level]}Limit", PROP, N.Double) for level, _ in info.limits]
    elif info.type_id == N.OffNormalAlarmType:
        out += OFF_NORMAL_CHILDREN
    return out


# -- methods ---------------------------------------------------------------------------------------------


class Action(StrEnum):
    ENABLE = "enable"
    DISABLE = "disable"
    COMMENT = "comment"
    ACKNOWLEDGE = "acknowledge"
    RESET = "reset"
    TIMED_SHELVE = "timed_shelve"
    ONE_SHOT_SHELVE = "one_shot_shelve"
    UNSHELVE = "unshelve"


PERMISSION = {
    Action.ENABLE: Permission.ALARMS_CONFIGURE, Action.DISABLE: Permission.ALARMS_CONFIGURE,
    Action.COMMENT: Permission.ALARMS_ACK, Action.ACKNOWLEDGE: Permission.ALARMS_ACK,
    Action.RESET: Permission.ALARMS_ACK,
    Action.TIMED_SHELVE: Permission.ALARMS_SHELVE, Action.ONE_SHOT_SHELVE: Permission.ALARMS_SHELVE,
    Action.UNSHELVE: Permission.ALARMS_SHELVE,
}  # fmt: skip
"""What the platform's AlarmService demands for each action (it checks again itself)."""

EVENT_ID, COMMENT, SHELVING_TIME = "EventId", "Comment", "ShelvingTime"


@dataclass(frozen=True, slots=True)
class MethodSpec:
    path: str
    """Browse path of the method on the condition type (`ShelvingState/TimedShelve`)."""
    action: Action
    args: tuple[str, ...]
    standard: tuple[int, ...]
    """The method ids of the standard types that clients may call on a condition instead."""

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def on_shelving(self) -> bool:
        return self.path.startswith("ShelvingState/")


METHODS: tuple[MethodSpec, ...] = (
    MethodSpec("Enable", Action.ENABLE, (), (N.ConditionType_Enable,)),
    MethodSpec("Disable", Action.DISABLE, (), (N.ConditionType_Disable,)),
    MethodSpec("AddComment", Action.COMMENT, (EVENT_ID, COMMENT), (N.ConditionType_AddComment,)),
    MethodSpec("Acknowledge", Action.ACKNOWLEDGE, (EVENT_ID, COMMENT), (N.AcknowledgeableConditionType_Acknowledge,)),
    MethodSpec("Reset", Action.RESET, (), (N.AlarmConditionType_Reset,)),
    MethodSpec("Reset2", Action.RESET, (COMMENT,), (N.AlarmConditionType_Reset2,)),
    MethodSpec("ShelvingState/TimedShelve", Action.TIMED_SHELVE, (SHELVING_TIME,),
               (N.ShelvedStateMachineType_TimedShelve, N.AlarmConditionType_ShelvingState_TimedShelve)),
    MethodSpec("ShelvingState/OneShotShelve", Action.ONE_SHOT_SHELVE, (),
               (N.ShelvedStateMachineType_OneShotShelve, N.AlarmConditionType_ShelvingState_OneShotShelve)),
    MethodSpec("ShelvingState/Unshelve", Action.UNSHELVE, (),
               (N.ShelvedStateMachineType_Unshelve, N.AlarmConditionType_ShelvingState_Unshelve)),
    MethodSpec("ShelvingState/TimedShelve2", Action.TIMED_SHELVE, (SHELVING_TIME, COMMENT),
               (N.ShelvedStateMachineType_TimedShelve2,)),
    MethodSpec("ShelvingState/OneShotShelve2", Action.ONE_SHOT_SHELVE, (COMMENT,),
               (N.ShelvedStateMachineType_OneShotShelve2,)),
    MethodSpec("ShelvingState/Unshelve2", Action.UNSHELVE, (COMMENT,), (N.ShelvedStateMachineType_Unshelve2,)),
)  # fmt: skip
BY_STANDARD_ID = {i: m for m in METHODS for i in m.standard}
REFRESH_IDS = (N.ConditionType_ConditionRefresh, N.ConditionType_ConditionRefresh2)


# -- values ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Memo:
    """What the fields need beyond the alarm itself, kept per condition by the OPC UA server."""

    event_id: bytes = b""
    time: float = 0.0
    receive_time: float = 0.0
    last_severity: int = 0
    severity_at: float = 0.0
    comment: str = ""
    comment_at: float | None = None
    comment_user: str = ""
    active_at: float | None = None
    acked_at: float | None = None


# Most fields of most conditions hold one of a few values (false, a state's name, a standard
# NodeId, the null time): those Variants are made once and shared by every condition, which keeps
# a condition's fields to a few KB. Nothing changes a Variant once made (conditions.py replaces
# a condition's field dict as a whole; asyncua copies what it sends).


def _new_lt(text: str) -> ua.Variant:
    return ua.Variant(ua.LocalizedText(text), ua.VariantType.LocalizedText)


SHARED_TEXTS: dict[str, ua.Variant] = {
    text: _new_lt(text)
    for text in (
        "", "Enabled", "Disabled", "Acknowledged", "Unacknowledged", "Active", "Inactive", "Suppressed",
        "Unsuppressed", "Out of Service", "In Service", "Latched", "Unlatched",
        *(name for name, _ in SHELVING_STATES.values()), *(name for _, name in CLASSES.values()), PROCESS_CLASS[1],
        *LIMIT_LEVELS.values(),
    )
}  # fmt: skip


def _lt(text: str) -> ua.Variant:
    return SHARED_TEXTS.get(text) or _new_lt(text)


NO_TIME = datetime(1601, 1, 1, tzinfo=UTC)
"""OPC UA's null DateTime (its minimum): a time that was never set."""
NULL_TIME = ua.Variant(NO_TIME, ua.VariantType.DateTime)


def _time(ts: float | None) -> ua.Variant:
    return ua.Variant(to_datetime(ts), ua.VariantType.DateTime) if ts else NULL_TIME


TRUE, FALSE = ua.Variant(True, ua.VariantType.Boolean), ua.Variant(False, ua.VariantType.Boolean)


def _bool(value: object) -> ua.Variant:
    return TRUE if value else FALSE


NULL_NODE = ua.Variant(ua.NodeId(), ua.VariantType.NodeId)
GOOD = ua.Variant(ua.StatusCode(), ua.VariantType.StatusCode)
SHARED_IDS: dict[int, ua.Variant] = {
    i: ua.Variant(std(i), ua.VariantType.NodeId)
    for i in (
        N.AlarmConditionType, N.ExclusiveLimitAlarmType, N.OffNormalAlarmType, PROCESS_CLASS[0],
        *(c for c, _ in CLASSES.values()), *(i for _, i in SHELVING_STATES.values()), *LIMIT_STATES.values(),
    )
}  # fmt: skip
"""The standard NodeIds fields hold (types, classes, states)."""


def _nid(nodeid: ua.NodeId | None) -> ua.Variant:
    return ua.Variant(nodeid, ua.VariantType.NodeId) if nodeid is not None else NULL_NODE


def _std(identifier: int) -> ua.Variant:
    return SHARED_IDS.get(identifier) or _nid(std(identifier))


def _ms(seconds: float) -> ua.Variant:
    return ua.Variant(float(seconds) * 1000.0, ua.VariantType.Double)


def masked(view: dict[str, Any]) -> bool:
    """Shelved, suppressed or out of service (SuppressedOrShelved)."""
    shelved = (view.get("shelving") or "unshelved") != "unshelved"
    return shelved or bool(view.get("suppressed")) or bool(view.get("out_of_service"))


def presented_active(view: dict[str, Any]) -> bool:
    """Annunciated, or — while shelved, suppressed or out of service — the process condition itself:
    Part 9 keeps ActiveState running under the masks, which SuppressedOrShelved reports."""
    return bool(view.get("active")) or (masked(view) and bool(view.get("condition")))


def unshelve_time_ms(view: dict[str, Any], now: float) -> float:
    until = view.get("shelved_until")
    if view.get("shelving") != "timed" or not isinstance(until, int | float):
        return 0.0
    return max(0.0, (float(until) - now) * 1000.0)


def field_values(info: ConditionInfo, memo: Memo, *, source: ua.NodeId | None, now: float) -> dict[str, ua.Variant]:
    """Every field of the condition (node values and event fields alike), by browse path."""
    view = info.view
    enabled = bool(view.get("enabled", True))
    active = presented_active(view)
    shelving = str(view.get("shelving") or "unshelved")
    shelf_name, shelf_id = SHELVING_STATES.get(shelving, SHELVING_STATES["unshelved"])
    class_id, class_name = CLASSES.get(info.kind or "", PROCESS_CLASS)
    severity = int(view.get("severity") or 1)
    out: dict[str, ua.Variant] = {
        "EventId": ua.Variant(memo.event_id, ua.VariantType.ByteString),
        "EventType": _std(info.type_id),
        "SourceNode": _nid(source),
        "SourceName": ua.Variant(str(view.get("path") or ""), ua.VariantType.String),
        "Time": _time(memo.time),
        "ReceiveTime": _time(memo.receive_time),
        "Message": _lt(str(view.get("message") or info.name)),
        "Severity": ua.Variant(max(1, min(1000, severity)), ua.VariantType.UInt16),
        "ConditionClassId": _std(class_id),
        "ConditionClassName": _lt(class_name),
        "ConditionName": ua.Variant(info.name, ua.VariantType.String),
        "BranchId": _nid(None),
        "Retain": _bool(enabled and bool(view.get("retained"))),
        "ClientUserId": ua.Variant(memo.comment_user, ua.VariantType.String),
        "InputNode": _nid(source if info.source_is_tag else None),
        "SuppressedOrShelved": _bool(masked(view)),
        "MaxTimeShelved": _ms(info.max_shelve_s),
        "OnDelay": _ms(info.on_delay_s),
        "OffDelay": _ms(info.off_delay_s),
        "EnabledState": _lt("Enabled" if enabled else "Disabled"),
        "EnabledState/Id": _bool(enabled),
        "Quality": GOOD,
        "Quality/SourceTimestamp": _time(memo.time),
        "LastSeverity": ua.Variant(max(1, min(1000, memo.last_severity or severity)), ua.VariantType.UInt16),
        "LastSeverity/SourceTimestamp": _time(memo.severity_at or memo.time),
        "Comment": _lt(memo.comment),
        "Comment/SourceTimestamp": _time(memo.comment_at),
        "AckedState": _lt("Acknowledged" if view.get("acked") else "Unacknowledged"),
        "AckedState/Id": _bool(view.get("acked")),
        "AckedState/TransitionTime": _time(memo.acked_at),
        "ActiveState": _lt("Active" if active else "Inactive"),
        "ActiveState/Id": _bool(active),
        "ActiveState/TransitionTime": _time(memo.active_at),
        "SuppressedState": _lt("Suppressed" if view.get("suppressed") else "Unsuppressed"),
        "SuppressedState/Id": _bool(view.get("suppressed")),
        "OutOfServiceState": _lt("Out of Service" if view.get("out_of_service") else "In Service"),
        "OutOfServiceState/Id": _bool(view.get("out_of_service")),
        "LatchedState": _lt("Latched" if view.get("latched") else "Unlatched"),
        "LatchedState/Id": _bool(view.get("latched")),
        "FirstInGroupFlag": _bool(view.get("first_out")),
        "ShelvingState/CurrentState": _lt(shelf_name),
        "ShelvingState/CurrentState/Id": _std(shelf_id),
        "ShelvingState/UnshelveTime": ua.Variant(unshelve_time_ms(view, now), ua.VariantType.Double),
    }
    if info.type_id == N.ExclusiveLimitAlarmType:
        level = view.get("level") if active else None
        state = LIMIT_STATES.get(str(level)) if level else None
        out["LimitState/CurrentState"] = _lt(LIMIT_LEVELS[str(level)] if state is not None else "")
        out["LimitState/CurrentState/Id"] = _std(state) if state is not None else NULL_NODE
        for lvl, value in info.limits:
            out[f"{LIMIT_LEVELS[lvl]}Limit"] = ua.Variant(value if math.isfinite(value) else 0.0, ua.VariantType.Double)
    elif info.type_id == N.OffNormalAlarmType:
        out["NormalState"] = _nid(None)
    return out
