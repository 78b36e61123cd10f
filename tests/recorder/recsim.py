"""Realistic StepRecords for the recorder tests: the simulator driven by its docking expert.

A script of modes exercises every label: a demonstration (MANUAL, action_mode -1), then the
policy driving (AUTO, 0) with a human takeover (TAKEOVER, 1) in the middle, a few IDLE ticks
(unlabeled) and ticks without an observation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from takeover.sim.expert import DockingExpert
from takeover.sim.simulator import Simulator
from takeover.types import (
    ACTION_MODE_DEMONSTRATION,
    ACTION_MODE_INTERVENTION,
    ACTION_MODE_ROBOT,
    Command,
    CommandSource,
    Mode,
    StepRecord,
)

RATE_HZ = 20.0
PERIOD_NS = int(1e9 / RATE_HZ)


def _phase(i: int, n: int) -> Mode:
    f = i / max(n, 1)
    if i in (3, 4):
        return Mode.IDLE
    if f < 0.3:
        return Mode.MANUAL
    if 0.5 <= f < 0.65 or 0.8 <= f < 0.85:
        return Mode.TAKEOVER
    if f > 0.97:
        return Mode.ESTOP
    return Mode.AUTO


def sim_records(seed: int, n: int, *, images: bool = True, scans: bool = True,
                t0_ns: int = 10**12, step0: int = 0) -> Iterator[StepRecord]:
    """n StepRecords of one simulated run, at 20 Hz on a synthetic clock."""
    sim = Simulator(seed)
    expert = DockingExpert(sim.dock_pose)
    for i in range(n):
        t_ns = t0_ns + i * PERIOD_NS
        obs = None if i == 1 else sim.observe(t_ns=t_ns - 3_000_000, with_image=images,
                                              with_scan=scans)
        proposal = expert.command(obs.odom) if obs is not None else None
        mode = _phase(i, n)
        policy = None if proposal is None or i % 7 == 0 else Command(
            proposal.v_mps * 0.9, proposal.w_radps + 0.01)
        human = proposal
        if mode is Mode.MANUAL:
            cmd, source, action_mode = human or Command(), CommandSource.HUMAN, \
                ACTION_MODE_DEMONSTRATION
        elif mode is Mode.AUTO:
            cmd, source, action_mode = policy or Command(), CommandSource.POLICY, ACTION_MODE_ROBOT
            human = None
        elif mode is Mode.TAKEOVER:
            cmd, source, action_mode = human or Command(), CommandSource.HUMAN, \
                ACTION_MODE_INTERVENTION
        else:
            cmd, source, action_mode = Command(), CommandSource.NONE, None
        sim.command(cmd)
        sim.step(1.0 / RATE_HZ)
        yield StepRecord(
            step=step0 + i, t_ns=t_ns, observation=obs, command=cmd, source=source, mode=mode,
            policy_action=policy, human_action=human, action_mode=action_mode,
            loop_late_ns=1000 * (i % 13), policy_latency_ns=2_000_000 + i,
            reason="deadman released" if mode is Mode.IDLE else ("é" * 40 if i == 9 else ""),
        )


class RealTimeFeeder(threading.Thread):
    """Offers records to a sink at `rate_hz` on absolute deadlines, like the control loop."""

    def __init__(self, records: list[StepRecord], offer: Callable[[StepRecord], bool],
                 rate_hz: float = RATE_HZ) -> None:
        super().__init__(daemon=True)
        self.records = records
        self.offer = offer
        self.period_s = 1.0 / rate_hz
        self.refused = 0

    def run(self) -> None:
        t0 = time.perf_counter()
        for i, r in enumerate(self.records):
            delay = t0 + i * self.period_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if not self.offer(r):
                self.refused += 1
