"""The statistics of paired evaluation: two policies on the same seeds (pure Python and numpy).

- `mcnemar_exact`: the exact McNemar test. Seeds where both docked or both failed say nothing
  about which policy is better; only the discordant seeds do. Under "no difference" each
  discordant seed is a fair coin, so the two-sided p-value is the binomial tail,
  min(1, 2 P(X <= min(b, c))), X ~ Binomial(b + c, 1/2), in exact integers
  (tests/dagger/test_stats.py checks it against scipy.stats.binomtest).
- `bootstrap_mean_ci`: a percentile bootstrap interval of a mean (the paired time-to-dock
  difference), with a fixed generator so that the same data give the same interval.
- `mcnemar_sample_size`: how many seeds a paired comparison needs to tell a difference like the
  one seen (two-sided 5%, power 80%; Connor 1987's normal approximation).
- `paired_verdict`: the words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z_ALPHA = 1.959964  # two-sided 5%
Z_POWER = 0.841621  # 80% power
ALPHA = 0.05


def binomial_tail(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (integer arithmetic until the division)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 with none)."""
    if only_a < 0 or only_b < 0:
        raise ValueError("discordant counts must be >= 0")
    n = only_a + only_b
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * binomial_tail(min(only_a, only_b), n))


def bootstrap_mean_ci(values: Sequence[float], level: float = 0.95, resamples: int = 10_000,
                      seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of `values` (None when there are none)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return None
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1.0 - level) / 2
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(lo), float(hi)


def mcnemar_sample_size(only_a: int, only_b: int, episodes: int) -> int | None:
    """Seeds a paired comparison needs to tell (5% two-sided, 80% power) a difference of the
    size seen, with discordance as often as seen; None when no difference was seen."""
    if episodes <= 0:
        return None
    p10, p01 = only_a / episodes, only_b / episodes
    delta = abs(p01 - p10)
    disc = p10 + p01
    if delta == 0:
        return None
    n = (Z_ALPHA * math.sqrt(disc) + Z_POWER * math.sqrt(max(disc - delta ** 2, 0.0))) ** 2 / delta ** 2
    return math.ceil(n)


def paired_verdict(a: str, b: str, only_a: int, only_b: int, episodes: int,
                   p_value: float) -> str:
    """`b` against `a` in words: better, worse, or can't tell at this sample size (with the
    sample size that would)."""
    if p_value < ALPHA:
        word = "better" if only_b > only_a else "worse"
        return (f"{b} is {word} than {a} (p = {p_value:.2g}: {only_b} seeds only {b} docked, "
                f"{only_a} only {a}, of {episodes})")
    if only_a == only_b:
        seen = ("they docked on exactly the same seeds" if only_a == 0
                else f"each docked on {only_a} seeds the other did not")
        return (f"can't tell at {episodes} seeds: {seen}; no difference seen, so no sample "
                "size would tell one this small")
    need = mcnemar_sample_size(only_a, only_b, episodes)
    lead = b if only_b > only_a else a
    return (f"can't tell at {episodes} seeds (p = {p_value:.2g}; {lead} ahead on "
            f"{abs(only_b - only_a)} seeds); a difference this size needs about {need} seeds "
            "to tell")
