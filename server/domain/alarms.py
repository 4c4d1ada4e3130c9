"""The ISA-18.2 alarm state machine, pure: every operation takes the state and returns the
transitions it caused, so the engine, the API and the property tests share one truth.

The choices the standards leave open are written down in docs/alarms.md; the short form:
- while shelved, suppressed or out of service an alarm is not annunciated: its presented
  state is Normal and it needs no acknowledgement; the condition is still tracked, and when
  the mask ends the alarm is evaluated afresh (Normal, or a new Unacknowledged-Active);
- a latched alarm stays active after its condition clears until someone resets it, and a
  reset is refused while the condition is still true;
- a limit alarm that climbs to a more severe level (Hi → HiHi) needs acknowledging again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from server.domain.errors import Conflict, InvalidInput


class Priority(StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


SEVERITY: dict[Priority, int] = {Priority.URGENT: 900, Priority.HIGH: 700, Priority.MEDIUM: 500, Priority.LOW: 300}
"""OPC UA severity (1–1000) of each priority; the summary sorts by it."""

PRIORITY_RANK: dict[Priority, int] = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.MEDIUM: 2, Priority.LOW: 3}


class AlarmState(StrEnum):
    """What the summary and the journal show: the four ISA-18.2 states and the three masks."""

    NORMAL = "normal"
    UNACK_ACTIVE = "unack_active"
    ACK_ACTIVE = "ack_active"
    UNACK_RTN = "unack_rtn"
    SHELVED = "shelved"
    SUPPRESSED = "suppressed"
    OUT_OF_SERVICE = "out_of_service"


class Shelving(StrEnum):
    UNSHELVED = "unshelved"
    TIMED = "timed"
    ONE_SHOT = "one_shot"


SYSTEM = "system"
"""The user of transitions nobody asked for (the process, a timer, the engine)."""


@dataclass(frozen=True, slots=True)
class Alarm:
    """One condition's alarm; `condition` is the process truth, `active` what is annunciated."""

    condition: bool = False
    active: bool = False
    acked: bool = True
    latched: bool = False
    """Held active by the latch after the condition cleared; needs a reset."""
    shelving: Shelving = Shelving.UNSHELVED
    shelved_until: float | None = None
    shelved_by: str | None = None
    shelve_reason: str | None = None
    suppressed: bool = False
    suppressed_reason: str | None = None
    out_of_service: bool = False
    level: str | None = None
    """The limit level of a limit alarm (hihi, hi, lo, lolo), else None."""
    value: float | None = None
    """The value at the last transition (what caused it); the live value is the tag's own."""
    limit: float | None = None
    active_since: float | None = None
    acked_at: float | None = None
    acked_by: str | None = None
    changed_at: float | None = None
    activations: int = 0
    first_out: bool = False

    @property
    def masked(self) -> bool:
        return self.out_of_service or self.suppressed or self.shelving is not Shelving.UNSHELVED

    @property
    def state(self) -> AlarmState:
        if self.out_of_service:
            return AlarmState.OUT_OF_SERVICE
        if self.suppressed:
            return AlarmState.SUPPRESSED
        if self.shelving is not Shelving.UNSHELVED:
            return AlarmState.SHELVED
        if self.active:
            return AlarmState.ACK_ACTIVE if self.acked else AlarmState.UNACK_ACTIVE
        return AlarmState.NORMAL if self.acked else AlarmState.UNACK_RTN

    @property
    def retained(self) -> bool:
        """Whether it belongs on the alarm summary (OPC UA Retain)."""
        return self.state is not AlarmState.NORMAL


@dataclass(frozen=True, slots=True)
class Transition:
    """One journal record: what happened, from which presented state to which."""

    event: str
    from_state: AlarmState
    to_state: AlarmState
    ts: float
    user: str = SYSTEM
    comment: str | None = None
    value: float | None = None
    level: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    alarm: Alarm
    transitions: list[Transition] = field(default_factory=list)

    @property
    def raised(self) -> bool:
        """A new annunciation (activation or escalation): what notifications react to."""
        return any(t.event in ("activated", "escalated") for t in self.transitions)


