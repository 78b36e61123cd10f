"""Evaluation a reviewer would trust, on real (tiny) ONNX models and the real simulator:
parallel = serial episode by episode, `dagger eval --suite robustness | --perturb` and `dagger
compare` with DESIGN.md's JSON fields exactly, one-line errors, promote's comparison, report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from dagger_support import TINY_MODEL_ARGS
from scipy.stats import binomtest

from takeover.cli import main
from takeover.dagger.compare import promotion_warning
from takeover.dagger.parallel import EpisodeGroup, run_groups
from takeover.dagger.robustness import robot_url
from takeover.hw.base import LinkOptions, open_link
from takeover.sim.obstacles import EVAL_FAMILIES
from takeover.sim.perturb import FAMILIES
from takeover.workspace.registry import current_model_id, read_card

ROBUSTNESS_ROW = ["family", "severity", "episodes", "successes", "success_rate", "ci_low",
                  "ci_high", "time_to_dock_s", "path_m", "jerk", "min_clearance_m"]
COMPARE_FIELDS = ["a", "b", "episodes", "a_successes", "b_successes", "only_a", "only_b",
                  "p_value", "verdict", "time_diff_s", "time_diff_ci", "per_seed"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result: dict[str, Any] = json.loads(out[-1])
    return result


@pytest.fixture(scope="module")
def two_models(trained_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """r001 (deployed) and r002, a second tiny model from scratch with another seed."""
    from takeover.policy.build import train_workspace
    from takeover.policy.model import ModelConfig
    from takeover.policy.train import TrainConfig

    ws = tmp_path_factory.mktemp("eval") / "ws"
    shutil.copytree(trained_workspace, ws, symlinks=True)
    card = train_workspace(ws, ModelConfig(**TINY_MODEL_ARGS),  # type: ignore[arg-type]
                           TrainConfig(epochs=1, batch_size=16, threads=1, val_fraction=0.25,
                                       seed=2), deploy=False)
    assert card["model_id"] == "r002" and current_model_id(ws) == "r001"
    return ws


def test_parallel_evaluation_gives_the_serial_outcomes_episode_by_episode(two_models: Path
                                                                          ) -> None:
    policy = two_models / "models" / "r001" / "policy.onnx"
    groups = [EpisodeGroup("nominal", policy, "sim://", 5000, 5),
              # The families that draw random numbers every step, and a delayed base.
              EpisodeGroup("perturbed", policy, "sim://?perturb=wheel_slip=1,camera_noise=1,"
                           "lidar_dropout=1,actuation_delay=0.5", 5000, 5)]
    serial = run_groups(two_models, groups, max_steps=30, jobs=1)
    parallel = run_groups(two_models, groups, max_steps=30, jobs=2)  # 2-episode chunks
    for key in ("nominal", "perturbed"):
        assert [e["seed"] for e in serial[key].episodes] == list(range(5000, 5005))
        assert serial[key].episodes == parallel[key].episodes  # outcome, steps, path, jerk, ...
    assert all(e["path_m"] > 0 and e["jerk"] is not None for e in serial["nominal"].episodes)
    assert serial["nominal"].episodes != serial["perturbed"].episodes


def test_robustness_suite_json_fields_and_card(two_models: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    ws = str(two_models)
    result = run(["dagger", "eval", "r001", "--workspace", ws, "--suite", "robustness",
                  "--episodes", "1", "--max-steps", "8", "--jobs", "2", "--json"], capsys)
    assert list(result) == ["model", "families"] and result["model"] == "r001"
    assert [r["family"] for r in result["families"]] == ["none", *FAMILIES, *EVAL_FAMILIES]
    for row in result["families"]:
        assert list(row) == ROBUSTNESS_ROW
        assert row["episodes"] == 1 and 0 <= row["ci_low"] <= row["ci_high"] <= 1
    result = run(["dagger", "eval", "r001", "--workspace", ws, "--perturb", "lighting=0.5",
                  "--episodes", "2", "--max-steps", "8", "--jobs", "1", "--json"], capsys)
    assert [(r["family"], r["severity"], r["episodes"]) for r in result["families"]] == [
        ("lighting", 0.5, 2)]
    rows = read_card(two_models, "r001")["robustness"]["rows"]
    # The suite's rows stay; the new severity joins them, in the families' order.
    assert [(r["family"], r["severity"]) for r in rows][:3] == [
        ("none", 0.0), ("lighting", 0.5), ("lighting", 1.0)]
    assert len(rows) == len(FAMILIES) + len(EVAL_FAMILIES) + 2 and rows[1]["seeds"] == [5000, 5001]
    assert sum(rows[1]["outcomes"].values()) == 2 and rows[1]["protective_stops"] >= 0


@pytest.mark.parametrize("family, kind", sorted(EVAL_FAMILIES.items()))
def test_an_obstacle_row_drives_into_that_obstacle(family: str, kind: str) -> None:
    """The row's robot is the simulator with that obstacle planned for every seed."""
    link = open_link(robot_url(family, 1.0), LinkOptions(fast=True, seed=5000))
    link.connect()
    try:
        for seed in (5000, 5001, 5002):
            link.reset(seed)
            plan = link.sim.obstacles.plan  # type: ignore[attr-defined]
            assert plan is not None and plan.kind == kind
    finally:
        link.close()


