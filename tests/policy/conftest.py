"""Fixtures for tests/policy live in policy_support.py, importable by name from the tests
(several test folders have a conftest.py, so `from policy_support import` would be ambiguous)."""

from policy_support import *  # noqa: F403
