"""`takeover drive`: headless docking episodes (takeover/session/drive.py does the work)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from takeover.cli.common import add_workspace_option
from takeover.cli.output import print_json
from takeover.config import SUPERVISION_MODES
from takeover.errors import UsageError


def add_drive_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    add_workspace_option(p, required=False)
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
    p.add_argument("--reset", choices=["teleport", "drive"], default="teleport",
                   help="between episodes: teleport (the simulator's world reset per seed; "
                   "default) or drive (undock and drive to a new start pose, outcomes from "
                   "the docking detector, as on a real base: sim://?reset=drive or a robot)")
    p.add_argument("--truth-log", type=Path, default=None, metavar="PATH",
                   help="with --reset drive on the simulator run as a real base: its truth log "
                   "(sim://?truth_log=PATH, `sim serve --truth-log PATH`), for outcome_truth")
    p.add_argument("--supervision", choices=SUPERVISION_MODES, default=None,
                   help="who decides when the operator looks (default: config [supervision] "
                   "mode, human): human (the operator watches and takes over), robot (the "
                   "robot asks for help and holds still until answered; the simulated operator "
                   "looks only then) or both")
    p.add_argument("--robots", type=int, default=None, metavar="N",
                   help="N simulated robots (sim://, in lockstep as --fast) with ONE simulated "
                   "operator who attends to one at a time (--driver operator-sim; --driver "
                   "policy: no operator); the episodes are spread over the robots")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_cmd_drive)


def _cmd_drive(args: argparse.Namespace) -> int:
    from takeover.dagger.metrics import episode_help_counts
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
        reset=args.reset,
        truth_log=args.truth_log,
        supervision=args.supervision,
    )
    progress = sys.stderr if args.json else sys.stdout
    if args.robots is not None:
        from takeover.session.fleet_drive import FleetRun, run_fleet_drive

        summary = run_fleet_drive(request, FleetRun(robots=args.robots), progress=progress,
                                  count_help=episode_help_counts)
    else:
        summary = run_drive(request, progress=progress, count_help=episode_help_counts)
    if args.json:
        print_json(summary)
    return 0
