"""Alarms as OPC UA Part 9 conditions on the northbound server, against real asyncua clients.

A live server per backend with the OPC UA port open and conditions kept out of the address space
(the default), and one on SQLite with `opcua_condition_nodes` on; every test makes its own
tenants. What must hold: every transition of a platform alarm is an event of the condition's type
with its ConditionId for the tenant's sessions, Acknowledge, AddComment and the shelving methods
(standard method ids, ObjectId = ConditionId) act through the AlarmService as the session's user
(roles, journal, status codes), ConditionRefresh re-sends the retained conditions, and another
tenant's session sees, receives and calls none of it. Without nodes no node of a condition exists;
with nodes a condition is also a node on its source with the platform's state, and no method nodes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.events import Event

from server import opcua_server
from server.opcua import tenancy
from tests.server.test_opcua_server import adapter, eventually, nid, session
from tests.support import BACKENDS, Api, LiveServer, TenantHandle, database_url, free_port, make_settings, wait_for

DEVICE = "Plant1/Area1/Pump7"
FLOW = f"{DEVICE}/Flow"
NODES = "sqlite-nodes"
"""The SQLite server with `opcua_condition_nodes` on: conditions are browsable nodes too."""

ACKNOWLEDGE = ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge)
ADD_COMMENT = ua.NodeId(ua.ObjectIds.ConditionType_AddComment)
ENABLE, DISABLE = ua.NodeId(ua.ObjectIds.ConditionType_Enable), ua.NodeId(ua.ObjectIds.ConditionType_Disable)
TIMED_SHELVE = ua.NodeId(ua.ObjectIds.ShelvedStateMachineType_TimedShelve)
ONE_SHOT_SHELVE = ua.NodeId(ua.ObjectIds.ShelvedStateMachineType_OneShotShelve)
ONE_SHOT_SHELVE2 = ua.NodeId(ua.ObjectIds.ShelvedStateMachineType_OneShotShelve2)
UNSHELVE = ua.NodeId(ua.ObjectIds.ShelvedStateMachineType_Unshelve)
REFRESH = ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh)


@pytest.fixture(scope="module", params=[*BACKENDS, NODES])
def ua_live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    backend = "sqlite" if request.param == NODES else request.param
    tmp = tmp_path_factory.mktemp(f"opcua-alarms-{request.param}")
    with database_url(backend, tmp) as db_url:
        settings = make_settings(tmp, db_url, opcua_port=free_port(), opcua_condition_nodes=request.param == NODES)
        live = LiveServer(settings).start()
        try:
            assert adapter(live).ready.wait(30), "OPC UA server did not start"
            yield live
        finally:
            live.stop()


sqlite_only = pytest.mark.parametrize("ua_live", ["sqlite"], indirect=True)
"""Beyond the core path, conditions without nodes (the default)."""
both_modes = pytest.mark.parametrize("ua_live", ["sqlite", NODES], indirect=True)
nodes_only = pytest.mark.parametrize("ua_live", [NODES], indirect=True)


def with_nodes(live: LiveServer) -> bool:
    return live.settings.opcua_condition_nodes


@pytest.fixture
def plant(ua_live: LiveServer) -> tuple[TenantHandle, TenantHandle]:
    """Two tenants, each with Plant1/Area1/Pump7 (Flow, Pressure) and the same limit condition on Flow."""
    a, b = ua_live.new_tenant(), ua_live.new_tenant("other")
    for t in (a, b):
        t.build_plant()
    return a, b


def limit_condition(tenant: TenantHandle, **extra: Any) -> int:
    body = {"name": "Flow high", "priority": "high", "max_shelve_s": 3600,
            "spec": {"kind": "limit", "tag": FLOW, "hi": 90, "hihi": 110}, **extra}  # fmt: skip
    r = tenant.engineer.post("/api/v1/alarms/conditions", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def send(tenant: TenantHandle, flow: float) -> None:
    r = tenant.engineer.post("/api/v1/telemetry", json={"device": DEVICE, "ts": time.time(), "values": {"Flow": flow}})
    assert r.status_code == 201, r.text


def alarm(api: Api, condition_id: int) -> dict[str, Any]:
    r = api.get(f"/api/v1/alarms/{condition_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def journal(api: Api, condition_id: int) -> list[dict[str, Any]]:
    r = api.get("/api/v1/alarms/journal", params={"condition": condition_id, "start": time.time() - 3600})
    assert r.status_code == 200, r.text
    return list(r.json()["entries"])


def cond_id(tenant: TenantHandle, condition_id: int, path: str = "") -> str:
    return f"ns=2;s={tenant.name};Alarm;{condition_id}" + (f";{path}" if path else "")


def field(event: Event, name: str) -> Any:
    return getattr(event, name)


async def alarm_events(
    client: Client, source: int | str = ua.ObjectIds.Server, evtype: int = ua.ObjectIds.AlarmConditionType
) -> Any:
    """A subscription to the alarm events at `source`, selecting the fields of `evtype` (and its subtypes' events)."""
    sub = await client.create_subscription(20, None)
    await sub.subscribe_events(source, evtype)
    return sub


async def next_event(sub: Any, match: Callable[[Event], bool], timeout: float = 10) -> Event:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await sub.next_event(max(0.01, deadline - time.monotonic()))
        if got is not None and hasattr(got, "event") and match(got.event):
            return got.event  # type: ignore[no-any-return]
    raise AssertionError("no matching event")


async def drain(sub: Any, quiet: float = 0.3) -> list[Event]:
    """Every event that arrives until none came for `quiet` seconds."""
    out = []
    while True:
        got = await sub.next_event(quiet)
        if got is None:
            return out
        if hasattr(got, "event"):
            out.append(got.event)


async def appeared(client: Client, node_id: str) -> Any:
    node = client.get_node(node_id)
    await eventually(node.read_browse_name, what=f"{node_id} in the address space")
    return node


async def condition(live: LiveServer, client: Client, tenant: TenantHandle, condition_id: int) -> Any:
    """The condition (its ConditionId as a client Node) once the OPC UA server has it: its node
    when conditions are nodes, otherwise its entry in the server (there is nothing to browse)."""
    if with_nodes(live):
        return await appeared(client, cond_id(tenant, condition_id))

    async def loaded() -> bool:
        core = adapter(live).core
        return core is not None and condition_id in core.conditions.by_id

    await eventually(loaded, what=f"condition {condition_id} in the OPC UA server")
    return client.get_node(cond_id(tenant, condition_id))


async def refreshed(client: Client, tenant: TenantHandle, condition_id: int) -> Event | None:
    """The condition's last event through ConditionRefresh, as a client without nodes learns a
    condition's state (None when it is not retained)."""
    sub = await alarm_events(client)
    await client.nodes.server.call_method(REFRESH, ua.Variant(sub.subscription_id, ua.VariantType.UInt32))
    events = await drain(sub)
    await sub.delete()
    wanted = ua.NodeId.from_string(cond_id(tenant, condition_id))
    found = [e for e in events if getattr(e, "NodeId", None) == wanted]
    return found[-1] if found else None


def _active(event: Event) -> bool:
    return field(event, "ActiveState/Id") is True


# -- the core path (SQLite and PostgreSQL) ---------------------------------------------------------


def test_an_alarm_is_a_condition_acknowledged_through_opcua(
    ua_live: LiveServer, plant: tuple[TenantHandle, TenantHandle]
) -> None:
    a, _ = plant
    cid = limit_condition(a)
    operator = a.users["operator"]

    async def check() -> None:
        async with session(ua_live, a, "operator") as client:
            cond = await condition(ua_live, client, a, cid)
            flow = client.get_node(nid(a, FLOW))
            if with_nodes(ua_live):
                device = client.get_node(nid(a, DEVICE))
                assert "Flow high" in {(await c.read_browse_name()).Name for c in await device.get_children()}
                conditions = await flow.get_referenced_nodes(refs=ua.ObjectIds.HasCondition)
                assert [c.nodeid for c in conditions] == [cond.nodeid], "HasCondition from the source tag"
                type_def = await cond.read_type_definition()
                assert type_def == ua.NodeId(ua.ObjectIds.ExclusiveLimitAlarmType)
                assert await client.get_node(cond_id(a, cid, "Retain")).read_value() is False
                methods = await cond.get_children(nodeclassmask=ua.NodeClass.Method)
                methods += await client.get_node(cond_id(a, cid, "ShelvingState")).get_children(
                    nodeclassmask=ua.NodeClass.Method
                )
                assert methods == [], "no method nodes per condition: the standard method ids serve"
            sub = await alarm_events(client, evtype=ua.ObjectIds.ExclusiveLimitAlarmType)

            await asyncio.to_thread(send, a, 95.0)
            raised = await next_event(sub, _active)
            assert raised.ConditionName == "Flow high" and raised.Severity == 700 and raised.Retain is True
            assert field(raised, "AckedState/Id") is False and raised.NodeId == cond.nodeid
            assert raised.EventType == ua.NodeId(ua.ObjectIds.ExclusiveLimitAlarmType)
            assert raised.SourceNode == flow.nodeid and raised.SourceName == FLOW
            assert raised.Message.Text == "Flow high: 95 (hi limit 90)"
            assert field(raised, "LimitState/CurrentState").Text == "High"
            assert field(raised, "ShelvingState/CurrentState").Text == "Unshelved"
            assert raised.HighLimit == 90.0 and raised.HighHighLimit == 110.0
            if with_nodes(ua_live):
                assert await client.get_node(cond_id(a, cid, "ActiveState;Id")).read_value() is True
                assert await client.get_node(cond_id(a, cid, "EventId")).read_value() == raised.EventId

            # the standard method ids with ObjectId = ConditionId (Part 9), in both modes
            with pytest.raises(ua.uaerrors.BadEventIdUnknown):
                await cond.call_method(ACKNOWLEDGE, b"not-an-event-id", ua.LocalizedText("x"))
            await cond.call_method(ACKNOWLEDGE, raised.EventId, ua.LocalizedText("on my way"))
            acked = await next_event(sub, lambda e: field(e, "AckedState/Id") is True)
            assert acked.Comment.Text == "on my way" and acked.ClientUserId == "operator" and acked.Retain is True
            assert acked.EventId != raised.EventId, "a fresh EventId per event"
            state = alarm(operator, cid)
            assert state["state"] == "ack_active" and state["acked_by"] == "operator"
            with pytest.raises(ua.uaerrors.BadConditionBranchAlreadyAcked):
                await cond.call_method(ACKNOWLEDGE, acked.EventId, ua.LocalizedText(""))

            await cond.call_method(ADD_COMMENT, acked.EventId, ua.LocalizedText("pump checked"))
            commented = await next_event(sub, lambda e: e.Comment.Text == "pump checked")
            if with_nodes(ua_live):
                comment = await client.get_node(cond_id(a, cid, "Comment")).read_value()
                assert comment == ua.LocalizedText("pump checked")
            assert commented.ClientUserId == "operator"

            await asyncio.to_thread(send, a, 50.0)  # clears: acknowledged, so back to Normal
            cleared = await next_event(sub, lambda e: not _active(e))
            assert cleared.Retain is False and field(cleared, "AckedState/Id") is True

    asyncio.run(check())
    assert alarm(operator, cid)["state"] == "normal"
    entries = journal(operator, cid)
    assert [e["event"] for e in entries] == ["activated", "acknowledged", "commented", "cleared"]
    assert (entries[1]["user"], entries[1]["comment"]) == ("operator", "on my way")
    assert (entries[2]["user"], entries[2]["comment"]) == ("operator", "pump checked")


def test_another_tenant_sees_receives_and_calls_nothing(
    ua_live: LiveServer, plant: tuple[TenantHandle, TenantHandle]
) -> None:
    a, b = plant
    mine, theirs = limit_condition(a), limit_condition(b)

    async def check() -> None:
        async with session(ua_live, a, "supervisor") as ours, session(ua_live, b, "supervisor") as other:
            cond = await condition(ua_live, ours, a, mine)
            await condition(ua_live, other, b, theirs)
            foreign = other.get_node(cond_id(a, mine))
            for attempt in (foreign.read_browse_name(), other.get_node(cond_id(a, mine, "EventId")).read_value()):
                with pytest.raises(ua.uaerrors.BadNodeIdUnknown):
                    await attempt
            if with_nodes(ua_live):
                device_b = other.get_node(nid(b, DEVICE))
                names = {(await c.read_browse_name()).Name for c in await device_b.get_children()}
                assert "Flow high" in names  # its own condition, under its own device
            sub_b = await alarm_events(other)
            with pytest.raises(ua.uaerrors.BadNodeIdUnknown):
                await sub_b.subscribe_events(cond_id(a, mine), ua.ObjectIds.AlarmConditionType)
            # on the condition node itself; without nodes on its source's device
            sub_a = await alarm_events(ours, cond_id(a, mine) if with_nodes(ua_live) else nid(a, DEVICE))

            await asyncio.to_thread(send, a, 95.0)
            raised = await next_event(sub_a, _active)
            await asyncio.to_thread(send, b, 96.0)
            seen = await next_event(sub_b, _active)
            assert seen.SourceNode == ua.NodeId.from_string(nid(b, FLOW)), "the other tenant's own alarm"
            later = await drain(sub_b)
            assert all(e.NodeId != cond.nodeid for e in [seen, *later]), "no event of tenant a reached tenant b"

            with pytest.raises(ua.uaerrors.BadNodeIdUnknown):
                await foreign.call_method(ACKNOWLEDGE, raised.EventId, ua.LocalizedText("not mine"))
            shelving = ua.NodeId.from_string(cond_id(a, mine, "ShelvingState"))
            with pytest.raises(ua.uaerrors.BadNodeIdUnknown):
                await other.get_node(shelving).call_method(
                    ua.NodeId(ua.ObjectIds.ShelvedStateMachineType_TimedShelve),
                    ua.Variant(1000.0, ua.VariantType.Double),
                )

            # ConditionRefresh: the retained conditions again, with their last EventIds, for this
            # subscription only, between RefreshStart and RefreshEnd
            await other.nodes.server.call_method(
                ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh),
                ua.Variant(sub_b.subscription_id, ua.VariantType.UInt32),
            )
            refreshed = await drain(sub_b)
            kinds = [e.EventType for e in refreshed]
            assert kinds[0] == ua.NodeId(ua.ObjectIds.RefreshStartEventType)
            assert kinds[-1] == ua.NodeId(ua.ObjectIds.RefreshEndEventType)
            assert [e.EventId for e in refreshed[1:-1]] == [seen.EventId]
            with pytest.raises(ua.uaerrors.BadSubscriptionIdInvalid):  # not its subscription
                await other.nodes.server.call_method(
                    ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh),
                    ua.Variant(sub_a.subscription_id, ua.VariantType.UInt32),
                )

    asyncio.run(check())
    assert alarm(a.users["viewer"], mine)["state"] == "unack_active", "nothing done to tenant a's alarm"


