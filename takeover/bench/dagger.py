"""`takeover bench dagger`: behavioural cloning against human-gated DAgger on the simulator,
both plotted against the number of expert-labelled steps they cost.

1. Demonstrations: the scripted expert through the control loop and the recorder
   (`drive --driver expert --record`), seeds `demo_seed`...
2. BC arm: for each N in `bc_demos`, a workspace with the first N demonstrations, one model
   trained from scratch (`epochs`) and evaluated alone on the held-out seeds.
3. DAgger arm: round r000 = the first `initial_demos` demonstrations and model r001 = the BC
   model on them (same data, same training). Then for each model rk: evaluate it alone on the
   held-out seeds, run a supervised round rk (`drive --driver operator-sim --record`: the
   simulated operator takes over when it strays; seeds `round_seed + 100 k`...), and train
   r(k+1) on all rounds warm-started from rk (`warm_epochs`; `takeover dagger train`).
4. BC at equal labels (`bc_match`): BC on the fewest demonstrations whose expert labels reach
   the last DAgger model's, and the two compared on the same seeds, seed by seed (exact
   McNemar, dagger/compare.py): the summary says in words whether this run tells them apart.

Expert labels = human-driven steps (demonstration + intervention) in a model's training data,
counted from the episode files (EpisodeInfo.human_steps; the card's `data.human_steps`).
Every model is evaluated on the same seeds, `eval_seed`..+`eval_episodes`-1.

Everything runs in this process through the package's APIs (the same functions the CLI
commands call), so torch is imported once. Progress lines go to `progress` (stderr).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TextIO

from takeover.bench.workspaces import ProgressLog, bench_workspace, link_or_copy
from takeover.dagger.compare import paired_result
from takeover.dagger.evaluate import evaluate_model
from takeover.dagger.metrics import (
    InterventionTrend,
    RoundMetrics,
    intervention_trend,
    round_metrics,
    trend_verdict,
)
from takeover.dagger.presets import DaggerBenchPreset
from takeover.dagger.report import error_bars, load_pyplot, save_figure
from takeover.dagger.train import train_next_model
from takeover.errors import UsageError
from takeover.policy.build import train_workspace
from takeover.policy.model import ModelConfig
from takeover.policy.settings import retrain_from_scratch
from takeover.policy.train import TrainConfig
from takeover.recorder.store import EpisodeStore
from takeover.session.drive import DriveRequest, run_drive
from takeover.workspace.atomic import atomic_write_bytes

RESULT_JSON = "bench_dagger.json"
RESULT_MD = "bench_dagger.md"
RESULT_PNG = "bench_dagger.png"


def _eval_row(ev: dict[str, Any] | None) -> dict[str, Any]:
    if ev is None:  # a model the preset does not evaluate (eval_every_model False)
        return {"success_rate": None, "ci_low": None, "ci_high": None, "successes": None,
                "eval_episodes": 0}
    return {"success_rate": ev["success_rate"], "ci_low": ev["ci_low"], "ci_high": ev["ci_high"],
            "successes": ev["successes"], "eval_episodes": ev["episodes"]}


def run_dagger_bench(preset: DaggerBenchPreset, out_dir: Path | None = None,
                     device: str = "auto", progress: TextIO | None = None) -> dict[str, Any]:
    """Run the experiment; write bench_dagger.json, .md and .png into `out_dir`; return the
    JSON (with `dagger` and `bc` rows as DESIGN.md names them)."""
    preset.validate()
    log = ProgressLog(progress)
    t_start = time.perf_counter()
    out = (out_dir or Path(tempfile.mkdtemp(prefix="takeover-bench-dagger-"))).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    if work.exists():
        if not (out / RESULT_JSON).exists() and not (work / "demos").is_dir():
            raise UsageError(f"{work} exists and is not from a previous bench dagger run; "
                             "choose another --out")
        shutil.rmtree(work)  # a previous run's workspaces: the experiment starts clean
    work.mkdir()
    log(f"preset {preset.name}: {preset.note}; output in {out}")
    model_config = replace(ModelConfig(), **preset.model_overrides)
    base_train = TrainConfig(device=device, threads=os.cpu_count() or 1)
    if preset.batch_size is not None:
        base_train = replace(base_train, batch_size=preset.batch_size)

    def evaluate(workspace: Path, model_id: str) -> dict[str, Any]:
        return evaluate_model(workspace, model_id, episodes=preset.eval_episodes,
                              seed=preset.eval_seed, max_steps=preset.max_steps)

    # 1. Demonstrations, recorded once; each BC workspace links the first N of them.
    n_demos = max(*preset.bc_demos, preset.initial_demos, preset.match_demos)
    demos = bench_workspace(work / "demos", preset.camera_hw)
    noise = (f", DART turn-rate noise {preset.demo_noise} rad/s" if preset.demo_noise
             else ", no demonstration noise")
    log(f"recording {n_demos} expert demonstrations (seeds {preset.demo_seed}..{noise})")
    run_drive(DriveRequest(robot_url="sim://", driver="expert", episodes=n_demos,
                           seed=preset.demo_seed, workspace=demos, record=True, fast=True,
                           max_steps=preset.max_steps, demo_noise_w_radps=preset.demo_noise))
    demo_files = EpisodeStore(demos).episode_paths(0)

    # 2. BC arm (and DAgger's r001).
    bc_rows: list[dict[str, Any]] = []
    bc_workspaces: dict[int, Path] = {}
    bc_evals: dict[int, dict[str, Any]] = {}

    def train_bc(n: int) -> dict[str, Any]:
        ws = bench_workspace(work / f"bc_{n:03d}", preset.camera_hw)
        (ws / "rounds" / "r000").mkdir(parents=True, exist_ok=True)
        for f in demo_files[:n]:
            link_or_copy(str(f), str(ws / "rounds" / "r000" / f.name))
        log(f"BC, {n} demonstrations: training ({preset.epochs} epochs)")
        card = train_workspace(ws, model_config, replace(base_train, epochs=preset.epochs),
                               deploy=True)
        log(f"BC, {n} demonstrations: evaluating on {preset.eval_episodes} held-out seeds")
        ev = evaluate(ws, card["model_id"])
        log(f"BC, {n} demonstrations ({card['data']['human_steps']} expert labels): "
            f"{ev['successes']}/{ev['episodes']} docked")
        bc_workspaces[n], bc_evals[n] = ws, ev
        return {"expert_labels": card["data"]["human_steps"], **_eval_row(ev), "demos": n,
                "train_s": card["training"]["wall_s"]}

    for n in sorted(set(preset.bc_demos) | {preset.initial_demos}):
        row = train_bc(n)
        if n in preset.bc_demos:
            bc_rows.append(row)

    # 3. DAgger arm: continue from the BC workspace with the initial demonstrations.
    ws = work / "dagger"
    shutil.copytree(bc_workspaces[preset.initial_demos], ws, copy_function=link_or_copy,
                    symlinks=True)
    warm_train = replace(base_train, epochs=preset.warm_epochs,
                         lr=preset.warm_lr, weighting=preset.dagger_weighting)
    scratch_train = replace(base_train, epochs=preset.epochs)
    dagger_rows: list[dict[str, Any]] = []
    supervised_rounds: list[RoundMetrics] = []
    ev: dict[str, Any] | None
    for k in range(1, preset.rounds + 1):
        model_id = f"r{k:03d}"
        if k > 1:
            # As `dagger train` decides it ([train] dagger_retrain; auto looks at the labels).
            labels = sum(e.human_steps for e in EpisodeStore(ws).episodes() if not e.partial)
            scratch = retrain_from_scratch(preset.dagger_retrain, labels, scratch_train.epochs,
                                           warm_train.epochs)
            how = (f"from scratch ({scratch_train.epochs} epochs, as BC)" if scratch else
                   f"warm start ({warm_train.epochs} epochs, peak lr {warm_train.lr:g}, "
                   f"weighting {warm_train.weighting})")
            log(f"DAgger: training {model_id} on rounds r000..r{k - 1:03d}, {how}")
            card = train_next_model(ws, scratch_train if scratch else warm_train, deploy=True,
                                    scratch=scratch)
            assert card["model_id"] == model_id, card["model_id"]
            ev = None
            if preset.eval_every_model or k == preset.rounds:
                log(f"DAgger: evaluating {model_id} on {preset.eval_episodes} held-out seeds")
                ev = evaluate(ws, model_id)
        else:
            card = json.loads((ws / "models" / model_id / "card.json").read_text())
            ev = card["evaluation"]
        seed = preset.round_seed + 100 * k
        log(f"DAgger: round {model_id}, {preset.round_episodes} episodes supervised by the "
            f"simulated operator (seeds {seed}..)")
        run_drive(DriveRequest(robot_url="sim://", driver="operator-sim",
                               episodes=preset.round_episodes, seed=seed, workspace=ws,
                               record=True, fast=True, max_steps=preset.max_steps))
        supervised = round_metrics(k, [e for e in EpisodeStore(ws).episodes(round=k)
                                       if not e.partial])
        supervised_rounds.append(supervised)
        ipm = supervised.interventions_per_min
        dagger_rows.append({
            "round": k, "expert_labels": card["data"]["human_steps"], **_eval_row(ev),
            "interventions_per_min": None if ipm is None else round(ipm, 3),
            "model_id": model_id, "interventions": supervised.interventions,
            "supervised_episodes": supervised.episodes,
            "autonomy": None if supervised.autonomy is None else round(supervised.autonomy, 4),
            "train_s": card["training"]["wall_s"]})
        alone = "not evaluated" if ev is None else f"{ev['successes']}/{ev['episodes']} docked"
        log(f"DAgger {model_id} ({card['data']['human_steps']} expert labels): {alone} alone; "
            f"supervised round: {supervised.interventions} interventions"
            f"{'' if ipm is None else f' ({ipm:.2f}/autonomous min)'}")
    last_eval = ev

    equal_labels = None
    if preset.bc_match and last_eval is not None:
        equal_labels = _bc_at_equal_labels(demos, dagger_rows[-1], last_eval, bc_evals,
                                           bc_rows, train_bc, log)

    wall_s = time.perf_counter() - t_start
    files = {"json": str(out / RESULT_JSON), "markdown": str(out / RESULT_MD),
             "plot": str(out / RESULT_PNG)}
    result: dict[str, Any] = {
        "preset": preset.name,
        "quick": preset.name != "full",
        "note": preset.note,
        "config": asdict(preset),
        "eval_seeds": [preset.eval_seed, preset.eval_seed + preset.eval_episodes - 1],
        "dagger": dagger_rows,
        "bc": bc_rows,
        "wall_s": round(wall_s, 1),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "workspaces": str(work),
        "files": files,
    }
    result["summary"] = summarize(result, intervention_trend(supervised_rounds))
    if preset.bc_match:
        result["summary"]["equal_labels"] = equal_labels
    result["table_md"] = results_markdown(result)
    plot_results(result, out / RESULT_PNG)
    atomic_write_bytes(out / RESULT_MD, ("\n".join(result["table_md"]) + "\n").encode())
    atomic_write_bytes(out / RESULT_JSON, (json.dumps(result, indent=1) + "\n").encode())
    log(f"done in {wall_s:.0f} s: {files['markdown']}")
    return result


def _bc_at_equal_labels(demos: Path, last: dict[str, Any], last_eval: dict[str, Any],
                        bc_evals: dict[int, dict[str, Any]], bc_rows: list[dict[str, Any]],
                        train_bc: Callable[[int], dict[str, Any]], log: ProgressLog
                        ) -> dict[str, Any]:
    """BC on the fewest demonstrations with at least the last DAgger model's expert labels
    (trained unless the BC arm has it), compared with that model seed by seed."""
    labels = last["expert_labels"]
    infos = sorted(EpisodeStore(demos).episodes(round=0), key=lambda e: e.path.name)
    cumulative = list(itertools.accumulate(info.human_steps for info in infos))
    n = next((i + 1 for i, held in enumerate(cumulative) if held >= labels), None)
    if n is None:
        total = cumulative[-1] if cumulative else 0
        return {"dagger_model": last["model_id"], "dagger_labels": labels, "bc_demos": None,
                "bc_labels": total, "comparison": None,
                "words": f"cannot compare at equal labels: all {len(infos)} recorded "
                f"demonstrations hold {total} expert labels, fewer than {last['model_id']}'s "
                f"{labels} (raise match_demos)"}
    total = cumulative[n - 1]
    if n not in bc_evals:
        log(f"BC at equal labels: {n} demonstrations ({total} labels) against "
            f"{last['model_id']}'s {labels}")
        row = train_bc(n)
        bc_rows.append({**row, "matched": True})
        bc_rows.sort(key=lambda r: r["expert_labels"])
    else:
        for row in bc_rows:
            if row["demos"] == n:
                row["matched"] = True
    bc_ev = bc_evals[n]
    c = paired_result(f"BC-{n}", f"DAgger {last['model_id']}", bc_ev["per_seed"],
                      last_eval["per_seed"])
    c.pop("per_seed")
    if c["p_value"] < 0.05 and c["only_b"] > c["only_a"]:
        words = (f"at equal expert labels DAgger is better than BC in this run: {c['verdict']}")
    elif c["p_value"] < 0.05:
        words = f"at equal expert labels BC is better than DAgger in this run: {c['verdict']}"
    else:
        words = (f"this run cannot show which of DAgger and BC is better at equal expert "
                 f"labels: {c['verdict']}")
    log(words)
    return {"dagger_model": last["model_id"], "dagger_labels": labels, "bc_demos": n,
            "bc_labels": total, "comparison": c, "words": words}


TARGET_SUCCESS = 0.9  # the success rate the arms are compared at (the bar)


def summarize(result: dict[str, Any], trend: InterventionTrend | None = None,
              target: float = TARGET_SUCCESS) -> dict[str, Any]:
    """The experiment's answers from its rows: the fewest expert labels with which each arm
    docked at least `target` alone (None: never), DAgger's share of BC's, and how the
    intervention rate moved from round to round (and its fitted `trend`, if given)."""
    def first_at_target(rows: list[dict[str, Any]]) -> int | None:
        hits = [r["expert_labels"] for r in rows
                if r["success_rate"] is not None and r["success_rate"] >= target]
        return min(hits) if hits else None

    bc, dagger = first_at_target(result["bc"]), first_at_target(result["dagger"])
    rates = [r["interventions_per_min"] for r in result["dagger"]
             if r["interventions_per_min"] is not None]
    steps = list(itertools.pairwise(rates))
    return {
        "target_success": target,
        "bc_labels_to_target": bc,
        "dagger_labels_to_target": dagger,
        "dagger_share_of_bc_labels": None if bc is None or dagger is None
        else round(dagger / bc, 4),
        "interventions_per_min_first": rates[0] if rates else None,
        "interventions_per_min_last": rates[-1] if rates else None,
        "interventions_per_min_rises": sum(b > a for a, b in steps),
        "interventions_per_min_steps": len(steps),
        "interventions_per_min_trend": trend.as_json() if trend else None,
    }


def _summary_lines(summary: dict[str, Any]) -> list[str]:
    target = f"{100 * summary['target_success']:.0f}%"
    bc, dagger = summary["bc_labels_to_target"], summary["dagger_labels_to_target"]
    share = summary["dagger_share_of_bc_labels"]
    bc_words = "never (within its budgets)" if bc is None else f"at {bc} expert labels"
    dagger_words = "never (within its rounds)" if dagger is None else f"at {dagger}"
    share_words = "" if share is None else f" ({100 * share:.0f}% of BC's)"
    lines = [f"- {target} alone: BC {bc_words}, DAgger {dagger_words}{share_words}."]
    if summary["interventions_per_min_first"] is not None:
        lines.append(f"- Interventions per autonomous minute: "
                     f"{summary['interventions_per_min_first']:.2f} in the first round, "
                     f"{summary['interventions_per_min_last']:.2f} in the last; higher than "
                     f"the round before in {summary['interventions_per_min_rises']} of "
                     f"{summary['interventions_per_min_steps']} rounds.")
    trend = summary.get("interventions_per_min_trend")
    if trend:
        lines.append(f"- Fitted over the rounds (Poisson): x{trend['ratio_per_round']:.2f} per "
                     f"round, 95% CI x{trend['ci_low']:.2f}-x{trend['ci_high']:.2f}: "
                     f"{trend_verdict(trend['ci_low'], trend['ci_high'])}.")
    equal = summary.get("equal_labels")
    if equal:
        c = equal.get("comparison")
        if c is not None:
            lines.append(f"- Equal labels: {c['b']} ({equal['dagger_labels']} expert labels) "
                         f"docked {c['b_successes']}/{c['episodes']}, {c['a']} "
                         f"({equal['bc_labels']}) {c['a_successes']}/{c['episodes']} on the "
                         f"same seeds; only DAgger {c['only_b']}, only BC {c['only_a']}; exact "
                         f"McNemar p = {c['p_value']:.2g}.")
        lines.append(f"- {equal['words'][0].upper()}{equal['words'][1:]}.")
    return lines


def _pct(row: dict[str, Any]) -> tuple[str, str]:
    if row["success_rate"] is None:
        return "not evaluated", "-"
    return (f"{row['successes']}/{row['eval_episodes']} ({100 * row['success_rate']:.0f}%)",
            f"{100 * row['ci_low']:.0f}-{100 * row['ci_high']:.0f}%")


def _noise_words(result: dict[str, Any]) -> str:
    noise = result["config"].get("demo_noise", 0.0)
    return f"DART turn-rate noise {noise} rad/s" if noise else "no noise (clean)"


def results_markdown(result: dict[str, Any]) -> list[str]:
    seeds = result["eval_seeds"]
    lines = [f"# bench dagger ({result['preset']})", "",
             f"{result['note']}. Every model evaluated alone on seeds {seeds[0]}..{seeds[1]}; "
             f"95% Wilson intervals. Demonstrations: the expert, {_noise_words(result)}. "
             f"Run time {result['wall_s']:.0f} s.", "",
             "| arm | model | data | expert labels | held-out success | 95% CI | interv./min |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for row in result["bc"]:
        ok, ci = _pct(row)
        matched = " (equal labels)" if row.get("matched") else ""
        lines.append(f"| BC | - | {row['demos']} demos{matched} | {row['expert_labels']} | {ok} | "
                     f"{ci} | - |")
    for row in result["dagger"]:
        ok, ci = _pct(row)
        ipm = "-" if row["interventions_per_min"] is None else f"{row['interventions_per_min']:.2f}"
        data = "r000" if row["round"] == 1 else f"r000..r{row['round'] - 1:03d}"
        lines.append(f"| DAgger | {row['model_id']} | {data} | {row['expert_labels']} | {ok} | "
                     f"{ci} | {ipm} |")
    if "summary" in result:
        lines += ["", *_summary_lines(result["summary"])]
    lines += ["", "interv./min: interventions per minute of autonomous driving in the round the "
              "model ran under the simulated operator.", "",
              f"![success vs expert labels]({RESULT_PNG})"]
    return lines


def plot_results(result: dict[str, Any], path: Path) -> None:
    plt = load_pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for arm, fmt in (("bc", "o-"), ("dagger", "s-")):
        rows = [r for r in result[arm] if r["success_rate"] is not None]
        if not rows:
            continue
        x = [r["expert_labels"] for r in rows]
        y = [100 * r["success_rate"] for r in rows]
        err = error_bars([(r["success_rate"], r["ci_low"], r["ci_high"]) for r in rows])
        ax1.errorbar(x, y, yerr=err, fmt=fmt, capsize=4,
                     label="behavioural cloning" if arm == "bc" else "DAgger (operator-sim)")
    ax1.set_xlabel("expert-labelled steps (demonstration + intervention)")
    ax1.set_ylabel("docked alone, held-out seeds (%)")
    ax1.set_ylim(-2, 102)
    ax1.set_title("success, 95% Wilson interval")
    ax1.legend(loc="best", fontsize="small")
    rows = [r for r in result["dagger"] if r["interventions_per_min"] is not None]
    ax2.bar([r["round"] for r in rows], [r["interventions_per_min"] for r in rows])
    ticks = [r["round"] for r in result["dagger"]]
    ax2.set_xticks(ticks, [f"r{t:03d}" for t in ticks])
    ax2.set_xlabel("DAgger round (model rN under the simulated operator)")
    ax2.set_ylabel("interventions / autonomous min")
    ax2.set_title("interventions per autonomous minute")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    seeds = result["eval_seeds"]
    fig.suptitle(f"bench dagger ({result['preset']}): every model alone on seeds "
                 f"{seeds[0]}..{seeds[1]}"
                 f"{'; quick preset, one run' if result['quick'] else ''}",
                 fontsize="medium")
    save_figure(fig, path)
    plt.close(fig)
