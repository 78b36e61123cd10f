"""The scripted docking expert: what a classical docking stack does with a map.

It uses what a real robot's classical stack has: its pose in the map frame (odometry /
localisation), the dock's pose from the map, and nothing learned. It works from any pose near
the dock, so a simulated operator can hand it the robot wherever a policy left it:

1. APPROACH: turn towards a pre-dock point on the dock's axis, then drive to it.
2. ALIGN: turn in place to face the dock.
3. FINAL: creep in along the axis, steering out lateral and heading error (Stanley-like).
4. BACKUP: if it finds itself close to the dock but off the axis, reverse out and start again.
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
    APPROACH = "approach"
    ALIGN = "align"
    FINAL = "final"
    BACKUP = "backup"


@dataclass(frozen=True)
class ExpertParams:
    predock_offset_m: float = 0.55  # pre-dock point: this far in front of the docked position
    approach_v_mps: float = 0.35
    final_v_mps: float = 0.12
    creep_v_mps: float = 0.07  # the last few centimetres
    max_w_radps: float = 1.2
    turn_gain: float = 2.5
    predock_tolerance_m: float = 0.04
    align_tolerance_rad: float = math.radians(1.5)
    lateral_gain: float = 12.0  # rad of heading per metre of lateral error (before atan)
    heading_gain: float = 3.0


class DockingExpert:
    """Stateful per episode: call `reset()` between episodes."""

    def __init__(self, dock: Pose2D, params: ExpertParams | None = None) -> None:
        self.dock = dock
        self.params = params or ExpertParams()
        self.phase = ExpertPhase.APPROACH

    def reset(self, dock: Pose2D | None = None) -> None:
        if dock is not None:
            self.dock = dock
        self.phase = ExpertPhase.APPROACH

    def _in_dock_frame(self, odom: Odometry) -> tuple[float, float, float]:
        """(px, py, delta): distance out from the dock face, lateral offset, and heading error
        relative to facing the dock."""
        d = self.dock
        c, s = math.cos(d.yaw_rad), math.sin(d.yaw_rad)
        dx, dy = odom.x_m - d.x_m, odom.y_m - d.y_m
        px = c * dx + s * dy
        py = -s * dx + c * dy
        delta = _wrap(odom.yaw_rad - (d.yaw_rad + math.pi))
        return px, py, delta

    def command(self, odom: Odometry) -> Command:
        p = self.params
        px, py, delta = self._in_dock_frame(odom)
        docked_px = ROBOT_RADIUS_M
        predock_px = docked_px + p.predock_offset_m

        if self.phase in (ExpertPhase.FINAL, ExpertPhase.ALIGN) and (
            abs(py) > 0.05 or (self.phase is ExpertPhase.FINAL and abs(delta) > math.radians(12))
        ):
            self.phase = ExpertPhase.BACKUP
        if self.phase is ExpertPhase.APPROACH and px < predock_px - 0.25 and abs(py) < 0.5:
            self.phase = ExpertPhase.BACKUP

        if self.phase is ExpertPhase.BACKUP:
            if px > predock_px - 0.05:
                self.phase = ExpertPhase.APPROACH
            else:
                # Reverse straight out while turning to face the dock.
                w = _clip(-p.heading_gain * delta, -p.max_w_radps, p.max_w_radps)
                return Command(-0.15, w)

        if self.phase is ExpertPhase.APPROACH:
            # Target point in the map frame.
            d = self.dock
            tx = d.x_m + math.cos(d.yaw_rad) * predock_px
            ty = d.y_m + math.sin(d.yaw_rad) * predock_px
            dx, dy = tx - odom.x_m, ty - odom.y_m
            rho = math.hypot(dx, dy)
            if rho < p.predock_tolerance_m:
                self.phase = ExpertPhase.ALIGN
            else:
                alpha = _wrap(math.atan2(dy, dx) - odom.yaw_rad)
                w = _clip(p.turn_gain * alpha, -p.max_w_radps, p.max_w_radps)
                if abs(alpha) > math.radians(25):
                    return Command(0.0, w)  # turn in place first
                v = min(p.approach_v_mps, 0.8 * rho + 0.03) * math.cos(alpha)
                return Command(v, w)

        if self.phase is ExpertPhase.ALIGN:
            if abs(delta) < p.align_tolerance_rad:
                self.phase = ExpertPhase.FINAL
            else:
                w = _clip(-p.turn_gain * delta, -p.max_w_radps, p.max_w_radps)
                if abs(w) < 0.15:
                    w = math.copysign(0.15, w)
                return Command(0.0, w)

        # FINAL: facing -x in the dock frame, dpy/dt = -v sin(delta): steer delta towards
        # atan(k * py) to drive the lateral error out.
        gap = px - docked_px
        v = p.creep_v_mps if gap < 0.12 else p.final_v_mps
        delta_target = math.atan(p.lateral_gain * py)
        # Close in, heading error counts against the docking tolerance: only trim.
        limit = math.radians(1.5) if gap < 0.10 else math.radians(10)
        delta_target = _clip(delta_target, -limit, limit)
        w = _clip(p.heading_gain * (delta_target - delta), -0.6, 0.6)
        return Command(v, w)
