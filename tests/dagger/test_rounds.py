"""dagger train | eval | promote | rollback | report on real (tiny) data, real training, real
ONNX and the real simulator; and the deployment history's edge cases."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from dagger_support import EXPERT_SEED, TINY_HW

from takeover.cli import main
from takeover.session.drive import DriveRequest, run_drive
from takeover.workspace.registry import (
    current_model_id,
    read_history,
    roll_back,
    set_current,
)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result: dict[str, Any] = json.loads(out[-1])
    return result


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def two_models(trained_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """r001 deployed, a supervised round r001 recorded, then `dagger train` -> r002."""
    ws = tmp_path_factory.mktemp("two") / "ws"
    shutil.copytree(trained_workspace, ws, symlinks=True)
    summary = run_drive(DriveRequest(robot_url="sim://", driver="operator-sim", episodes=1,
                                     seed=2100, workspace=ws, record=True, fast=True,
                                     max_steps=60))
    assert Path(summary["recorded"][0]).parent.name == "r001"
    with (ws / "takeover.toml").open("a") as f:  # no --epochs: [train] warm_epochs decides
        # warm: auto would train this tiny workspace from scratch (few labels)
        f.write('\n[train]\nwarm_epochs = 1\nwarm_lr = 0.0007\ndagger_retrain = "warm"\n')
    assert main(["dagger", "train", "--workspace", str(ws), "--threads", "1",
                 "--eval", "1", "--eval-seed", "5000", "--json"]) == 0
    return ws


def test_dagger_train_registers_next_model_warm_started_without_deploying(
        two_models: Path) -> None:
    ws = two_models
    assert current_model_id(ws) == "r001", "the human gate: current stays until promote"
    card = json.loads((ws / "models" / "r002" / "card.json").read_text())
    assert card["model_id"] == "r002" and card["round"] == 2
    assert card["warm_start_model"] == "r001"
    assert card["warm_start"].endswith("r001/checkpoint.pt")
    assert card["model_config"]["image_height"] == TINY_HW  # the architecture of r001
    data = card["data"]
    assert data["rounds"] == [0, 1] and data["episodes"] == 5
    for row in data["episode_list"]:
        path = ws / "rounds" / f"{row['episode']}.hdf5"
        assert row["sha256"] == sha256(path)
    assert data["human_steps"] == sum(r["human_steps"] for r in data["episode_list"])
    assert data["human_steps"] > 4 * 39  # the demonstrations plus the corrections
    assert card["train_config"]["epochs"] == 1 and card["created"]  # [train] warm_epochs
    assert card["train_config"]["lr"] == 0.0007  # [train] warm_lr
    assert card["train_config"]["weighting"] == "iwr"  # a warm start, [train] weighting unset
    assert card["metrics"]["best_val_loss"] is not None
    assert card["export"]["sha256"] == sha256(ws / "models" / "r002" / "policy.onnx")
    assert card["export"]["parity_max_abs_error"] <= 1e-4
    assert card["evaluation"]["seeds"] == [5000] and card["evaluation"]["held_out"]  # --eval 1


def test_dagger_train_from_scratch_keeps_the_architecture_and_trains_new_weights(
        two_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--scratch` (or `[train] dagger_retrain = "scratch"`): the next model on every round
    from new weights, as `takeover train` would, in the deployed model's architecture."""
    ws = tmp_path / "ws"
    shutil.copytree(two_models, ws, symlinks=True)
    w = ["--workspace", str(ws), "--threads", "1", "--epochs", "1", "--json"]
    card = run(["dagger", "train", *w, "--scratch"], capsys)  # over [train] dagger_retrain = warm
    assert card["model_id"] == "r003" and card["warm_start_model"] is None
    assert card["warm_start"] is None and not card["deployed"]
    assert card["model_config"]["image_height"] == TINY_HW  # the deployed r001's
    assert card["data"]["rounds"] == [0, 1]
    # BC's schedule: the from-scratch learning rate, no intervention weighting.
    assert (card["train_config"]["lr"], card["train_config"]["weighting"]) == (2e-3, "none")
    toml = ws / "takeover.toml"
    toml.write_text(toml.read_text().replace('dagger_retrain = "warm"', 'dagger_retrain = "scratch"'))
    card = run(["dagger", "train", *w], capsys)
    assert card["model_id"] == "r004" and card["warm_start_model"] is None
    toml.write_text(toml.read_text().replace('dagger_retrain = "scratch"', 'dagger_retrain = "cold"'))
    assert "dagger_retrain" in one_line_error(["dagger", "train", *w], capsys)
    # Unset (auto): a workspace this small is retrained from scratch.
    toml.write_text(toml.read_text().replace('dagger_retrain = "cold"', ''))
    card = run(["dagger", "train", *w], capsys)
    assert card["model_id"] == "r005" and card["warm_start_model"] is None


