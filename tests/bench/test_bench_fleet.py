"""`takeover bench fleet`: one simulated operator over 1 and 2 robots with a real ONNX model in
onnxruntime on the real simulator; the JSON contract (DESIGN.md's fields, no NaN/Infinity);
bad input as one line naming the option."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tui_support import tiny_onnx_model

from takeover.bench.fleet import FleetSettings, run_fleet_bench, with_ratios
from takeover.bench.workspaces import bench_workspace
from takeover.cli import main

#: DESIGN.md's `bench fleet` row fields, and the ones this bench adds.
ROW_FIELDS = {"robots", "supervision", "episodes", "successes", "success_rate", "ci_low",
              "ci_high", "operator_min", "attention_min", "rohe", "rohe_ratio", "idle_frac"}


def test_rows_for_each_mode_and_count_on_the_same_seeds(tmp_path: Path) -> None:
    model = tiny_onnx_model(tmp_path / "policy.onnx")
    ws = bench_workspace(tmp_path / "ws", 96)
    result = run_fleet_bench(FleetSettings(robots=(1, 2), supervision=("human", "robot"),
                                           policy=model, workspace=ws, episodes=2,
                                           max_steps=40))
    rows = result["rows"]
    assert [(r["robots"], r["supervision"]) for r in rows] == [
        (1, "human"), (2, "human"), (1, "robot"), (2, "robot")]
    for r in rows:
        assert set(r) >= ROW_FIELDS
        assert r["episodes"] == 2 and 0 <= r["successes"] <= 2
        assert 0 <= r["ci_low"] <= r["ci_high"] <= 1
        assert r["operator_min"] > 0
        assert 0 <= r["attention_min"] <= r["operator_min"]
        assert r["rohe"] == pytest.approx(r["successes"] / r["operator_min"], abs=1e-3)
        assert 0 <= r["idle_frac"] <= 1
    one_h, two_h, one_r, two_r = rows
    assert one_h["rohe_ratio"] in (1.0, None) and one_r["rohe_ratio"] in (1.0, None)
    # Human-gated, one operator watches one robot at a time: with 2 robots the watched
    # attempts run one after the other, as with one robot (40-step episodes at 20 Hz), and
    # each robot waits while the other is watched.
    assert two_h["operator_min"] >= one_h["operator_min"] - 0.01
    assert two_h["idle_frac"] > 0.3 and one_h["idle_frac"] < 0.1
    # Robot-gated, the two robots run at once: the run is shorter than one robot's two.
    assert two_r["operator_min"] < one_r["operator_min"]
    assert result["settings"]["seeds"] == [5000, 5001]
    printed = json.dumps(result, allow_nan=False)  # raises on NaN or Infinity
    assert "NaN" not in printed


def test_rohe_ratio_against_one_robot_and_null_without_it() -> None:
    rows = with_ratios([
        {"robots": 1, "supervision": "robot", "rohe": 2.0},
        {"robots": 4, "supervision": "robot", "rohe": 5.0},
        {"robots": 4, "supervision": "human", "rohe": 1.0},
        {"robots": 1, "supervision": "human", "rohe": 0.0},
    ])
    assert [r["rohe_ratio"] for r in rows] == [1.0, 2.5, None, None]
    assert not any(isinstance(r["rohe_ratio"], float) and not math.isfinite(r["rohe_ratio"])
                   for r in rows)


@pytest.mark.parametrize(("argv", "flag"), [
    ([], "--policy"),
    (["--policy", "no/such/model.onnx"], "--policy"),
    (["--quick", "--robots", "1,x"], "--robots"),
    (["--quick", "--robots", "0"], "--robots"),
    (["--quick", "--supervision", "both"], "--supervision"),
    (["--quick", "--robots", "4", "--episodes", "2"], "--episodes"),
    (["--quick", "--max-steps", "0"], "--max-steps"),
    (["--quick", "--seed", "-1"], "--seed"),
])
def test_bad_input_is_one_line_naming_the_option(argv: list[str], flag: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "fleet", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and "Traceback" not in err[0], err


@pytest.mark.slow
def test_quick_end_to_end_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "fleet", "--quick", "--json"]) == 0
    captured = capsys.readouterr()
    line = captured.out.strip().splitlines()[-1]
    assert "NaN" not in line and "Infinity" not in line
    result = json.loads(line)
    assert "ROHE" in captured.err  # the table
    assert [(r["robots"], r["supervision"]) for r in result["rows"]] == [
        (1, "human"), (2, "human"), (1, "robot"), (2, "robot")]
    assert all(set(r) >= ROW_FIELDS for r in result["rows"])
