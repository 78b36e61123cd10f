"""A bounded wait on a condition, for tests that watch real-time components."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    """A bounded wait on a condition (never a timed assertion: the bound is only a guard)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.005)
