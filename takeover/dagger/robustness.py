"""`takeover dagger eval --suite robustness` and `--perturb FAMILY=SEVERITY`: a model alone on
held-out seeds under each perturbation family of the simulator (sim/perturb.py), every family
on the same seeds, in parallel (dagger/parallel.py).

The suite also drives into the simulator's dynamic obstacles (sim/obstacles.py: a box set
down in the path, a person walking across), one row each (`obstacle_box`, `obstacle_person`):
what the protective field keeps the policy off (docs/safety.md). An obstacle is there or not,
so its only severity is 1.

One row per family: success with its 95% Wilson interval, mean time to dock and path length
(docked episodes), mean command jerk, smallest clearance (dagger/evaluate.py
`summarize_episodes`). The suite is the unperturbed baseline (`none`) and every family at
severity 1, the harshest level modelled; `--perturb` rows are what was asked. The rows go into
the model's card under `robustness` (`rows`: the newest row of each family and severity, with
its date and seeds), so later runs add to the table rather than replace it, and `dagger report`
draws it. No torch here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from takeover.dagger.evaluate import (
    DEFAULT_EVAL_SEED,
    check_budget,
    now_utc,
    summarize_episodes,
    training_seeds,
)
from takeover.dagger.parallel import EpisodeGroup, run_groups
from takeover.errors import UsageError
from takeover.sim.obstacles import EVAL_FAMILIES as OBSTACLE_ROWS
from takeover.sim.perturb import FAMILIES, RANDOM_GROUPS, parse_perturb
from takeover.workspace.registry import (
    ONNX_NAME,
    model_path,
    read_card,
    resolve_model_id,
    update_card,
    verify_model,
)

SUITES = ("robustness",)
SUITE_SEVERITY = 1.0
BASELINE = "none"
ROW_FIELDS = ("family", "severity", "episodes", "successes", "success_rate", "ci_low", "ci_high",
              "time_to_dock_s", "path_m", "jerk", "min_clearance_m")


def parse_perturb_flag(text: str) -> tuple[str, float]:
    """One `--perturb FAMILY=SEVERITY` (one family per flag: repeat the flag for more rows)."""
    family, _, value = text.replace(":", "=").partition("=")
    if family.strip().replace("-", "_") in OBSTACLE_ROWS:
        family = family.strip().replace("-", "_")
        if value.strip() not in ("1", "1.0"):
            raise UsageError(f"--perturb {text!r}: {family} is an obstacle, there or not: its "
                             "only severity is 1")
        return family, 1.0
    spec = parse_perturb(text)
    if len(spec.items) != 1:
        raise UsageError(f"--perturb {text!r}: one FAMILY=SEVERITY per flag (repeat --perturb "
                         "for several rows)")
    return spec.items[0]


def suite_rows(suite: str | None, perturbs: list[str]) -> list[tuple[str, float]]:
    """(family, severity) of every row asked for: the suite's, then each --perturb's."""
    rows: list[tuple[str, float]] = []
    if suite is not None:
        if suite not in SUITES:
            raise UsageError(f"--suite {suite!r}: unknown suite; use {', '.join(SUITES)}")
        rows += [(BASELINE, 0.0)] + [(f, SUITE_SEVERITY) for f in (*FAMILIES, *OBSTACLE_ROWS)]
    for text in perturbs:
        row = parse_perturb_flag(text)
        if row in rows:
            raise UsageError(f"--perturb {text}: asked for twice")
        rows.append(row)
    if not rows:
        raise UsageError("nothing to evaluate: give --suite robustness or --perturb F=S")
    return rows


def robot_url(family: str, severity: float) -> str:
    if family == BASELINE:
        return "sim://"
    if family in OBSTACLE_ROWS:
        return f"sim://?obstacles={OBSTACLE_ROWS[family]}"
    return f"sim://?perturb={quote(f'{family}={severity:g}')}"


def row_key(family: str, severity: float) -> str:
    return BASELINE if family == BASELINE else f"{family}={severity:g}"


def evaluate_robustness(workspace: Path, model_id: str | None, rows: list[tuple[str, float]],
                        episodes: int = 100, seed: int = DEFAULT_EVAL_SEED,
                        max_steps: int = 1200, jobs: int | None = None,
                        progress: TextIO | None = None) -> dict[str, Any]:
    """Each (family, severity) on the same `episodes` seeds from `seed`; the rows into the
    card; returns `{"model", "families": [rows]}` (DESIGN.md's fields, in that order)."""
    check_budget(episodes, max_steps)
    workspace = workspace.expanduser()
    target = resolve_model_id(workspace, model_id)
    verify_model(workspace, target)
    card = read_card(workspace, target)
    seeds = set(range(seed, seed + episodes))
    overlap = sorted(training_seeds(card) & seeds)
    if overlap and progress is not None:
        print(f"warning: {len(overlap)} evaluation seeds were also recorded in {target}'s "
              f"training data (first {overlap[0]}); the result is not held out", file=progress,
              flush=True)
    policy = model_path(workspace, target) / ONNX_NAME
    groups = [EpisodeGroup(row_key(f, s), policy, robot_url(f, s), seed, episodes)
              for f, s in rows]
    results = run_groups(workspace, groups, max_steps, jobs=jobs, progress=progress)
    families, endings = [], []
    for (family, severity), group in zip(rows, groups, strict=True):
        figures = summarize_episodes(results[group.key].episodes)
        families.append({"family": family, "severity": severity,
                         **{k: figures[k] for k in ROW_FIELDS[2:]}})
        endings.append(outcome_counts(results[group.key].episodes))
    date = now_utc()
    stored = {(r["family"], r["severity"]): r
              for r in ((card.get("robustness") or {}).get("rows") or [])}
    for row, (outcomes, stops) in zip(families, endings, strict=True):
        stored[(row["family"], row["severity"])] = {
            **row, "outcomes": outcomes, "protective_stops": stops,
            "seeds": [seed, seed + episodes - 1], "max_steps": max_steps,
            "held_out": not overlap, "date": date}
    order = [BASELINE, *FAMILIES, *OBSTACLE_ROWS, *RANDOM_GROUPS]
    kept = sorted(stored.values(), key=lambda r: (order.index(r["family"])
                                                  if r["family"] in order else len(order),
                                                  r["severity"]))
    update_card(workspace, target, {"robustness": {"updated": date, "rows": kept}})
    return {"model": target, "families": families}


def outcome_counts(episodes: list[dict[str, Any]]) -> tuple[dict[str, int], int]:
    """How the episodes ended (docked, timeout, bumper, ...) and the protective field's stops
    in all of them: a timeout with many stops is the field holding the robot, not a crash."""
    counts: dict[str, int] = {}
    for e in episodes:
        key = str(e.get("detail") or e.get("outcome"))
        counts[key] = counts.get(key, 0) + 1
    return counts, sum(int(e.get("protective_stops") or 0) for e in episodes)


def weakest(families: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The perturbed rows with the lowest success rate (several when they tie)."""
    rows = [r for r in families if r["family"] != BASELINE and r["success_rate"] is not None]
    if not rows:
        return []
    low = min(r["success_rate"] for r in rows)
    return [r for r in rows if r["success_rate"] == low]


def table_lines(result: dict[str, Any]) -> list[str]:
    """The rows as a markdown table (the CLI prints it, docs quote it)."""
    def num(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    lines = ["| family | severity | docked | 95% CI | time to dock (s) | path (m) | jerk (m/s³) "
             "| min clearance (m) |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["families"]:
        lines.append(
            f"| {r['family']} | {r['severity']:g} | {r['successes']}/{r['episodes']} "
            f"({100 * r['success_rate']:.0f}%) | {100 * r['ci_low']:.0f}-"
            f"{100 * r['ci_high']:.0f}% | {num(r['time_to_dock_s'], '.1f')} | "
            f"{num(r['path_m'], '.2f')} | {num(r['jerk'], '.1f')} | "
            f"{num(r['min_clearance_m'], '.2f')} |")
    return lines
