"""`takeover bench`: the measurement harnesses of takeover/bench/ (and the latency and DAgger
benches of the policy and dagger command groups)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from takeover.cli.common import add_workspace_option
from takeover.cli.dagger import add_dagger_bench
from takeover.cli.output import print_json, print_result
from takeover.cli.policy import add_latency_bench
from takeover.config import WEIGHTINGS
from takeover.errors import UsageError


def add_bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="benchmarks (medians and percentiles, measured in one run)")
    bsub = p.add_subparsers(dest="bench", required=True,
                            metavar="{loop,sim,recorder,links,latency,dagger,spread,supervision,fleet,safety}")
    loop = bsub.add_parser("loop", help="control-loop timing on the real-time simulator")
    loop.add_argument("--seconds", type=float, default=30.0, help="per rate (default 30)")
    loop.add_argument("--rates", default="20,50", help="comma-separated loop rates in Hz")
    loop.add_argument("--quick", action="store_true", help="5 s per rate")
    loop.add_argument("--json", action="store_true")
    loop.set_defaults(func=_cmd_bench_loop)
    sim = bsub.add_parser("sim", help="simulator frames per second (render + physics)")
    sim.add_argument("--frames", type=int, default=2000)
    sim.add_argument("--width", type=int, default=96)
    sim.add_argument("--height", type=int, default=96)
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(func=_cmd_bench_sim)
    rec = bsub.add_parser("recorder", help="recording throughput per compression (640x480 @ 30 Hz)")
    rec.add_argument("--quick", action="store_true", help="10 s per compression instead of 60 s")
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(func=_cmd_bench_recorder)
    links = bsub.add_parser("links", help="command latency and camera rate over ROS 2, rosbridge "
                                          "and serial, side by side")
    links.add_argument("--seconds", type=float, default=10.0, help="per link (default 10)")
    links.add_argument("--camera", default="640x480@30", metavar="WxH@HZ",
                       help="the served camera (default 640x480@30)")
    links.add_argument("--links", default="ros2,rosbridge,serial",
                       help="which links, comma-separated (default ros2,rosbridge,serial)")
    links.add_argument("--json", action="store_true")
    links.set_defaults(func=_cmd_bench_links)
    add_latency_bench(bsub)
    add_dagger_bench(bsub)
    add_spread_bench(bsub)
    add_supervision_bench(bsub)
    add_fleet_bench(bsub)
    safety = bsub.add_parser(
        "safety", help="the LiDAR protective field, off against on: collisions with obstacles "
        "that walk in, protective stops, docking (the expert in AUTO, unaware of them)")
    safety.add_argument("--episodes", type=int, default=100, help="seeds per arm (default 100)")
    safety.add_argument("--seed", type=int, default=7000, help="first seed (default 7000)")
    safety.add_argument("--obstacles", default="walk-in",
                        choices=("walk-in", "box", "person", "none"),
                        help="the simulator's dynamic obstacles (default walk-in: a box set down "
                        "in the path or a person walking across, by seed); none: docking alone")
    safety.add_argument("--max-steps", type=int, default=1200)
    add_workspace_option(safety, required=False,
                         help="take [safety] (the field's settings) and [loop] from this "
                         "workspace's takeover.toml (default: the defaults)")
    safety.add_argument("--json", action="store_true")
    safety.set_defaults(func=_cmd_bench_safety)


def add_spread_bench(bsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`takeover bench spread`. Every default is None so that `--quick` supplies its own and
    an option given with it still wins (takeover/bench/spread.py)."""
    p = bsub.add_parser(
        "spread", help="BC's held-out success over several demonstration sets and training "
        "seeds: mean, minimum, intervals",
        description="For each demonstration set, the expert records N demonstrations with DART "
        "noise once; for each training seed, one model is trained on them from scratch "
        "(`takeover train` defaults) and evaluated alone on the same held-out seeds. Prints one "
        "row per (set, seed) with its 95%% Wilson interval, the mean per set, and the mean, "
        "minimum, maximum and spread over all models; writes bench_spread.json into the work "
        "folder.")
    p.add_argument("--sets", default=None, metavar="S,S,...",
                   help="the first demonstration seed of each disjoint set (default "
                   "1000,2000,3000)")
    p.add_argument("--demos", type=int, default=None, metavar="N",
                   help="demonstrations per set (default 40)")
    p.add_argument("--demo-noise", type=float, default=None, metavar="W",
                   help="DART turn-rate noise in rad/s (default 0.3; 0 for clean demonstrations)")
    p.add_argument("--train-seeds", default=None, metavar="S,S,...",
                   help="training seeds, one model per seed and set (default 0,1)")
    p.add_argument("--episodes", type=int, default=None, metavar="N",
                   help="held-out seeds per model (default 100)")
    p.add_argument("--eval-seed", type=int, default=None, metavar="S",
                   help="first held-out seed, the same for every model (default 5000)")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="training epochs (default: `takeover train`'s, 12)")
    p.add_argument("--augment", choices=("on", "off", "camera"), default=None,
                   help="image augmentation, as `takeover train --augment` (default on)")
    p.add_argument("--lr", type=float, default=None, help="OneCycle peak, as `takeover train`")
    p.add_argument("--batch-size", type=int, default=None, metavar="N")
    p.add_argument("--weighting", choices=WEIGHTINGS, default=None,
                   help="intervention weighting, as `takeover train` (default none)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for training "
                   "(default: all cores)")
    p.add_argument("--device", default="auto", metavar="D", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="processes running evaluation episodes (default: the cores; the "
                   "outcomes are the same either way)")
    p.add_argument("--workdir", type=Path, default=None, metavar="DIR",
                   help="keep the workspaces (each set's demonstrations, each model) and "
                   "bench_spread.json here (default: a temporary folder whose workspaces are "
                   "removed at the end)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke test, not a measurement: 2 sets x 2 demonstrations, 1 epoch, a "
                   "tiny model, 2 episodes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench_spread)


def add_supervision_bench(bsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`takeover bench supervision` (takeover/bench/supervision.py). --episodes and --max-steps
    default to None so that --quick supplies its own and an option given with it still wins."""
    p = bsub.add_parser(
        "supervision", help="human-gated against robot-gated supervision of one policy: success, "
        "the operator's attention, help requests, false alarms, missed failures",
        description="The same model on the same held-out seeds, driven with the simulated "
        "operator twice: watching all the time (human) and looking only when the robot asks for "
        "help (robot). Per mode: success with its 95%% Wilson interval, attention_s, driving_s, "
        "requests, false_alarms, missed_failures.")
    _add_simulated_operator_options(p, episodes_metavar="N", episodes_help="seeds per mode "
                                    "(default 100)", quick_runs="2 short episodes per mode")
    p.set_defaults(func=_cmd_bench_supervision)


def _cmd_bench_supervision(args: argparse.Namespace) -> int:
    from takeover.bench.supervision import (
        run_supervision_bench,
        supervision_settings,
        table_lines,
    )

    settings = supervision_settings(quick=args.quick, episodes=args.episodes,
                                    max_steps=args.max_steps, policy=args.policy,
                                    workspace=args.workspace, seed=args.seed)
    result = run_supervision_bench(settings, progress=sys.stderr)
    # With --json the table goes to stderr, so stdout is the one JSON line scripts read.
    print("\n".join(table_lines(result)), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print_json(result)
    return 0


def _add_simulated_operator_options(p: argparse.ArgumentParser, *, episodes_metavar: str,
                                    episodes_help: str, quick_runs: str) -> None:
    """The options of the benches that run a model under the simulated operator (supervision,
    fleet): the model, its workspace, the seeds, and --quick."""
    p.add_argument("--policy", type=Path, default=None, metavar="PATH",
                   help="the ONNX model to measure (its model card holds the novelty threshold)")
    add_workspace_option(p, required=False,
                         help="take the camera, [safety] and [supervision] from this workspace's "
                         "takeover.toml (default: the defaults)")
    p.add_argument("--episodes", type=int, default=None, metavar=episodes_metavar,
                   help=episodes_help)
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="first seed (default 5000, the held-out evaluation seeds)")
    p.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="steps before an episode times out (default 1200: 60 s at 20 Hz)")
    p.add_argument("--quick", action="store_true",
                   help="without --policy: record 2 demonstrations and train a tiny ensemble, then "
                   f"{quick_runs}; a smoke test, not a measurement")
    p.add_argument("--json", action="store_true")


def add_fleet_bench(bsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`takeover bench fleet` (takeover/bench/fleet.py). --robots, --episodes and --max-steps
    default to None so that --quick supplies its own and an option given with it still wins."""
    p = bsub.add_parser(
        "fleet", help="one simulated operator and N robots: successes per minute on duty (ROHE), "
        "attention, idle time; human-gated against robot-gated",
        description="For each number of robots and each supervision mode, the same episodes on "
        "the same held-out seeds (spread over the robots) with ONE simulated operator on duty "
        "for the whole run, attending to one robot at a time (takeover drive --robots N). Per "
        "row: success with its 95%% Wilson interval, operator_min (the run's simulated length), "
        "attention_min, rohe (successes per operator minute), rohe_ratio (against one robot), "
        "idle_frac.")
    p.add_argument("--robots", default=None, metavar="N,N,...",
                   help="robot counts, comma-separated (default 1,2,4,8)")
    p.add_argument("--supervision", default=None, metavar="MODE,...",
                   help="human and/or robot, comma-separated (default human,robot)")
    _add_simulated_operator_options(p, episodes_metavar="E", episodes_help="episodes per row, "
                                    "spread over its robots (default 40)",
                                    quick_runs="2 short episodes for 1 and 2 robots")
    p.set_defaults(func=_cmd_bench_fleet)


def _cmd_bench_fleet(args: argparse.Namespace) -> int:
    from takeover.bench.fleet import fleet_settings, run_fleet_bench, table_lines

    settings = fleet_settings(quick=args.quick, robots=args.robots, supervision=args.supervision,
                              episodes=args.episodes, max_steps=args.max_steps,
                              policy=args.policy, workspace=args.workspace, seed=args.seed)
    result = run_fleet_bench(settings, progress=sys.stderr)
    # With --json the table goes to stderr, so stdout is the one JSON line scripts read.
    print("\n".join(table_lines(result)), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print_json(result)
    return 0


def _cmd_bench_loop(args: argparse.Namespace) -> int:
    from takeover.bench.loop import bench_loop

    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        raise UsageError(f"--rates {args.rates!r}: expected numbers like 20,50") from None
    seconds = 5.0 if args.quick else args.seconds
    result = bench_loop(rates, seconds, progress=sys.stderr)
    print_result(result, args.json)
    return 0


def _cmd_bench_sim(args: argparse.Namespace) -> int:
    from takeover.bench.loop import bench_sim

    result = bench_sim(args.frames, args.width, args.height)
    print_result(result, args.json)
    return 0


def _cmd_bench_recorder(args: argparse.Namespace) -> int:
    from takeover.bench.recorder import run_recorder_bench

    print_result(run_recorder_bench(quick=args.quick), args.json)
    return 0


def _cmd_bench_links(args: argparse.Namespace) -> int:
    from takeover.bench.links import run_link_latency_bench

    links = tuple(x.strip() for x in args.links.split(",") if x.strip())
    unknown = sorted(set(links) - {"ros2", "rosbridge", "serial"})
    if unknown or not links:
        raise UsageError(f"--links {args.links!r}: choose from ros2, rosbridge, serial")
    print_result(run_link_latency_bench(duration_s=args.seconds, camera=args.camera,
                                        links=links), args.json)
    return 0


def _cmd_bench_safety(args: argparse.Namespace) -> int:
    from takeover.bench.safety import run_safety_bench
    from takeover.config import Config, workspace_config

    config = workspace_config(args.workspace) if args.workspace is not None else Config()
    result = run_safety_bench(episodes=args.episodes, seed=args.seed, obstacles=args.obstacles,
                              config=config, max_steps=args.max_steps, progress=sys.stderr)
    print_result(result, args.json)
    return 0


def _cmd_bench_spread(args: argparse.Namespace) -> int:
    from takeover.bench.spread import (
        parse_seed_list,
        run_spread_bench,
        spread_settings,
        table_lines,
    )

    settings = spread_settings(
        quick=args.quick,
        sets=None if args.sets is None else parse_seed_list(args.sets, "--sets"),
        train_seeds=None if args.train_seeds is None
        else parse_seed_list(args.train_seeds, "--train-seeds"),
        demos=args.demos, demo_noise=args.demo_noise, episodes=args.episodes,
        eval_seed=args.eval_seed, epochs=args.epochs, jobs=args.jobs,
        train_overrides={"augment": args.augment, "lr": args.lr, "batch_size": args.batch_size,
                         "weighting": args.weighting, "threads": args.threads})
    result = run_spread_bench(settings, workdir=args.workdir, device=args.device,
                              progress=sys.stderr)
    # With --json the table goes to stderr, so stdout is the one JSON line scripts read.
    print("\n".join(table_lines(result)), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print_json(result)
    return 0
