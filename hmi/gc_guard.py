"""Python's cyclic garbage collector runs in whichever thread happens to allocate. If it frees
a QObject caught in a reference cycle from a worker thread (asyncio's DNS executor, a test's
server thread), Qt aborts ("Timers cannot be stopped from another thread") or crashes. So the
console switches automatic collection off and collects from a timer on the GUI thread, after
freezing what start-up built (full collections would otherwise walk it every time)."""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer


class GuiThreadCollector(QObject):
    """Collects on the GUI thread when the allocation counters pass gc's own thresholds."""

    def __init__(self, interval_ms: int = 500, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.threshold = gc.get_threshold()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        gc.disable()
        self._timer.start(interval_ms)

    def check(self) -> None:
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self.threshold[generation]:
                gc.collect(generation)
                return

    def freeze(self) -> None:
        """Collect once and move everything that survives out of later collections, as the server
        does at start-up: the console's own heap (Qt wrappers, pyqtgraph, numpy, ~110,000 tracked
        objects) made every full collection take 100–160 ms, a GUI freeze whenever one ran. Called
        once the main window is built, before it shows; what is allocated later is collected as before."""
        gc.collect()
        gc.freeze()

    def stop(self, enable_gc: bool = True) -> None:
        """Back to automatic collection (shutdown); `enable_gc=False` when another collector still runs."""
        self._timer.stop()
        gc.collect()
        if enable_gc:
            gc.enable()
