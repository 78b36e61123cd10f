"""The docking lifecycle of the operator's session: attempts, their detected outcomes, resets.

A real base has no teleport and no ground-truth docked flag, so `takeover run` judges each
attempt the way `takeover drive --reset drive` does (session/drive_resets.py), but driven by an
operator instead of a batch:

- **an attempt** is a recorded episode, from its first tick in MANUAL, AUTO or TAKEOVER. The
  docking outcome detector (control/docking_outcome.py) watches every tick from then on, in any
  mode (it watches the robot, not the operator). A demonstration (an attempt that starts in
  MANUAL) is never ended by a stall or the detector's timeout: the person driving may pause.
- **contact**: as soon as a contact or a charge is being confirmed (`detector.pending`) the
  robot is stopped, and the detector watches the stopped robot for up to `charge_wait_s`.
- **the decision** ends the episode with the detected outcome (the session does that: end
  reason = the signal, `detected_outcome` and `outcome_evidence` stored), stops the robot,
  counts the attempt, and asks the reset planner (control/reset_planner.py) where the next
  reset goes; a success anchors the docked pose, and with it the protective field's corridor.
- **a reset** (`start_reset`, the operator's "n", or by itself with `[docking] auto_reset`)
  drives to that target in RESET (control/reset_driver.py): only on a base that does not
  teleport (`link.supports_sim_control` False), only with no episode open (the session checks),
  and only while the operator holds the deadman (the Arbiter's rule). A reset that was stopped
  half way is resumed by the next `start_reset`, unless an attempt has begun since (the robot
  has moved on: the reset goes where that attempt's end planned).
- **a reset's time limit**: `[docking.reset] timeout_s` of ticks in RESET (a pause with the
  deadman released does not count) without reaching the target stops the robot; the reset ends
  "timed out", is not resumed (the next one goes to a fresh start pose) and counts as failed, as
  `takeover drive --reset drive` counts it.
- **giving up**: after `MAX_FAILED_RESETS_IN_A_ROW` resets in a row that ended short of their
  target (stopped: an obstacle, the LiDAR blind, the deadman, a fault, the time limit),
  auto-reset pauses, as
  `takeover drive --reset drive` stops its run there: the robot needs a person. The operator's
  own reset ("n") starts again and clears the count; so does a reset that reaches its target.

Runs in the control core's process, fed the loop's records by the session's `poll()`; what the
screen needs crosses to the TUI as a `DockingStatus` in the snapshot. Not thread-safe on its
own: the session calls it under its lock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from takeover.config import Config, DockingConfig
from takeover.control.arbiter import OperatorEvent
from takeover.control.docking_outcome import (
    SIGNAL_BUMPER,
    SIGNAL_CURRENT,
    SIGNAL_DOCKED_TOPIC,
    SIGNAL_NO_CHARGE,
    SIGNAL_OPERATOR,
    SIGNAL_STALL,
    SIGNAL_STATUS,
    SIGNAL_TIMEOUT,
    DetectedOutcome,
    DockingOutcomeDetector,
)
from takeover.control.loop import ControlLoop
from takeover.control.reset_driver import ResetDriver, scan_points
from takeover.control.reset_planner import MAX_FAILED_RESETS_IN_A_ROW, PlannedReset, ResetPlanner
from takeover.types import Mode, Observation, Outcome, StepRecord

#: The modes in which the robot is driven for an attempt (by the operator or the policy).
ENGAGED = (Mode.MANUAL, Mode.AUTO, Mode.TAKEOVER)
#: A demonstration's stall limit: effectively never (a person may pause to look).
NEVER_S = 1e9

#: The reset's states on screen: idle, the driver's phases, then how it ended.
RESET_IDLE, RESET_DONE, RESET_STOPPED = "idle", "done", "stopped"

#: The outcome as the operator reads it: "attempt 4 · docked (...)".
OUTCOME_WORDS = {Outcome.SUCCESS.value: "docked", Outcome.FAILURE.value: "failed",
                 Outcome.ABORTED.value: "aborted"}


@dataclass(frozen=True)
class DockingStatus:
    """The docking lifecycle as the drive screen shows it. Picklable: it crosses to the TUI in
    every SessionSnapshot."""

    attempt: int = 0  # attempts begun so far: the one running, or the last one
    successes: int = 0  # attempts detected as docked
    attempting: bool = False  # the detector is watching an attempt now
    confirming: bool = False  # a contact or a charge is being confirmed (the robot stopped)
    outcome: str = ""  # the last detected outcome (success | failure | aborted), "" none yet
    outcome_attempt: int = 0  # the attempt that `outcome` belongs to
    signal: str = ""  # what decided it (control/docking_outcome.py SIGNALS)
    evidence: dict[str, Any] = field(default_factory=dict)
    summary: str = ""  # the evidence in a few words: "battery_current 1.48 A held 520 ms"
    auto_reset: bool = False  # [docking] auto_reset: a reset follows each detected outcome
    drives_resets: bool = False  # resets are driven (a base that does not teleport)
    reset: str = RESET_IDLE  # idle | undock | drive | align | done | stopped
    reset_reason: str = ""  # why it stopped (the Arbiter's reason), or how it ended
    reset_kind: str = ""  # start | staging (a retry) | home (no docked pose known yet)
    reset_progress: float = 0.0  # 0..1 of the way to the target's position
    failed_resets: int = 0  # resets in a row that ended short of their target
    reset_resumable: bool = False  # a stopped reset "n" resumes (False: it plans a new one)

    @property
    def auto_reset_paused(self) -> bool:
        """Auto-reset is on but has given up: too many resets in a row failed."""
        return self.auto_reset and self.failed_resets >= MAX_FAILED_RESETS_IN_A_ROW

    def paused_line(self) -> str:
        """Why auto-reset starts nothing now, and what the operator does about it."""
        return (f"auto-reset paused: {self.failed_resets} resets in a row failed, the robot "
                "needs a person (n: reset by hand)")

    def outcome_line(self) -> str:
        """"attempt 4 · docked (battery_current 1.48 A held 520 ms)", or "" before any."""
        if not self.outcome:
            return ""
        word = OUTCOME_WORDS.get(self.outcome, self.outcome)
        why = f" ({self.summary})" if self.summary else ""
        return f"attempt {self.outcome_attempt} · {word}{why}"


def evidence_summary(evidence: dict[str, Any]) -> str:
    """The detector's evidence in a few words for the screen (the episode file keeps it all)."""
    signal = str(evidence.get("signal", ""))
    if signal in (SIGNAL_CURRENT, SIGNAL_STATUS, SIGNAL_DOCKED_TOPIC):
        parts = [signal]
        if signal == SIGNAL_CURRENT and "value_a" in evidence:
            parts.append(f"{float(evidence['value_a']):.2f} A")
        if signal == SIGNAL_STATUS and "status" in evidence:
            parts.append(str(evidence["status"]))
        if "held_ms" in evidence:
            parts.append(f"held {float(evidence['held_ms']):.0f} ms")
        return " ".join(parts)
    if signal == SIGNAL_BUMPER:
        return f"bumper, no charge within {float(evidence.get('waited_ms', 0.0)):.0f} ms"
    if signal == SIGNAL_STALL:
        return f"stall: still {float(evidence.get('still_s', 0.0)):.1f} s"
    if signal == SIGNAL_TIMEOUT:
        return f"timeout after {float(evidence.get('elapsed_s', 0.0)):.1f} s"
    if signal in (SIGNAL_OPERATOR, SIGNAL_NO_CHARGE):
        reason = str(evidence.get("reason", ""))
        return f"{signal}: {reason}" if reason else signal
    return signal


