"""`takeover run [--robot URL]... [--workspace DIR] [--policy PATH]`: the operator's terminal.

This module only parses arguments; Textual is imported when the command runs, so other
commands never pay for it. The control core runs in a child process (session/core_process.py);
with several robots (--robot repeated, or [[robots]] in takeover.toml) one per robot
(session/fleet.py), and the terminal opens on the fleet screen. A `core+wss://HOST:PORT` robot
is a core already running on the robot's own computer (`takeover core serve`,
docs/remote_cores.md), reached over TLS with the operator's token.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from takeover.cli.common import add_workspace_option
from takeover.config import ROBOT_NAME, Config, RobotEntry, workspace_config
from takeover.errors import UsageError

if TYPE_CHECKING:
    from takeover.session.core_net import NetworkSession


def add_run_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run", help="the operator's terminal: drive, record, supervise, train, deploy",
        description="Open the operator's terminal (TUI). With no robot configured it starts on "
        "the built-in simulator (sim://). Space is the e-stop key everywhere.")
    p.add_argument("--robot", metavar="URL", action="append", default=None,
                   help="robot URL (default: config, else sim://); repeat it for several "
                   "robots (named robot1, robot2, ..., or --robot NAME=URL)")
    add_workspace_option(p, required=False, help="workspace for episodes and models (default: "
                         "the current directory if it holds a takeover.toml; without one, "
                         "recording is off)")
    p.add_argument("--policy", type=Path, default=None, metavar="PATH",
                   help="ONNX policy for AUTO (default: the workspace's current model)")
    p.add_argument("--no-gamepad", action="store_true", help="keyboard only")
    p.set_defaults(func=cmd_run)


def _existing(workspace: Path | None) -> Path | None:
    if workspace is not None and not workspace.is_dir():
        raise UsageError(f"workspace {workspace} does not exist; create it with "
                         f"`takeover init {workspace}`")
    return None if workspace is None else workspace.resolve()


def robots_to_run(config: Config, given: list[str] | None) -> list[RobotEntry]:
    """The robots of this run: each --robot (NAME=URL, or a URL named robotN), with the config of
    the [[robots]] entry of that name where there is one; else [[robots]]; else [robot]."""
    if not given:
        if config.robots:
            return list(config.robots)
        return [RobotEntry("", config.robot.url, config)]
    by_name = {e.name: e for e in config.robots}
    entries: list[RobotEntry] = []
    for i, text in enumerate(given, 1):
        name, sep, url = text.partition("=")
        if not sep or not ROBOT_NAME.fullmatch(name):  # a URL's own "=" (?baud=...)
            name, url = (f"robot{i}", text) if len(given) > 1 else ("", text)
        if not url:
            raise UsageError(f"--robot {text}: no URL after the name")
        if name and any(e.name == name for e in entries):
            raise UsageError(f"--robot {text}: the name {name} is given twice")
        entry = by_name.get(name)
        robot_config = entry.config if entry is not None else config
        entries.append(RobotEntry(name, url, robot_config))
    return entries


def cmd_run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    from takeover.hw.base import LinkOptions, open_link
    from takeover.session.operator import ModelRef, current_model

    workspace = _existing(args.workspace)
    config = workspace_config(workspace) if workspace is not None else Config()
    robots = robots_to_run(config, args.robot)
    from takeover.session.core_url import is_core_url

    for robot in robots:
        if is_core_url(robot.url):
            # A core on the robot's own computer (`takeover core serve`): its link, policy and
            # workspace are there. The URL is checked now, for one line.
            from takeover.session.core_net import parse_core_url

            parse_core_url(robot.url)
            if args.policy is not None:
                raise UsageError(f"--policy with {robot.url}: the policy is the robot's; give it "
                                 "to `takeover core serve --policy` on that computer")
            continue
        # Checked here, for one line before the terminal is taken over; the link itself is
        # opened and connected by the control core's process.
        rc = robot.config.robot
        link = open_link(robot.url, LinkOptions(camera_width=rc.camera_width,
                                                camera_height=rc.camera_height))
        if link.lockstep:
            raise UsageError(f"{robot.url}: takeover run drives a robot in real time; a lockstep "
                             "simulator (fast=1) is for `takeover drive --fast`. Use sim:// "
                             "instead")
    model: ModelRef | None = None
    if args.policy is not None:
        if not args.policy.is_file():
            raise UsageError(f"--policy {args.policy}: no such model file")
        model = ModelRef(args.policy.parent.name or args.policy.stem, args.policy)
    else:
        model = current_model(workspace)
    from takeover.session.core_process import CoreSpec, RemoteSession
    from takeover.session.fleet import Fleet, FleetRobot

    # The control core (link, loop, recorder, policy, gamepad) runs in a child process, started
    # before Textual is imported so that both start-ups overlap. A model that does not load
    # there is reported on the screen, and driving by hand still works.
    use_gamepad = False if args.no_gamepad else None
    core: RemoteSession | NetworkSession | Fleet
    if len(robots) == 1 and is_core_url(robots[0].url):
        from takeover.session.core_net import NetworkSession

        core = NetworkSession(robots[0].config, robots[0].url)
    elif len(robots) == 1:
        robot = robots[0]
        core = RemoteSession(CoreSpec(robot.config, robot.url, workspace, model, use_gamepad,
                                      robot_name=robot.name))
    else:
        core = Fleet([FleetRobot(r.name, CoreSpec(r.config, r.url, workspace, model,
                                                  use_gamepad))
                      for r in robots])
    from takeover.tui.camera import probe_terminal_graphics

    # Kitty/Sixel support is asked of the terminal now, while the core starts up: the answers
    # come on stdin, which Textual reads once it runs (docs/tui.md, "Camera").
    graphics = probe_terminal_graphics() if config.tui.camera in ("auto", "kitty", "sixel") else None
    from takeover.tui.app import make_app

    app = make_app(config, core, graphics=graphics)
    app.t_command = t0
    app.run()
    return 0