def test_promote_and_rollback_move_current_and_refuse_a_tampered_model(
        two_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(two_models, ws, symlinks=True)
    w = ["--workspace", str(ws)]
    assert run(["dagger", "promote", *w, "--json"], capsys) == {
        "previous": "r001", "current": "r002", "changed": True,  # default: the newest
        "comparison": None, "warning": None}  # r001 was never evaluated: nothing to pair
    assert current_model_id(ws) == "r002"
    assert read_history(ws)["deployed"] == ["r001", "r002"]
    assert run(["dagger", "rollback", *w, "--json"], capsys)["current"] == "r001"
    assert current_model_id(ws) == "r001"
    assert "no earlier one" in one_line_error(["dagger", "rollback", *w], capsys)
    assert "no such model" in one_line_error(["dagger", "promote", "r007", *w], capsys)
    # A changed file is refused by promote, and by rollback, and current stays.
    onnx_path = ws / "models" / "r002" / "policy.onnx"
    good = onnx_path.read_bytes()
    onnx_path.write_bytes(good + b"\0")
    assert "does not match its card" in one_line_error(["dagger", "promote", "r2", *w], capsys,
                                                       code=1)
    assert current_model_id(ws) == "r001"
    onnx_path.write_bytes(good)
    assert run(["dagger", "promote", "r2", *w, "--json"], capsys)["current"] == "r002"
    r001 = ws / "models" / "r001" / "policy.onnx"
    r001.write_bytes(r001.read_bytes() + b"\0")
    assert "does not match its card" in one_line_error(["dagger", "rollback", *w], capsys,
                                                       code=1)
    assert current_model_id(ws) == "r002"
    events = [e["action"] for e in read_history(ws)["events"]]
    assert events == ["deploy", "promote", "rollback", "promote"]


def test_eval_writes_the_result_into_the_card(two_models: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(two_models, ws, symlinks=True)
    before = json.loads((ws / "models" / "r001" / "card.json").read_text())
    result = run(["dagger", "eval", "r001", "--workspace", str(ws), "--episodes", "2",
                  "--seed", "5000", "--max-steps", "30", "--json"], capsys)
    card = json.loads((ws / "models" / "r001" / "card.json").read_text())
    ev = card["evaluation"]
    assert result["model_id"] == "r001" and ev["seeds"] == [5000, 5001]
    assert ev["episodes"] == 2 and 0 <= ev["successes"] <= 2
    assert ev["success_rate"] == ev["successes"] / 2
    assert 0.0 <= ev["ci_low"] <= ev["success_rate"] <= ev["ci_high"] <= 1.0
    assert ev["held_out"] and ev["date"] and ev["max_steps"] == 30
    assert sum(ev["outcomes"].values()) == 2
    assert card["evaluations"] == [ev]
    assert {k: v for k, v in card.items() if k not in ("evaluation", "evaluations")} == \
        {k: v for k, v in before.items() if k not in ("evaluation", "evaluations")}
    # Seeds the model trained on are not held out: said so, in the card too.
    run(["dagger", "eval", "r001", "--workspace", str(ws), "--episodes", "1", "--seed",
         str(EXPERT_SEED), "--max-steps", "10", "--json"], capsys)
    card = json.loads((ws / "models" / "r001" / "card.json").read_text())
    assert not card["evaluation"]["held_out"] and card["evaluation"]["seed_overlap"] == [EXPERT_SEED]
    assert len(card["evaluations"]) == 2
    # The card still describes the model file: it still loads.
    assert main(["bench", "latency", "--workspace", str(ws), "--iterations", "10"]) == 0


def test_report_writes_markdown_and_png(workspace: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws)
    model = ws / "models" / "r001"
    model.mkdir(parents=True)
    (model / "card.json").write_text(json.dumps({
        "model_id": "r001", "data": {"rounds": [0], "episodes": 2, "human_steps": 60},
        "metrics": {"best_val_loss": 0.25}, "export": {"parity_max_abs_error": 3e-7},
        "evaluation": {"successes": 3, "episodes": 10, "success_rate": 0.3, "ci_low": 0.1078,
                       "ci_high": 0.6032, "seeds": list(range(5000, 5010))}}))
    out = tmp_path / "report"
    result = run(["dagger", "report", "--workspace", str(ws), "--out", str(out), "--json"],
                 capsys)
    md = (out / "report.md").read_text()
    assert result["markdown"] == str(out / "report.md")
    rows = [line for line in md.splitlines() if line.startswith("| r0")]
    assert [r.split("|")[1].strip() for r in rows] == ["r000", "r001", "r002", "r001"]
    assert "| r001 | 2 | 100 | 20 | 3 | 45.00 |" in md
    assert "3/10 30% | 11-60% | 5000..5009" in md
    png = (out / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert [r["interventions"] for r in result["rounds"]] == [0, 3, 0]


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dagger_support import make_workspace

    ws = make_workspace(tmp_path / "empty")
    w = ["--workspace", str(ws)]
    assert "no models yet" in one_line_error(["dagger", "promote", *w], capsys)
    assert "no models yet" in one_line_error(["dagger", "eval", *w], capsys)
    assert "no recorded episodes" in one_line_error(["dagger", "train", *w], capsys)
    assert "nothing to roll back" in one_line_error(["dagger", "rollback", *w], capsys)
    assert "nothing to report" in one_line_error(["dagger", "report", *w], capsys)
    assert "does not exist" in one_line_error(
        ["dagger", "report", "--workspace", str(tmp_path / "nope")], capsys)
    assert "--bc-demos" in one_line_error(["bench", "dagger", "--bc-demos", "x"], capsys)


def _fake_model(ws: Path, model_id: str) -> None:
    d = ws / "models" / model_id
    d.mkdir(parents=True)
    (d / "policy.onnx").write_bytes(model_id.encode())


def test_history_survives_a_pointer_moved_without_a_record(tmp_path: Path) -> None:
    """A crash between the pointer and the history write (or a hand-made symlink): the pointer
    is taken as the newest deployment, so rollback returns to the one before it."""
    ws = tmp_path
    for m in ("r001", "r002", "r003"):
        _fake_model(ws, m)
    set_current(ws, "r001")
    set_current(ws, "r002")
    pointer = ws / "models" / "current"
    pointer.unlink()
    pointer.symlink_to("r003")  # moved by hand: the history still ends with r002
    assert roll_back(ws) == ("r003", "r002")
    assert read_history(ws)["deployed"] == ["r001", "r002"]
    # A deleted model is skipped on the way back.
    set_current(ws, "r003")
    shutil.rmtree(ws / "models" / "r002")
    assert roll_back(ws) == ("r003", "r001")
    assert current_model_id(ws) == "r001"
