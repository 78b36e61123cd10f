"""Calibrating the policy's `novelty` score into a help-request threshold (numpy only, no torch).

An ensemble model (model.py, `heads` > 1) outputs per chunk step how much its members disagree.
A raw disagreement means nothing to an operator; a budget does: "ask me for help on about 5 % of
the steps that look like the demonstrations". After training, the score is computed on the
held-out validation episodes (frames the model never trained on, from the same rooms and
operator) and the threshold is the score that only `budget` of those steps exceed.

The score calibrated is that of chunk step 0, the command for the observation just seen: what
`ChunkPolicy.novelty` reports with the default executor (receding horizon, one step per
inference) and with temporal ensembling (runtime.py). A help request is `novelty > threshold`.

The budget is a fraction of steps, not of episodes: a validation split holds a handful of
episodes (4 of 40 at the default 10 %), too few to set a threshold by, while it holds a thousand
steps. The episode-level figure is still measured and recorded: the fraction of held-out
episodes with at least one run of over-threshold steps lasting `confirm_ms` (the control
layer's confirmation time before a request; an assumption recorded beside the figure).

These are on-distribution rates: in AUTO the policy visits its own states, which are further
from the demonstrations, so it asks more often than the budget there. That is the point of the
score, and the reason the budget is set on demonstrations, where a request is a false alarm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_NOVELTY_BUDGET = 0.05  # fraction of held-out steps over the threshold
DEFAULT_CONFIRM_MS = 300.0  # [supervision] help_confirm_ms's default, for the episode figure
CALIBRATION_FORMAT = "takeover-novelty-calibration/1"


def threshold_for_budget(scores: np.ndarray, budget: float) -> float:
    """The smallest observed score that at most `budget` of `scores` exceed (strictly)."""
    flat = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if flat.size == 0:
        raise ValueError("no scores to calibrate on")
    if not 0.0 <= budget < 1.0:
        raise ValueError(f"novelty budget {budget}: must be a fraction in [0, 1)")
    over = math.floor(budget * flat.size)  # steps allowed over the threshold
    return float(flat[flat.size - 1 - over])


def step_rate(scores: np.ndarray, threshold: float) -> float:
    flat = np.asarray(scores, dtype=np.float64).ravel()
    return float((flat > threshold).mean()) if flat.size else 0.0


def longest_run_over(scores: np.ndarray, threshold: float) -> int:
    """The longest run of consecutive steps whose score exceeds `threshold`."""
    best = run = 0
    for over in np.asarray(scores).ravel() > threshold:
        run = run + 1 if over else 0
        best = max(best, run)
    return best


def confirm_steps(confirm_ms: float, rate_hz: float) -> int:
    """Steps a score must stay over the threshold to last `confirm_ms` at `rate_hz` (>= 1)."""
    return max(1, math.ceil(confirm_ms * rate_hz / 1000.0 - 1e-9))


def episode_rate(episodes: Sequence[np.ndarray], threshold: float, min_run: int) -> float:
    """Fraction of episodes with a run of at least `min_run` over-threshold steps."""
    if not episodes:
        return 0.0
    return sum(longest_run_over(e, threshold) >= min_run for e in episodes) / len(episodes)


def calibrate(episodes: Sequence[np.ndarray], budget: float = DEFAULT_NOVELTY_BUDGET,
              rate_hz: float = 20.0, confirm_ms: float = DEFAULT_CONFIRM_MS,
              source: str = "validation episodes") -> dict[str, Any]:
    """The threshold for `budget` over the step-0 scores of `episodes` (each (steps,), in step
    order), and the figures a reviewer needs: rates at that threshold, score percentiles."""
    flat = np.concatenate([np.asarray(e, dtype=np.float64).ravel() for e in episodes]) \
        if episodes else np.empty(0)
    threshold = threshold_for_budget(flat, budget)
    run = confirm_steps(confirm_ms, rate_hz)
    pct = {f"p{q}": round(float(np.percentile(flat, q)), 6) for q in (50, 90, 95, 99)}
    return {
        "format": CALIBRATION_FORMAT,
        "threshold": threshold,
        "comparison": "novelty > threshold",
        "score": "chunk step 0, std across members averaged over (v, w), standardised units",
        "budget": budget,
        "budget_unit": "fraction of steps",
        "source": source,
        "episodes": len(episodes),
        "steps": int(flat.size),
        "step_rate": round(step_rate(flat, threshold), 6),
        "confirm_ms": confirm_ms,
        "confirm_steps": run,
        "episode_rate_any": round(episode_rate(episodes, threshold, 1), 6),
        "episode_rate_confirmed": round(episode_rate(episodes, threshold, run), 6),
        "score_percentiles": {**pct, "max": round(float(flat.max()), 6)},
    }