class DockingLifecycle:
    """Attempts, detection and resets on one control loop (see the module doc)."""

    def __init__(self, config: Config, loop: ControlLoop) -> None:
        self.config = config
        self.loop = loop
        self.docking: DockingConfig = config.docking
        # Only a base that does not teleport drives its resets; a simulator that teleports
        # keeps its "new start pose" (the session's reset_world).
        self.drives_resets = not loop.link.supports_sim_control
        self.driver = ResetDriver(config.docking.reset)
        if self.drives_resets:
            loop.set_reset_driver(self.driver)
        self.planner = ResetPlanner(config.docking)
        self._radius_m = config.safety.field.footprint_radius_m
        self._detector: DockingOutcomeDetector | None = None
        self._armed = False  # an episode is open: its first engaged tick starts an attempt
        self._contact_t_ns: int | None = None  # when the detector began confirming (stopped)
        self._last_obs: Observation | None = None
        self._plan: PlannedReset | None = None  # where the next reset goes (planned at the end)
        self._in_reset = False
        # A reset stopped half way, with nothing driven since, is resumable (the status's
        # reset_resumable): "n" resumes it. An attempt begun since makes its target stale.
        # The first step that can have taken the last reset request: a request refused at once
        # (no deadman held: the Arbiter ends RESET on the tick it starts) never shows RESET.
        self._reset_from_step: int | None = None
        # Ticks spent in RESET towards the current target (a resumed reset carries on counting),
        # and whether the time limit is what stopped it.
        self._reset_ticks = 0
        self._reset_timed_out = False
        self._status = DockingStatus(auto_reset=self.docking.auto_reset,
                                     drives_resets=self.drives_resets)
        self.anchor_corridor()

    # --- attempts --------------------------------------------------------------------------

    @property
    def attempting(self) -> bool:
        return self._detector is not None

    def arm(self) -> None:
        """An episode began: its first tick in MANUAL, AUTO or TAKEOVER starts an attempt."""
        self._armed = True
        self._detector = None
        self._contact_t_ns = None

    def disarm(self, reason: str) -> DetectedOutcome | None:
        """The episode ends by the operator's hand (a label, the episode key, quitting): the
        attempt's verdict is "aborted" unless the detector had decided (its evidence names the
        operator). None when no attempt had started (the robot was never engaged)."""
        self._armed = False
        detector = self._detector
        if detector is None:
            return None
        latest = self.loop.latest
        t_ns = latest.t_ns if latest is not None else 0
        return self._finish(detector.conclude(t_ns, reason, aborted=True))

    def feed(self, rec: StepRecord) -> DetectedOutcome | None:
        """One tick's record, in order. Returns the attempt's detected outcome on the tick it is
        decided (once); the caller ends the episode with it."""
        self._track_reset(rec)
        if self._armed and self._detector is None and rec.mode in ENGAGED:
            self._begin(rec)
        detector = self._detector
        if detector is None:
            return None
        if rec.observation is not None:
            self._last_obs = rec.observation
        decided = detector.update(rec.observation, rec.t_ns)
        if decided is None and detector.pending and self._contact_t_ns is None:
            # A contact or a charge is being confirmed: stop driving and let the detector watch
            # the stopped robot (as opennav_docking stops at the dock and waits for charge). A
            # policy that never saw what comes after contact must not back off the charger.
            self._contact_t_ns = rec.t_ns
            self.loop.post(OperatorEvent.STOP)
        if decided is None and self._contact_t_ns is not None and (
                rec.t_ns - self._contact_t_ns >= round(self.docking.charge_wait_s * 1e9)):
            decided = detector.conclude(rec.t_ns, "contact", aborted=False)  # no charge came
        if decided is None:
            return None
        self.loop.post(OperatorEvent.STOP)  # the attempt is over: the robot stands
        return self._finish(decided)

    def _begin(self, rec: StepRecord) -> None:
        cfg = self.docking
        if rec.mode is Mode.MANUAL:
            cfg = dataclasses.replace(cfg, stall_s=NEVER_S, timeout_s=0.0)  # 0: no timeout
        frame = self.planner.frame  # "at the dock" needs the docked pose, once it is known
        self._detector = DockingOutcomeDetector(cfg, frame.pose if frame is not None else None)
        self._contact_t_ns = None
        obs = rec.observation
        self.planner.attempt_started(obs.odom if obs is not None else None)
        self._status = dataclasses.replace(self._status, attempt=self._status.attempt + 1,
                                           attempting=True, confirming=False,
                                           reset_resumable=False)

    def _finish(self, decided: DetectedOutcome) -> DetectedOutcome:
        self._detector = None
        self._armed = False
        self._contact_t_ns = None
        obs = self._last_obs
        obstacles = None if obs is None or obs.scan_m is None else scan_points(obs.odom, obs.scan_m)
        self._plan = self.planner.attempt_ended(decided.outcome,
                                                obs.odom if obs is not None else None, obstacles)
        self.anchor_corridor()
        s = self._status
        self._status = dataclasses.replace(
            s, attempting=False, confirming=False, outcome=decided.outcome.value,
            outcome_attempt=s.attempt, signal=decided.signal, evidence=dict(decided.evidence),
            summary=evidence_summary(decided.evidence),
            successes=s.successes + (decided.outcome is Outcome.SUCCESS))
        return decided

    def anchor_corridor(self) -> None:
        """The field's docking corridor follows the docked pose the planner knows (a base whose
        link tells no dock pose; the loop ignores it on a simulator that does)."""
        if self.planner.frame is not None:
            self.loop.anchor_dock(self.planner.frame.face(self._radius_m))

    # --- resets ----------------------------------------------------------------------------

    def start_reset(self) -> str:
        """The operator's reset ("n"): drive to the planned start pose (or resume a reset
        stopped half way), and count failed resets from zero again (a paused auto-reset
        resumes). One line for the operator. The caller makes sure no episode is open."""
        if self.drives_resets:
            self._status = dataclasses.replace(self._status, failed_resets=0)
        return self._start_reset()

    def _start_reset(self) -> str:
        if not self.drives_resets:
            return "this robot teleports: n gives it a new start pose"
        if self._status.reset_resumable and self.driver.active:
            self._request_reset()
            self.loop.post(OperatorEvent.RESET)  # without a new target: resume the same one
            return "resuming the reset: hold the deadman"
        plan = self._plan or self._fresh_plan()
        if plan is None:
            return ("no docked pose and no start pose known: dock once, or set [docking.reset] "
                    "x_m, y_m, yaw_rad")
        self._plan = None
        self._request_reset()
        self._reset_ticks, self._reset_timed_out = 0, False
        self.loop.request_reset(plan.target, undock=True)
        self._status = dataclasses.replace(self._status, reset=self.driver.phase.value,
                                           reset_reason="", reset_kind=plan.kind,
                                           reset_progress=0.0)
        where = {"start": "a new start pose", "staging": "the staging pose (a retry)",
                 "home": "where the first attempt started"}.get(plan.kind, plan.kind)
        return f"reset: undocking and driving to {where}; hold the deadman"

    def _request_reset(self) -> None:
        latest = self.loop.latest
        # The tick running now may have read its events already: the next one takes it.
        self._reset_from_step = (latest.step if latest is not None else -1) + 2

    def _fresh_plan(self) -> PlannedReset | None:
        """A reset asked for with no attempt just ended: a new start pose, drawn as after an
        aborted attempt (no anchor, no retry)."""
        latest = self.loop.latest
        obs = latest.observation if latest is not None else None
        obstacles = None if obs is None or obs.scan_m is None else scan_points(obs.odom, obs.scan_m)
        return self.planner.attempt_ended(Outcome.ABORTED, obs.odom if obs is not None else None,
                                          obstacles)

    def maybe_auto_reset(self) -> str:
        """After a detected outcome: start the reset by itself with `[docking] auto_reset` on a
        base that drives its resets, unless it has paused (see the module doc); "" when it does
        not start one and has not paused."""
        if not (self.docking.auto_reset and self.drives_resets):
            return ""
        if self._status.auto_reset_paused:
            return self._status.paused_line()
        return self._start_reset()

    def _track_reset(self, rec: StepRecord) -> None:
        requested = self._reset_from_step is not None and rec.step >= self._reset_from_step
        if rec.mode is Mode.RESET:
            self._in_reset, self._reset_from_step = True, None
            self._reset_ticks += 1
            self._status = dataclasses.replace(
                self._status, reset=self.driver.phase.value, reset_reason=rec.reason,
                reset_progress=self.driver.progress)
            if not self._reset_timed_out and self._reset_ticks >= self._reset_tick_limit():
                self._reset_timed_out = True
                self.loop.post(OperatorEvent.STOP)  # the robot stands; the next tick leaves RESET
        elif self._in_reset or requested:
            self._in_reset, self._reset_from_step = False, None
            done = self.driver.done and rec.reason.startswith("reset done")
            reason = rec.reason
            if self._reset_timed_out and not done:
                reason = f"reset timed out after {self.docking.reset.timeout_s:g} s"
            self._status = dataclasses.replace(
                self._status, reset=RESET_DONE if done else RESET_STOPPED,
                reset_reason=reason, reset_progress=1.0 if done else self.driver.progress,
                failed_resets=0 if done else self._status.failed_resets + 1,
                # A reset out of time is over: the next one plans afresh from where it stands.
                reset_resumable=not done and not self._reset_timed_out)

    def _reset_tick_limit(self) -> int:
        """`[docking.reset] timeout_s` in control ticks."""
        return max(1, round(self.docking.reset.timeout_s * 1e9 / self.loop.period_ns))

    # --- for the screen --------------------------------------------------------------------

    def status(self) -> DockingStatus:
        detector = self._detector
        confirming = detector is not None and (detector.pending or self._contact_t_ns is not None)
        return dataclasses.replace(self._status, confirming=confirming)