@pytest.mark.parametrize("argv, words", [
    (["--perturb", "fog=1"], "unknown family 'fog'"),
    (["--perturb", "lighting=3"], "must be between 0 (off) and 1"),
    (["--perturb", "lighting"], "expected FAMILY=SEVERITY"),
    (["--perturb", "lighting=0.5,camera_noise=1"], "one FAMILY=SEVERITY per flag"),
    (["--suite", "stress"], "unknown suite"),
    (["--perturb", "obstacle_box=0.5"], "its only severity is 1"),
    (["--jobs", "0"], "--jobs 0: must be at least 1"),
])
def test_bad_evaluation_flags_are_one_line(two_models: Path, argv: list[str], words: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dagger", "eval", "--workspace", str(two_models), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and words in err, err


def test_compare_json_fields_p_value_promote_and_report(two_models: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(two_models, ws, symlinks=True)
    result = run(["dagger", "compare", "r001", "r002", "--workspace", str(ws), "--episodes", "3",
                  "--max-steps", "10", "--jobs", "2", "--json"], capsys)
    assert list(result) == COMPARE_FIELDS
    assert (result["a"], result["b"], result["episodes"]) == ("r001", "r002", 3)
    assert [list(p) for p in result["per_seed"]] == [["seed", "a", "b"]] * 3
    assert all(isinstance(p["a"], bool) and isinstance(p["b"], bool) for p in result["per_seed"])
    only_a = sum(p["a"] and not p["b"] for p in result["per_seed"])
    only_b = sum(p["b"] and not p["a"] for p in result["per_seed"])
    assert (result["only_a"], result["only_b"]) == (only_a, only_b)
    discordant = only_a + only_b
    expected = binomtest(only_b, discordant, 0.5).pvalue if discordant else 1.0
    assert result["p_value"] == pytest.approx(expected, abs=1e-6)
    assert result["verdict"].startswith(("can't tell", "r002 is"))
    assert read_card(ws, "r002")["comparisons"][-1]["a_per_seed"]

    # promote shows the comparison against the deployed model and never blocks.
    promoted = run(["dagger", "promote", "r002", "--workspace", str(ws), "--json"], capsys)
    assert promoted["current"] == "r002" and promoted["comparison"]["a"] == "r001"
    assert promoted["comparison"]["per_seed"] == result["per_seed"]
    assert current_model_id(ws) == "r002"

    # report: the robustness chart of a model that has rows, the A/B table.
    assert main(["dagger", "eval", "r002", "--workspace", str(ws), "--perturb", "lidar_range=1",
                 "--episodes", "1", "--max-steps", "5", "--jobs", "1"]) == 0
    report = run(["dagger", "report", "--workspace", str(ws), "--out", str(tmp_path / "rep"),
                  "--json"], capsys)
    assert Path(report["robustness_plots"]["r002"]).stat().st_size > 1000
    text = Path(report["markdown"]).read_text()
    assert "## A/B comparisons" in text and "| r001 | r002 | 5000..5002 |" in text
    assert "lidar_range | 1 |" in text


def test_promotion_warns_in_words_when_the_candidate_is_worse_beyond_chance() -> None:
    worse = {"a": "r001", "b": "r002", "episodes": 100, "a_successes": 90, "b_successes": 75,
             "only_a": 17, "only_b": 2, "p_value": binomtest(2, 19, 0.5).pvalue}
    words = promotion_warning(worse)
    assert words is not None and "worse beyond chance" in words and "rollback" in words
    assert promotion_warning({**worse, "only_a": 6, "only_b": 4, "p_value": 0.75}) is None
    assert promotion_warning({**worse, "only_a": 2, "only_b": 17}) is None  # better
