from __future__ import annotations

import pytest
from _budget import GENERATED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if GENERATED:
        total = sum(GENERATED.values())
        terminalreporter.write_line(
            f"tests/hw property inputs generated: {total} "
            + " ".join(f"{k}={v}" for k, v in sorted(GENERATED.items()))
        )
