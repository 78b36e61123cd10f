"""What the LiDAR protective field costs: the filter per tick, and the control loop's lateness
with the field on against off, in one run (docs/safety.md).

    .venv/bin/python benchmarks/field_cost.py [--seconds 20] [--windows 6] [--json]

1. Filter cost. Real scans, poses and commands are collected from lockstep episodes of the
   expert in AUTO with walk-in obstacles (seeds 7000..), so the field limits, stops and
   creeps in the docking corridor as it does in `takeover bench safety`; then
   `ProtectiveField.apply` is timed on each of them, every one `--repeats` times
   (perf_counter_ns around each call): median, p99 and max per call, and the same for the whole
   `Arbiter.decide` with the field on and off.
2. Loop lateness. The real-time simulator (its own process, as `takeover drive` runs it), the
   control loop at 20 Hz, the expert proposing in AUTO with walk-in obstacles; the field is
   switched on and off in alternating windows of `--seconds` (the Arbiter's [safety] swapped
   between ticks), `--windows` in all, so that load from elsewhere on the machine falls on both
   alike. Lateness of each tick's start against its absolute deadline, pooled per arm.

Nothing is asserted: these are measurements.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any

import numpy as np

from takeover.bench.safety import ExpertAsPolicy
from takeover.config import SafetyConfig
from takeover.control.arbiter import Arbiter, OperatorEvent, OperatorInput
from takeover.control.episodes import EpisodeRunner
from takeover.control.field import ProtectiveField
from takeover.control.loop import ControlLoop
from takeover.inputs.scripted import DeadmanHolder
from takeover.sim.link import RealtimeSimLink, SimLink
from takeover.sim.simulator import SimConfig
from takeover.types import Pose2D, StepRecord


def _stats(ns: list[int] | np.ndarray) -> dict[str, float]:
    a = np.asarray(ns, dtype=np.float64) / 1e6
    return {"p50_ms": round(float(np.median(a)), 4), "p99_ms": round(float(np.percentile(a, 99)), 4),
            "max_ms": round(float(a.max()), 4), "n": int(a.size)}


Tick = tuple[StepRecord, Pose2D]  # a tick of a lockstep episode, and its room's dock


def collect_ticks(episodes: int) -> list[Tick]:
    link = SimLink(seed=7000, config=SimConfig(obstacles="walk-in"), with_image=False)
    link.connect()
    loop = ControlLoop(link, Arbiter(SafetyConfig(), policy_available=True), DeadmanHolder(),
                       ExpertAsPolicy(link))
    runner = EpisodeRunner(loop, keep_records=True)
    ticks: list[Tick] = []
    for seed in range(7000, 7000 + episodes):
        records = runner.run(seed, OperatorEvent.AUTO).records
        dock = link.dock_pose()
        ticks.extend((r, dock) for r in records
                     if r.observation is not None and r.policy_action is not None)
    return ticks


def filter_cost(ticks: list[Tick], repeats: int) -> dict[str, Any]:
    """`ProtectiveField.apply` per call (by the state it came to), and `Arbiter.decide`."""
    config = SafetyConfig()
    field = ProtectiveField(config.field)
    by_state: dict[str, list[int]] = {}
    apply_ns: list[int] = []
    decide_on: list[int] = []
    decide_off: list[int] = []
    arb_on = Arbiter(config, policy_available=True)
    arb_off = Arbiter(dataclasses.replace(config, field=dataclasses.replace(config.field,
                                                                            auto="off")),
                      policy_available=True)
    for arb in (arb_on, arb_off):
        arb.handle(OperatorEvent.AUTO)
    held = OperatorInput(deadman=True)
    clock = time.perf_counter_ns
    for _ in range(repeats):
        for r, dock in ticks:
            obs = r.observation
            assert obs is not None and r.policy_action is not None
            t0 = clock()
            out = field.apply(r.policy_action, obs.scan_m, 0.0, obs.odom, dock)
            t1 = clock()
            apply_ns.append(t1 - t0)
            by_state.setdefault(out.status.state.value, []).append(t1 - t0)
        for arb, times in ((arb_on, decide_on), (arb_off, decide_off)):
            for r, dock in ticks:
                obs = r.observation
                assert obs is not None
                arb.link_dock = dock
                t0 = clock()
                arb.decide(obs.t_ns, obs, True, held, r.policy_action, 0.05)
                times.append(clock() - t0)
    return {"ticks": len(ticks), "repeats": repeats, "apply": _stats(apply_ns),
            "apply_by_state": {k: _stats(v) for k, v in sorted(by_state.items())},
            "decide_field_on": _stats(decide_on), "decide_field_off": _stats(decide_off)}


def loop_lateness(seconds: float, windows: int, rate_hz: float) -> dict[str, Any]:
    on = SafetyConfig()
    off = dataclasses.replace(on, field=dataclasses.replace(on.field, auto="off"))
    link = RealtimeSimLink("sim://", seed=7000, config=SimConfig(obstacles="walk-in"))
    link.connect()
    policy = ExpertAsPolicy(link)
    loop = ControlLoop(link, Arbiter(on, policy_available=True), DeadmanHolder(), policy,
                       rate_hz=rate_hz)
    loop.refresh_dock_pose()
    late: dict[str, list[int]] = {"field_on": [], "field_off": []}
    overruns = {"field_on": 0, "field_off": 0}
    states: dict[str, int] = {}
    seed = 7000
    loop.start()
    try:
        loop.post(OperatorEvent.AUTO)
        for w in range(windows):
            arm = "field_on" if w % 2 == 0 else "field_off"
            loop.arbiter.safety = on if arm == "field_on" else off  # read by the next tick
            time.sleep(0.2)  # let the swap take effect before the window opens
            start, overruns_before = loop.stats.ticks, loop.stats.overruns
            t_end = time.monotonic() + seconds
            while time.monotonic() < t_end:
                time.sleep(0.1)
                rec = loop.latest
                if rec is not None and rec.field is not None:
                    states[rec.field.state.value] = states.get(rec.field.state.value, 0) + 1
                obs = link.latest()
                if rec is not None and (rec.mode is not rec.mode.AUTO or (
                        obs is not None and (obs.docked or obs.bumper))):
                    seed += 1  # the next room, and AUTO again
                    link.reset(seed)
                    policy.reset()
                    loop.refresh_dock_pose()
                    if loop.arbiter.mode.latched:
                        loop.post(OperatorEvent.ACKNOWLEDGE)
                    loop.post(OperatorEvent.AUTO)
            n = loop.stats.ticks - start
            window = list(loop.stats.late_ns)[-n:] if n > 0 else []
            late[arm].extend(window)
            overruns[arm] += loop.stats.overruns - overruns_before
            print(f"window {w + 1}/{windows} ({arm}): {n} ticks, late p99 "
                  f"{_stats(window)['p99_ms'] if window else None} ms", file=sys.stderr,
                  flush=True)
    finally:
        loop.stop()
        link.close()
    return {"rate_hz": rate_hz, "seconds_per_window": seconds, "windows": windows,
            "scheduling": loop.scheduling, "episodes_started": seed - 6999,
            "field_states_sampled": states,
            **{arm: {**_stats(v), "overruns": overruns[arm]} for arm, v in late.items() if v}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="per window (default 20)")
    ap.add_argument("--windows", type=int, default=6, help="alternating on/off (default 6)")
    ap.add_argument("--episodes", type=int, default=20, help="lockstep episodes for the ticks")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ticks = collect_ticks(args.episodes)
    result = {"filter": filter_cost(ticks, args.repeats),
              "loop": loop_lateness(args.seconds, args.windows, args.rate)}
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