# -- beyond the core path (SQLite) -------------------------------------------------------------------


@both_modes
def test_shelving_through_opcua_follows_roles_and_limits(
    ua_live: LiveServer, plant: tuple[TenantHandle, TenantHandle]
) -> None:
    a, _ = plant
    cid = limit_condition(a)
    supervisor = a.users["supervisor"]
    send(a, 95.0)
    wait_for(lambda: alarm(supervisor, cid)["state"] == "unack_active", what="alarm raised")

    async def check() -> None:
        async with session(ua_live, a, "viewer") as client:
            cond = await condition(ua_live, client, a, cid)
            event_id = await eventually(lambda: _raised_event_id(client, a, cid), what="the raised state")
            # UserExecutable of the standard method node says what this user may do
            ack = client.get_node(ACKNOWLEDGE)
            assert (await ack.read_attribute(ua.AttributeIds.UserExecutable)).Value.Value is False
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await cond.call_method(ACKNOWLEDGE, event_id, ua.LocalizedText("viewer"))
        async with session(ua_live, a, "operator") as client:
            cond = await condition(ua_live, client, a, cid)
            assert (await client.get_node(ACKNOWLEDGE).read_attribute(ua.AttributeIds.UserExecutable)).Value.Value
            shelve = client.get_node(TIMED_SHELVE)
            assert (await shelve.read_attribute(ua.AttributeIds.UserExecutable)).Value.Value is False
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await cond.call_method(TIMED_SHELVE, ua.Variant(60_000.0, ua.VariantType.Double))
        async with session(ua_live, a, "supervisor") as client:
            cond = await condition(ua_live, client, a, cid)
            # with nodes the shelving methods take the ShelvingState object too (the ConditionId always)
            shelving = client.get_node(cond_id(a, cid, "ShelvingState")) if with_nodes(ua_live) else cond
            if with_nodes(ua_live):
                assert (await client.get_node(cond_id(a, cid, "MaxTimeShelved")).read_value()) == 3_600_000.0
            sub = await alarm_events(client)
            with pytest.raises(ua.uaerrors.BadShelvingTimeOutOfRange):  # above the condition's 1 h
                await shelving.call_method(TIMED_SHELVE, ua.Variant(2 * 3_600_000.0, ua.VariantType.Double))
            with pytest.raises(ua.uaerrors.BadConditionNotShelved):
                await shelving.call_method(UNSHELVE)
            await shelving.call_method(TIMED_SHELVE, ua.Variant(60_000.0, ua.VariantType.Double))
            shelved = await next_event(sub, lambda e: e.SuppressedOrShelved is True)
            assert shelved.MaxTimeShelved == 3_600_000.0
            assert field(shelved, "ShelvingState/CurrentState").Text == "TimedShelved"
            assert field(shelved, "ShelvingState/CurrentState/Id") == ua.NodeId(
                ua.ObjectIds.ShelvedStateMachineType_TimedShelved
            )
            assert 50_000 < field(shelved, "ShelvingState/UnshelveTime") <= 60_000
            if with_nodes(ua_live):
                remaining = await client.get_node(cond_id(a, cid, "ShelvingState;UnshelveTime")).read_value()
                assert 50_000 < remaining <= 60_000
            assert _active(shelved) and shelved.Retain is True, "Part 9: still active, only shelved"
            state = alarm(supervisor, cid)
            assert (state["shelving"], state["shelved_by"], state["shelve_reason"]) == (
                "timed", "supervisor", "shelved via OPC UA",
            )  # fmt: skip

            await shelving.call_method(UNSHELVE)
            back = await next_event(sub, lambda e: e.SuppressedOrShelved is False)
            assert field(back, "AckedState/Id") is False, "unshelved while still high: alarms anew"
            await shelving.call_method(ONE_SHOT_SHELVE2, ua.LocalizedText("known fouling, cleaning tonight"))
            await next_event(sub, lambda e: field(e, "ShelvingState/CurrentState").Text == "OneShotShelved")
            with pytest.raises(ua.uaerrors.BadConditionAlreadyShelved):
                await shelving.call_method(ONE_SHOT_SHELVE)
            assert alarm(supervisor, cid)["shelve_reason"] == "known fouling, cleaning tonight"

    asyncio.run(check())
    entries = journal(supervisor, cid)
    assert [e["event"] for e in entries] == ["activated", "shelved", "unshelved", "shelved"]
    assert all(e["user"] == "supervisor" for e in entries[1:])
    audit = a.admin.get("/api/v1/audit", params={"action": "alarm.shelve"}).json()
    assert sum(1 for e in audit if e["target"] == str(cid) and e["actor"] == "supervisor") == 2


