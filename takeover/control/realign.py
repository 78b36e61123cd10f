"""The robot's own answer to a misaligned approach: back out and let the policy try again.

opennav_docking retries a docking that went wrong by going back to its staging pose and
approaching again (`max_retries`). Here the misaligned signal (control/help.py) says, a few
centimetres before the contact, that the robot is creeping into the dock face off the
charger's tolerance. Asking a person costs their attention and the robot's time; a policy that
drove in misaligned from far out mostly lines up when it approaches again from a little further
out (measured in docs/policy.md, Supervision). So the Arbiter, in AUTO, first answers the
signal itself `[supervision.risk] misaligned_retries` times per engagement of AUTO: this driver
reverses out along the dock's axis, turning to face the dock as it goes (the docking expert's
BACKUP, sim/expert.py), until the robot's front is `misaligned_backoff_m` from the face; then
the policy approaches again from rest. Only when the retries are spent does the robot ask.

Pure logic on odometry and the dock pose, as the help monitor: no simulator, no I/O. The
Arbiter's AUTO limits, deadman and protective field apply to its commands like to the policy's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from takeover.types import Command, Odometry, Pose2D

#: Reversing speed (m/s): the docking expert's BACKUP speed, slow enough for the protective
#: field's reverse check and the acceleration limits to stop it within a few centimetres.
BACKOFF_V_MPS = 0.15
#: Heading gain and turn-rate limit while reversing (the expert's guidance law's).
HEADING_GAIN = 2.5
MAX_W_RADPS = 1.0
#: Reversing longer than this (s) ends the back-out as failed: odometry that does not move
#: (the robot held by something behind it) must not keep the policy waiting for ever.
MAX_BACKOFF_S = 8.0


def _wrap(a: float) -> float:
    return math.atan2(math.sin(a), math.cos(a))


@dataclass(frozen=True)
class BackoffStep:
    """One tick of the back-out: the command, or `done` (reached: `ok` True; given up: False
    with why)."""

    command: Command
    done: bool = False
    ok: bool = True
    why: str = ""


class MisalignedBackoff:
    """Reverse out from the dock face to `gap_m` in front of it. `footprint_radius_m`: the
    robot's front is this far ahead of its centre (as the misaligned signal measures)."""

    def __init__(self, dock: Pose2D, gap_m: float, footprint_radius_m: float,
                 start_ns: int) -> None:
        self.dock = dock
        self.gap_m = gap_m
        self.footprint_radius_m = footprint_radius_m
        self.start_ns = start_ns

    def step(self, odom: Odometry, now_ns: int) -> BackoffStep:
        d = self.dock
        c, s = math.cos(d.yaw_rad), math.sin(d.yaw_rad)
        dx, dy = odom.x_m - d.x_m, odom.y_m - d.y_m
        gap_m = c * dx + s * dy - self.footprint_radius_m
        if gap_m >= self.gap_m:
            return BackoffStep(Command(0.0, 0.0), done=True)
        if now_ns - self.start_ns > MAX_BACKOFF_S * 1e9:
            return BackoffStep(Command(0.0, 0.0), done=True, ok=False,
                               why=f"backing out: still {100 * gap_m:.0f} cm from the dock "
                                   f"after {MAX_BACKOFF_S:g} s")
        # Heading error against facing the dock; turning it to zero while reversing swings
        # the robot's tail towards the axis, as the expert's BACKUP does.
        heading = _wrap(odom.yaw_rad - (d.yaw_rad + math.pi))
        w = max(-MAX_W_RADPS, min(MAX_W_RADPS, -HEADING_GAIN * heading))
        return BackoffStep(Command(-BACKOFF_V_MPS, w))
