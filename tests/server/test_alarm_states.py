"""The ISA-18.2 state machine (server/domain/alarms.py): the transitions of ../shared/ALARMS.md
one by one, and any sequence of events keeping the invariants written in docs/alarms.md."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain import alarms as sm
from server.domain.alarms import Alarm, AlarmState, Shelving
from server.domain.errors import Conflict, DomainError, InvalidInput

MAX_SHELVE = 3600.0


def test_the_four_states_and_their_transitions() -> None:
    a = Alarm()
    assert a.state is AlarmState.NORMAL and not a.retained
    out = sm.evaluate(a, True, 1.0, value=95.0, limit=90.0, level="hi")
    a = out.alarm
    assert a.state is AlarmState.UNACK_ACTIVE and out.raised and a.activations == 1 and a.active_since == 1.0
    assert [t.event for t in out.transitions] == ["activated"]
    a = sm.acknowledge(a, 2.0, "olga", "seen").alarm
    assert a.state is AlarmState.ACK_ACTIVE and a.acked_by == "olga"
    a = sm.evaluate(a, False, 3.0, value=80.0).alarm
    assert a.state is AlarmState.NORMAL
    a = sm.evaluate(a, True, 4.0, value=96.0, level="hi").alarm
    a = sm.evaluate(a, False, 5.0, value=70.0).alarm
    assert a.state is AlarmState.UNACK_RTN  # cleared before anyone acknowledged
    a = sm.evaluate(a, True, 6.0, value=97.0, level="hi").alarm
    assert a.state is AlarmState.UNACK_ACTIVE and a.activations == 3  # re-alarmed from Unack-RTN
    a = sm.evaluate(a, False, 7.0).alarm
    a = sm.acknowledge(a, 8.0, "olga").alarm
    assert a.state is AlarmState.NORMAL


def test_an_active_condition_never_raises_a_second_alarm() -> None:
    a = sm.evaluate(Alarm(), True, 1.0, value=95.0, level="hi").alarm
    again = sm.evaluate(a, True, 2.0, value=96.0, level="hi")
    assert again.transitions == [] and again.alarm is a  # the value that caused it stays 95


def test_climbing_to_a_worse_level_needs_acknowledging_again() -> None:
    a = sm.evaluate(Alarm(), True, 1.0, value=95.0, level="hi").alarm
    a = sm.acknowledge(a, 2.0, "olga").alarm
    out = sm.evaluate(a, True, 3.0, value=120.0, level="hihi")
    assert out.alarm.state is AlarmState.UNACK_ACTIVE and out.raised and out.alarm.activations == 1
    back = sm.evaluate(sm.acknowledge(out.alarm, 4.0, "olga").alarm, True, 5.0, value=95.0, level="hi")
    assert back.alarm.state is AlarmState.ACK_ACTIVE and not back.raised  # easing off needs no new ack


def test_acknowledging_needs_something_to_acknowledge() -> None:
    with pytest.raises(Conflict):
        sm.acknowledge(Alarm(), 1.0, "olga")


def test_latched_alarm_stays_until_reset_after_the_process_cleared() -> None:
    a = sm.evaluate(Alarm(), True, 1.0, value=1.0, latch=True).alarm
    with pytest.raises(Conflict, match="not latched"):  # the process has not cleared yet
        sm.reset(a, 2.0, "olga")
    a = sm.evaluate(a, False, 3.0, value=0.0, latch=True).alarm
    assert a.active and a.latched and a.state is AlarmState.UNACK_ACTIVE
    a = sm.acknowledge(a, 4.0, "olga").alarm
    assert a.state is AlarmState.ACK_ACTIVE
    a = sm.reset(a, 5.0, "olga", "pump inspected").alarm
    assert a.state is AlarmState.NORMAL and not a.latched
    with pytest.raises(Conflict, match="not latched"):
        sm.reset(a, 6.0, "olga")


def test_timed_shelve_is_bounded_and_ends_with_a_fresh_evaluation() -> None:
    a = sm.evaluate(Alarm(), True, 1.0, value=95.0, level="hi").alarm
    with pytest.raises(InvalidInput, match="maximum"):
        sm.shelve(a, 2.0, "sam", "sensor work", duration_s=MAX_SHELVE + 1, max_shelve_s=MAX_SHELVE)
    with pytest.raises(InvalidInput, match="reason"):
        sm.shelve(a, 2.0, "sam", "  ", duration_s=60, max_shelve_s=MAX_SHELVE)
    a = sm.shelve(a, 2.0, "sam", "sensor work", duration_s=60, max_shelve_s=MAX_SHELVE).alarm
    assert a.state is AlarmState.SHELVED and a.shelved_until == 62.0 and not a.active
    a = sm.evaluate(a, False, 3.0).alarm
    a = sm.evaluate(a, True, 4.0, level="hi").alarm  # tracked while shelved, not annunciated
    assert a.state is AlarmState.SHELVED and a.condition and a.activations == 1
    out = sm.unshelve(a, 62.0, sm.SYSTEM, "shelve time expired")
    assert out.alarm.state is AlarmState.UNACK_ACTIVE and out.alarm.activations == 2  # active at expiry: alarms anew


def test_one_shot_shelve_clears_itself_when_the_alarm_goes_inactive() -> None:
    with pytest.raises(Conflict):
        sm.shelve(Alarm(), 1.0, "sam", "known", duration_s=None, max_shelve_s=MAX_SHELVE)
    a = sm.evaluate(Alarm(), True, 1.0, level="hi").alarm
    a = sm.shelve(a, 2.0, "sam", "known fault", duration_s=None, max_shelve_s=MAX_SHELVE).alarm
    assert a.shelving is Shelving.ONE_SHOT
    out = sm.evaluate(a, False, 3.0)
    assert out.alarm.state is AlarmState.NORMAL and out.transitions[0].event == "unshelved"
    assert sm.evaluate(out.alarm, True, 4.0, level="hi").alarm.state is AlarmState.UNACK_ACTIVE


def test_suppression_and_out_of_service_mask_and_release() -> None:
    a = sm.evaluate(Alarm(), True, 1.0, level="hi").alarm
    a = sm.suppress(a, 2.0, "device offline").alarm
    assert a.state is AlarmState.SUPPRESSED and a.retained is not False
    a = sm.remove_from_service(a, 3.0, "sam", "transmitter replaced").alarm
    assert a.state is AlarmState.OUT_OF_SERVICE
    a = sm.unsuppress(a, 4.0).alarm
    assert a.state is AlarmState.OUT_OF_SERVICE  # still masked by the other one
    a = sm.evaluate(a, False, 5.0).alarm
    out = sm.return_to_service(a, 6.0, "sam")
    assert out.alarm.state is AlarmState.NORMAL


# -- any sequence ----------------------------------------------------------------------------

LEVELS = st.sampled_from(["hi", "hihi", "lo", "lolo"])
OPS = st.one_of(
    st.tuples(st.just("value"), st.booleans(), LEVELS, st.booleans()),
    st.tuples(st.just("ack")),
    st.tuples(st.just("comment")),
    st.tuples(st.just("shelve"), st.one_of(st.none(), st.floats(-10, 2 * MAX_SHELVE))),
    st.tuples(st.just("unshelve")),
    st.tuples(st.just("suppress"), st.sampled_from(["device offline", "maintenance window"])),
    st.tuples(st.just("unsuppress")),
    st.tuples(st.just("oos")),
    st.tuples(st.just("in_service")),
    st.tuples(st.just("reset")),
    st.tuples(st.just("expire")),
)


def _apply(a: Alarm, op: tuple[Any, ...], ts: float) -> sm.Outcome:
    kind = op[0]
    if kind == "value":
        return sm.evaluate(a, op[1], ts, value=ts, level=op[2], latch=op[3])
    if kind == "ack":
        return sm.acknowledge(a, ts, "olga", "ok")
    if kind == "comment":
        return sm.add_comment(a, ts, "olga", "note")
    if kind == "shelve":
        return sm.shelve(a, ts, "sam", "reason", duration_s=op[1], max_shelve_s=MAX_SHELVE)
    if kind == "unshelve":
        return sm.unshelve(a, ts, "sam")
    if kind == "suppress":
        return sm.suppress(a, ts, op[1])
    if kind == "unsuppress":
        return sm.unsuppress(a, ts)
    if kind == "oos":
        return sm.remove_from_service(a, ts, "sam", "maintenance")
    if kind == "in_service":
        return sm.return_to_service(a, ts, "sam")
    if kind == "reset":
        return sm.reset(a, ts, "olga")
    if a.shelving is Shelving.TIMED and a.shelved_until is not None and ts >= a.shelved_until:
        return sm.unshelve(a, ts)  # the engine's expiry timer
    return sm.Outcome(a)


def check_invariants(a: Alarm) -> None:
    assert isinstance(a.state, AlarmState)
    assert (a.state is AlarmState.NORMAL) == (not a.retained)
    if a.masked:  # hidden alarms are not annunciated and need no acknowledgement
        assert not a.active and a.acked and not a.latched
    else:
        if a.condition:
            assert a.active, "an unmasked true condition is always annunciated"
        if a.active and not a.latched:
            assert a.condition, "an active alarm that is not latched has a true condition"
    if a.latched:
        assert a.active and not a.condition
    assert (a.shelving is Shelving.TIMED) == (a.shelved_until is not None)
    if a.shelving is not Shelving.UNSHELVED:
        assert a.shelved_by and a.shelve_reason
    if a.acked and a.acked_at is not None:
        assert a.acked_by
    if a.active:
        assert a.active_since is not None and a.activations >= 1


@settings(max_examples=400, deadline=None)
@given(st.lists(OPS, max_size=40))
def test_any_sequence_keeps_the_invariants(ops: list[tuple[Any, ...]]) -> None:
    a = Alarm()
    for i, op in enumerate(ops):
        ts = float(i + 1)
        try:
            out = _apply(a, op, ts)
        except DomainError:
            continue  # refused: nothing changed (the state is immutable)
        for t in out.transitions:  # the journal tells the truth about what happened
            assert t.from_state is a.state and t.ts == ts
        if out.transitions:
            assert out.transitions[-1].to_state is out.alarm.state
        else:
            assert out.alarm.state is a.state, f"{op} changed the state without a journal record"
        activations = out.alarm.activations - a.activations
        assert activations in (0, 1)
        if activations:
            assert out.alarm.state is AlarmState.UNACK_ACTIVE and a.state is not AlarmState.UNACK_ACTIVE
        if op[0] == "value" and a.condition and op[1] and not a.masked:
            assert activations == 0, "an active condition raised a second alarm"
        a = out.alarm
        check_invariants(a)
