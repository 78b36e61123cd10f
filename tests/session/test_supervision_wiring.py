"""[supervision] through the composition root: the Arbiter of `takeover drive` and of the
operator's session (`takeover run`'s core) gets it, `drive --supervision` overrides it, the
simulated operator answers in the mode asked, and `drive --json` counts the help requests
(a real ensemble ONNX model in onnxruntime over the lockstep simulator). Also [train] heads and
novelty_budget reaching the training configs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from tui_support import tiny_onnx_model

from takeover.cli import main
from takeover.config import Config, SupervisionConfig, load_config
from takeover.errors import ConfigError
from takeover.hw.base import open_link
from takeover.inputs.scripted import DeadmanHolder
from takeover.session.operator import OperatorSession
from takeover.session.stack import build_control_loop

HELP_FIELDS = ("requests", "robot_gated", "human_gated", "false_alarms", "missed_failures",
               "attention_s", "driving_s")


def test_the_arbiter_gets_supervision_and_an_override_wins() -> None:
    config = Config(supervision=SupervisionConfig(mode="robot", help_confirm_ms=500.0))
    link = open_link("sim://?seed=1")
    loop = build_control_loop(config, link, DeadmanHolder(), None)
    assert loop.arbiter.supervision == config.supervision
    both = dataclasses.replace(config.supervision, mode="both")
    assert build_control_loop(config, link, DeadmanHolder(), None,
                              supervision=both).arbiter.supervision.mode == "both"


def test_the_operator_session_core_gets_supervision() -> None:
    config = Config(supervision=SupervisionConfig(mode="robot"))
    session = OperatorSession(config, open_link("sim://?seed=1"), None, None, use_gamepad=False)
    try:
        assert session.loop.arbiter.supervision.mode == "robot"
    finally:
        session.close()


@pytest.fixture(scope="module")
def unsure_workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A workspace whose [supervision] novelty threshold any untrained ensemble exceeds, and a
    real (untrained, five-head) ONNX model."""
    root = tmp_path_factory.mktemp("sup")
    ws = root / "ws"
    assert main(["init", str(ws)]) == 0
    with (ws / "takeover.toml").open("a") as f:
        f.write("\n[supervision]\nnovelty_threshold = 0.000001\n")
    return ws, tiny_onnx_model(root / "policy.onnx")


