"""The scripted docking expert: what a classical docking stack does with a map.

It uses what a real robot's classical stack has: its pose in the map frame (odometry /
localisation), the dock's pose from the map, and nothing learned. It works from any pose near
the dock, so a simulated operator can hand it the robot wherever a policy left it.

The command is a smooth function of the pose (one guidance law, no plan to remember), because
this expert is also the teacher of a policy that sees only the current observation: a policy
cannot tell which phase of a multi-phase plan it is in, and an expert that turns in place at a
pre-dock point asks it to learn a discontinuity. The law, in the dock frame (gap g from the
docked position out along the dock's axis, lateral offset y, heading error d relative to
facing the dock):

    GUIDE: aim at a carrot on the dock's axis a fraction `carrot_fraction` of the way to the
           dock: d* = atan(y / max(L_min, c g)). Driving so, the lateral offset shrinks like
           g^(1/c) and the heading error like g^(1/c - 1): both reach zero at the dock face.
           w = k (d* - d); v follows the gap (slower near the dock) and the heading error
           (turns in place when it faces far from d*).
    BACKUP: close to the dock but too far off its axis to converge before contact, reverse out
           while straightening up, then guide again (the one remembered state, with hysteresis;
           a policy's demonstrations from the start poses never need it).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from takeover.sim.world import ROBOT_RADIUS_M
from takeover.types import Command, Odometry, Pose2D


def _wrap(a: float) -> float:
    return math.atan2(math.sin(a), math.cos(a))


def _clip(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, x))


class ExpertPhase(enum.Enum):
    GUIDE = "guide"
    BACKUP = "backup"


@dataclass(frozen=True)
class ExpertParams:
    cruise_v_mps: float = 0.30
    creep_v_mps: float = 0.07  # the speed at the dock face
    slow_gain: float = 0.45  # v = creep + slow_gain * gap, up to cruise
    carrot_fraction: float = 0.35  # c: the carrot is this fraction of the gap ahead
    # L_min. Near the dock the carrot law steers by y / L_min: the shorter L_min, the higher the
    # gain on the lateral offset, and the more a small error in it (a policy's perception, a
    # person's eye) turns into a heading error at contact. With 0.06 m the law docked 20/40
    # rooms with 1 cm / 1 degree of correlated error in its pose; with 0.30 m, 38-40/40
    # (docs/simulator.md), and it still docks every room with a perfect pose.
    min_lookahead_m: float = 0.30
    max_heading_rad: float = math.radians(70)  # |d*| at most this (drive across, not sideways)
    heading_gain: float = 2.5  # w = k (d* - d)
    max_w_radps: float = 1.0
    turn_in_place_rad: float = math.radians(60)  # |d* - d| beyond this: turn without driving
    # BACKUP when within `backup_gap_m` and |y| > backup_lateral_m + backup_slope * gap, or the
    # heading error is past `backup_heading_rad` close in; reverse until the gap is `clear_gap_m`.
    backup_gap_m: float = 0.15
    backup_lateral_m: float = 0.015
    backup_slope: float = 0.25
    backup_heading_rad: float = math.radians(25)
    backup_v_mps: float = -0.15
    clear_gap_m: float = 0.55


@dataclass(frozen=True)
class DockFrame:
    """The robot's pose relative to the dock (see the module docstring)."""

    gap_m: float  # distance to go along the dock's axis until contact
    lateral_m: float  # offset from the axis
    heading_rad: float  # heading error relative to facing the dock


class DockingExpert:
    """Stateful only for BACKUP: call `reset()` between episodes."""

    def __init__(self, dock: Pose2D, params: ExpertParams | None = None) -> None:
        self.dock = dock
        self.params = params or ExpertParams()
        self.phase = ExpertPhase.GUIDE

    def reset(self, dock: Pose2D | None = None) -> None:
        if dock is not None:
            self.dock = dock
        self.phase = ExpertPhase.GUIDE

    def dock_frame(self, odom: Odometry) -> DockFrame:
        d = self.dock
        c, s = math.cos(d.yaw_rad), math.sin(d.yaw_rad)
        dx, dy = odom.x_m - d.x_m, odom.y_m - d.y_m
        px = c * dx + s * dy
        py = -s * dx + c * dy
        return DockFrame(px - ROBOT_RADIUS_M, py, _wrap(odom.yaw_rad - (d.yaw_rad + math.pi)))

    def desired_heading(self, f: DockFrame) -> float:
        """d*: the heading error the guidance law steers to at this pose."""
        p = self.params
        lookahead = max(p.min_lookahead_m, p.carrot_fraction * max(f.gap_m, 0.0))
        return _clip(math.atan2(f.lateral_m, lookahead), -p.max_heading_rad, p.max_heading_rad)

    def needs_backup(self, f: DockFrame) -> bool:
        """Too close to converge before contact."""
        p = self.params
        if f.gap_m > p.backup_gap_m:
            return False
        return (abs(f.lateral_m) > p.backup_lateral_m + p.backup_slope * max(f.gap_m, 0.0)
                or abs(f.heading_rad) > p.backup_heading_rad)

    def command(self, odom: Odometry) -> Command:
        p = self.params
        f = self.dock_frame(odom)
        if self.phase is ExpertPhase.GUIDE and self.needs_backup(f):
            self.phase = ExpertPhase.BACKUP
        if self.phase is ExpertPhase.BACKUP:
            if f.gap_m < p.clear_gap_m:
                # Reverse straight out while turning to face the dock.
                return Command(p.backup_v_mps, _clip(-p.heading_gain * f.heading_rad,
                                                     -p.max_w_radps, p.max_w_radps))
            self.phase = ExpertPhase.GUIDE
        error = _wrap(self.desired_heading(f) - f.heading_rad)
        w = _clip(p.heading_gain * error, -p.max_w_radps, p.max_w_radps)
        if abs(error) >= p.turn_in_place_rad:
            return Command(0.0, w)
        speed = min(p.cruise_v_mps, p.creep_v_mps + p.slow_gain * max(f.gap_m, 0.0))
        v = speed * math.cos(error * (math.pi / 2) / p.turn_in_place_rad)
        return Command(v, w)
