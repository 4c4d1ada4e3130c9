"""Pure domain model: no I/O, no framework, no Qt."""
