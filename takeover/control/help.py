"""Deciding when the robot asks for help (robot-gated supervision, docs/safety.md).

One job: from what one AUTO tick saw (the observation, the policy's proposal and novelty, the
command sent and the protective field's verdict on the tick before), say which help signals
are raised, and which one has been raised long enough to be a request. The Arbiter acts on it
(it brakes to a stop within its deceleration limits and holds until the operator takes over or
hands back); this module never moves the robot.

The signals, in Fleet-DAgger's C.U.R. priority order (Hoque et al., CoRL 2022: a constraint
violation before uncertainty before risk; `HelpReason.priority`):

- blocked (constraint): the protective field has stopped the policy's travel (STOPPED or
  BLIND while the policy asks to move), or the bumper is pressed, for `blocked_s` (2 s). The
  robot cannot carry on by itself: this is the violation a fleet operator must see first. Not
  at once: a person walking past holds the robot for a second or two (measured: with the
  walk-in obstacles, a 0.3 s hold asked in 28 of 40 successful attempts, 2 s in 21).
- novelty (uncertainty): the policy's ensemble disagreement for this tick's action
  (`ChunkPolicy.novelty`, read with getattr so that any PolicyDriver without it works) above
  the threshold ([supervision] novelty_threshold, else the model card's
  `ChunkPolicy.novelty_threshold`). ThriftyDAgger's novelty gate.
- risk, from the base's own signals, needing no model:
  - no_progress: odometry still while the policy commands motion, for `no_progress_s`. A
    stalled learned policy (pushing into an edge of the dock, wedged against a wall) is the
    most common silent failure on the simulator, and the docking outcome detector only calls
    it after `[docking] stall_s` (8 s): asking at 2 s gives the operator the remaining time.
  - no approach: the robot (odometry) has come no `approach_m` closer to the dock than its
    closest so far for `no_approach_s`, while AUTO drives. The other face of a lost policy:
    it keeps driving, so no_progress (odometry still) never fires, and its ensemble agrees
    with itself, so novelty stays low (docs/policy.md, Supervision: 7 of the 9 missed
    failures were 60 s timeouts spent wandering 9-10 m). It needs the dock's pose in the
    odometry frame (`HelpMonitor.dock`, set by the loop: the simulator's from the link, a
    real base's anchored or configured face); without one it is off. It asks as
    `no_progress` (no progress towards the dock; the detail says which; `HelpReason` has no
    value of its own for it), held for `help_confirm_ms` after its own window. 5 cm in 8 s:
    measured on the policy alone (seeds 6000-6099) it asked in 18 of 20 failures and 4 of
    80 dockings (slow ones, 20-56 s); 6 s asked in half the dockings, during the last
    centimetres.
  - misaligned: the robot creeps into the dock face off its tolerance. While AUTO drives
    forward towards the dock (`HelpMonitor.dock`, as for no approach; off without one) with
    its front (the footprint radius ahead of its centre) within `misaligned_gap_m` of the
    face, its heading more than `misaligned_heading_deg` off the dock's or its centre more
    than `misaligned_lateral_m` off the axis. A contact there is misaligned (the simulated
    charger's tolerance: 2 cm, 3 degrees) and fails on the bumper, and the policy gets there
    confidently (novelty ~0.02, a tenth of the threshold) and never stalls: before this signal
    such contacts were 10 of the 11 missed failures of one weaker model (docs/policy.md,
    Supervision). The defaults (6 cm, 3.5 deg, 2.5 cm) leave the help_confirm_ms hold and
    the brake time to stop before the face at the policy's creep (about 0.1 m/s). The pose is
    only as good as the dock pose: a real base's anchored or configured face.
  - clearance: the nearest return ahead (within `front_half_angle_deg`) comes within
    `clearance_margin_m` of the footprint while AUTO drives forward, outside the docking
    corridor. The protective field already stops the robot before contact; this asks a
    person before the field has to act. Off by default: the corridor is known only where the
    field runs, and without it the dock ahead fires it in every successful approach; with the
    field on, a 0.15 m margin fired in 4 of 40 successful walk-in attempts and 0 of 40 clean
    ones, with too few failures under the field to judge (docs/safety.md).
  - slip: the measured twist differs from the command sent for the confirm time, once the
    command has been steady for SLIP_SETTLE_S (the base's own acceleration makes any change
    of command lag by a few hundred milliseconds). Wheels spinning against an obstacle, a
    caster caught on a cable. Off by default: it fired in none of 280 simulated attempts,
    including the wheel_slip family, whose slip the odometry's velocity does not show.

A signal becomes a request once it has been raised without a break for `help_confirm_ms`
(no_progress and blocked: for their own windows, when longer). The highest-priority confirmed
signal gives the reason.
In `human` mode the monitor still runs and its signals are recorded (a request that would have
been raised shows as the reason with `requested` false), so a round can be replayed for false
alarms offline; only `robot` and `both` hold the robot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from takeover.config import SupervisionConfig
from takeover.types import (
    Command,
    FieldState,
    FieldStatus,
    HelpReason,
    Observation,
    Pose2D,
)

#: How long the command sent must stay steady before slip is judged: the base's acceleration
#: limits (1 m/s^2 on the simulator) make a step of 0.4 m/s lag for 0.4 s.
SLIP_SETTLE_S = 0.5
#: A change of command smaller than this (m/s, rad/s) keeps it steady.
STEADY_V_MPS = 0.03
STEADY_W_RADPS = 0.1
#: The policy "commands motion" when its proposal is above this many times the still limits.
MOTION_FACTOR = 2.0


@dataclass(frozen=True)
class HelpSignal:
    """One raised signal: its reason and a few words for the operator's banner. `window`
    names the signal's own confirmation timer where two signals share a reason (no approach
    asks as no_progress but is timed apart from the still-odometry one); empty: the reason."""

    reason: HelpReason
    detail: str
    window: str = ""

    @property
    def timer(self) -> str:
        return self.window or self.reason.value


#: The misaligned signal's timer (its reason's name) and its hysteresis: once raised it clears
#: only within this fraction of the heading and lateral tolerances.
MISALIGNED = HelpReason.MISALIGNED.value
MISALIGNED_RELEASE = 0.8
#: HelpSignal.window of the no-approach signal: its window (`no_approach_s`) has already run
#: when it is raised, so it is confirmed after `help_confirm_ms` alone.
NO_APPROACH = "no_approach"


@dataclass(frozen=True)
class HelpVerdict:
    """What the monitor saw on one tick: the signals raised (highest priority first), the
    one confirmed as a request (None: none held long enough), and the novelty in force."""

    raised: tuple[HelpSignal, ...]
    confirmed: HelpSignal | None
    score: float = math.nan
    threshold: float = math.nan


def novelty_of(policy: object) -> tuple[float | None, float | None]:
    """The policy's novelty this tick and its model card's threshold, where it has them."""
    score = getattr(policy, "novelty", None)
    threshold = getattr(policy, "novelty_threshold", None)
    return (float(score) if isinstance(score, int | float) else None,
            float(threshold) if isinstance(threshold, int | float) else None)


def front_clearance_m(scan_m: np.ndarray | None, half_angle_deg: float,
                      footprint_radius_m: float) -> float:
    """The nearest valid LiDAR return within `half_angle_deg` of straight ahead, less the
    footprint's radius (m); NaN without a scan or a return there. Beams are evenly spread over
    360 degrees, counter-clockwise from forward (types.Observation)."""
    if scan_m is None or scan_m.size == 0:
        return math.nan
    n = scan_m.size
    angles = np.arange(n) * (2 * math.pi / n)
    angles = np.where(angles > math.pi, angles - 2 * math.pi, angles)
    ahead = np.abs(angles) <= math.radians(half_angle_deg)
    ranges = scan_m[ahead]
    ranges = ranges[np.isfinite(ranges)]
    if ranges.size == 0:
        return math.nan
    return float(ranges.min()) - footprint_radius_m


class HelpMonitor:
    """Per-tick signals and their confirmation timers. Owned by the Arbiter (loop thread)."""

    def __init__(self, supervision: SupervisionConfig, footprint_radius_m: float) -> None:
        self.supervision = supervision
        self.footprint_radius_m = footprint_radius_m
        self._raised_since_ns: dict[str, int] = {}
        self._steady_since_ns: int | None = None
        self._steady_command: Command | None = None
        # The dock's pose in the odometry frame, for the no-approach signal; the loop sets it
        # each tick (ControlLoop.tick). None: unknown, the signal is off.
        self.dock: Pose2D | None = None
        self._approach_dock: Pose2D | None = None  # the dock the closest distance is to
        self._closest_m = math.inf  # the closest the robot has come to it (m)
        self._closest_ns = 0  # when it last came `approach_m` closer

    def reset(self) -> None:
        """Forget every timer: after a hand-back, a takeover or any change of mode, a signal
        must be held for its whole confirm time again before it asks."""
        self._raised_since_ns.clear()
        self._steady_since_ns = None
        self._steady_command = None
        self._approach_dock = None

    def hold_ns(self, signal: HelpSignal) -> int:
        sv = self.supervision
        hold_ms = sv.help_confirm_ms
        if signal.window == NO_APPROACH:
            pass  # its window has run before it is raised
        elif signal.reason is HelpReason.NO_PROGRESS:
            hold_ms = max(hold_ms, sv.risk.no_progress_s * 1000.0)
        elif signal.reason is HelpReason.BLOCKED:
            hold_ms = max(hold_ms, sv.risk.blocked_s * 1000.0)
        return round(hold_ms * 1e6)

    def update(self, now_ns: int, obs: Observation | None, proposal: Command | None,
               sent: Command, field: FieldStatus | None, novelty: float | None,
               novelty_threshold: float | None) -> HelpVerdict:
        """One tick in AUTO. `sent`, `field`: the command sent and the field's verdict on the
        tick before (what the base was last asked to do). `novelty_threshold`: the model
        card's; [supervision] novelty_threshold overrides it."""
        threshold = self.supervision.novelty_threshold or novelty_threshold
        raised = self._signals(now_ns, obs, proposal, sent, field, novelty, threshold)
        timers = {s.timer for s in raised}
        for timer in list(self._raised_since_ns):
            if timer not in timers:
                del self._raised_since_ns[timer]
        confirmed: HelpSignal | None = None
        for signal in raised:  # highest priority first
            since = self._raised_since_ns.setdefault(signal.timer, now_ns)
            if confirmed is None and now_ns - since >= self.hold_ns(signal):
                confirmed = signal
        return HelpVerdict(raised, confirmed,
                           math.nan if novelty is None else novelty,
                           math.nan if threshold is None else threshold)

    def _signals(self, now_ns: int, obs: Observation | None, proposal: Command | None,
                 sent: Command, field: FieldStatus | None, novelty: float | None,
                 threshold: float | None) -> tuple[HelpSignal, ...]:
        r = self.supervision.risk
        out: list[HelpSignal] = []
        moving_asked = proposal is not None and proposal.is_finite and (
            abs(proposal.v_mps) > MOTION_FACTOR * r.still_v_mps
            or abs(proposal.w_radps) > MOTION_FACTOR * r.still_w_radps)
        blocked = r.blocked_s > 0
        if blocked and obs is not None and obs.bumper and not obs.docked:
            out.append(HelpSignal(HelpReason.BLOCKED, "bumper pressed"))
        elif (blocked and moving_asked and field is not None
              and field.state in (FieldState.STOPPED, FieldState.BLIND)):
            out.append(HelpSignal(HelpReason.BLOCKED, f"protective field {field.state.value}"))
        if novelty is not None and threshold is not None and math.isfinite(novelty) \
                and novelty > threshold:
            out.append(HelpSignal(HelpReason.NOVELTY, f"novelty {novelty:.2f} > {threshold:.2f}"))
        if obs is None:
            return tuple(out)
        odom = obs.odom
        still = abs(odom.v_mps) < r.still_v_mps and abs(odom.w_radps) < r.still_w_radps
        if r.no_progress_s > 0 and still and moving_asked and not obs.docked:
            out.append(HelpSignal(HelpReason.NO_PROGRESS,
                                  f"no progress for {r.no_progress_s:g} s"))
        approach = self._no_approach(now_ns, obs)
        if approach is not None:
            out.append(approach)
        forward = sent.v_mps > MOTION_FACTOR * r.still_v_mps
        # Any forward command closes the gap: a policy creeps the last centimetres at 1-6 cm/s
        # (measured), below the "motion" above, and a tick's pause would restart the timer.
        closing = sent.v_mps > 0 or (proposal is not None and proposal.is_finite
                                     and proposal.v_mps > 0)
        misaligned = self._misaligned(obs) if closing else None
        if misaligned is not None:
            out.append(misaligned)
        corridor = field is not None and field.state is FieldState.CORRIDOR
        if r.clearance_margin_m > 0 and forward and not corridor and not obs.docked:
            clearance = front_clearance_m(obs.scan_m, r.front_half_angle_deg,
                                          self.footprint_radius_m)
            if clearance < r.clearance_margin_m:  # NaN compares False: no return, no signal
                out.append(HelpSignal(HelpReason.CLEARANCE, f"{clearance:.2f} m clear ahead"))
        if self._steady(now_ns, sent) and (r.slip_v_mps > 0 or r.slip_w_radps > 0):
            dv, dw = abs(odom.v_mps - sent.v_mps), abs(odom.w_radps - sent.w_radps)
            if (r.slip_v_mps > 0 and dv > r.slip_v_mps) or (r.slip_w_radps > 0
                                                             and dw > r.slip_w_radps):
                out.append(HelpSignal(HelpReason.SLIP, f"moving {odom.v_mps:.2f} m/s, "
                                      f"{odom.w_radps:.2f} rad/s against the command"))
        out.sort(key=lambda s: -s.reason.priority)
        return tuple(out)

    def _no_approach(self, now_ns: int, obs: Observation) -> HelpSignal | None:
        """The no-approach signal: raised once the robot has come no `approach_m` closer to
        the dock than its closest for `no_approach_s`. The closest distance starts afresh at
        every reset (a change of mode), with a new dock pose, and on the charger."""
        r = self.supervision.risk
        dock = self.dock
        if r.no_approach_s <= 0 or r.approach_m <= 0 or dock is None or obs.docked:
            self._approach_dock = None
            return None
        distance_m = math.hypot(obs.odom.x_m - dock.x_m, obs.odom.y_m - dock.y_m)
        # No allowance at the face: the lost policies measured loiter there, 3-40 cm out,
        # coming back in again and again (docs/safety.md); a docking robot gets in within
        # the window.
        if dock != self._approach_dock or distance_m < self._closest_m - r.approach_m:
            self._approach_dock = dock
            self._closest_m, self._closest_ns = distance_m, now_ns
            return None
        if now_ns - self._closest_ns < r.no_approach_s * 1e9:
            return None
        return HelpSignal(HelpReason.NO_PROGRESS,
                          f"{distance_m:.2f} m from the dock, no {100 * r.approach_m:.0f} cm "
                          f"closer in {r.no_approach_s:g} s", NO_APPROACH)

    def _misaligned(self, obs: Observation) -> HelpSignal | None:
        """The misaligned signal (call it only while driving forward): the robot's front within
        `misaligned_gap_m` of the dock face and its heading or its offset from the dock's axis
        beyond the tolerances. The dock frame as the docking expert's (sim/expert.py), computed
        here: the robot side knows no simulator."""
        r = self.supervision.risk
        dock = self.dock
        if r.misaligned_gap_m <= 0 or dock is None or obs.docked:
            return None
        c, s = math.cos(dock.yaw_rad), math.sin(dock.yaw_rad)
        dx, dy = obs.odom.x_m - dock.x_m, obs.odom.y_m - dock.y_m
        gap_m = c * dx + s * dy - self.footprint_radius_m
        lateral_m = -s * dx + c * dy
        heading = math.atan2(math.sin(obs.odom.yaw_rad - dock.yaw_rad - math.pi),
                             math.cos(obs.odom.yaw_rad - dock.yaw_rad - math.pi))
        # Only in front of the face, with the body across its axis, and facing it: behind the
        # dock's wall, beside the dock or driving away from it, nothing is about to touch it.
        if not (-self.footprint_radius_m < gap_m < r.misaligned_gap_m) \
                or abs(lateral_m) > self.footprint_radius_m or abs(heading) >= math.pi / 2:
            return None
        heading_deg = math.degrees(heading)
        # Once raised, it holds until the pose is well inside the tolerances: a policy
        # straightening up slowly hovers about them, and the odometry's tick-to-tick noise
        # (a few tenths of a degree) restarted the confirm timer until the contact (seed 5015
        # of docs/policy.md's third model: raised 6 cm out, broken at 2.6 cm, never confirmed).
        release = MISALIGNED_RELEASE if MISALIGNED in self._raised_since_ns else 1.0
        if abs(heading_deg) <= release * r.misaligned_heading_deg \
                and abs(lateral_m) <= release * r.misaligned_lateral_m:
            return None
        return HelpSignal(HelpReason.MISALIGNED,
                          f"{100 * gap_m:.0f} cm from the dock, {heading_deg:+.1f} deg and "
                          f"{100 * lateral_m:+.1f} cm off its axis")

    def _steady(self, now_ns: int, sent: Command) -> bool:
        """Whether the command sent has stayed (nearly) the same for SLIP_SETTLE_S."""
        ref = self._steady_command
        if ref is None or abs(sent.v_mps - ref.v_mps) > STEADY_V_MPS \
                or abs(sent.w_radps - ref.w_radps) > STEADY_W_RADPS:
            self._steady_command, self._steady_since_ns = sent, now_ns
            return False
        assert self._steady_since_ns is not None
        return now_ns - self._steady_since_ns >= SLIP_SETTLE_S * 1e9
