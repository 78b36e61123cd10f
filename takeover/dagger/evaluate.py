"""Held-out evaluation of a registered model on the simulator, written into its card.

The model drives alone (`drive --driver policy`, lockstep simulator, nobody takes over) on N
seeds starting at S, in parallel over `jobs` processes with the outcomes of a serial run
(dagger/parallel.py); the success rate with its 95% Wilson interval, the efficiency figures
(`summarize_episodes`), the seeds, each seed's outcome (`per_seed`, which `dagger promote` pairs
with the deployed model's), the outcomes and the date go into card.json under `evaluation` (the
newest) and `evaluations` (all of them), atomically. Seeds are held out when no training episode
of the model was recorded with one of them; an overlap is reported in the result (`held_out`,
`seed_overlap`). No torch here.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, TextIO

from takeover import __version__
from takeover.dagger.metrics import wilson_interval
from takeover.dagger.parallel import EpisodeGroup, run_groups
from takeover.errors import UsageError
from takeover.workspace.registry import (
    ONNX_NAME,
    model_path,
    read_card,
    resolve_model_id,
    update_card,
    verify_model,
)

DEFAULT_EVAL_SEED = 5000  # demonstrations in the docs and benchmarks use 1000.., rounds 2000..
DEFAULT_EVAL_EPISODES = 100


def training_seeds(card: dict[str, Any]) -> set[int]:
    rows = card.get("data", {}).get("episode_list") or []
    return {int(r["seed"]) for r in rows if isinstance(r, dict) and r.get("seed") is not None}


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def summarize_episodes(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Success with its 95% Wilson interval and the efficiency figures of measured episodes
    (session/episode_meter.py): mean time to dock and mean path over the docked episodes (a
    failed episode's are cut short), mean jerk over all, and the smallest clearance of any
    episode (the closest call; 0 means something was touched)."""
    n = len(episodes)
    successes = sum(e["outcome"] == "success" for e in episodes)
    lo, hi = wilson_interval(successes, n)
    docked = [e for e in episodes if e["outcome"] == "success"]

    def values(rows: list[dict[str, Any]], key: str) -> list[float]:
        return [float(e[key]) for e in rows if e.get(key) is not None]

    clearances = values(episodes, "min_clearance_m")
    return {
        "episodes": n,
        "successes": successes,
        "success_rate": round(successes / n, 4) if n else None,
        "ci_low": round(lo, 4),
        "ci_high": round(hi, 4),
        "time_to_dock_s": _mean(values(docked, "time_to_dock_s")),
        "path_m": _mean(values(docked, "path_m")),
        "jerk": _mean(values(episodes, "jerk")),
        "min_clearance_m": round(min(clearances), 4) if clearances else None,
    }


def per_seed_rows(episodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a paired comparison needs of each seed (kept in the card)."""
    return [{"seed": int(e["seed"]), "success": e["outcome"] == "success",
             "time_to_dock_s": e.get("time_to_dock_s")} for e in episodes]


def check_budget(episodes: int, max_steps: int) -> None:
    if episodes < 1:
        raise UsageError("--episodes must be at least 1")
    if max_steps < 1:
        raise UsageError("--max-steps must be at least 1")


def evaluate_model(workspace: Path, model_id: str | None = None,
                   episodes: int = DEFAULT_EVAL_EPISODES, seed: int = DEFAULT_EVAL_SEED,
                   max_steps: int = 1200, progress: TextIO | None = None,
                   jobs: int | None = None) -> dict[str, Any]:
    """Run model `model_id` (the newest when None) on `episodes` simulator seeds from `seed`
    on `jobs` processes (default: the cores), write the result into its card and return it."""
    check_budget(episodes, max_steps)
    workspace = workspace.expanduser()
    target = resolve_model_id(workspace, model_id)
    verify_model(workspace, target)
    card = read_card(workspace, target)
    seeds = list(range(seed, seed + episodes))
    overlap = sorted(training_seeds(card) & set(seeds))
    if overlap and progress is not None:
        print(f"warning: {len(overlap)} evaluation seeds were also recorded in {target}'s "
              f"training data (first {overlap[0]}); the result is not held out", file=progress,
              flush=True)
    group = run_groups(workspace, [EpisodeGroup(target, model_path(workspace, target) / ONNX_NAME,
                                                "sim://", seed, episodes)],
                       max_steps, jobs=jobs, progress=progress)[target]
    outcomes: dict[str, int] = {}
    for ep in group.episodes:
        key = str(ep.get("detail") or ep.get("outcome"))
        outcomes[key] = outcomes.get(key, 0) + 1
    figures = summarize_episodes(group.episodes)
    result: dict[str, Any] = {
        "date": now_utc(),
        "robot": "sim://",
        "driver": "policy",
        **figures,
        "interval": "95% Wilson score",
        "seeds": seeds,
        "max_steps": max_steps,
        "held_out": not overlap,
        "seed_overlap": overlap,
        "outcomes": outcomes,
        "per_seed": per_seed_rows(group.episodes),
        "policy_latency_ms_p50": group.latency_ms_p50,
        "takeover_version": __version__,
    }
    history = list(card.get("evaluations") or [])
    history.append(result)
    update_card(workspace, target, {"evaluation": result, "evaluations": history})
    return {"model_id": target, **result}
