"""Round metrics against hand-computed values on a small synthetic workspace (3 rounds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from takeover.dagger.metrics import (
    RoundMetrics,
    intervention_trend,
    wilson_interval,
    workspace_metrics,
)
from takeover.recorder.store import EpisodeStore

# The `workspace` fixture (dagger_support.py): three rounds with hand-chosen labels, ROUNDS.


def test_wilson_interval_known_values() -> None:
    assert wilson_interval(1, 2) == pytest.approx((0.0945, 0.9055), abs=1e-4)
    assert wilson_interval(1, 1) == pytest.approx((0.2065, 1.0), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_round_metrics_match_hand_computed_values(workspace: Path) -> None:
    rows = workspace_metrics(EpisodeStore(workspace).episodes())
    assert [r.round for r in rows] == [0, 1, 2]
    r0, r1, r2 = rows
    # r000: demonstrations only.
    assert (r0.episodes, r0.steps, r0.human_steps, r0.robot_steps, r0.interventions) == (2, 60, 60, 0, 0)
    assert r0.interventions_per_min is None and r0.mtbi_s is None and r0.autonomy == 0.0
    assert (r0.successes, r0.decided, r0.success_rate) == (1, 2, 0.5)
    assert (r0.ci_low, r0.ci_high) == pytest.approx((0.0945, 0.9055), abs=1e-4)
    assert r0.operator_time_s == pytest.approx(3.0)
    # r001: 80 robot steps = 4 s autonomous, 3 takeovers.
    assert (r1.steps, r1.human_steps, r1.robot_steps, r1.interventions) == (100, 20, 80, 3)
    assert r1.interventions_per_min == pytest.approx(45.0)
    assert r1.mtbi_s == pytest.approx(4.0 / 3.0)
    assert r1.autonomy == pytest.approx(0.8)
    assert r1.success_rate == 0.5 and r1.autonomous_successes == 0
    # r002: no takeovers; the aborted episode has no verdict.
    assert (r2.steps, r2.human_steps, r2.robot_steps, r2.interventions) == (105, 0, 100, 0)
    assert r2.interventions_per_min == 0.0 and r2.mtbi_s is None and r2.autonomy == 1.0
    assert (r2.successes, r2.decided, r2.success_rate) == (1, 1, 1.0)
    assert (r2.ci_low, r2.ci_high) == pytest.approx((0.2065, 1.0), abs=1e-4)
    assert r2.autonomous_successes == 1


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "takeover.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_dagger_status_json_fields(workspace: Path) -> None:
    p = run_cli("dagger", "status", "--workspace", str(workspace), "--json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout.splitlines()[-1])["rounds"]
    for row in rows:
        assert set(row) >= {"round", "episodes", "steps", "human_steps", "interventions",
                            "interventions_per_min", "mtbi_s", "autonomy", "success_rate",
                            "ci_low", "ci_high"}
    assert [r["interventions"] for r in rows] == [0, 3, 0]
    assert rows[1]["interventions_per_min"] == 45.0


def test_dagger_status_table_shows_change_against_previous(workspace: Path) -> None:
    p = run_cli("dagger", "status", "--workspace", str(workspace))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["round", "episodes", "steps"]
    r2 = next(line for line in lines if line.startswith("r002"))
    assert "0.00 (-45.00)" in r2 and "100.0% (+20.0)" in r2 and "1/1 100% (+50)" in r2


def test_dagger_status_on_missing_workspace_is_one_line(tmp_path: Path) -> None:
    p = run_cli("dagger", "status", "--workspace", str(tmp_path / "nope"))
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1
    assert "does not exist" in p.stderr


def _round(index: int, interventions: int, autonomous_min: float) -> RoundMetrics:
    return RoundMetrics(
        round=index, episodes=5, steps=0, human_steps=0, robot_steps=0,
        interventions=interventions,
        interventions_per_min=interventions / autonomous_min if autonomous_min else None,
        mtbi_s=None, autonomy=None, successes=0, decided=0, success_rate=None, ci_low=None,
        ci_high=None, autonomous_successes=0, operator_time_s=0.0,
        autonomous_time_s=60.0 * autonomous_min)


def test_intervention_trend_two_rounds_is_the_rate_ratio() -> None:
    # Two rounds: the fit is exact, ratio = (6/4) / (3/1) = 0.5 and the log ratio's standard
    # error is sqrt(1/3 + 1/6) (Poisson), so the interval is 0.5 * exp(+-1.96 * 0.7071).
    trend = intervention_trend([_round(0, 0, 0.0), _round(1, 3, 1.0), _round(2, 6, 4.0)])
    assert trend is not None
    assert trend.ratio_per_round == pytest.approx(0.5)
    assert (trend.ci_low, trend.ci_high) == pytest.approx((0.12505, 1.99922), rel=1e-4)
    assert trend.rounds == (1, 2) and trend.supervised_rounds == 2 and trend.interventions == 9
    assert "x0.50 per round" in trend.describe() and "no clear trend" in trend.describe()


def test_intervention_trend_halving_every_round_is_falling() -> None:
    # 10 interventions in 1, 2, 4 and 8 minutes: the rate halves each round, no residual.
    trend = intervention_trend([_round(k, 10, 2.0 ** (k - 1)) for k in (1, 2, 3, 4)])
    assert trend is not None and trend.ratio_per_round == pytest.approx(0.5)
    assert trend.dispersion == 1.0 and trend.ci_high < 1 and "falling" in trend.describe()
    # Rounds that differ by more than counting noise widen the interval (quasi-Poisson).
    noisy = intervention_trend([_round(1, 40, 2.0), _round(2, 2, 2.0), _round(3, 40, 2.0),
                                _round(4, 2, 2.0)])
    assert noisy is not None and noisy.dispersion > 5


def test_intervention_trend_needs_a_finite_fit(workspace: Path) -> None:
    assert intervention_trend([_round(1, 4, 1.0)]) is None  # one round
    assert intervention_trend([_round(1, 0, 1.0), _round(2, 0, 1.0)]) is None  # none at all
    assert intervention_trend([_round(1, 4, 1.0), _round(2, 0, 1.0)]) is None  # to zero
    assert intervention_trend([_round(1, 0, 1.0), _round(2, 0, 1.0), _round(3, 2, 1.0)]) is None
    # The synthetic workspace: 3 takeovers in r001, none in r002 -> no finite trend.
    assert intervention_trend(workspace_metrics(EpisodeStore(workspace).episodes())) is None
    p = run_cli("dagger", "status", "--workspace", str(workspace), "--json")
    assert json.loads(p.stdout.splitlines()[-1])["trend"] is None


def test_rounds_screen_shows_the_trend_in_one_line() -> None:
    from takeover.tui.rounds import trend_text

    line = trend_text([_round(k, 10, 2.0 ** (k - 1)) for k in (1, 2, 3, 4)])
    assert line.startswith("trend x0.50/round (CI ") and line.endswith(") falling")
    assert len(line) <= 42, "fits the chart panel at 140 columns"
    assert trend_text([_round(1, 4, 1.0)]) == ""
