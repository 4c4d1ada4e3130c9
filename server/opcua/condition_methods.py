"""The Part 9 condition methods, answered as the calling session's user.

asyncua's method callbacks never learn who calls (docs/opcua.md), so `TenantSession.call` hands
every call of a condition method here: a standard type's method id (Acknowledge i=9111,
TimedShelve i=2949, ...) with the ConditionId — or, when conditions are nodes, their
ShelvingState object — as the ObjectId, and ConditionRefresh/ConditionRefresh2. Part 9 requires
servers to take the ConditionId as the object because conditions need not be nodes; conditions
have no method nodes of their own (a dozen nodes each, conditions.py), so these are the only way.
The platform's AlarmService then decides with the user's own permissions and journals the action
like any other; the resulting alarm event is sent out before the call is answered.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from asyncua import ua
from asyncua.server.internal_subscription import InternalSubscription

from server.alarms.service import AlarmService, parse_config
from server.domain.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from server.domain.permissions import Permission
from server.domain.principal import Principal
from server.opcua.common import ObjectIds, StatusCodes, bad
from server.opcua.condition_model import (
    BY_STANDARD_ID,
    COMMENT,
    EVENT_ID,
    PERMISSION,
    REFRESH_IDS,
    SHELVING_TIME,
    Action,
    MethodSpec,
)
from server.opcua.conditions import Conditions
from server.opcua.mirror import ConditionRef, Registry

log = logging.getLogger(__name__)

T = TypeVar("T")

SHELVE_REASON = "shelved via OPC UA"
"""The platform wants a reason to shelve; the methods without a Comment give this one."""
REFRESH_OBJECTS = (ObjectIds.ConditionType, ObjectIds.Server)
CONFLICTS = {
    Action.ACKNOWLEDGE: StatusCodes.BadConditionBranchAlreadyAcked,
    Action.UNSHELVE: StatusCodes.BadConditionNotShelved,
    Action.ENABLE: StatusCodes.BadConditionAlreadyEnabled,
    Action.DISABLE: StatusCodes.BadConditionAlreadyDisabled,
}
"""What a refusal of the state machine (409 on the API) means per action; otherwise BadInvalidState."""


class Bridge(Protocol):
    async def __call__(self, coro: Coroutine[Any, Any, T]) -> T: ...


OwnSubscription = Callable[[int], InternalSubscription | None]
"""The calling session's subscription of that id, None when it is not its own."""


def _status(code: int, arguments: list[ua.StatusCode] | None = None) -> ua.CallMethodResult:
    return ua.CallMethodResult(StatusCode=bad(code) if code else ua.StatusCode(), InputArgumentResults=arguments or [])


