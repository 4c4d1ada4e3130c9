"""Alarm management after ISA-18.2: condition specs, evaluators, the engine, persistence."""
