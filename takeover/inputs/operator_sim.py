"""A simulated operator for human-gated DAgger on the simulator (`--driver operator-sim`).

The policy drives (AUTO, the operator holding the deadman). The simulated operator watches the
robot the way a person next to it would, knowing where the dock is: when the robot strays from
what the expert would do beyond configurable thresholds, for longer than a human reaction
delay, it grabs the sticks (a takeover: the Arbiter switches to TAKEOVER and the policy's queued
chunk is dropped), drives with the docking expert until the robot is back on track, lets go and
hands back with an explicit AUTO request. Its corrections go through the same Arbiter and
recorder path as a person's (action_mode 1).

What counts as straying (each threshold configurable):
- heading: off the heading the expert's guidance law steers to by more than
  `heading_error_deg` and not turning back towards it (the expert itself, over a reaction
  delay, stays within about 2 degrees of it);
- lateral: within `close_gap_m` of the dock and off its axis by more than `lateral_error_m`
  plus `lateral_slope` x gap, where contact would be misaligned;
- command: the policy's command differs from the expert's by more than `v_error_mps` or
  `w_error_radps`;
- danger: the LiDAR sees an obstacle nearer than `clearance_m` (away from the dock);
- stall: no progress towards the dock for `stall_s`.

It hands back once the robot heads as the expert's law wants; a takeover within `close_gap_m`
of the dock is driven in to the contacts (`finish_close_in`), as a person would.

Supervision ([supervision] mode, control/help.py):
- `human`: as above, it watches every tick (human-gated).
- `robot`: it looks away until the robot asks for help (`StepRecord.help.requested`). After
  `help_reaction_s` (a person turning back to the screen, default 1 s) it judges the robot
  once, as above but on what it sees at that instant: if it strays, or the robot is blocked
  or stuck (a person would drive it out), or the robot asks again within `help_repeat_s` of
  a hand-back, it takes over and corrects; otherwise it hands back (OperatorEvent.HAND_BACK: a
  false alarm). It never looks otherwise, so a failure the robot does not ask about is missed.
  Asked, it also judges the contact ahead, as a person looking at the dock would: within
  `misaligned_gap_m` of the face and off the charger's tolerance (`misaligned_heading_deg`,
  `misaligned_lateral_m`: the simulated base's 3 degrees and 2 cm), it takes over, backs out
  (the expert's BACKUP) and docks the robot itself: the policy that drove in misaligned, handed
  the same approach back, mostly does it again.
- `both`: it watches as in `human` and answers requests as in `robot`.
`attention_s` counts the time it spent looking (all of AUTO in human-gated supervision; from a
request's first moment to its answer or the end of the correction in robot-gated).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from takeover.config import SupervisionConfig
from takeover.control.arbiter import OperatorEvent, OperatorInput
from takeover.sim.expert import DockingExpert, ExpertPhase
from takeover.sim.world import ROBOT_RADIUS_M
from takeover.types import Command, HelpReason, HelpStatus, Mode, Observation, Pose2D, StepRecord

#: [supervision] mode values the simulated operator honours (config.SUPERVISION_MODES).
_WATCHING = ("human", "both")
_ANSWERING = ("robot", "both")


@dataclass(frozen=True)
class OperatorSimParams:
    reaction_delay_s: float = 0.4  # how long a deviation must last before the hands move
    heading_error_deg: float = 20.0
    lateral_error_m: float = 0.015
    lateral_slope: float = 0.25
    close_gap_m: float = 0.30
    v_error_mps: float = 0.25
    w_error_radps: float = 0.6
    clearance_m: float = 0.12  # beyond the robot's radius
    stall_s: float = 6.0
    min_takeover_s: float = 1.0  # drive at least this long once taken over
    max_takeover_s: float = 20.0  # then hand back even if not fully on track
    handback_lateral_m: float = 0.01
    handback_heading_deg: float = 2.0
    # Having taken over within close_gap_m of the dock, drive it in rather than hand back: a
    # person does not give a robot a hand's width from the contacts back to the policy that
    # just fumbled it (handing back there made the operator and a policy that stalls at the
    # dock take turns, 1 s each, until the episode timed out).
    finish_close_in: bool = True
    # Robot-gated supervision: the time from a help request to the operator's judgement, and
    # how soon a repeated request after a hand-back is answered with a takeover.
    help_reaction_s: float = 1.0
    help_repeat_s: float = 3.0
    # Asked for help this close to the dock face (the robot's front), a contact off these
    # (the simulated charger's DockingTolerance) is a deviation: back out and dock again.
    misaligned_gap_m: float = 0.10
    misaligned_heading_deg: float = 3.0
    misaligned_lateral_m: float = 0.02


def _wrap(a: float) -> float:
    return math.atan2(math.sin(a), math.cos(a))


class SimulatedOperator:
    """An OperatorSource for the control loop, and a StepSink on it (to see the policy's
    proposals). `request` posts events to the loop (AUTO on hand-back). Call `reset(dock)` at
    each episode start."""

    def __init__(self, dock: Pose2D, request: Callable[[OperatorEvent], None],
                 params: OperatorSimParams | None = None, rate_hz: float = 20.0,
                 supervision: SupervisionConfig | str = "human") -> None:
        """supervision: [supervision] (its mode and operator_reaction_s, which then overrides
        params.help_reaction_s), or a mode alone: human | robot | both (see the module doc)."""
        params = params or OperatorSimParams()
        if isinstance(supervision, SupervisionConfig):
            params = dataclasses.replace(params,
                                         help_reaction_s=supervision.operator_reaction_s)
            supervision = supervision.mode
        if supervision not in (*_WATCHING, *_ANSWERING):
            raise ValueError(f"supervision {supervision!r}: use human, robot or both")
        self.supervision = supervision
        self.params = params
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
        self._help: HelpStatus | None = None  # the robot's help status on the last tick
        self._auto = False  # the last tick was in AUTO
        self._asked_s = 0.0  # how long the current request has waited for an answer
        self._redock = False  # the takeover backs out of a misaligned approach and docks
        self._handed_back_ago_s = math.inf  # since the last hand-back
        self.attention_s = 0.0
        self.requests_answered = 0
        self.hand_backs = 0

    def offer(self, record: StepRecord) -> bool:
        """StepSink: sees what the policy proposed on each tick, and whether the robot asks
        for help (never blocks)."""
        self._last_proposal = record.policy_action
        self._help = record.help
        self._auto = record.mode is Mode.AUTO
        return True

    # --- OperatorSource ---------------------------------------------------------------------

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        if obs is None:
            return OperatorInput(deadman=True)
        expert_cmd = self.expert.command(obs.odom)
        p = self.params
        self._handed_back_ago_s += self.dt_s
        if self.driving:
            self.attention_s += self.dt_s
            self._driving_s += self.dt_s
            if self._driving_s >= p.min_takeover_s and (
                self._back_on_track(obs) or self._driving_s >= p.max_takeover_s
            ):
                self.driving = False
                self._redock = False
                self._deviation_s = 0.0
                self._since_progress_s = 0.0
                self.request(OperatorEvent.AUTO)
                return OperatorInput(deadman=True)
            return OperatorInput(deadman=True, command=expert_cmd, deflection=1.0)

        asked = self._help is not None and self._help.requested
        if asked and self.supervision in _ANSWERING:
            return self._answer(obs, expert_cmd)
        self._asked_s = 0.0
        if self.supervision not in _WATCHING:
            return OperatorInput(deadman=True)  # looking away until asked
        if self._auto:
            self.attention_s += self.dt_s
        reason = self._deviation(obs, expert_cmd)
        self._deviation_s = self._deviation_s + self.dt_s if reason else 0.0
        if reason and self._deviation_s >= p.reaction_delay_s:
            return self._take_over(obs, reason)
        return OperatorInput(deadman=True)

    def _take_over(self, obs: Observation, reason: str, redock: bool = False) -> OperatorInput:
        """redock: back out first (the expert's BACKUP, which by itself backs out only far off
        the axis: 3-5 degrees off, it would drive straight in) and dock, never hand back."""
        self.driving = True
        self.takeovers += 1
        self.last_reason = reason
        self._driving_s = 0.0
        self._redock = redock
        # The expert may be mid-plan from an earlier takeover: start it afresh here.
        self.expert.reset()
        if redock:
            self.expert.phase = ExpertPhase.BACKUP
        expert_cmd = self.expert.command(obs.odom)
        return OperatorInput(deadman=True, command=expert_cmd, deflection=1.0)

    def _answer(self, obs: Observation, expert_cmd: Command) -> OperatorInput:
        """The robot is asking: turn to it, and after the reaction time correct or hand back."""
        self.attention_s += self.dt_s
        self._asked_s += self.dt_s
        if self._asked_s < self.params.help_reaction_s:
            return OperatorInput(deadman=True)
        self._asked_s = 0.0
        self.requests_answered += 1
        assert self._help is not None
        why = self._help.reason
        misaligned = self._misaligned(obs)
        if misaligned:
            return self._take_over(obs, misaligned, redock=True)
        reason = self._deviation(obs, expert_cmd)
        if not reason and why in (HelpReason.BLOCKED, HelpReason.NO_PROGRESS):
            reason = f"asked for help: {why.value}"
        if not reason and self._handed_back_ago_s < self.params.help_repeat_s:
            reason = "asked again right after a hand-back"
        if reason:
            return self._take_over(obs, reason)
        self.hand_backs += 1
        self._handed_back_ago_s = 0.0
        self._since_progress_s = 0.0
        self.request(OperatorEvent.HAND_BACK)
        return OperatorInput(deadman=True)

    # --- judgement ------------------------------------------------------------------------------

    def _deviation(self, obs: Observation, expert_cmd: Command) -> str:
        p = self.params
        f = self.expert.dock_frame(obs.odom)
        allowed_m = p.lateral_error_m + p.lateral_slope * max(f.gap_m, 0.0)
        if f.gap_m < p.close_gap_m and abs(f.lateral_m) > allowed_m:
            return f"off the dock axis by {100 * f.lateral_m:.0f} cm"
        heading_err = _wrap(f.heading_rad - self.expert.desired_heading(f))
        # Turning back towards the right heading is not straying; holding off it is.
        turning_back = obs.odom.w_radps * heading_err < 0 and abs(obs.odom.w_radps) > 0.1
        if abs(math.degrees(heading_err)) > p.heading_error_deg and not turning_back:
            return f"heading off by {math.degrees(heading_err):.0f} deg"
        prop = self._last_proposal
        if prop is not None and (abs(prop.v_mps - expert_cmd.v_mps) > p.v_error_mps
                                 or abs(prop.w_radps - expert_cmd.w_radps) > p.w_error_radps):
            return "commands far from the expert's"
        if obs.scan_m is not None and f.gap_m > p.close_gap_m:
            ranges = obs.scan_m[np.isfinite(obs.scan_m)]
            if ranges.size and float(ranges.min()) < ROBOT_RADIUS_M + p.clearance_m:
                return "too close to an obstacle"
        distance = math.hypot(f.gap_m, f.lateral_m)
        if distance < self._best_distance - 0.02:
            self._best_distance = distance
            self._since_progress_s = 0.0
        else:
            self._since_progress_s += self.dt_s
            if self._since_progress_s > p.stall_s:
                return "no progress towards the dock"
        return ""

    def _misaligned(self, obs: Observation) -> str:
        """Close to the dock face and off the charger's tolerance: what touching it now would
        miss by ("" when nothing). Any heading within 90 degrees of facing the dock: one
        facing away is not about to touch it."""
        p = self.params
        f = self.expert.dock_frame(obs.odom)
        heading_deg = math.degrees(f.heading_rad)
        if not (-ROBOT_RADIUS_M < f.gap_m < p.misaligned_gap_m) or abs(heading_deg) >= 90 \
                or abs(f.lateral_m) > ROBOT_RADIUS_M:
            return ""
        if abs(heading_deg) <= p.misaligned_heading_deg \
                and abs(f.lateral_m) <= p.misaligned_lateral_m:
            return ""
        return (f"misaligned at the dock: {heading_deg:+.1f} deg, "
                f"{100 * f.lateral_m:+.1f} cm off its axis")

    def _back_on_track(self, obs: Observation) -> bool:
        """Guiding (not backing out), heading as the law wants, and, close in, on the axis.
        Never while re-docking: the operator docks the robot itself."""
        p = self.params
        if self.expert.phase is ExpertPhase.BACKUP or self._redock:
            return False
        f = self.expert.dock_frame(obs.odom)
        if p.finish_close_in and f.gap_m < p.close_gap_m:
            return False
        heading_err = _wrap(f.heading_rad - self.expert.desired_heading(f))
        if abs(math.degrees(heading_err)) > p.handback_heading_deg:
            return False
        return f.gap_m > p.close_gap_m or abs(f.lateral_m) < p.handback_lateral_m
