"""`takeover probe URL [--json]`: what a robot offers against what the configuration expects
(takeover/hw/probe.py does the work). Run it first on a new robot."""

from __future__ import annotations

import argparse
from typing import Any

from takeover.cli.common import add_workspace_option
from takeover.cli.output import print_json


def add_probe_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "probe", help="what a robot offers against what the configuration expects",
        description="Connect to the robot at URL without moving it; list what it offers "
        "(topics or fields, types, rates, image size and encoding, QoS, clock offset), what "
        "the configuration expects and does not find, a round-trip time, and a verdict. "
        "Exit status 0 when takeover can drive it, 1 when not.")
    p.add_argument("url", metavar="URL", help="robot URL (ros2://, ws://, serial://, sim://)")
    p.add_argument("--seconds", type=float, default=2.0,
                   help="how long to watch the robot's messages (default 2)")
    add_workspace_option(p, required=False,
                         help="take [robot]'s camera size from this workspace's takeover.toml")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_cmd_probe)


def _cmd_probe(args: argparse.Namespace) -> int:
    from takeover.config import Config, workspace_config
    from takeover.errors import UsageError
    from takeover.hw.base import LinkOptions
    from takeover.hw.probe import NOT_USABLE, probe

    if not 0.2 <= args.seconds <= 60:
        raise UsageError(f"--seconds {args.seconds}: between 0.2 and 60")
    config = workspace_config(args.workspace) if args.workspace is not None else Config()
    options = LinkOptions(camera_width=config.robot.camera_width,
                          camera_height=config.robot.camera_height)
    report = probe(args.url, options, window_s=args.seconds)
    if args.json:
        print_json(report.as_json())
    else:
        print(render(report.as_json()))
    return 1 if report.verdict == NOT_USABLE else 0


def _rate(value: Any) -> str:
    return f"{value:.1f} Hz" if isinstance(value, int | float) else ""


def render(r: dict[str, Any]) -> str:
    """The report for a person: the verdict first, then what it rests on."""
    lines = [f"{r['url']}: {r['summary']}", ""]
    if r["offers"]:
        lines.append("The robot offers:")
        for o in r["offers"]:
            extra = "; ".join(x for x in (_rate(o["rate_hz"]), o["qos"], o["detail"]) if x)
            lines.append(f"  {o['name']:<34} {o['type']}" + (f"  [{extra}]" if extra else ""))
    if r["expects"]:
        lines.append("The configuration expects:")
        for e in r["expects"]:
            mark = "ok" if e["found"] else ("absent" if e["need"] == "optional" else "MISSING")
            why = f"  ({e['why']})" if e["why"] else ""
            lines.append(f"  {mark:<7} {e['input']:<8} {e['where']} {e['type']}{why}")
    if r["services"]:
        lines.append("Services: " + ", ".join(r["services"]))
    clock = r.get("clock") or {}
    if clock.get("stamp_offset_s") is not None or clock.get("sim_time"):
        offset = clock.get("stamp_offset_s")
        lines.append(f"Clock: stamps {offset:+.3f} s from this computer's clock"
                     if offset is not None else "Clock:")
        if clock.get("sim_time"):
            lines[-1] += "; the robot publishes /clock (sim time)"
    rtt = r.get("round_trip_ms")
    if rtt:
        lines.append(f"Round trip: {rtt['p50']:.2f} ms median, {rtt['max']:.2f} ms max over "
                     f"{rtt['samples']} ({rtt['how']})")
    for title, key in (("Problems", "problems"), ("Warnings", "warnings"), ("Notes", "notes")):
        if r[key]:
            lines.append(f"{title}:")
            lines.extend(f"  - {text}" for text in r[key])
    lines.append(f"Verdict: {r['verdict']}")
    return "\n".join(lines)
