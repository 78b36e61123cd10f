"""Putting a simulated robot at its dock, for the tests of charge detection over every link, and
ticking a lockstep loop until an approach has settled (the help-signal tests)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from takeover.control.loop import ControlLoop
from takeover.hw.base import RobotLink
from takeover.sim.link import SimLink
from takeover.sim.simulator import SimOutcome, Simulator
from takeover.sim.world import ROBOT_RADIUS_M
from takeover.types import Command, StepRecord


def place_at_dock(sim: Simulator, lateral_m: float = 0.0, heading_deg: float = 0.0,
                  gap_m: float = 0.01) -> None:
    """The robot `gap_m` in front of the dock face, facing it, `lateral_m` off its axis: a slow
    drive forward then makes contact (docked within the tolerance, else misaligned)."""
    d = sim.dock_pose
    n = np.array([math.cos(d.yaw_rad), math.sin(d.yaw_rad)])
    t = np.array([-n[1], n[0]])
    p = np.array([d.x_m, d.y_m]) + n * (ROBOT_RADIUS_M + gap_m) + t * lateral_m
    sim.x, sim.y = float(p[0]), float(p[1])
    sim.yaw = d.yaw_rad + math.pi + math.radians(heading_deg)


def creep_until_docked(link: RobotLink, timeout_s: float = 10.0) -> None:
    """Creep forward at 8 cm/s over the link until the base reports docked (a robot placed
    just in front of the dock with `place_at_dock`); a bounded wait, never a timed assert."""
    deadline = time.monotonic() + timeout_s
    while True:
        link.send(Command(0.08, 0.0))
        time.sleep(0.02)
        obs = link.latest()
        if obs is not None and obs.docked:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for the robot to dock")


def tick_until_settled(link: SimLink, loop: ControlLoop, seconds: float) -> list[StepRecord]:
    """Tick a lockstep loop (its rate) until the simulator decides the attempt (docked, a
    contact) or the robot stands still asking for help, at most `seconds`; every record."""
    records = []
    for _ in range(round(seconds * loop.rate_hz)):
        rec = loop.tick()
        records.append(rec)
        if link.sim.outcome is not SimOutcome.RUNNING \
                or (rec.help is not None and rec.help.requested and rec.command.is_zero
                    and abs(link.sim.v) < 1e-6):
            break
    return records