async def _raised_event_id(client: Client, tenant: TenantHandle, condition_id: int) -> bytes | None:
    """The EventId of the condition's raised state, from ConditionRefresh (None while not active)."""
    last = await refreshed(client, tenant, condition_id)
    return bytes(last.EventId) if last is not None and _active(last) else None


@both_modes
def test_conditions_follow_their_configuration_and_the_namespace(
    ua_live: LiveServer, plant: tuple[TenantHandle, TenantHandle]
) -> None:
    a, _ = plant
    cid = limit_condition(a)
    engineer = a.engineer

    async def check() -> None:
        async with session(ua_live, a, "operator") as client:
            cond = await condition(ua_live, client, a, cid)
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):  # needs alarms.configure
                await cond.call_method(DISABLE)
        async with session(ua_live, a, "engineer") as client:
            cond = client.get_node(cond_id(a, cid))
            sub = await alarm_events(client, nid(a, "Plant1"))  # a folder above the condition: an event notifier
            await cond.call_method(DISABLE)
            off = await next_event(sub, lambda e: field(e, "EnabledState/Id") is False)
            assert off.Retain is False and alarm(engineer, cid)["enabled"] is False
            with pytest.raises(ua.uaerrors.BadConditionAlreadyDisabled):
                await cond.call_method(DISABLE)
            await cond.call_method(ENABLE)
            enabled = await next_event(sub, lambda e: field(e, "EnabledState/Id") is True)

            # A renamed device is added again by the mirror: its condition moves to the new node
            # (with nodes); either way it keeps its ConditionId and its events.
            r = await asyncio.to_thread(engineer.patch, f"/api/v1/nodes/{DEVICE}", json={"browse_name": "Pump7B"})
            assert r.status_code == 200, r.text
            device = client.get_node(nid(a, DEVICE))

            async def renamed() -> bool:
                return (await device.read_browse_name()).Name == "Pump7B"

            async def moved() -> bool:
                if not await renamed():
                    return False
                return "Flow high" in {(await c.read_browse_name()).Name for c in await device.get_children()}

            await eventually(moved if with_nodes(ua_live) else renamed, what="the condition under the renamed device")
            if with_nodes(ua_live):
                flow = client.get_node(nid(a, FLOW))
                referenced = await flow.get_referenced_nodes(refs=ua.ObjectIds.HasCondition)
                assert [n.nodeid for n in referenced] == [cond.nodeid]
            # (its configured tag path no longer exists: the alarm engine may have the source
            # unresolved by now, and then its events come from the tenant folder up)
            at_tenant = await alarm_events(client, nid(a))
            await cond.call_method(ADD_COMMENT, enabled.EventId, ua.LocalizedText("after the rename"))
            commented = await next_event(at_tenant, lambda e: e.Comment.Text == "after the rename")
            assert commented.NodeId == cond.nodeid

            everywhere = await alarm_events(client)
            r = await asyncio.to_thread(engineer.delete, f"/api/v1/alarms/conditions/{cid}")
            assert r.status_code == 204, r.text
            last = await next_event(everywhere, lambda e: e.NodeId == cond.nodeid)
            assert last.Retain is False

            async def gone() -> bool:
                try:
                    if with_nodes(ua_live):
                        await cond.read_browse_name()
                    else:  # BadEventIdUnknown while the condition is known
                        await cond.call_method(ADD_COMMENT, b"none", ua.LocalizedText("x"))
                except ua.uaerrors.BadNodeIdUnknown:
                    return True
                except ua.uaerrors.BadEventIdUnknown:
                    return False
                return False

            await eventually(gone, what="the deleted condition gone")

    asyncio.run(check())


