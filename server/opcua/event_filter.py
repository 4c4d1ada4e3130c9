"""Event fields and WhereClauses as Part 4 defines them, where asyncua 2.1 differs.

The alarm events (conditions.py) are asyncua `Event`s filtered by asyncua's monitored items, which
get three things wrong that matter to alarm clients:

- A select clause that names no field of the event raises instead of selecting null when the
  name happens to be a Python attribute of the event object (`data_types`, `emitting_node`,
  `__dict__`): one session's careless filter then stops the delivery of that event to every
  subscription after it. `FieldEvent` selects exactly its fields and null for anything else.
  Its fields are the condition's own field dict, not copied into attributes: a condition keeps
  its last event for ConditionRefresh, and a copy was a third of what a condition costs.
- `OfType` is compared for equality with the event's type, so `OfType AlarmConditionType` (what
  UA .NET-based clients put in their filters) lets no `ExclusiveLimitAlarmType` event through;
  Part 4 says "of that type or a subtype".
- An operand's browse path is cut to its first name: `ActiveState/Id = true` compares the
  state's text with true. Here the whole path names the field, as in the select clauses.

`use_part4_where` puts `WhereClause` on a session's event monitored items when they are created
or modified (asyncua keeps the old evaluator when a filter is modified).
"""

from __future__ import annotations

from typing import Any

from asyncua import ua
from asyncua.common.events import Event
from asyncua.server.monitored_item_service import MonitoredItemService, WhereClauseEvaluator

from server.opcua.common import AttributeIds, ObjectIds, std

HAS_SUBTYPE = std(ObjectIds.HasSubtype)


class FieldEvent(Event):
    """An event whose selectable fields are exactly those of `fields` (by browse path, `/`-separated),
    plus `NodeId` = `condition_id` for a condition's event.

    `fields` is shared, never copied, and must not change afterwards (the conditions replace their
    dict rather than change it); its Variants go out as they are (asyncua deep-copies each value per
    monitored item). asyncua's own WhereClause code reads a field as an attribute (`event.EventType`):
    `__getattr__` answers from `fields`."""

    def __init__(
        self, emitting_node: ua.NodeId, fields: dict[str, ua.Variant], condition_id: ua.NodeId | None = None
    ) -> None:
        self.fields = fields  # before Event's __init__: it takes the attributes so far as internal
        self.condition_id = condition_id
        super().__init__(emitting_node)

    def field(self, name: str) -> ua.Variant | None:
        """The field of that browse path, None when the event has none."""
        if name == "NodeId" and self.condition_id is not None:
            return ua.Variant(self.condition_id, ua.VariantType.NodeId)
        return self.fields.get(name)

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__.get("fields")
        found = fields.get(name) if fields is not None and name != "NodeId" else None
        if found is None:
            condition_id = self.__dict__.get("condition_id")
            if name == "NodeId" and condition_id is not None:
                return condition_id
            raise AttributeError(name)
        return found.Value

    def to_event_fields(self, select_clauses: list[ua.SimpleAttributeOperand]) -> list[ua.Variant]:
        """The selected fields in order; null for a field the event does not have."""
        out: list[ua.Variant] = []
        for sattr in select_clauses:
            if sattr.BrowsePath:
                name = self.browse_path_to_attribute_name(sattr.BrowsePath)
            else:  # an attribute of the event itself: only NodeId (the ConditionId) is one
                name = "NodeId" if sattr.AttributeId == AttributeIds.NodeId else ""
            found = self.field(name)
            out.append(found if found is not None and found.Value is not None else ua.Variant())
        return out


class WhereClause(WhereClauseEvaluator):
    """asyncua's evaluator with Part 4's OfType and whole browse paths."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._subtypes: dict[tuple[ua.NodeId, ua.NodeId], bool] = {}

    def _eval_el(self, index: int, event: Any) -> Any:
        element = self.elements[index]
        if element.FilterOperator == ua.FilterOperator.OfType:
            base = self._eval_op(element.FilterOperands[0], event)
            event_type = event.field("EventType") if isinstance(event, FieldEvent) else None
            type_id = event_type.Value if event_type is not None else getattr(event, "EventType", None)
            return isinstance(base, ua.NodeId) and self._is_subtype(type_id, base)
        return super()._eval_el(index, event)

    def _eval_op(self, op: Any, event: Any) -> Any:
        if isinstance(op, ua.SimpleAttributeOperand) and op.BrowsePath:
            name = Event.browse_path_to_attribute_name(op.BrowsePath)
            if isinstance(event, FieldEvent):
                found = event.field(name)
                return found.Value if found is not None else None
            return getattr(event, name, None) if name in getattr(event, "data_types", {}) else None
        return super()._eval_op(op, event)

    def _is_subtype(self, type_id: object, base: ua.NodeId) -> bool:
        if not isinstance(type_id, ua.NodeId):
            return False
        key = (type_id, base)
        known = self._subtypes.get(key)
        if known is None:
            known = self._subtypes[key] = self._walk_up(type_id, base)
        return known

    def _walk_up(self, type_id: ua.NodeId, base: ua.NodeId) -> bool:
        seen: set[ua.NodeId] = set()
        node: ua.NodeId | None = type_id
        while node is not None and node not in seen:
            if node == base:
                return True
            seen.add(node)
            data = self._aspace.get(node)
            refs = data.references if data is not None else []
            node = next((r.NodeId for r in refs if r.ReferenceTypeId == HAS_SUBTYPE and not r.IsForward), None)
        return False


def use_part4_where(items: MonitoredItemService, monitored_item_ids: list[int]) -> None:
    """Give these monitored items (the event items among them) a Part 4 WhereClause evaluator."""
    for mid in monitored_item_ids:
        data = items._monitored_items.get(mid)
        if data is not None and isinstance(data.filter, ua.EventFilter):
            data.where_clause_evaluator = WhereClause(items.logger, items.aspace, data.filter.WhereClause)
