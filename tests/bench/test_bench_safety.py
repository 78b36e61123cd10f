"""`takeover bench safety`: a small run as a user starts it, its JSON as DESIGN.md fixes it.

The figures of the full run (100 episodes) are measurements, in docs/safety.md; here only the
contract and what must hold on any seed: with the field on, no collision with an obstacle."""

from __future__ import annotations

import json
import subprocess
import sys

ARM_KEYS = {"episodes", "collisions", "protective_stops", "success_rate", "ci_low", "ci_high",
            "mean_time_s"}


def test_bench_safety_json_field_off_and_on() -> None:
    p = subprocess.run([sys.executable, "-m", "takeover.cli", "bench", "safety", "--episodes",
                        "4", "--seed", "7002", "--json"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    line = p.stdout.splitlines()[-1]
    assert "NaN" not in line and "Infinity" not in line
    out = json.loads(line)
    off, on = out["field_off"], out["field_on"]
    assert set(off) >= ARM_KEYS and set(on) >= ARM_KEYS
    assert off["episodes"] == on["episodes"] == 4
    assert on["collisions"] == 0
    assert off["collisions"] >= 1, "the expert, unaware of the obstacles, drives into them"
    assert on["protective_stops"] >= 1
    assert 0.0 <= on["ci_low"] <= on["success_rate"] <= on["ci_high"] <= 1.0
    assert "field_on:" in p.stderr  # progress on stderr, the result on stdout
