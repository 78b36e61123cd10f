"""Suite-wide guards."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_realtime_leak(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test must not leave the test process's main thread real-time: a SCHED_FIFO pytest
    worker starves the other worker and every real-time simulator the later tests start (an
    AV1 encoder once left it at SCHED_FIFO 99). The scheduling is put back and the test fails."""
    yield
    if not hasattr(os, "sched_getscheduler"):
        return
    policy = os.sched_getscheduler(0)
    if policy == os.SCHED_OTHER or policy == getattr(os, "SCHED_BATCH", -1):
        return
    priority = os.sched_getparam(0).sched_priority
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    pytest.fail(f"{request.node.nodeid} left the test process's main thread real-time "
                f"(policy {policy}, priority {priority})")
