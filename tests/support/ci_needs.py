"""What a test needs from the machine: skipped on a developer's machine that lacks it, a failure
in CI (`TAKEOVER_CI=1`, set by .ci/run), whose machine has all of it, so a test never stops
running there without anyone noticing."""

from __future__ import annotations

import os

import pytest


def need(available: bool, what: str) -> None:
    if available:
        return
    if os.environ.get("TAKEOVER_CI"):
        pytest.fail(f"CI must run this test, but {what}")
    pytest.skip(what)
