from __future__ import annotations

import pytest
from _budget import GENERATED

# The property tests that count their inputs (_budget.count), and the budget they share.
COUNTED = {"chunked", "corrupted", "frame_round_trip", "oversized", "random_bytes",
           "rosbridge_messages", "serial_link_receive", "truncated"}
BUDGET = 100_000


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """When every counting property test ran, the inputs they generated must reach the
    budget: a run that quietly generated fewer (fewer examples, an early stop) fails."""
    total = sum(GENERATED.values())
    if set(GENERATED) >= COUNTED and total < BUDGET and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\ntests/hw property inputs: {total} generated, fewer than the budget {BUDGET}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if GENERATED:
        total = sum(GENERATED.values())
        terminalreporter.write_line(
            f"tests/hw property inputs generated: {total} "
            + " ".join(f"{k}={v}" for k, v in sorted(GENERATED.items()))
        )