def _drive(ws: Path, model: Path, supervision: str, capsys: pytest.CaptureFixture[str]
           ) -> dict[str, object]:
    assert main(["drive", "--driver", "operator-sim", "--policy", str(model), "--workspace",
                 str(ws), "--supervision", supervision, "--episodes", "2", "--seed", "3",
                 "--fast", "--max-steps", "120", "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_drive_robot_mode_asks_and_the_operator_answers(
        unsure_workspace: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    ws, model = unsure_workspace
    out = _drive(ws, model, "robot", capsys)
    assert out["supervision"] == "robot"
    for field in ("episodes", "successes", "success_rate", "loop", "per_episode"):
        assert field in out  # DESIGN.md's drive fields stay
    rows = out["per_episode"]
    assert isinstance(rows, list)
    for row in rows:
        assert {"seed", "outcome", "steps", "human_steps", "interventions"} <= set(row)
        assert set(HELP_FIELDS) <= set(row)
        assert row["human_gated"] == 0  # it looks only when asked
        assert row["robot_gated"] + row["false_alarms"] <= row["requests"]
        assert row["robot_gated"] == row["interventions"]
        assert 0 <= row["driving_s"] <= row["attention_s"] <= row["steps"] / 20
    for field in HELP_FIELDS:
        assert out[field] == pytest.approx(sum(r[field] for r in rows), abs=0.01)
    # The novelty is always above this threshold: the robot asked, and was answered.
    assert out["requests"] >= 1 and out["robot_gated"] + out["false_alarms"] >= 1


def test_drive_human_mode_never_asks(unsure_workspace: tuple[Path, Path],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    ws, model = unsure_workspace
    out = _drive(ws, model, "human", capsys)
    assert out["supervision"] == "human"
    assert out["requests"] == out["robot_gated"] == out["false_alarms"] == 0
    rows = out["per_episode"]
    assert isinstance(rows, list)
    assert out["human_gated"] == sum(r["interventions"] for r in rows)
    for row in rows:
        # It watched all the engaged time, but for a tick or two around each mode change (it
        # sees the mode on the record after the tick).
        engaged_s = row["steps"] / 20
        assert engaged_s - 0.1 * (row["interventions"] + 1) <= row["attention_s"] <= engaged_s


def test_drive_supervision_flag_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["drive", "--driver", "expert", "--supervision", "robots"])
    assert "--supervision" in capsys.readouterr().err


def test_train_heads_and_novelty_budget_reach_the_training_configs(tmp_path: Path) -> None:
    from takeover.policy.settings import workspace_training_configs

    toml = tmp_path / "takeover.toml"
    toml.write_text("[train]\nheads = 3\nnovelty_budget = 0.1\n")
    model, train = workspace_training_configs(load_config(toml).train)
    assert (model.heads, train.novelty_budget) == (3, 0.1)
    toml.write_text("[train]\nepochs = 2\n")
    model, train = workspace_training_configs(load_config(toml).train)
    assert model.heads == 5 and train.novelty_budget == 0.05  # the defaults


@pytest.mark.parametrize(("text", "key"), [
    ("heads = 0", "train.heads"),
    ("novelty_budget = 1.0", "train.novelty_budget"),
    ("novelty_budget = -0.1", "train.novelty_budget"),
    ("heads = 2.5", "train.heads"),
])
def test_bad_train_uncertainty_is_one_line_naming_the_key(tmp_path: Path, text: str,
                                                          key: str) -> None:
    toml = tmp_path / "takeover.toml"
    toml.write_text(f"[train]\n{text}\n")
    with pytest.raises(ConfigError) as err:
        load_config(toml)
    message = str(err.value)
    assert key in message and "\n" not in message


@pytest.mark.slow
def test_drive_resets_count_help_per_attempt(tmp_path: Path) -> None:
    """--reset drive: the simulated operator under [supervision] robot answers the requests of
    each attempt, and its attention is counted per attempt (not during the resets)."""
    import math

    from takeover.dagger.metrics import episode_help_counts
    from takeover.session.drive import DriveRequest, run_drive
    from takeover.sim.world import ROBOT_RADIUS_M, generate_world

    seed = 21
    dock = generate_world(seed).dock
    toml = tmp_path / "takeover.toml"
    toml.write_text(
        "[docking]\nstall_s = 2.0\ntimeout_s = 6.0\n\n[docking.reset]\n"
        f"x_m = {dock.x_m + ROBOT_RADIUS_M * math.cos(dock.yaw_rad)}\n"
        f"y_m = {dock.y_m + ROBOT_RADIUS_M * math.sin(dock.yaw_rad)}\n"
        f"yaw_rad = {dock.yaw_rad + math.pi}\n\n[supervision]\nnovelty_threshold = 0.000001\n")
    model = tiny_onnx_model(tmp_path / "r001" / "policy.onnx")
    summary = run_drive(DriveRequest(
        robot_url=f"sim://?fast=1&reset=drive&seed={seed}", driver="operator-sim",
        policy=model, episodes=2, max_steps=400, reset="drive", config_path=toml,
        supervision="robot"), count_help=episode_help_counts)
    assert summary["supervision"] == "robot" and summary["reset"]["count"] == 1
    rows = summary["per_episode"]
    for row in rows:
        assert set(HELP_FIELDS) <= set(row)
        assert row["human_gated"] == 0 and row["requests"] >= 1
        assert 0 <= row["driving_s"] <= row["attention_s"] <= row["steps"] / 20
    assert summary["requests"] == sum(r["requests"] for r in rows)
