"""`takeover dagger ...`: the rounds of a workspace, and the human gate between them.

    status    per-round metrics               report    markdown + PNG of the rounds
    train     next model, warm-started, registered but not deployed (unless --deploy)
    eval      a model alone on held-out simulator seeds (or under perturbations); into its card
    compare   two models on the same seeds: exact McNemar test, time-to-dock difference
    promote   deploy a model (default: the newest), shown against the deployed one
    rollback  the previously deployed one

Torch is imported inside the train handler only (and `bench dagger`'s), so the other commands
run on a robot computer without it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from takeover.cli.common import add_workspace_option
from takeover.cli.output import print_json
from takeover.config import DAGGER_RETRAINS, WEIGHTINGS
from takeover.dagger.metrics import (
    format_status_table,
    intervention_trend,
    workspace_metrics,
    workspace_metrics_by_robot,
)
from takeover.errors import UsageError
from takeover.recorder.store import EpisodeStore


def _workspace_arg(p: argparse.ArgumentParser) -> None:
    add_workspace_option(p, required=True)


def add_dagger_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("dagger", help="DAgger rounds: metrics, retraining, deployment")
    dsub = p.add_subparsers(dest="dagger", required=True,
                            metavar="{status,train,eval,compare,promote,rollback,report}")
    status = dsub.add_parser("status", help="per-round metrics: interventions, autonomy, success")
    _workspace_arg(status)
    status.add_argument("--json", action="store_true")
    status.add_argument("--by-robot", action="store_true",
                        help="one row per round and robot (several robots in one workspace); "
                             "--json always has them as `per_robot`")
    status.set_defaults(func=_cmd_status)

    train = dsub.add_parser(
        "train", help="retrain on all rounds warm-started from the deployed model; register it",
        description="Aggregate every round, warm-start from models/current's checkpoint, train, "
        "export to ONNX, check parity and register the next model (models/rNNN). The new model "
        "is NOT deployed: evaluate it (`dagger eval`) and deploy it with `dagger promote`, or "
        "pass --deploy.")
    _workspace_arg(train)
    train.add_argument("--epochs", type=int, default=None, metavar="N",
                       help="default: [train] warm_epochs (4) for a warm start, [train] epochs "
                       "(12) from scratch; a warm start also uses [train] warm_lr")
    train.add_argument("--device", default=None, metavar="D",
                       help="auto, cpu, cuda or cuda:N (default: [train] device, else auto)")
    train.add_argument("--threads", type=int, default=None,
                       help="CPU threads (default: [train] threads, else all cores)")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--scratch", action="store_true",
                       help="new weights instead of the deployed model's (same architecture, "
                       "[train] epochs and lr), as [train] dagger_retrain = \"scratch\" (default "
                       "auto: scratch while the workspace is small; docs/dagger.md)")
    train.add_argument("--deploy", action="store_true",
                       help="also deploy the new model (skip the human gate)")
    train.add_argument("--eval", type=int, default=0, metavar="N",
                       help="then evaluate it on N held-out simulator seeds (see `dagger eval`)")
    train.add_argument("--eval-seed", type=int, default=None, metavar="S")
    train.add_argument("--json", action="store_true", help="print the model card as the last line")
    train.set_defaults(func=_cmd_train)

    ev = dsub.add_parser(
        "eval", help="run a model alone on held-out simulator seeds; write the result to its card",
        description="The model drives alone (no takeovers) on the lockstep simulator for N "
        "episodes with seeds S..S+N-1; success rate, 95% Wilson interval, efficiency, seeds, "
        "outcomes and date go into its card.json (`evaluation`). With --suite robustness or "
        "--perturb, the same seeds under each perturbation family of the simulator (one row "
        "each, into the card's `robustness`).")
    ev.add_argument("model", nargs="?", default=None, metavar="MODEL_ID",
                    help="e.g. r002 (default: the newest model)")
    _workspace_arg(ev)
    ev.add_argument("--episodes", type=int, default=None, metavar="N",
                    help="default 100 (per family with --suite/--perturb)")
    ev.add_argument("--seed", type=int, default=None, metavar="S", help="default 5000")
    ev.add_argument("--max-steps", type=int, default=1200, metavar="N")
    ev.add_argument("--suite", default=None, metavar="robustness",
                    help="robustness: the baseline, every perturbation family at severity 1 "
                    "and the dynamic obstacles (a box in the path, a person walking across)")
    ev.add_argument("--perturb", action="append", default=[], metavar="FAMILY=SEVERITY",
                    help="one perturbation family at a severity in 0..1 (repeat for more rows); "
                    "families: " + ", ".join(_perturb_families()))
    _jobs_arg(ev)
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=_cmd_eval)

    cmp = dsub.add_parser(
        "compare", help="two models on the same held-out seeds: which one docks more often",
        description="Both models drive alone on the same seeds S..S+N-1. Success: the exact "
        "McNemar test on the seeds where only one docked; time to dock: the mean paired "
        "difference (B - A) with a 95% bootstrap interval; a verdict in words. Kept in B's "
        "card (`comparisons`).")
    cmp.add_argument("a", metavar="A", help="the reference model (e.g. the deployed one)")
    cmp.add_argument("b", metavar="B", help="the candidate")
    _workspace_arg(cmp)
    cmp.add_argument("--episodes", type=int, default=None, metavar="N", help="default 100")
    cmp.add_argument("--seed", type=int, default=None, metavar="S", help="default 5000")
    cmp.add_argument("--max-steps", type=int, default=1200, metavar="N")
    _jobs_arg(cmp)
    cmp.add_argument("--json", action="store_true")
    cmp.set_defaults(func=_cmd_compare)

    promote = dsub.add_parser("promote", help="deploy a model (default: the newest)")
    promote.add_argument("model", nargs="?", default=None, metavar="MODEL_ID")
    _workspace_arg(promote)
    promote.add_argument("--json", action="store_true")
    promote.set_defaults(func=_cmd_promote)

    rollback = dsub.add_parser("rollback", help="deploy the model that was deployed before")
    _workspace_arg(rollback)
    rollback.add_argument("--json", action="store_true")
    rollback.set_defaults(func=_cmd_rollback)

    report = dsub.add_parser("report", help="the rounds as markdown and a PNG plot")
    _workspace_arg(report)
    report.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="default WORKSPACE/report")
    report.add_argument("--json", action="store_true")
    report.set_defaults(func=_cmd_report)


def _perturb_families() -> list[str]:
    from takeover.sim.obstacles import EVAL_FAMILIES
    from takeover.sim.perturb import FAMILIES, RANDOM_GROUPS

    return [*FAMILIES, *EVAL_FAMILIES, *RANDOM_GROUPS]


def _jobs_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="processes running episodes (default: the cores; 1: serial; the "
                   "outcomes are the same either way)")


def add_dagger_bench(bench_sub: Any) -> None:
    """`takeover bench dagger`."""
    from takeover.dagger.presets import PRESETS

    b = bench_sub.add_parser(
        "dagger", help="behavioural cloning vs DAgger on the simulator, against expert labels",
        description="A full experiment on the simulator: BC on N expert demonstrations for "
        "several N, and DAgger rounds supervised by the simulated operator, every model "
        "evaluated on the same held-out seeds. Writes bench_dagger.json, .md and .png.")
    b.add_argument("--quick", action="store_true",
                   help="about ten minutes on 2 cores: DAgger r001-r006 against BC at equal "
                   "expert labels, 50 seeds each, compared seed by seed")
    b.add_argument("--preset", choices=sorted(PRESETS), default=None, help=argparse.SUPPRESS)
    b.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="results and workspaces (default: a new temporary directory)")
    b.add_argument("--bc-demos", default=None, metavar="N,N,...",
                   help="demonstration counts of the BC arm")
    b.add_argument("--initial-demos", type=int, default=None, metavar="N",
                   help="demonstrations of DAgger round r000")
    b.add_argument("--rounds", type=int, default=None, metavar="N", help="DAgger models")
    b.add_argument("--round-episodes", type=int, default=None, metavar="N",
                   help="supervised episodes per DAgger round")
    b.add_argument("--epochs", type=int, default=None, metavar="N", help="training from scratch")
    b.add_argument("--warm-epochs", type=int, default=None, metavar="N",
                   help="DAgger retraining (warm start)")
    b.add_argument("--eval-episodes", type=int, default=None, metavar="N",
                   help="held-out seeds per model")
    b.add_argument("--demo-noise", type=float, default=None, metavar="W",
                   help="DART turn-rate noise (rad/s) in the expert's demonstrations "
                   "(presets: 0.3; 0 for clean demonstrations)")
    b.add_argument("--demo-seed", type=int, default=None, metavar="S",
                   help="first seed of the demonstrations (default 1000): another demonstration "
                   "set, e.g. 1 or 3000 (must not overlap the round or evaluation seeds)")
    b.add_argument("--warm-lr", type=float, default=None, metavar="LR",
                   help="peak learning rate of DAgger's warm-started retraining (default 5e-4, as "
                   "`dagger train`)")
    b.add_argument("--dagger-weighting", choices=WEIGHTINGS, default=None,
                   help="intervention weighting of DAgger's retraining (default iwr, as `dagger "
                   "train`; docs/policy.md)")
    b.add_argument("--dagger-retrain", choices=DAGGER_RETRAINS, default=None,
                   help="how DAgger's next model is trained: warm (default: warm-started from "
                   "the last model), scratch (a new model on every round, --epochs, as BC) or "
                   "auto (`dagger train`'s default: scratch while the workspace is small; "
                   "docs/dagger.md)")
    b.add_argument("--device", default="auto", metavar="D")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_bench_dagger)


def _cmd_status(args: argparse.Namespace) -> int:
    store = EpisodeStore(args.workspace)
    infos = store.episodes()
    rows = workspace_metrics(infos)
    per_robot = workspace_metrics_by_robot(infos)
    trend = intervention_trend(rows)
    if args.json:
        # `rounds` stays pooled over the robots (the CLI contract); `per_robot` is additive.
        print_json({"workspace": str(store.workspace),
                    "rounds": [r.as_json() for r in rows],
                    "per_robot": [{"robot": robot, **m.as_json()} for robot, m in per_robot],
                    "trend": trend.as_json() if trend else None})
        return 0
    if not rows:
        print(f"{store.workspace}: no episodes recorded yet")
        return 0
    table = format_status_table([m for _, m in per_robot], [robot for robot, _ in per_robot]) \
        if args.by_robot else format_status_table(rows)
    for line in table:
        print(line)
    if trend is not None:
        print(f"\n{trend.describe()}")
    return 0


def _positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{flag} must be at least 1")


def _cmd_train(args: argparse.Namespace) -> int:
    _positive(args.epochs, "--epochs")
    _positive(args.threads, "--threads")
    if args.eval < 0:
        raise UsageError("--eval must be 0 or more")
    from takeover.cli.policy import progress_reporter
    from takeover.config import workspace_config
    from takeover.dagger.train import train_config_with, train_next_model, warm_start_source
    from takeover.policy.settings import (
        retrain_from_scratch,
        warm_epochs,
        warm_start_config,
        workspace_training_configs,
    )

    progress = sys.stderr if args.json else sys.stdout
    t0 = time.perf_counter()
    # Defaults, then the workspace's [train] section, then these flags (as `takeover train`).
    settings = workspace_config(args.workspace).train
    model_config, base = workspace_training_configs(settings)
    source, _, _ = warm_start_source(args.workspace)
    labels = sum(e.human_steps for e in EpisodeStore(args.workspace).episodes() if not e.partial)
    scratch = args.scratch or retrain_from_scratch(settings.dagger_retrain, labels, base.epochs,
                                                   warm_epochs(settings))
    if source is not None and not scratch:
        base = warm_start_config(settings, base)
    config = train_config_with(base, epochs=args.epochs, device=args.device, seed=args.seed,
                               threads=args.threads or base.threads or os.cpu_count() or 1)
    card = train_next_model(args.workspace, config, model_config=model_config, deploy=args.deploy,
                            scratch=scratch,
                            on_progress=progress_reporter(progress),
                            on_status=lambda msg: print(msg, file=progress, flush=True))
    if not card:  # a non-main torchrun process
        return 0
    mid = card["model_id"]
    if args.eval:
        from takeover.dagger.evaluate import DEFAULT_EVAL_SEED, evaluate_model

        card["evaluation"] = evaluate_model(
            args.workspace, mid, episodes=args.eval,
            seed=DEFAULT_EVAL_SEED if args.eval_seed is None else args.eval_seed,
            progress=progress)
    card["total_s"] = round(time.perf_counter() - t0, 1)
    t = card["training"]
    warm = card.get("warm_start_model")
    print(f"model {mid} ({'warm start from ' + warm if warm else 'from scratch'}; "
          f"{card['data']['episodes']} episodes, {card['data']['human_steps']} expert labels): "
          f"{t['epochs_run']} epochs in {t['wall_s']:.0f} s, val loss "
          f"{card['metrics'].get('best_val_loss')}, parity "
          f"{card['export']['parity_max_abs_error']:.1e}; total {card['total_s']} s",
          file=progress, flush=True)
    if card.get("evaluation"):
        _print_eval(card["evaluation"], progress)
    if card["deployed"]:
        print(f"deployed: models/current -> {mid}", file=progress)
    else:
        print(f"registered, not deployed (models/current unchanged); deploy with "
              f"`takeover dagger promote {mid} --workspace {args.workspace}`", file=progress)
    if args.json:
        print_json(card)
    return 0


def _print_eval(ev: dict[str, Any], stream: Any) -> None:
    seeds = ev["seeds"]
    print(f"{ev.get('model_id', 'model')} alone on seeds {seeds[0]}..{seeds[-1]}: "
          f"{ev['successes']}/{ev['episodes']} docked ({100 * ev['success_rate']:.0f}%, 95% CI "
          f"{100 * ev['ci_low']:.0f}-{100 * ev['ci_high']:.0f}%)"
          f"{'' if ev['held_out'] else ' [seeds overlap the training data]'}",
          file=stream, flush=True)


def _cmd_eval(args: argparse.Namespace) -> int:
    from takeover.dagger.evaluate import DEFAULT_EVAL_EPISODES, DEFAULT_EVAL_SEED, evaluate_model
    from takeover.dagger.parallel import check_jobs

    progress = sys.stderr if args.json else sys.stdout
    episodes = DEFAULT_EVAL_EPISODES if args.episodes is None else args.episodes
    seed = DEFAULT_EVAL_SEED if args.seed is None else args.seed
    jobs = check_jobs(args.jobs)
    if args.suite is not None or args.perturb:
        return _eval_robustness(args, episodes, seed, jobs, progress)
    result = evaluate_model(args.workspace, args.model, episodes=episodes, seed=seed,
                            max_steps=args.max_steps, progress=progress, jobs=jobs)
    _print_eval(result, progress)
    print(f"written to models/{result['model_id']}/card.json (evaluation)", file=progress)
    if args.json:
        print_json(result)
    return 0


def _eval_robustness(args: argparse.Namespace, episodes: int, seed: int, jobs: int,
                     progress: Any) -> int:
    from takeover.dagger.robustness import (
        evaluate_robustness,
        suite_rows,
        table_lines,
        weakest,
    )

    rows = suite_rows(args.suite, args.perturb)  # a bad --perturb is one line, before any work
    print(f"{len(rows)} rows x {episodes} episodes (seeds {seed}..{seed + episodes - 1}) on "
          f"{jobs} process{'es' if jobs > 1 else ''}", file=progress, flush=True)
    result = evaluate_robustness(args.workspace, args.model, rows, episodes=episodes, seed=seed,
                                 max_steps=args.max_steps, jobs=jobs, progress=progress)
    print("\n".join(table_lines(result)), file=progress)
    worst = weakest(result["families"])
    if worst:
        names = ", ".join(f"{r['family']} at severity {r['severity']:g}" for r in worst)
        print(f"weakest: {names} ({worst[0]['successes']}/{worst[0]['episodes']} docked"
              f"{' each' if len(worst) > 1 else ''})", file=progress)
    print(f"written to models/{result['model']}/card.json (robustness)", file=progress)
    if args.json:
        print_json(result)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from takeover.dagger.compare import compare_models
    from takeover.dagger.evaluate import DEFAULT_EVAL_EPISODES, DEFAULT_EVAL_SEED
    from takeover.dagger.parallel import check_jobs

    progress = sys.stderr if args.json else sys.stdout
    result = compare_models(
        args.workspace, args.a, args.b,
        episodes=DEFAULT_EVAL_EPISODES if args.episodes is None else args.episodes,
        seed=DEFAULT_EVAL_SEED if args.seed is None else args.seed, max_steps=args.max_steps,
        jobs=check_jobs(args.jobs), progress=progress)
    for line in comparison_lines(result):
        print(line, file=progress)
    print(f"kept in models/{result['b']}/card.json (comparisons)", file=progress)
    if args.json:
        print_json(result)
    return 0


def comparison_lines(c: dict[str, Any]) -> list[str]:
    n = c["episodes"]
    lines = [f"{c['a']}: {c['a_successes']}/{n} docked; {c['b']}: {c['b_successes']}/{n} docked "
             f"(same seeds); only {c['a']}: {c['only_a']}, only {c['b']}: {c['only_b']}; exact "
             f"McNemar p = {c['p_value']:.3g}"]
    if c["time_diff_s"] is not None:
        lo, hi = c["time_diff_ci"]
        lines.append(f"time to dock, {c['b']} - {c['a']} where both docked: "
                     f"{c['time_diff_s']:+.2f} s (95% bootstrap CI {lo:+.2f} to {hi:+.2f})")
    lines.append(f"verdict: {c['verdict']}")
    return lines


def _cmd_promote(args: argparse.Namespace) -> int:
    from takeover.dagger.compare import comparison_for_promotion, promotion_warning
    from takeover.workspace.deploy import promote
    from takeover.workspace.registry import current_model_id, resolve_model_id

    out = sys.stderr if args.json else sys.stdout
    deployed = current_model_id(args.workspace)
    candidate = resolve_model_id(args.workspace, args.model)
    comparison, warning = None, None
    if deployed is not None and deployed != candidate:
        # Shown, never blocking: the person promoting decides.
        comparison, source = comparison_for_promotion(args.workspace, deployed, candidate)
        if comparison is None:
            print(source, file=out)
        else:
            print(f"against the deployed {deployed} ({source}):", file=out)
            for line in comparison_lines(comparison):
                print(f"  {line}", file=out)
            warning = promotion_warning(comparison)
            if warning is not None:
                print(warning, file=out)
    dep = promote(args.workspace, args.model)
    if args.json:
        print_json({**dep.as_json(), "comparison": comparison, "warning": warning})
    elif dep.changed:
        print(f"deployed {dep.current} (was {dep.previous or 'none'}): models/current -> "
              f"{dep.current}")
    else:
        print(f"{dep.current} is already deployed")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from takeover.workspace.deploy import rollback

    dep = rollback(args.workspace)
    if args.json:
        print_json(dep.as_json())
    else:
        print(f"rolled back from {dep.previous} to {dep.current}: models/current -> {dep.current}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from takeover.dagger.report import write_report

    result = write_report(args.workspace, args.out)
    if args.json:
        print_json(result)
    else:
        print(f"wrote {result['markdown']} and {result['plot']}")
    return 0


def _cmd_bench_dagger(args: argparse.Namespace) -> int:
    from takeover.dagger.presets import preset_for

    preset = preset_for(args.preset or ("quick" if args.quick else "full"),
                        bc_demos=args.bc_demos, initial_demos=args.initial_demos,
                        rounds=args.rounds, round_episodes=args.round_episodes,
                        epochs=args.epochs, warm_epochs=args.warm_epochs,
                        eval_episodes=args.eval_episodes, demo_noise=args.demo_noise,
                        warm_lr=args.warm_lr, dagger_weighting=args.dagger_weighting,
                        demo_seed=args.demo_seed, dagger_retrain=args.dagger_retrain)
    from takeover.bench.dagger import run_dagger_bench

    result = run_dagger_bench(preset, out_dir=args.out, device=args.device, progress=sys.stderr)
    if args.json:
        print_json(result)
    else:
        print("\n".join(result["table_md"]))
        print(f"wrote {result['files']['json']}, {result['files']['markdown']}, "
              f"{result['files']['plot']}")
    return 0
