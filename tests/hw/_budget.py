"""Counts the inputs that the property tests in tests/hw generate (the issue asks for at least
100k across the suite); the total is printed at the end of the run by conftest.py."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

GENERATED: dict[str, int] = {}

# No deadline (a loaded CI machine is not a failure), no example database (every run draws
# anew from the seed hypothesis picks, and no state is left in the working tree).
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def count(test: str, inputs: int) -> None:
    GENERATED[test] = GENERATED.get(test, 0) + inputs
