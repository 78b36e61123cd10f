"""Fixtures for these tests live in tests/support/tui_support.py, importable by name from the tests
(several test folders have a conftest.py, so `from tui_support import` would be ambiguous)."""

from tui_support import *  # noqa: F403
