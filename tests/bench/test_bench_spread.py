"""`takeover bench spread`: the quick preset end to end through the CLI (real recording, real
tiny training, real evaluation) and its JSON contract; the figures read off the rows; bad input
as one line naming the option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from takeover.bench.spread import spread_result, spread_settings
from takeover.cli import main

ROW_FIELDS = {"set", "train_seed", "demos", "samples", "episodes", "successes", "success_rate",
              "ci_low", "ci_high", "train_s"}


@pytest.mark.slow
def test_quick_end_to_end_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --jobs 1: evaluation in-process; two episodes do not pay for worker start-up.
    assert main(["bench", "spread", "--quick", "--workdir", str(tmp_path), "--jobs", "1",
                 "--json"]) == 0
    captured = capsys.readouterr()
    printed = captured.out.strip().splitlines()[-1]
    result = json.loads(printed)
    assert "set 1000, training seed 1: training" in captured.err  # progress on stderr
    assert "spread" in captured.err and "mean" in captured.err  # the table too, with --json
    rows = result["rows"]
    assert [(r["set"], r["train_seed"]) for r in rows] == [(1000, 0), (1000, 1), (2000, 0),
                                                          (2000, 1)]
    for r in rows:
        assert set(r) >= ROW_FIELDS
        assert r["demos"] == 2 and r["episodes"] == 2 and r["samples"] > 0 and r["train_s"] >= 0
        assert r["success_rate"] == pytest.approx(r["successes"] / r["episodes"])
        assert 0 <= r["ci_low"] <= r["success_rate"] <= r["ci_high"] <= 1
    rates = [r["success_rate"] for r in rows]
    assert result["min_rate"] == min(rates) and result["max_rate"] == max(rates)
    assert result["min_rate"] <= result["mean_rate"] <= result["max_rate"]
    assert result["mean_rate"] == pytest.approx(sum(rates) / len(rates), abs=1e-4)
    assert result["spread"] == pytest.approx(result["max_rate"] - result["min_rate"])
    worst = result["worst"]
    assert next(r for r in rows if (r["set"], r["train_seed"]) == (worst["set"],
                worst["train_seed"]))["success_rate"] == result["min_rate"]
    assert [b["set"] for b in result["by_set"]] == [1000, 2000]
    for b in result["by_set"]:
        mine = [r["success_rate"] for r in rows if r["set"] == b["set"]]
        assert b["min_rate"] == min(mine) and b["min_rate"] <= b["mean_rate"] <= max(mine)
    settings = result["settings"]
    assert settings["quick"] is True and settings["sets"] == [1000, 2000]
    assert settings["train_seeds"] == [0, 1] and settings["demo_noise"] == 0.3
    assert settings["eval_seeds"] == [5000, 5001] and settings["epochs"] == 1
    assert "NaN" not in printed and "Infinity" not in printed
    assert json.loads((tmp_path / "bench_spread.json").read_text()) == result
    # --workdir keeps the workspaces: the models' cards hold their evaluation and seed.
    card = json.loads((tmp_path / "work" / "set_2000" / "seed_1" / "models" / "r001"
                       / "card.json").read_text())
    assert card["train_config"]["seed"] == 1 and card["evaluation"]["seeds"] == [5000, 5001]
    assert card["data"]["episodes"] == 2


def test_figures_from_rows() -> None:
    def row(s: int, seed: int, ok: int) -> dict[str, object]:
        return {"set": s, "train_seed": seed, "successes": ok, "episodes": 100,
                "success_rate": ok / 100}

    result = spread_result([row(1000, 0, 83), row(1000, 1, 78), row(3000, 0, 64),
                            row(3000, 1, 70)], {1000: 16, 3000: 14})
    assert (result["min_rate"], result["max_rate"]) == (0.64, 0.83)
    assert result["mean_rate"] == pytest.approx(0.7375)
    assert result["spread"] == pytest.approx(0.19)
    assert result["worst"] == {"set": 3000, "train_seed": 0}
    assert result["by_set"][0] == {"set": 1000, "mean_rate": 0.805, "min_rate": 0.78,
                                   "max_rate": 0.83, "successes": 161, "episodes": 200,
                                   "demos_docked": 16}
    assert result["set_spread"] == pytest.approx(0.805 - 0.67)  # between the set means
    assert result["seed_spread"] == pytest.approx(0.06)  # set 3000's two seeds


def test_an_option_given_with_quick_wins() -> None:
    settings = spread_settings(quick=True, episodes=5, train_overrides={"batch_size": None})
    assert (settings.episodes, settings.demos, settings.epochs) == (5, 2, 1)
    assert settings.train_overrides == {"batch_size": 16}  # None: not given


@pytest.mark.parametrize(("argv", "flag"), [
    (["--sets", ""], "--sets"),
    (["--sets", "1000,abc"], "--sets"),
    (["--sets", "1000,1020", "--demos", "40"], "--sets"),
    (["--sets", "1000,1000"], "--sets"),
    (["--train-seeds", " , "], "--train-seeds"),
    (["--episodes", "0"], "--episodes"),
    (["--demos", "0"], "--demos"),
    (["--eval-seed", "1030"], "--eval-seed"),
    (["--demo-noise", "2"], "--demo-noise"),
    (["--jobs", "0"], "--jobs"),
])
def test_bad_input_is_one_line_naming_the_option(argv: list[str], flag: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "spread", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and "Traceback" not in err[0], err


def test_a_workdir_of_something_else_is_refused(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "precious.txt").write_text("not ours")
    assert main(["bench", "spread", "--quick", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workdir" in err[0], err
    assert (tmp_path / "work" / "precious.txt").exists()
