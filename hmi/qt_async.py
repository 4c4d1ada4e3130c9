"""A typed face for qasync's `asyncSlot` (qasync ships no type hints).

asyncSlot works on QObject methods, not on plain functions connected to a signal
(shared/BASELINES.md): every async slot of the console is a method. Calling the decorated
method schedules the coroutine on the qasync loop and returns at once.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, cast

from qasync import asyncSlot

P = ParamSpec("P")


def async_slot(*types: type) -> Callable[[Callable[P, Coroutine[Any, Any, Any]]], Callable[P, object]]:
    """Run the coroutine method as a task on the qasync loop when the signal fires."""
    return cast(Callable[[Callable[P, Coroutine[Any, Any, Any]]], Callable[P, object]], asyncSlot(*types))