# -- review fixes: filters, revoked users, races, objects (SQLite) -----------------------------------------


def _operand(*path: str) -> ua.SimpleAttributeOperand:
    return ua.SimpleAttributeOperand(
        TypeDefinitionId=ua.NodeId(ua.ObjectIds.BaseEventType), BrowsePath=[ua.QualifiedName(p, 0) for p in path],
        AttributeId=ua.AttributeIds.Value,
    )  # fmt: skip


def _event_filter(select: list[tuple[str, ...]], *where: ua.ContentFilterElement) -> ua.EventFilter:
    return ua.EventFilter(SelectClauses=[_operand(*p) for p in select], WhereClause=ua.ContentFilter(list(where)))


def _literal(value: Any) -> ua.LiteralOperand:
    return ua.LiteralOperand(Value=ua.Variant(value))


@sqlite_only
def test_event_filters_as_part_4_defines_them(ua_live: LiveServer, plant: tuple[TenantHandle, TenantHandle]) -> None:
    """OfType takes subtypes, a WhereClause operand's whole browse path names the field, and one
    session's select clause naming no field (a Python attribute of asyncua's event object) costs
    no other session its events. A filter on a folder above the source works without condition nodes."""
    a, _ = plant
    cid = limit_condition(a)
    of_type = ua.ContentFilterElement(
        FilterOperator=ua.FilterOperator.OfType, FilterOperands=[_literal(ua.NodeId(ua.ObjectIds.AlarmConditionType))]
    )
    active = ua.ContentFilterElement(
        FilterOperator=ua.FilterOperator.Equals, FilterOperands=[_operand("ActiveState", "Id"), _literal(True)]
    )

    async def check() -> None:
        async with session(ua_live, a, "operator") as careless, session(ua_live, a, "operator") as client:
            await condition(ua_live, client, a, cid)
            bad_sub = await careless.create_subscription(20, None)  # subscribed first: served first
            await bad_sub.subscribe_events(evfilter=_event_filter([("EventType",), ("emitting_node",)]))
            by_type = await client.create_subscription(20, None)
            await by_type.subscribe_events(evfilter=_event_filter([("EventType",), ("ActiveState", "Id")], of_type))
            by_state = await client.create_subscription(20, None)
            await by_state.subscribe_events(  # on the source's folder: the notifier chain goes up from the device
                nid(a, "Plant1"), evfilter=_event_filter([("EventType",), ("ActiveState", "Id")], active)
            )

            await asyncio.to_thread(send, a, 95.0)
            typed = await next_event(by_type, lambda e: True)
            assert typed.EventType == ua.NodeId(ua.ObjectIds.ExclusiveLimitAlarmType), "a subtype passes OfType"
            assert _active(await next_event(by_state, lambda e: True))
            nulls = await next_event(bad_sub, lambda e: True)
            assert nulls.EventType == typed.EventType and nulls.emitting_node is None, "no such field: null"

            await asyncio.to_thread(send, a, 50.0)
            assert not _active(await next_event(by_type, lambda e: True))
            assert await drain(by_state) == [], "ActiveState/Id = true lets the clearing through no more"

    asyncio.run(check())


