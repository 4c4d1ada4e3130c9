"""Build scripts for the frozen programs and their installers (not shipped in the wheel)."""
