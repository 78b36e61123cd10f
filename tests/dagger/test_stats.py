"""Paired statistics (dagger/stats.py) against closed forms and scipy's exact binomial test."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest

from takeover.dagger.compare import paired_result
from takeover.dagger.stats import (
    binomial_tail,
    bootstrap_mean_ci,
    mcnemar_exact,
    mcnemar_sample_size,
    paired_verdict,
)


def test_binomial_tail_closed_forms() -> None:
    for n in range(1, 30):
        assert binomial_tail(0, n) == 0.5 ** n
        assert binomial_tail(n, n) == 1.0
        assert binomial_tail(1, n) == pytest.approx((1 + n) / 2 ** n, rel=1e-15)
    assert binomial_tail(2, 4) == 11 / 16
    assert binomial_tail(-1, 4) == 0.0


@pytest.mark.parametrize("n", range(1, 41))
def test_mcnemar_equals_scipys_exact_binomial_on_the_discordant_pairs(n: int) -> None:
    for only_a in range(n + 1):
        only_b = n - only_a
        expected = binomtest(only_b, n, 0.5, alternative="two-sided").pvalue
        assert mcnemar_exact(only_a, only_b) == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_mcnemar_without_discordant_pairs_is_one() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_paired_result_pairs_by_seed_and_reports_design_fields() -> None:
    # 10 seeds: both dock on 0-3, only B on 4-9, neither on none.
    a = [{"seed": s, "success": s < 4, "time_to_dock_s": 10.0 + s if s < 4 else None}
         for s in range(10)]
    b = [{"seed": s, "success": True, "time_to_dock_s": 9.0 + s} for s in reversed(range(10))]
    r = paired_result("r001", "r002", a, b)
    assert list(r) == ["a", "b", "episodes", "a_successes", "b_successes", "only_a", "only_b",
                       "p_value", "verdict", "time_diff_s", "time_diff_ci", "per_seed"]
    assert (r["a_successes"], r["b_successes"], r["only_a"], r["only_b"]) == (4, 10, 0, 6)
    assert r["p_value"] == pytest.approx(binomtest(6, 6, 0.5).pvalue)  # 2/64
    assert r["verdict"].startswith("r002 is better than r001")
    assert r["time_diff_s"] == -1.0 and r["time_diff_ci"] == [-1.0, -1.0]
    assert [p["seed"] for p in r["per_seed"]] == list(range(10))
    with pytest.raises(ValueError, match="same seeds"):
        paired_result("r001", "r002", a, b[:-1])


def test_bootstrap_interval_is_reproducible_and_covers_the_mean() -> None:
    values = [0.5, -1.0, 2.0, 0.0, 1.5, -0.5, 1.0]
    lo, hi = bootstrap_mean_ci(values) or (math.nan, math.nan)
    assert bootstrap_mean_ci(values) == (lo, hi)
    assert lo < sum(values) / len(values) < hi
    assert bootstrap_mean_ci([]) is None


def test_sample_size_and_verdicts_in_words() -> None:
    # 8 seeds only A, 4 only B of 100: p = 0.39; (1.96 sqrt(.12) + 0.84 sqrt(.1184))^2 / .04^2 = 587.
    need = mcnemar_sample_size(8, 4, 100)
    assert need == 587
    words = paired_verdict("r001", "r002", 8, 4, 100, mcnemar_exact(8, 4))
    assert words.startswith("can't tell at 100 seeds") and f"about {need} seeds" in words
    assert paired_verdict("r001", "r002", 12, 1, 100, mcnemar_exact(12, 1)).startswith(
        "r002 is worse than r001")
    assert "no difference seen" in paired_verdict("a", "b", 3, 3, 50, 1.0)
    assert mcnemar_sample_size(3, 3, 50) is None
