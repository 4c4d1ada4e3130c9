"""Pure domain logic: rollup maths against a naive reference, names, quality, permissions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain import rollup
from server.domain.errors import InvalidInput
from server.domain.namespace import check_browse_name, in_subtree, node_id_for_path, parse_node_ref
from server.domain.permissions import BUILTIN_ROLES, Permission, parse_permissions, permission_matrix_markdown
from server.domain.quality import Quality
from server.domain.sample import coerce_value

samples = st.lists(st.tuples(st.integers(1, 3), st.floats(0, 100_000), st.floats(-1e6, 1e6)), min_size=1, max_size=300)


@settings(max_examples=200, deadline=None)
@given(samples, st.sampled_from(rollup.TIERS), st.integers(1, 4))
def test_aggregate_then_merge_equals_naive_reference(
    rows: list[tuple[int, float, float]], width: int, parts: int
) -> None:
    tag = np.array([r[0] for r in rows], np.int64)
    ts = np.array([r[1] for r in rows])
    value = np.array([r[2] for r in rows])
    # Aggregated in arbitrary pieces and merged, as the writer does across batches.
    pieces = [rollup.aggregate(tag[i::parts], ts[i::parts], value[i::parts], width) for i in range(parts)]
    merged = rollup.merge(pieces)
    expected: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for t, x, v in rows:
        expected.setdefault((t, int(x // width * width)), []).append((x, v))
    assert len(merged) == len(expected)
    for i in range(len(merged)):
        group = expected[(int(merged.tag_id[i]), int(merged.bucket[i]))]
        vals = [v for _, v in group]
        assert merged.count[i] == len(vals)
        assert merged.vmin[i] == min(vals) and merged.vmax[i] == max(vals)
        assert merged.vsum[i] == pytest.approx(sum(vals), rel=1e-9, abs=1e-6)
        assert merged.first_ts[i] == min(x for x, _ in group)
        assert merged.last_ts[i] == max(x for x, _ in group)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=500), st.integers(1, 50))
def test_decimate_raw_keeps_the_envelope(values: list[float], buckets: int) -> None:
    ts = np.arange(len(values), dtype=float)
    width = max(len(values) / buckets, 1.0)
    dec = rollup.decimate_raw(ts, np.array(values), width)
    assert len(dec.t) <= buckets + 1
    assert dec.vmin.min() == min(values) and dec.vmax.max() == max(values)
    assert int(dec.count.sum()) == len(values)


def test_tier_choice_never_exceeds_the_budget() -> None:
    for span in (3600, 86_400, 30 * 86_400, 365 * 86_400):
        tier = rollup.choose_tier(span, 2000)
        width = rollup.bucket_width(span, 2000, tier)
        assert span / width <= 2000
        assert tier is None or tier <= width


def test_node_references() -> None:
    assert parse_node_ref("ns=2;s=Plant1/Area1") == ("node_id", "ns=2;s=Plant1/Area1")
    assert parse_node_ref("/Plant1/Area1/") == ("path", "Plant1/Area1")
    assert node_id_for_path("A/B") == "ns=2;s=A/B"
    for bad in ("", "ns=x", "ns=2;i=5"):
        with pytest.raises(InvalidInput):
            parse_node_ref(bad)
    for bad in ("a/b", "a;b", "", " " * 3, "x" * 101, "tab\there", "li\nne"):
        with pytest.raises(InvalidInput):
            check_browse_name(bad)
    assert in_subtree("A/B/C", "A/B") and in_subtree("A/B", "A/B") and not in_subtree("A/BC", "A/B")


def test_values_and_quality() -> None:
    assert coerce_value(True) == 1.0 and coerce_value(3) == 3.0
    for bad in (float("nan"), float("inf"), "1", None):
        with pytest.raises(ValueError):
            coerce_value(bad)
    assert Quality.parse("uncertain") is Quality.UNCERTAIN and Quality.BAD.opcua_status == 0x80000000


def test_role_matrix_follows_the_plan() -> None:
    p = Permission
    assert BUILTIN_ROLES["admin"] == frozenset(Permission)
    assert p.NAMESPACE_WRITE in BUILTIN_ROLES["engineer"] and p.ALARMS_CONFIGURE in BUILTIN_ROLES["engineer"]
    assert {p.ALARMS_SHELVE, p.ALARMS_MANAGE} <= BUILTIN_ROLES["supervisor"]
    assert {p.ALARMS_ACK, p.DEVICES_COMMAND} <= BUILTIN_ROLES["operator"]
    assert p.ALARMS_SHELVE not in BUILTIN_ROLES["operator"] and p.USERS_MANAGE not in BUILTIN_ROLES["operator"]
    writes = {p.NAMESPACE_WRITE, p.TELEMETRY_WRITE, p.ALARMS_ACK, p.USERS_MANAGE, p.DEVICES_COMMAND}
    assert not writes & BUILTIN_ROLES["viewer"]
    with pytest.raises(InvalidInput, match="unknown permission"):
        parse_permissions(["namespace.read", "everything"])
    assert "| `users.manage` | ✓ |" in permission_matrix_markdown()
