"""`takeover dagger compare A B`: two models on the same held-out seeds, judged pair by pair.

Both models drive alone on seeds S..S+N-1 (in parallel, dagger/parallel.py). On success the
test is the exact McNemar test on the seeds where exactly one of them docked (dagger/stats.py);
on efficiency, the mean paired difference in time to dock (B - A, seeds where both docked) with
a 95% percentile bootstrap interval; then the verdict in words: B better, B worse, or can't tell
at this sample size and about how many seeds would tell. The result is kept in B's card under
`comparisons` (for `dagger report` and `dagger promote`).

`comparison_for_promotion` answers `dagger promote` without driving anything: a stored
comparison of the two models, else their newest evaluations when they ran on the same seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from takeover.dagger.evaluate import DEFAULT_EVAL_SEED, check_budget, now_utc
from takeover.dagger.parallel import EpisodeGroup, run_groups
from takeover.dagger.stats import ALPHA, bootstrap_mean_ci, mcnemar_exact, paired_verdict
from takeover.errors import UsageError
from takeover.workspace.registry import (
    ONNX_NAME,
    model_path,
    read_card,
    resolve_model_id,
    update_card,
    verify_model,
)

FIELDS = ("a", "b", "episodes", "a_successes", "b_successes", "only_a", "only_b", "p_value",
          "verdict", "time_diff_s", "time_diff_ci", "per_seed")


def paired_result(a: str, b: str, a_rows: list[dict[str, Any]],
                  b_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """DESIGN.md's `dagger compare` object from each model's per-seed rows
    (`seed`, `success`, `time_to_dock_s`), paired by seed."""
    a_by_seed = {int(r["seed"]): r for r in a_rows}
    b_by_seed = {int(r["seed"]): r for r in b_rows}
    if set(a_by_seed) != set(b_by_seed):
        raise ValueError("the two models were not run on the same seeds")
    seeds = sorted(a_by_seed)
    pairs = [(a_by_seed[s], b_by_seed[s]) for s in seeds]
    only_a = sum(ra["success"] and not rb["success"] for ra, rb in pairs)
    only_b = sum(rb["success"] and not ra["success"] for ra, rb in pairs)
    p_value = mcnemar_exact(only_a, only_b)
    diffs = [float(rb["time_to_dock_s"]) - float(ra["time_to_dock_s"]) for ra, rb in pairs
             if ra["success"] and rb["success"]
             and ra.get("time_to_dock_s") is not None and rb.get("time_to_dock_s") is not None]
    ci = bootstrap_mean_ci(diffs)
    return {
        "a": a, "b": b, "episodes": len(seeds),
        "a_successes": sum(bool(ra["success"]) for ra, _ in pairs),
        "b_successes": sum(bool(rb["success"]) for _, rb in pairs),
        "only_a": only_a, "only_b": only_b,
        "p_value": float(f"{p_value:.6g}"),  # six significant digits, however small
        "verdict": paired_verdict(a, b, only_a, only_b, len(seeds), p_value),
        "time_diff_s": round(sum(diffs) / len(diffs), 3) if diffs else None,
        "time_diff_ci": None if ci is None else [round(ci[0], 3), round(ci[1], 3)],
        "per_seed": [{"seed": s, "a": bool(ra["success"]), "b": bool(rb["success"])}
                     for s, (ra, rb) in zip(seeds, pairs, strict=True)],
    }


def compare_models(workspace: Path, a: str, b: str, episodes: int = 100,
                   seed: int = DEFAULT_EVAL_SEED, max_steps: int = 1200,
                   jobs: int | None = None, progress: TextIO | None = None) -> dict[str, Any]:
    """Run A and B on the same seeds and compare them (DESIGN.md's fields, in order)."""
    check_budget(episodes, max_steps)
    workspace = workspace.expanduser()
    ids = [resolve_model_id(workspace, m) for m in (a, b)]
    if ids[0] == ids[1]:
        raise UsageError(f"dagger compare: {ids[0]} against itself; give two different models")
    for mid in ids:
        verify_model(workspace, mid)
    groups = [EpisodeGroup(mid, model_path(workspace, mid) / ONNX_NAME, "sim://", seed, episodes)
              for mid in ids]
    results = run_groups(workspace, groups, max_steps, jobs=jobs, progress=progress)
    rows = [[{"seed": e["seed"], "success": e["outcome"] == "success",
              "time_to_dock_s": e.get("time_to_dock_s")} for e in results[mid].episodes]
            for mid in ids]
    result = paired_result(ids[0], ids[1], rows[0], rows[1])
    card = read_card(workspace, ids[1])
    stored = {**{k: v for k, v in result.items() if k != "per_seed"},
              "date": now_utc(), "seeds": [seed, seed + episodes - 1], "max_steps": max_steps,
              "a_per_seed": rows[0], "b_per_seed": rows[1]}
    update_card(workspace, ids[1], {"comparisons": [*(card.get("comparisons") or []), stored]})
    return result


def _stored_comparison(card: dict[str, Any], a: str) -> dict[str, Any] | None:
    for c in reversed(card.get("comparisons") or []):
        if c.get("a") == a and c.get("a_per_seed") and c.get("b_per_seed"):
            return c
    return None


def comparison_for_promotion(workspace: Path, deployed: str, candidate: str
                             ) -> tuple[dict[str, Any] | None, str]:
    """The candidate against the deployed model from what is already measured, and where it
    came from (or, without one, what to run)."""
    cand_card, dep_card = read_card(workspace, candidate), read_card(workspace, deployed)
    stored = _stored_comparison(cand_card, deployed)
    if stored is not None:
        return (paired_result(deployed, candidate, stored["a_per_seed"], stored["b_per_seed"]),
                f"`dagger compare` of {stored.get('date', '?')}")
    reverse = _stored_comparison(dep_card, candidate)
    if reverse is not None:
        return (paired_result(deployed, candidate, reverse["b_per_seed"], reverse["a_per_seed"]),
                f"`dagger compare` of {reverse.get('date', '?')}")
    ev_c, ev_d = cand_card.get("evaluation") or {}, dep_card.get("evaluation") or {}
    if (ev_c.get("per_seed") and ev_d.get("per_seed") and ev_c.get("seeds") == ev_d.get("seeds")
            and ev_c.get("max_steps") == ev_d.get("max_steps")):
        return (paired_result(deployed, candidate, ev_d["per_seed"], ev_c["per_seed"]),
                "their newest `dagger eval` (same seeds)")
    return None, (f"no paired comparison yet: run `takeover dagger compare {deployed} "
                  f"{candidate}` (both on the same seeds)")


def promotion_warning(comparison: dict[str, Any]) -> str | None:
    """Words when the candidate (b) is worse than the deployed model (a) beyond chance."""
    if comparison["p_value"] < ALPHA and comparison["only_a"] > comparison["only_b"]:
        return (f"warning: {comparison['b']} docked on fewer seeds than the deployed "
                f"{comparison['a']} ({comparison['b_successes']} against "
                f"{comparison['a_successes']} of {comparison['episodes']}; exact McNemar p = "
                f"{comparison['p_value']:.2g}): it is worse beyond chance. Promoting anyway, as "
                "asked; `takeover dagger rollback` undoes it.")
    return None
