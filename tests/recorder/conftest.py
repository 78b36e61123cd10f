"""Fixtures for tests/recorder live in recorder_support.py, importable by name from the tests
(several test folders have a conftest.py, so `from recorder_support import` would be ambiguous)."""

from recorder_support import *  # noqa: F403
