"""Tests of the frozen programs and the installers (issue #6)."""
