"""Widgets. Each takes its model (and the async actions it may trigger) in `__init__`; none does I/O."""