def _integer(variant: ua.Variant) -> int | None:
    value = variant.Value
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class ConditionMethods:
    def __init__(
        self, registry: Registry, conditions: Conditions, bridge: Bridge, service: AlarmService,
        drain: Callable[[], Awaitable[None]],
    ) -> None:  # fmt: skip
        self.registry, self.conditions, self.bridge, self.service = registry, conditions, bridge, service
        self.drain = drain

    @staticmethod
    def handles(method: ua.NodeId) -> bool:
        """A standard condition method id or ConditionRefresh(2): answered here."""
        ident = method.Identifier
        standard = ident in BY_STANDARD_ID or ident in REFRESH_IDS
        return method.NamespaceIndex == 0 and isinstance(ident, int) and standard

    @staticmethod
    def permission(method: ua.NodeId) -> Permission | None:
        """What the user needs to call a standard condition method (its UserExecutable for them)."""
        ident = method.Identifier
        spec = BY_STANDARD_ID.get(ident) if method.NamespaceIndex == 0 and isinstance(ident, int) else None
        return PERMISSION[spec.action] if spec is not None else None

    async def call(self, who: Principal, req: ua.CallMethodRequest, own: OwnSubscription) -> ua.CallMethodResult:
        method, target = req.MethodId, req.ObjectId
        args = list(req.InputArguments or [])
        if method.NamespaceIndex == 0 and method.Identifier in REFRESH_IDS:
            return await self._refresh(who, req, args, own)
        ref = self.registry.conditions.get(target)
        if ref is not None and ref.tenant_id != who.tenant_id:  # the session's view checked it already
            return _status(StatusCodes.BadNodeIdUnknown)
        ident = method.Identifier
        assert isinstance(ident, int)
        spec = BY_STANDARD_ID[ident]
        if ref is None:
            # a ConditionId of no (or no longer a) condition is unknown, whether or not conditions
            # are nodes; any other object is not a condition
            unknown = self.registry.is_condition_id(target)
            return _status(StatusCodes.BadNodeIdUnknown if unknown else StatusCodes.BadMethodInvalid)
        if target != ref.node and not spec.on_shelving:
            # the object is the ShelvingState: only the shelving methods are its own (those also
            # take the ConditionId, as Part 9 asks)
            return _status(StatusCodes.BadMethodInvalid)
        return await self._condition(who, ref, spec, args)

    async def _condition(
        self, who: Principal, ref: ConditionRef, spec: MethodSpec, args: list[ua.Variant]
    ) -> ua.CallMethodResult:
        if len(args) != len(spec.args):
            few = len(args) < len(spec.args)
            return _status(StatusCodes.BadArgumentsMissing if few else StatusCodes.BadTooManyArguments)
        given: dict[str, Any] = {}
        results: list[ua.StatusCode] = []
        for name, arg in zip(spec.args, args, strict=True):
            value = arg.Value
            if name == EVENT_ID:
                ok = isinstance(value, bytes)
            elif name == COMMENT:
                if isinstance(value, ua.LocalizedText):
                    value = value.Text
                ok = value is None or isinstance(value, str)
            else:  # SHELVING_TIME: a Duration (ms); any number is taken
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            results.append(ua.StatusCode() if ok else bad(StatusCodes.BadTypeMismatch))
            given[name] = value
        if not all(r.is_good() for r in results):
            return _status(StatusCodes.BadInvalidArgument, results)
        if not who.can(PERMISSION[spec.action]):
            return _status(StatusCodes.BadUserAccessDenied, results)
        action = spec.action
        if EVENT_ID in given:
            # Transitions already published count first: an EventId from before a raise that is
            # still on its way must not acknowledge the new alarm.
            await self.drain()
        if EVENT_ID in given and not self.conditions.event_known(
            ref, given[EVENT_ID], to_acknowledge=action is Action.ACKNOWLEDGE
        ):
            return _status(StatusCodes.BadEventIdUnknown, results)
        comment = (given.get(COMMENT) or "").strip() or None
        info = self.conditions.info(ref)
        if info is None:
            return _status(StatusCodes.BadNodeIdUnknown, results)
        service, cid = self.service, ref.condition_id
        try:
            if action is Action.ACKNOWLEDGE:
                done = await self.bridge(service.acknowledge(who, [cid], comment))
                if not done or not done[0].ok:
                    return _status(StatusCodes.BadConditionBranchAlreadyAcked, results)
            elif action is Action.COMMENT:
                await self.bridge(service.comment(who, cid, comment or ""))
            elif action is Action.RESET:
                await self.bridge(service.reset(who, cid, comment))
            elif action is Action.TIMED_SHELVE:
                ms = float(given[SHELVING_TIME])
                if not math.isfinite(ms) or ms <= 0 or ms / 1000.0 > info.max_shelve_s:
                    return _status(StatusCodes.BadShelvingTimeOutOfRange, results)
                await self.bridge(service.shelve(who, cid, comment or SHELVE_REASON, ms / 1000.0))
            elif action is Action.ONE_SHOT_SHELVE:
                if info.view.get("shelving") == "one_shot":
                    return _status(StatusCodes.BadConditionAlreadyShelved, results)
                await self.bridge(service.shelve(who, cid, comment or SHELVE_REASON, None))
            elif action is Action.UNSHELVE:
                await self.bridge(service.unshelve(who, cid, comment))
            else:
                await self.bridge(_set_enabled(service, who, cid, action is Action.ENABLE))
        except Forbidden:
            return _status(StatusCodes.BadUserAccessDenied, results)
        except NotFound:
            return _status(StatusCodes.BadNodeIdUnknown, results)
        except InvalidInput as exc:
            too_long = exc.field == "duration_s"
            return _status(
                StatusCodes.BadShelvingTimeOutOfRange if too_long else StatusCodes.BadInvalidArgument, results
            )
        except Conflict:
            return _status(CONFLICTS.get(action, StatusCodes.BadInvalidState), results)
        except DomainError:
            return _status(StatusCodes.BadInvalidArgument, results)
        except Exception:
            log.exception("opcua server: condition method %s of alarm %d failed", spec.path, cid)
            return _status(StatusCodes.BadInternalError, results)
        await self.drain()  # the transition's event goes out before the answer
        return _status(0, results)

    async def _refresh(
        self, who: Principal, req: ua.CallMethodRequest, args: list[ua.Variant], own: OwnSubscription
    ) -> ua.CallMethodResult:
        target = req.ObjectId
        if target.NamespaceIndex != 0 or target.Identifier not in REFRESH_OBJECTS:
            return _status(StatusCodes.BadMethodInvalid)
        wanted = 1 if req.MethodId.Identifier == ObjectIds.ConditionType_ConditionRefresh else 2
        if len(args) != wanted:
            return _status(StatusCodes.BadArgumentsMissing if len(args) < wanted else StatusCodes.BadTooManyArguments)
        numbers = [_integer(a) for a in args]
        results = [ua.StatusCode() if n is not None else bad(StatusCodes.BadTypeMismatch) for n in numbers]
        if any(n is None for n in numbers):
            return _status(StatusCodes.BadInvalidArgument, results)
        sub = own(int(numbers[0] or 0))
        if sub is None:
            return _status(StatusCodes.BadSubscriptionIdInvalid, results)
        await self.drain()
        status = await self.conditions.refresh(who, sub, numbers[1] if wanted == 2 else None)
        return ua.CallMethodResult(StatusCode=status, InputArgumentResults=results)


async def _set_enabled(service: AlarmService, who: Principal, condition_id: int, enabled: bool) -> None:
    """Enable/Disable: the condition's configuration with `enabled` changed, as an engineer's PUT."""
    who.require(Permission.ALARMS_CONFIGURE)
    current = await service.condition(who, condition_id)
    config = dict(current["config"])
    if bool(config.get("enabled", True)) == enabled:
        raise Conflict(f"the condition is already {'enabled' if enabled else 'disabled'}")
    await service.update(who, condition_id, parse_config({**config, "enabled": enabled}), current["version"])
