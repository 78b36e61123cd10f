"""The `takeover` command. See DESIGN.md's CLI contract; `--json` output is a contract too.

Errors meant for people (`TakeoverError`) print as one line on stderr, no traceback; usage and
config errors exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from takeover import __version__
from takeover.cli.dagger import add_dagger_bench, add_dagger_parser
from takeover.cli.data import add_data_parser
from takeover.cli.policy import add_latency_bench, add_policy_parsers
from takeover.cli.run import add_run_parser
from takeover.cli.sim import add_sim_parser
from takeover.errors import TakeoverError, UsageError


def _add_drive(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "drive",
        help="run docking episodes headless through the full control loop",
        description="Run episodes through the control loop and Arbiter, headless. "
        "--driver expert demonstrates with the scripted docking expert (MANUAL).",
    )
    p.add_argument("--robot", metavar="URL", help="robot URL (default: config, else sim://)")
    p.add_argument("--driver", choices=["expert", "policy", "operator-sim"], required=True)
    p.add_argument("--episodes", type=int, default=1, metavar="N")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of the first episode; episode i uses S+i")
    p.add_argument("--workspace", type=Path, default=None, metavar="DIR")
    p.add_argument("--policy", type=Path, default=None, metavar="PATH")
    p.add_argument("--record", action="store_true", help="record episodes into the workspace")
    p.add_argument("--fast", action="store_true",
                   help="sim only: step the simulator as fast as it can instead of real time")
    p.add_argument("--max-steps", type=int, default=1200, metavar="N",
                   help="steps before an episode times out (default 1200: 60 s at 20 Hz)")
    p.add_argument("--rate-hz", type=float, default=None, help="loop rate (default: config)")
    p.add_argument("--demo-noise", type=float, default=None, metavar="W_RADPS",
                   help="demonstrations: push the robot with turn-rate noise of this standard "
                   "deviation (rad/s) while the expert drives, recording the expert's own "
                   "command (DART; default: config [demonstration], off)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_cmd_drive)


def _cmd_drive(args: argparse.Namespace) -> int:
    from takeover.session.drive import DriveRequest, run_drive

    if args.episodes < 1:
        raise UsageError("--episodes must be at least 1")
    if args.max_steps < 1:
        raise UsageError("--max-steps must be at least 1")
    request = DriveRequest(
        robot_url=args.robot,
        driver=args.driver,
        episodes=args.episodes,
        seed=args.seed,
        workspace=args.workspace,
        policy=args.policy,
        record=args.record,
        fast=args.fast,
        max_steps=args.max_steps,
        rate_hz=args.rate_hz,
        demo_noise_w_radps=args.demo_noise,
    )
    progress = sys.stderr if args.json else sys.stdout
    summary = run_drive(request, progress=progress)
    if args.json:
        _print_json(summary)
    return 0


def _add_init(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help="create a workspace with a commented takeover.toml")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.set_defaults(func=_cmd_init)


def _cmd_init(args: argparse.Namespace) -> int:
    from takeover.workspace.layout import init_workspace

    path = init_workspace(args.dir)
    print(f"workspace ready: {path} (edit {path / 'takeover.toml'})")
    return 0


def _add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="benchmarks (medians and percentiles, measured in one run)")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="{loop,sim,recorder,links,latency,dagger}")
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
    links = bsub.add_parser("links", help="command-to-wire latency over serial and rosbridge")
    links.add_argument("--seconds", type=float, default=10.0)
    links.add_argument("--json", action="store_true")
    links.set_defaults(func=_cmd_bench_links)
    add_latency_bench(bsub)
    add_dagger_bench(bsub)


def _cmd_bench_loop(args: argparse.Namespace) -> int:
    from takeover.bench.loop import bench_loop

    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        raise UsageError(f"--rates {args.rates!r}: expected numbers like 20,50") from None
    seconds = 5.0 if args.quick else args.seconds
    result = bench_loop(rates, seconds, progress=sys.stderr)
    _print_result(result, args.json)
    return 0


def _cmd_bench_sim(args: argparse.Namespace) -> int:
    from takeover.bench.loop import bench_sim

    result = bench_sim(args.frames, args.width, args.height)
    _print_result(result, args.json)
    return 0


def _cmd_bench_recorder(args: argparse.Namespace) -> int:
    from takeover.bench.recorder import run_recorder_bench

    _print_result(run_recorder_bench(quick=args.quick), args.json)
    return 0


def _cmd_bench_links(args: argparse.Namespace) -> int:
    from takeover.bench.links import run_link_latency_bench

    _print_result(run_link_latency_bench(duration_s=args.seconds), args.json)
    return 0


def _print_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(result)
        return
    for key, value in result.items():
        print(f"{key}: {json.dumps(value)}")


def _print_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, allow_nan=False, default=str) + "\n")
    sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="takeover",
        description="Teach a mobile robot to dock by demonstration and human-gated DAgger.",
    )
    parser.add_argument("--version", action="version", version=f"takeover {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run_parser(sub)
    _add_drive(sub)
    _add_init(sub)
    add_sim_parser(sub)
    add_data_parser(sub)
    add_dagger_parser(sub)
    _add_bench(sub)
    add_policy_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except TakeoverError as e:
        print(f"takeover: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("takeover: interrupted", file=sys.stderr)
        return 130
