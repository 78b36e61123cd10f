"""Held-out evaluation of a registered model on the simulator, written into its card.

The model drives alone (`drive --driver policy`, lockstep simulator, nobody takes over) on N
seeds starting at S; the success rate with its 95% Wilson interval, the seeds, the outcomes and
the date go into card.json under `evaluation` (the newest) and `evaluations` (all of them),
atomically. Seeds are held out when no training episode of the model was recorded with one of
them; an overlap is reported in the result (`held_out`, `seed_overlap`). No torch here.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, TextIO

from takeover import __version__
from takeover.dagger.metrics import wilson_interval
from takeover.errors import UsageError
from takeover.session.drive import DriveRequest, run_drive
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


def evaluate_model(workspace: Path, model_id: str | None = None,
                   episodes: int = DEFAULT_EVAL_EPISODES, seed: int = DEFAULT_EVAL_SEED,
                   max_steps: int = 1200, progress: TextIO | None = None) -> dict[str, Any]:
    """Run model `model_id` (the newest when None) on `episodes` simulator seeds from `seed`,
    write the result into its card and return it."""
    if episodes < 1:
        raise UsageError("--episodes must be at least 1")
    if max_steps < 1:
        raise UsageError("--max-steps must be at least 1")
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
    summary = run_drive(DriveRequest(
        robot_url="sim://", driver="policy", episodes=episodes, seed=seed, workspace=workspace,
        policy=model_path(workspace, target) / ONNX_NAME, fast=True, max_steps=max_steps),
        progress=progress)
    successes = int(summary["successes"])
    n = int(summary["episodes"])
    lo, hi = wilson_interval(successes, n)
    outcomes: dict[str, int] = {}
    for ep in summary["per_episode"]:
        key = str(ep.get("detail") or ep.get("outcome"))
        outcomes[key] = outcomes.get(key, 0) + 1
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "robot": "sim://",
        "driver": "policy",
        "episodes": n,
        "successes": successes,
        "success_rate": round(successes / n, 4),
        "ci_low": round(lo, 4),
        "ci_high": round(hi, 4),
        "interval": "95% Wilson score",
        "seeds": seeds,
        "max_steps": max_steps,
        "held_out": not overlap,
        "seed_overlap": overlap,
        "outcomes": outcomes,
        "policy_latency_ms_p50": summary.get("policy", {}).get("latency_ms_p50"),
        "takeover_version": __version__,
    }
    history = list(card.get("evaluations") or [])
    history.append(result)
    update_card(workspace, target, {"evaluation": result, "evaluations": history})
    return {"model_id": target, **result}