LEVEL_RANK = {"lolo": 2, "lo": 1, "hi": 1, "hihi": 2}


def _step(before: Alarm, after: Alarm, event: str, ts: float, user: str, comment: str | None) -> Outcome:
    after = replace(after, changed_at=ts)
    t = Transition(event, before.state, after.state, ts, user, comment, after.value, after.level)
    return Outcome(after, [t])


def evaluate(
    alarm: Alarm, condition: bool, ts: float, *, value: float | None = None, limit: float | None = None,
    level: str | None = None, latch: bool = False,
) -> Outcome:  # fmt: skip
    """The condition (after deadband and delays) is now true or false; nothing happens when
    neither it nor its level changed — an active condition never raises a second alarm."""
    level = level if condition else None
    if condition == alarm.condition and (not condition or level == alarm.level):
        return Outcome(alarm)  # `value` is the value of the last transition; the live one is the tag's
    base = replace(alarm, condition=condition, value=value if value is not None else alarm.value)
    if condition:
        base = replace(base, level=level, limit=limit if limit is not None else alarm.limit)
    if alarm.masked:
        if not condition and alarm.shelving is Shelving.ONE_SHOT:  # one-shot: ends when it clears
            cleared = replace(base, shelving=Shelving.UNSHELVED, shelved_until=None, shelved_by=None,
                              shelve_reason=None, active=False, acked=True, latched=False)  # fmt: skip
            return _step(alarm, cleared, "unshelved", ts, SYSTEM, "one-shot shelve ended: the alarm cleared")
        return Outcome(base)  # tracked, not annunciated
    if condition and not alarm.active:
        raised = replace(base, active=True, acked=False, latched=False, active_since=ts, acked_at=None,
                         acked_by=None, activations=alarm.activations + 1)  # fmt: skip
        return _step(alarm, raised, "activated", ts, SYSTEM, None)
    if condition:  # still active: only the level changed (or a latched alarm came back)
        worse = LEVEL_RANK.get(level or "", 0) > LEVEL_RANK.get(alarm.level or "", 0)
        if worse:
            return _step(alarm, replace(base, acked=False, latched=False, acked_at=None, acked_by=None),
                         "escalated", ts, SYSTEM, None)  # fmt: skip
        event = "condition_returned" if alarm.latched else "level_changed"
        return _step(alarm, replace(base, latched=False), event, ts, SYSTEM, None)
    if latch:
        return _step(alarm, replace(base, latched=True), "latched", ts, SYSTEM, None)
    return _step(alarm, replace(base, active=False, first_out=False), "cleared", ts, SYSTEM, None)


def acknowledge(alarm: Alarm, ts: float, user: str, comment: str | None = None) -> Outcome:
    if alarm.acked or alarm.masked:
        raise Conflict(f"nothing to acknowledge: the alarm is {alarm.state.value}")
    return _step(alarm, replace(alarm, acked=True, acked_at=ts, acked_by=user), "acknowledged", ts, user, comment)


def add_comment(alarm: Alarm, ts: float, user: str, comment: str) -> Outcome:
    if not comment.strip():
        raise InvalidInput("a comment must not be empty", field="comment")
    return _step(alarm, alarm, "commented", ts, user, comment)


def reset(alarm: Alarm, ts: float, user: str, comment: str | None = None) -> Outcome:
    """Release a latched alarm; refused while the condition is still true."""
    if not alarm.latched:  # latched means the condition cleared: a true condition can't be reset
        reason = "its condition is still true" if alarm.condition else "there is nothing to reset"
        raise Conflict(f"the alarm is not latched: {reason}")
    return _step(alarm, replace(alarm, latched=False, active=False, first_out=False), "reset", ts, user, comment)


