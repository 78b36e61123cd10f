"""Smoke runs of commands that had no test: `takeover init` and the benches on tiny inputs.
Real subprocesses as a user runs them; the figures are not judged (they are measurements), only
that each command runs, says what it measured and prints a well-formed result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from takeover.bench.recorder import run_recorder_bench
from takeover.config import load_config


def takeover(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "takeover.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_init_makes_a_workspace_and_refuses_to_overwrite_it(tmp_path: Path) -> None:
    p = takeover("init", str(tmp_path / "ws"))
    assert p.returncode == 0 and "workspace ready" in p.stdout, p.stderr
    assert (tmp_path / "ws" / "rounds").is_dir() and (tmp_path / "ws" / "models").is_dir()
    assert load_config(tmp_path / "ws" / "takeover.toml").robot.url == "sim://"
    again = takeover("init", str(tmp_path / "ws"))
    lines = again.stderr.strip().splitlines()
    assert again.returncode == 2 and len(lines) == 1 and "already exists" in lines[0]


def test_bench_loop_json() -> None:
    p = takeover("bench", "loop", "--seconds", "1", "--rates", "20", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.splitlines()[-1])
    assert "NaN" not in p.stdout.splitlines()[-1]
    text = json.dumps(out)
    assert "late_ms_p99" in text and "overruns" in text, text


def test_bench_sim_json() -> None:
    p = takeover("bench", "sim", "--frames", "30", "--width", "48", "--height", "48", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.splitlines()[-1])
    assert out and all(v is None or isinstance(v, (int, float, str, list, dict))
                       for v in out.values())


@pytest.mark.slow
def test_bench_recorder_on_one_compression(tmp_path: Path) -> None:
    out = run_recorder_bench(True, duration_s=0.5, compressions=("gzip:1",), workdir=tmp_path)
    row = out["compressions"][0]
    assert row["compression"] == "gzip:1" and row["steps"] > 0
    assert row["steps"] + row["dropped_steps"] == row["loop"]["ticks"]
    assert out["listing"]["episodes"] == 200  # the quick listing
    json.dumps(out, allow_nan=False)


@pytest.mark.slow
def test_bench_links_json() -> None:
    p = takeover("bench", "links", "--seconds", "1", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.splitlines()[-1])
    for link in ("ros2", "rosbridge", "serial"):
        assert out[link]["samples"] > 0 and out[link]["p99_ms"] is not None, out
    assert out["ros2"]["to_receiver"]["samples"] > 0 and out["ros2"]["to_robot"]["samples"] > 0, out
    assert out["ros2"]["camera_raw"]["received_hz"] > 0, out
