"""Loop timing of N real-time control cores on one computer: what several robots in one
`takeover run` cost each robot's loop.

    .venv/bin/python benchmarks/fleet_cores.py [--robots 1,2,4,8] [--seconds 30] [--warmup 5]
                                               [--no-record] [--no-rt] [--json]

For each N: a `Fleet` (session/fleet.py) of N control cores, each in its own process on its own
real-time simulator (`sim://?seed=i`), as `takeover run` starts them; every core drives its robot
in AUTO with the simulator's docking expert as its policy (no hold-to-run: the operator focuses
one robot at a time), each world reset when its robot docks so that every robot keeps driving,
and (unless --no-record) records an episode into one shared workspace, as a fleet does. The
terminal itself is not run: the figures are the cores' own.

Per core, over the measured window only (start-up and warm-up excluded, `loop_timing(since)`):
the loop period p50 and the lateness p99 and max of its tick starts against their absolute
deadlines (`LoopTiming`), overruns (ticks that started more than a period late), and the
attempts ended in the window (docked or decided: the robots did drive). Nothing is
asserted: the numbers depend on the machine and on whatever else it runs; say which.
--no-rt: [loop] realtime_priority = 0 (what a user without CAP_SYS_NICE gets; the default asks
for SCHED_FIFO 10, granted to root).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from takeover.config import Config, LoopConfig, SafetyConfig
from takeover.control.arbiter import OperatorEvent
from takeover.control.loop import LoopTiming
from takeover.session.core_process import CoreSpec
from takeover.session.fleet import Fleet, FleetRobot
from takeover.session.operator import OperatorSession
from takeover.sim.expert import DockingExpert
from takeover.types import Command, Mode, Observation
from takeover.workspace.layout import init_workspace


class ExpertPolicy:
    """The simulator's docking expert as the core's policy; the world is reset (a new start
    pose) once the robot docks, so it keeps driving for the whole window."""

    def __init__(self, session: OperatorSession) -> None:
        self.session = session
        self.expert = DockingExpert(session.link.dock_pose())
        self.seed = 1000

    def propose(self, obs: Observation) -> Command | None:
        if obs.docked:
            return Command(0.0, 0.0)
        return self.expert.command(obs.odom)

    def drop_queued_actions(self) -> None:
        pass

    def reset(self) -> None:
        self.expert.reset(self.session.link.dock_pose())


def install_expert(session: OperatorSession) -> bool:
    """In the core: the expert drives in AUTO."""
    session.loop.set_policy(ExpertPolicy(session))
    session.post(OperatorEvent.AUTO)
    return True


def redock_if_done(session: OperatorSession, seed: int, record: bool) -> bool:
    """In the core: a robot that docked, or that the docking lifecycle stopped (an attempt
    decided), is stopped, its world reset to `seed`, AUTO taken again and (record) a new
    episode begun."""
    rec = session.loop.latest
    if rec is None or rec.observation is None:
        return False
    if not rec.observation.docked and rec.mode is Mode.AUTO:
        return False
    if session.episode.recording:
        session.end_episode("success" if rec.observation.docked else "failure",
                            reason="benchmark")
    session.post(OperatorEvent.STOP)
    deadline = time.monotonic() + 5.0
    while not session.stopped and time.monotonic() < deadline:
        time.sleep(0.01)
    session.reset_world(seed)
    session.post(OperatorEvent.AUTO)
    if record:
        session.begin_episode()
    return True


def run(n: int, seconds: float, warmup_s: float, record: bool, rt: bool = True
        ) -> list[dict[str, Any]]:
    config = Config(safety=SafetyConfig(deadman_in_auto=False),
                    loop=LoopConfig() if rt else LoopConfig(realtime_priority=0))
    with tempfile.TemporaryDirectory() as tmp:
        workspace = init_workspace(Path(tmp) / "ws") if record else None
        fleet = Fleet([FleetRobot(f"robot{i}", CoreSpec(config, f"sim://?seed={i}", workspace,
                                                        use_gamepad=False))
                       for i in range(1, n + 1)])
        try:
            answers = fleet.open_all()
            failed = {k: v for k, v in answers.items() if isinstance(v, str)}
            if failed:
                raise SystemExit(f"cores did not open: {failed}")
            for session in fleet.sessions.values():
                session.run_in_core(install_expert)
                if record:
                    session.begin_episode()
            time.sleep(warmup_s)
            start = {name: s.loop_timing().ticks for name, s in fleet.sessions.items()}
            seed = 2000
            resets = dict.fromkeys(fleet.sessions, 0)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for name, session in fleet.sessions.items():
                    seed += 1
                    resets[name] += bool(session.run_in_core(redock_if_done, seed, record))
                time.sleep(0.5)
            rows = []
            for name, session in fleet.sessions.items():
                t: LoopTiming = session.loop_timing(start[name])
                rows.append({"robots": n, "robot": name, "rate_hz": round(t.rate_hz, 2),
                             "period_ms_p50": t.period_ms_p50, "late_ms_p99": t.late_ms_p99,
                             "late_ms_max": t.late_ms_max, "overruns": t.overruns,
                             "ticks": t.ticks, "scheduling": t.scheduling,
                             "attempts_ended": resets[name]})
            return rows
        finally:
            fleet.close()


def _f(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else f"{x:{spec}}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robots", default="1,2,4,8")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--no-rt", action="store_true", help="no SCHED_FIFO for the loops")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    counts = [int(x) for x in args.robots.split(",") if x]
    all_rows: list[dict[str, Any]] = []
    print(f"{os.cpu_count()} CPUs · {args.seconds:g} s per N after {args.warmup:g} s warm-up · "
          f"recording {'off' if args.no_record else 'on'}", file=sys.stderr)
    print(f"{'N':>3} {'robot':<8} {'Hz':>6} {'period p50':>10} {'late p99':>9} {'late max':>9} "
          f"{'overruns':>8} {'attempts':>8}")
    for n in counts:
        rows = run(n, args.seconds, args.warmup, not args.no_record, rt=not args.no_rt)
        all_rows.extend(rows)
        for r in rows:
            print(f"{n:>3} {r['robot']:<8} {r['rate_hz']:>6.2f} {_f(r['period_ms_p50']):>10} "
                  f"{_f(r['late_ms_p99']):>9} {_f(r['late_ms_max'], '.1f'):>9} "
                  f"{r['overruns']:>8} {r['attempts_ended']:>8}", flush=True)
        p99 = [r["late_ms_p99"] for r in rows if r["late_ms_p99"] is not None]
        if p99:
            print(f"{n:>3} {'(all)':<8} {'':>6} {'':>10} {max(p99):>9.2f} "
                  f"{max(r['late_ms_max'] or 0 for r in rows):>9.1f} "
                  f"{sum(r['overruns'] for r in rows):>8}   worst p99, max; median p99 "
                  f"{statistics.median(p99):.2f}", flush=True)
    if args.json:
        print(json.dumps({"cpus": os.cpu_count(), "seconds": args.seconds,
                          "recording": not args.no_record, "rows": all_rows}))


if __name__ == "__main__":
    # The cores unpickle the functions run in them by module name: import them from this file
    # as a module (`fleet_cores`), not as `__main__`, which is another module in a core.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fleet_cores

    fleet_cores.main()
