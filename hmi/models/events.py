"""A minimal Qt-free signal, so models can notify views without being QObjects (napari's idea).

Bound methods are held weakly (as napari's events do): a model must not keep a closed view
alive, nor form a reference cycle with it that the garbage collector frees on another thread.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Signal(Generic[T]):
    """Listeners are called synchronously, in the order they connected."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[], Any]] = []

    def connect(self, listener: Callable[[T], None]) -> None:
        if hasattr(listener, "__self__") and hasattr(listener, "__func__"):
            self._listeners.append(weakref.WeakMethod(listener))
        else:
            self._listeners.append(lambda: listener)

    def disconnect(self, listener: Callable[[T], None]) -> None:
        self._listeners = [ref for ref in self._listeners if ref() != listener]

    def emit(self, value: T) -> None:
        dead = False
        for ref in list(self._listeners):
            listener = ref()
            if listener is None:
                dead = True
            else:
                listener(value)
        if dead:
            self._listeners = [ref for ref in self._listeners if ref() is not None]