@sqlite_only
def test_a_disabled_user_receives_no_more_alarm_events(
    ua_live: LiveServer, plant: tuple[TenantHandle, TenantHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscribed client sends only Publish: the user is checked again before each event."""
    a, _ = plant
    monkeypatch.setattr(tenancy, "PRINCIPAL_TTL_S", 0.1)
    cid = limit_condition(a)
    users = {u["username"]: u["id"] for u in a.admin.get("/api/v1/users").json()}

    async def check() -> None:
        async with session(ua_live, a, "viewer") as client:
            await condition(ua_live, client, a, cid)
            sub = await alarm_events(client)
            r = await asyncio.to_thread(a.admin.patch, f"/api/v1/users/{users['viewer']}", json={"is_active": False})
            assert r.status_code == 200, r.text
            await asyncio.sleep(0.3)
            await asyncio.to_thread(send, a, 95.0)
            await asyncio.to_thread(wait_for, lambda: alarm(a.engineer, cid)["state"] == "unack_active")
            assert await drain(sub, 1.0) == []

    asyncio.run(check())


@sqlite_only
def test_acknowledge_counts_the_transitions_on_their_way(
    ua_live: LiveServer, plant: tuple[TenantHandle, TenantHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An EventId from before a new raise that the server has not shown yet does not acknowledge it."""
    a, _ = plant
    cid = limit_condition(a)
    operator = a.users["operator"]

    async def check() -> None:
        async with session(ua_live, a, "operator") as client:
            cond = await condition(ua_live, client, a, cid)
            sub = await alarm_events(client)
            await asyncio.to_thread(send, a, 95.0)
            raised = await next_event(sub, _active)
            await asyncio.sleep(0.3)  # the pump is idle again
            monkeypatch.setattr(opcua_server, "LIVE_COALESCE_S", 5.0)  # it now waits 5 s after a wake
            await asyncio.to_thread(send, a, 50.0)  # cleared unacknowledged
            await asyncio.to_thread(send, a, 96.0)  # and raised anew: both still waiting in the server
            await asyncio.to_thread(wait_for, lambda: alarm(operator, cid)["activations"] == 2)
            with pytest.raises(ua.uaerrors.BadEventIdUnknown):
                await cond.call_method(ACKNOWLEDGE, raised.EventId, ua.LocalizedText("old news"))
            assert alarm(operator, cid)["state"] == "unack_active"

    asyncio.run(check())


@both_modes
def test_active_state_follows_the_process_under_a_shelve(
    ua_live: LiveServer, plant: tuple[TenantHandle, TenantHandle]
) -> None:
    """The engine tracks a shelved alarm's condition without a bus event; ActiveState shows it."""
    a, _ = plant
    cid = limit_condition(a)
    supervisor = a.users["supervisor"]
    send(a, 95.0)
    wait_for(lambda: alarm(supervisor, cid)["state"] == "unack_active", what="alarm raised")
    r = supervisor.post(f"/api/v1/alarms/{cid}/shelve", json={"reason": "sensor swap", "duration_s": 600})
    assert r.status_code == 200, r.text

    async def check() -> None:
        async with session(ua_live, a, "supervisor") as client:
            await condition(ua_live, client, a, cid)

            async def shelved_active() -> bool:
                last = await refreshed(client, a, cid)
                return last is not None and _active(last) and last.SuppressedOrShelved is True

            assert await eventually(shelved_active, what="active under the shelve")
            active = client.get_node(cond_id(a, cid, "ActiveState;Id"))
            if with_nodes(ua_live):
                assert await active.read_value() is True
            sub = await alarm_events(client)
            await asyncio.to_thread(send, a, 50.0)
            cleared = await next_event(sub, lambda e: not _active(e))
            assert cleared.SuppressedOrShelved is True and cleared.Retain is True
            if with_nodes(ua_live):
                assert await active.read_value() is False

    asyncio.run(check())


@nodes_only
def test_condition_methods_need_their_own_object(ua_live: LiveServer, plant: tuple[TenantHandle, TenantHandle]) -> None:
    """The ShelvingState object takes the shelving methods only; the per-instance method ids of
    earlier versions are no methods (conditions have no method nodes)."""
    a, _ = plant
    cid = limit_condition(a)
    send(a, 95.0)
    wait_for(lambda: alarm(a.engineer, cid)["state"] == "unack_active", what="alarm raised")

    async def check() -> None:
        async with session(ua_live, a, "supervisor") as client:
            cond = await appeared(client, cond_id(a, cid))
            shelving = client.get_node(cond_id(a, cid, "ShelvingState"))
            event_id = await eventually(lambda: _raised_event_id(client, a, cid), what="the raised state")
            calls = [
                (cond, ua.NodeId.from_string(cond_id(a, cid, "Acknowledge")), [event_id, ua.LocalizedText("")]),
                (shelving, ACKNOWLEDGE, [event_id, ua.LocalizedText("")]),
                (shelving, ADD_COMMENT, [event_id, ua.LocalizedText("")]),
                (client.get_node(nid(a, DEVICE)), ACKNOWLEDGE, [event_id, ua.LocalizedText("")]),  # not a condition
            ]
            for obj, method, args in calls:
                with pytest.raises(ua.uaerrors.BadMethodInvalid):
                    await obj.call_method(method, *args)
            # Part 9: the shelving methods take the ConditionId as well as the ShelvingState object
            await cond.call_method(ONE_SHOT_SHELVE)
            await shelving.call_method(UNSHELVE)

    asyncio.run(check())
    assert [e["event"] for e in journal(a.engineer, cid)] == ["activated", "shelved", "unshelved"]


@sqlite_only
def test_a_transition_while_the_server_starts_is_not_lost(
    ua_live: LiveServer, plant: tuple[TenantHandle, TenantHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An alarm acknowledged after the server read the conditions, before it listens, shows so."""
    a, _ = plant
    cid = limit_condition(a)
    operator = a.users["operator"]
    send(a, 95.0)
    wait_for(lambda: alarm(operator, cid)["state"] == "unack_active", what="alarm raised")
    server = adapter(ua_live)
    ua_live.call(server.stop())
    load = opcua_server.Core._sync_all

    async def load_then_acknowledge(core: opcua_server.Core) -> None:
        await load(core)
        if (await asyncio.to_thread(alarm, operator, cid))["state"] == "unack_active":
            r = await asyncio.to_thread(operator.post, f"/api/v1/alarms/{cid}/acknowledge", json={})
            assert r.status_code == 200, r.text

    monkeypatch.setattr(opcua_server.Core, "_sync_all", load_then_acknowledge)
    ua_live.call(server.start())
    assert server.ready.wait(30), "restarted"
    monkeypatch.undo()

    async def check() -> None:
        async with session(ua_live, a, "operator") as client:

            async def acked() -> bool:
                last = await refreshed(client, a, cid)
                return last is not None and field(last, "AckedState/Id") is True

            assert await eventually(acked, timeout=5, what="the acknowledgement shown")

    asyncio.run(check())


@sqlite_only
def test_without_nodes_a_condition_is_its_condition_id(
    ua_live: LiveServer, plant: tuple[TenantHandle, TenantHandle]
) -> None:
    """No node of a condition exists (nothing to browse or read, no node in asyncua's address
    space), yet its events carry the ConditionId and the standard methods take it as the object,
    for the condition's own tenant only."""
    a, b = plant
    cid = limit_condition(a)
    send(a, 95.0)
    wait_for(lambda: alarm(a.engineer, cid)["state"] == "unack_active", what="alarm raised")
    core = adapter(ua_live).core
    assert core is not None

    async def check() -> None:
        async with session(ua_live, a, "operator") as client, session(ua_live, b, "supervisor") as other:
            cond = await condition(ua_live, client, a, cid)
            prefix = f"{a.name};Alarm;{cid}"
            assert not [n for n in core.server.iserver.aspace._nodes if str(n.Identifier).startswith(prefix)]
            device = client.get_node(nid(a, DEVICE))
            names = {(await c.read_browse_name()).Name for c in await device.get_children()}
            assert names == {"Status", "SetStatus", "Flow", "Pressure"}, "no condition under its source's device"
            flow = client.get_node(nid(a, FLOW))
            assert await flow.get_referenced_nodes(refs=ua.ObjectIds.HasCondition) == []
            for unknown in (cond.read_browse_name(), cond.read_event_notifier(), cond.read_value()):
                with pytest.raises(ua.uaerrors.BadNodeIdUnknown):
                    await unknown
            # no node, no notifier (asyncua answers BadServiceUnsupported for a node it does not have)
            with pytest.raises((ua.uaerrors.BadNodeIdUnknown, ua.uaerrors.BadServiceUnsupported)):
                await (await client.create_subscription(20, None)).subscribe_events(cond.nodeid)

            raised = await refreshed(client, a, cid)
            assert raised is not None and _active(raised) and raised.NodeId == cond.nodeid
            assert raised.SourceNode == flow.nodeid and raised.ConditionName == "Flow high"
            with pytest.raises(ua.uaerrors.BadNodeIdUnknown):  # the ConditionId, but another tenant's
                await other.get_node(cond.nodeid).call_method(ACKNOWLEDGE, raised.EventId, ua.LocalizedText(""))
            with pytest.raises(ua.uaerrors.BadNodeIdUnknown):  # a ConditionId of no condition
                await client.get_node(cond_id(a, 999_999)).call_method(
                    ACKNOWLEDGE, raised.EventId, ua.LocalizedText("")
                )
            with pytest.raises(ua.uaerrors.BadMethodInvalid):  # no per-instance method ids
                await cond.call_method(ua.NodeId.from_string(cond_id(a, cid, "Acknowledge")), raised.EventId,
                                       ua.LocalizedText(""))  # fmt: skip
            sub = await alarm_events(client, nid(a, DEVICE))
            await cond.call_method(ACKNOWLEDGE, raised.EventId, ua.LocalizedText("seen"))
            acked = await next_event(sub, lambda e: field(e, "AckedState/Id") is True)
            assert acked.NodeId == cond.nodeid and acked.Comment.Text == "seen"

    asyncio.run(check())
    state = alarm(a.users["operator"], cid)
    assert (state["state"], state["acked_by"]) == ("ack_active", "operator")
