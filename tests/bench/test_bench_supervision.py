"""`takeover bench supervision`: the quick preset end to end through the CLI (real recording,
real tiny ensemble training, real ONNX model in onnxruntime driving the simulator in both
modes) and its JSON contract; bad input as one line naming the option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from takeover.cli import main

#: DESIGN.md's `bench supervision` fields, per mode.
ARM_FIELDS = {"episodes", "success_rate", "ci_low", "ci_high", "attention_s", "driving_s",
              "requests", "false_alarms", "missed_failures"}


@pytest.mark.slow
def test_quick_end_to_end_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "supervision", "--quick", "--json"]) == 0
    captured = capsys.readouterr()
    printed = captured.out.strip().splitlines()[-1]
    assert "NaN" not in printed and "Infinity" not in printed
    result = json.loads(printed)
    assert "human-gated:" in captured.err and "robot-gated:" in captured.err  # the table
    assert result["settings"]["quick"] is True
    seeds = {}
    for mode in ("human", "robot"):
        arm = result[mode]
        assert set(arm) >= ARM_FIELDS, mode
        n = arm["episodes"]
        assert n == 2
        assert arm["success_rate"] == pytest.approx(arm["successes"] / n)
        assert 0 <= arm["ci_low"] <= arm["success_rate"] <= arm["ci_high"] <= 1
        # Internal consistency, not a result: the operator drove only while it looked; a
        # request is answered at most once (a correction or a hand-back); a failure is missed
        # at most once; every takeover was asked for or not.
        assert 0 <= arm["driving_s"] <= arm["attention_s"]
        assert arm["robot_gated"] + arm["false_alarms"] <= arm["requests"]
        assert 0 <= arm["missed_failures"] <= arm["failures"] <= n
        assert arm["robot_gated"] + arm["human_gated"] == arm["interventions"]
        assert arm["attention_s"] == pytest.approx(
            sum(r["attention_s"] for r in arm["per_episode"]), abs=0.01)
        assert arm["requests"] == sum(r["requests"] for r in arm["per_episode"])
        seeds[mode] = [r["seed"] for r in arm["per_episode"]]
    assert seeds["human"] == seeds["robot"] == [5000, 5001]  # the same seeds
    human, robot = result["human"], result["robot"]
    # Human-gated: the robot never asks, so nothing is robot-gated and every failure is missed.
    assert human["requests"] == human["robot_gated"] == human["false_alarms"] == 0
    assert human["missed_failures"] == human["failures"]
    # Robot-gated: the operator never steps in unasked.
    assert robot["human_gated"] == 0
    assert result["paired"]["episodes"] == 2
    assert 0 <= result["paired"]["p_value"] <= 1


@pytest.mark.parametrize(("argv", "flag"), [
    ([], "--policy"),
    (["--policy", "no/such/model.onnx"], "--policy"),
    (["--quick", "--episodes", "0"], "--episodes"),
    (["--quick", "--max-steps", "0"], "--max-steps"),
    (["--quick", "--seed", "-1"], "--seed"),
])
def test_bad_input_is_one_line_naming_the_option(argv: list[str], flag: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "supervision", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and "Traceback" not in err[0], err


def test_a_workspace_without_its_toml_is_refused(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    assert main(["bench", "supervision", "--policy", str(model), "--workspace",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workspace" in err[0], err
