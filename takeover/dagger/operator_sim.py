"""A simulated operator for human-gated DAgger on the simulator (`--driver operator-sim`).

The policy drives (AUTO, the operator holding the deadman). The simulated operator watches the
robot the way a person next to it would, knowing where the dock is: when the robot strays from
what the expert would do beyond configurable thresholds, for longer than a human reaction
delay, it grabs the sticks (a takeover: the Arbiter switches to TAKEOVER and the policy's queued
chunk is dropped), drives with the docking expert until the robot is back on track, lets go and
hands back with an explicit AUTO request. Its corrections go through the same Arbiter and
recorder path as a person's (action_mode 1).

What counts as straying (each threshold configurable):
- heading: while the expert would be driving, off the direction it would head by more than
  `heading_error_deg` (turning in place is not judged);
- lateral: close to the dock (inside the pre-dock distance) and off its axis by more than
  `lateral_error_m`, where contact would be misaligned;
- command: the policy's command differs from the expert's by more than `v_error_mps` or
  `w_error_radps`;
- danger: the LiDAR sees an obstacle nearer than `clearance_m` (away from the dock);
- stall: no progress towards the dock for `stall_s`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from takeover.sim.expert import DockingExpert, ExpertPhase
from takeover.sim.world import ROBOT_RADIUS_M
from takeover.teleop.arbiter import OperatorEvent, OperatorInput
from takeover.types import Command, Observation, Pose2D, StepRecord


@dataclass(frozen=True)
class OperatorSimParams:
    reaction_delay_s: float = 0.4  # how long a deviation must last before the hands move
    heading_error_deg: float = 35.0
    lateral_error_m: float = 0.03
    v_error_mps: float = 0.25
    w_error_radps: float = 1.0
    clearance_m: float = 0.12  # beyond the robot's radius
    stall_s: float = 6.0
    min_takeover_s: float = 1.0  # drive at least this long once taken over
    max_takeover_s: float = 20.0  # then hand back even if not fully on track
    handback_lateral_m: float = 0.01
    handback_heading_deg: float = 2.0


def _wrap(a: float) -> float:
    return math.atan2(math.sin(a), math.cos(a))


class SimulatedOperator:
    """An OperatorSource for the control loop, and a StepSink on it (to see the policy's
    proposals). `request` posts events to the loop (AUTO on hand-back). Call `reset(dock)` at
    each episode start."""

    def __init__(self, dock: Pose2D, request: Callable[[OperatorEvent], None],
                 params: OperatorSimParams | None = None, rate_hz: float = 20.0) -> None:
        self.params = params or OperatorSimParams()
        self.expert = DockingExpert(dock)
        self.request = request
        self.dt_s = 1.0 / rate_hz
        self.reset(dock)

    def reset(self, dock: Pose2D) -> None:
        self.expert.reset(dock)
        self.driving = False
        self.takeovers = 0
        self.last_reason = ""
        self._deviation_s = 0.0
        self._driving_s = 0.0
        self._best_distance = math.inf
        self._since_progress_s = 0.0
        self._last_proposal: Command | None = None

    def offer(self, record: StepRecord) -> bool:
        """StepSink: sees what the policy proposed on each tick (never blocks)."""
        self._last_proposal = record.policy_action
        return True

    # --- OperatorSource ---------------------------------------------------------------------

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        if obs is None:
            return OperatorInput(deadman=True)
        expert_cmd = self.expert.command(obs.odom)
        p = self.params
        if self.driving:
            self._driving_s += self.dt_s
            if self._driving_s >= p.min_takeover_s and (
                self._back_on_track(obs) or self._driving_s >= p.max_takeover_s
            ):
                self.driving = False
                self._deviation_s = 0.0
                self._since_progress_s = 0.0
                self.request(OperatorEvent.AUTO)
                return OperatorInput(deadman=True)
            return OperatorInput(deadman=True, command=expert_cmd, deflection=1.0)

        reason = self._deviation(obs, expert_cmd)
        self._deviation_s = self._deviation_s + self.dt_s if reason else 0.0
        if reason and self._deviation_s >= p.reaction_delay_s:
            self.driving = True
            self.takeovers += 1
            self.last_reason = reason
            self._driving_s = 0.0
            # The expert may be mid-plan from an earlier takeover: start it afresh here.
            self.expert.reset()
            expert_cmd = self.expert.command(obs.odom)
            return OperatorInput(deadman=True, command=expert_cmd, deflection=1.0)
        return OperatorInput(deadman=True)

    # --- judgement ------------------------------------------------------------------------------

    def _dock_frame(self, obs: Observation) -> tuple[float, float, float]:
        d = self.expert.dock
        c, s = math.cos(d.yaw_rad), math.sin(d.yaw_rad)
        dx, dy = obs.odom.x_m - d.x_m, obs.odom.y_m - d.y_m
        return c * dx + s * dy, -s * dx + c * dy, _wrap(obs.odom.yaw_rad - (d.yaw_rad + math.pi))

    def _deviation(self, obs: Observation, expert_cmd: Command) -> str:
        p = self.params
        px, py, delta = self._dock_frame(obs)
        predock = ROBOT_RADIUS_M + self.expert.params.predock_offset_m
        if px < predock and abs(py) > p.lateral_error_m:
            return f"off the dock axis by {100 * py:.0f} cm"
        heading_err = 0.0
        if self.expert.phase is ExpertPhase.FINAL:
            heading_err = delta
        elif self.expert.phase is ExpertPhase.APPROACH and expert_cmd.v_mps > 0:
            # The expert is driving (not turning in place): it heads for the pre-dock point.
            d = self.expert.dock
            tx = d.x_m + math.cos(d.yaw_rad) * predock
            ty = d.y_m + math.sin(d.yaw_rad) * predock
            if math.hypot(tx - obs.odom.x_m, ty - obs.odom.y_m) > 0.2:
                heading_err = _wrap(obs.odom.yaw_rad - math.atan2(ty - obs.odom.y_m, tx - obs.odom.x_m))
        if abs(math.degrees(heading_err)) > p.heading_error_deg:
            return f"heading off by {math.degrees(heading_err):.0f} deg"
        prop = self._last_proposal
        if prop is not None and (abs(prop.v_mps - expert_cmd.v_mps) > p.v_error_mps
                                 or abs(prop.w_radps - expert_cmd.w_radps) > p.w_error_radps):
            return "commands far from the expert's"
        if obs.scan_m is not None and px > predock:
            ranges = obs.scan_m[np.isfinite(obs.scan_m)]
            if ranges.size and float(ranges.min()) < ROBOT_RADIUS_M + p.clearance_m:
                return "too close to an obstacle"
        distance = math.hypot(px - ROBOT_RADIUS_M, py)
        if distance < self._best_distance - 0.02:
            self._best_distance = distance
            self._since_progress_s = 0.0
        else:
            self._since_progress_s += self.dt_s
            if self._since_progress_s > p.stall_s:
                return "no progress towards the dock"
        return ""

    def _back_on_track(self, obs: Observation) -> bool:
        p = self.params
        _, py, delta = self._dock_frame(obs)
        if self.expert.phase is ExpertPhase.FINAL:
            return abs(py) < p.handback_lateral_m and abs(math.degrees(delta)) < p.handback_heading_deg
        return False