def shelve(
    alarm: Alarm, ts: float, user: str, reason: str, *, duration_s: float | None, max_shelve_s: float,
) -> Outcome:  # fmt: skip
    """Timed (duration_s given, not above the condition's maximum) or one-shot (None)."""
    if not reason.strip():
        raise InvalidInput("shelving needs a reason", field="reason")
    if alarm.out_of_service:
        raise Conflict("the alarm is out of service; return it to service before shelving it")
    if duration_s is not None:
        if duration_s <= 0:
            raise InvalidInput("the shelve duration must be positive", field="duration_s")
        if duration_s > max_shelve_s:
            raise InvalidInput(
                f"the shelve duration {duration_s:g} s exceeds this condition's maximum of {max_shelve_s:g} s",
                field="duration_s",
            )
    if duration_s is None and not alarm.condition:
        raise Conflict("a one-shot shelve hides an alarm until it next clears; this one is not active")
    kind = Shelving.ONE_SHOT if duration_s is None else Shelving.TIMED
    until = None if duration_s is None else ts + duration_s
    hidden = replace(alarm, shelving=kind, shelved_until=until, shelved_by=user, shelve_reason=reason,
                     active=False, acked=True, latched=False, first_out=False)  # fmt: skip
    return _step(alarm, hidden, "shelved", ts, user, reason)


def unshelve(alarm: Alarm, ts: float, user: str = SYSTEM, comment: str | None = None) -> Outcome:
    """By hand, or by the engine when a timed shelve expires."""
    if alarm.shelving is Shelving.UNSHELVED:
        raise Conflict("the alarm is not shelved")
    cleared = replace(alarm, shelving=Shelving.UNSHELVED, shelved_until=None, shelved_by=None, shelve_reason=None)
    return _unmask(alarm, cleared, "unshelved", ts, user, comment)


def suppress(alarm: Alarm, ts: float, reason: str, user: str = SYSTEM) -> Outcome:
    """Suppressed by design (device offline, maintenance window, equipment stopped) or by hand."""
    if alarm.suppressed:
        if reason != alarm.suppressed_reason:
            return Outcome(replace(alarm, suppressed_reason=reason))
        return Outcome(alarm)
    hidden = replace(alarm, suppressed=True, suppressed_reason=reason, active=False, acked=True, latched=False,
                     first_out=False)  # fmt: skip
    return _step(alarm, hidden, "suppressed", ts, user, reason)


def unsuppress(alarm: Alarm, ts: float, user: str = SYSTEM, comment: str | None = None) -> Outcome:
    if not alarm.suppressed:
        return Outcome(alarm)
    return _unmask(alarm, replace(alarm, suppressed=False, suppressed_reason=None), "unsuppressed", ts, user, comment)


def remove_from_service(alarm: Alarm, ts: float, user: str, reason: str) -> Outcome:
    if not reason.strip():
        raise InvalidInput("taking an alarm out of service needs a reason", field="reason")
    if alarm.out_of_service:
        raise Conflict("the alarm is already out of service")
    hidden = replace(alarm, out_of_service=True, active=False, acked=True, latched=False, first_out=False)
    return _step(alarm, hidden, "out_of_service", ts, user, reason)


def return_to_service(alarm: Alarm, ts: float, user: str, comment: str | None = None) -> Outcome:
    if not alarm.out_of_service:
        raise Conflict("the alarm is in service")
    return _unmask(alarm, replace(alarm, out_of_service=False), "in_service", ts, user, comment)


def _unmask(before: Alarm, after: Alarm, event: str, ts: float, user: str, comment: str | None) -> Outcome:
    """When the last mask ends the alarm is evaluated afresh: Normal, or a new activation."""
    if after.masked:
        return _step(before, after, event, ts, user, comment)
    if after.condition:
        raised = replace(after, active=True, acked=False, latched=False, active_since=ts, acked_at=None,
                         acked_by=None, activations=after.activations + 1)  # fmt: skip
        return _step(before, raised, event, ts, user, comment)
    return _step(before, replace(after, active=False, acked=True, latched=False), event, ts, user, comment)
