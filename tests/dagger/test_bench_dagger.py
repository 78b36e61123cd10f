"""`takeover bench dagger` end to end with the hidden tiny preset: demonstrations, BC models,
DAgger rounds under the simulated operator, evaluations, and its JSON contract (DESIGN.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from takeover.bench.dagger import summarize
from takeover.cli import main
from takeover.dagger.presets import preset_for
from takeover.errors import UsageError
from takeover.recorder.reader import EpisodeReader


@pytest.mark.slow
def test_bench_dagger_tiny_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "dagger", "--preset", "tiny", "--out", str(tmp_path), "--demo-noise",
                 "0.3", "--warm-lr", "0.0007", "--dagger-weighting", "iwr", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert "DAgger" in captured.err and "BC" in captured.err  # progress on stderr
    assert [r["round"] for r in result["dagger"]] == [1, 2]
    for row in result["dagger"]:
        assert set(row) >= {"round", "expert_labels", "success_rate", "ci_low", "ci_high",
                            "interventions_per_min"}
        assert row["interventions_per_min"] is None or row["interventions_per_min"] >= 0
    for row in result["bc"]:
        assert set(row) >= {"expert_labels", "success_rate", "ci_low", "ci_high"}
        assert 0 <= row["ci_low"] <= row["success_rate"] <= row["ci_high"] <= 1
        assert row["eval_episodes"] == 2
    # Expert labels: 40-step demonstrations; DAgger r001 is the BC model on its 2 demos, and
    # r002 adds the corrections of round r001.
    assert [r["expert_labels"] for r in result["bc"]] == [80, 120]
    r1, r2 = result["dagger"]
    assert r1["expert_labels"] == 80 and r1["success_rate"] == result["bc"][0]["success_rate"]
    assert r2["expert_labels"] >= r1["expert_labels"]
    assert result["summary"]["target_success"] == 0.9
    assert result["summary"]["interventions_per_min_steps"] <= 1  # two rounds
    assert "- 90% alone: BC " in (tmp_path / "bench_dagger.md").read_text()
    # BC at equal labels: the fewest demonstrations with r002's labels (BC-3 here, trained for
    # it: the arm has BC-2 only), compared with r002 seed by seed, in words.
    equal = result["summary"]["equal_labels"]
    assert (equal["dagger_model"], equal["bc_demos"]) == ("r002", 3)
    assert equal["bc_labels"] >= equal["dagger_labels"] == r2["expert_labels"]
    assert equal["comparison"]["episodes"] == 2 and equal["words"].startswith(
        ("this run cannot show", "at equal expert labels"))
    assert [r.get("matched", False) for r in result["bc"]] == [False, True]
    on_disk = json.loads((tmp_path / "bench_dagger.json").read_text())
    assert on_disk["dagger"] == result["dagger"] and on_disk["quick"] is True
    assert "| DAgger | r002 |" in (tmp_path / "bench_dagger.md").read_text()
    assert (tmp_path / "bench_dagger.png").read_bytes()[:4] == b"\x89PNG"
    card = json.loads((tmp_path / "work" / "dagger" / "models" / "r002" / "card.json").read_text())
    assert card["warm_start_model"] == "r001" and card["evaluation"]["seeds"] == [5000, 5001]
    # DAgger's retraining ran with its own peak learning rate and weighting; BC with the defaults.
    assert (card["train_config"]["lr"], card["train_config"]["weighting"]) == (0.0007, "iwr")
    bc_card = json.loads((tmp_path / "work" / "dagger" / "models" / "r001" / "card.json").read_text())
    assert (bc_card["train_config"]["lr"], bc_card["train_config"]["weighting"]) == (2e-3, "none")
    # The demonstrations were recorded with the pushes in effect (DART): each file's config.
    for path in sorted((tmp_path / "work" / "demos" / "rounds" / "r000").glob("*.hdf5")):
        with EpisodeReader(path) as episode:
            assert episode.config["demonstration"]["noise_w_radps"] == 0.3
    assert on_disk["config"]["demo_noise"] == 0.3
    assert "DART turn-rate noise 0.3 rad/s" in (tmp_path / "bench_dagger.md").read_text()


def _row(labels: int, rate: float, ipm: float | None = None) -> dict[str, object]:
    return {"expert_labels": labels, "success_rate": rate, "interventions_per_min": ipm}


def test_summary_answers_the_question_from_the_rows() -> None:
    result = {"bc": [_row(1000, 0.5), _row(2000, 0.92), _row(4000, 0.95)],
              "dagger": [_row(1000, 0.5, 10.0), _row(1300, 0.91, 12.0), _row(1500, 0.88, 6.0),
                         _row(1700, 0.97, 6.0)]}
    summary = summarize(result)
    assert summary["bc_labels_to_target"] == 2000 and summary["dagger_labels_to_target"] == 1300
    assert summary["dagger_share_of_bc_labels"] == 0.65
    assert (summary["interventions_per_min_first"], summary["interventions_per_min_last"]) == (10, 6)
    assert (summary["interventions_per_min_rises"], summary["interventions_per_min_steps"]) == (1, 3)
    never = summarize({"bc": [_row(1000, 0.5)], "dagger": [_row(1000, 0.5, None)]})
    assert never["bc_labels_to_target"] is None and never["dagger_share_of_bc_labels"] is None
    assert never["interventions_per_min_first"] is None and never["interventions_per_min_steps"] == 0


def test_another_demonstration_set_is_one_option_and_never_overlaps() -> None:
    """--demo-seed picks the demonstration set (issue 21: DAgger on a second set); seeds that
    would overlap the rounds' or the evaluation's are refused with one line."""
    assert preset_for("full", demo_seed=1).demo_seed == 1
    assert preset_for("full").demo_seed == 1000
    for seed, words in ((3000, "overlap the round seeds"), (4990, "or the evaluation seeds"),
                        (-1, "must be 0 or more")):
        with pytest.raises(UsageError, match=words):
            preset_for("full", demo_seed=seed)


@pytest.mark.parametrize("retrain", ["scratch", "auto"])
def test_bench_dagger_can_retrain_each_round_from_scratch(
        retrain: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--dagger-retrain scratch` (or auto, `dagger train`'s default, on a workspace this
    small): DAgger's r002 is a new model on every round (BC's training, no warm start, no
    weighting), on the same data the warm start would have had."""
    assert main(["bench", "dagger", "--preset", "tiny", "--out", str(tmp_path),
                 "--dagger-retrain", retrain, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["config"]["dagger_retrain"] == retrain
    card = json.loads((tmp_path / "work" / "dagger" / "models" / "r002" / "card.json").read_text())
    assert card["warm_start_model"] is None
    assert (card["train_config"]["lr"], card["train_config"]["weighting"]) == (2e-3, "none")
    assert card["data"]["rounds"] == [0, 1]
    assert result["dagger"][1]["expert_labels"] == card["data"]["human_steps"]
    with pytest.raises(UsageError, match="dagger-retrain"):
        preset_for("tiny", dagger_retrain="cold")
