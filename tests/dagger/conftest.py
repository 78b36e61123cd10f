"""Fixtures for tests/dagger live in dagger_support.py, importable by name from the tests
(several test folders have a conftest.py, so `from conftest import` would be ambiguous)."""

from dagger_support import *  # noqa: F403
