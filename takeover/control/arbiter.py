"""The Arbiter: decides, every tick, which command goes to the base and in which mode.

Pure logic, no threads and no I/O, so every rule is testable on its own (tests/teleop).
Rules (docs/safety.md):
- Deadman: motion only while the enable button is held, in MANUAL, TAKEOVER and (by default)
  AUTO. Releasing it gives a zero command on that very tick.
- In AUTO, stick deflection past `takeover_deflection` or the takeover button switches to
  TAKEOVER at once and asks the loop to drop the policy's queued chunk. Back to AUTO only by an
  explicit request, or after the sticks rest centred for `auto_resume_centered_s` if set.
- E-stop (operator or the base's own) and link loss (link down, or an observation older than
  `obs_freshness_ms`) latch: zero command until the operator acknowledges, and acknowledging
  lands in IDLE, never in motion.
- A NaN or out-of-range policy output stops the robot and drops to IDLE (a fault).
- Every command is clamped to the mode's speed limits and to acceleration limits; a command to
  stop (zero) passes at once.
- A lost input device while the operator is in control stops the robot (IDLE).
- Then the LiDAR protective field (control/field.py): in each driving mode it limits, only
  warns, or is off ([safety.field]); where it limits, it slows the command so the robot can
  stop before the protective distance, stops it inside it, and stops it without a fresh scan.
- RESET (undocking and driving back to a start pose between attempts, control/reset_driver.py)
  drives under AUTO's speed limits and deadman rule with the field always limiting, and any
  stop ends it in IDLE: the deadman released, a stick moved, a protective stop, a LiDAR blind
  for RESET_BLIND_GRACE_MS, a bad command. Only the operator starts it again.
- Help requests ([supervision] mode robot or both, control/help.py): a help signal held for
  `help_confirm_ms` in AUTO makes the robot ask. It stays in AUTO with the request on
  (`Decision.help.requested`): it brakes to a stop within the deceleration limits, drops the
  policy's queued chunk and holds still; the deadman, the e-stop latch, link loss, the field
  and the input-device check apply as in AUTO. Only the operator ends it: a takeover (sticks
  or button; a correction, recorded as any takeover) or a hand-back (HAND_BACK, or AUTO),
  after which the policy drives again from rest under the acceleration limits. Any change of
  mode ends the request.
- A misaligned approach (the help monitor's misaligned signal, confirmed) is first answered by
  the robot itself, in every supervision mode: `[supervision.risk] misaligned_retries` times
  per engagement of AUTO it reverses out from the dock face (control/realign.py, opennav_docking's
  retry) and the policy approaches again from rest; only then does it ask. The back-out stays
  in AUTO under AUTO's limits, deadman and field, its steps are the robot's own (action_mode
  robot, source reset: never labels), and any change of mode ends it.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass

from takeover.config import SafetyConfig, SpeedLimits, SupervisionConfig
from takeover.control.field import ProtectiveField
from takeover.control.help import HelpMonitor, HelpVerdict
from takeover.control.realign import MisalignedBackoff
from takeover.types import (
    ACTION_MODE_DEMONSTRATION,
    ACTION_MODE_INTERVENTION,
    ACTION_MODE_ROBOT,
    ZERO_COMMAND,
    Command,
    CommandSource,
    FieldState,
    FieldStatus,
    HelpReason,
    HelpStatus,
    Mode,
    Observation,
    Pose2D,
)


class OperatorEvent(enum.Enum):
    """Discrete requests from the operator (buttons, keys) or a supervising script."""

    MANUAL = "manual"  # start driving by hand
    AUTO = "auto"  # hand control to the policy
    TAKEOVER = "takeover"  # take control from the policy
    STOP = "stop"  # back to IDLE
    ESTOP = "estop"  # latch the e-stop
    ACKNOWLEDGE = "acknowledge"  # clear a latched ESTOP / LINK_LOST (lands in IDLE)
    RESET = "reset"  # undock and drive to a start pose (the loop's reset driver)
    # Answer a help request without correcting: the policy drives on (AUTO). From TAKEOVER it
    # hands back like AUTO.
    HAND_BACK = "hand_back"


@dataclass(frozen=True)
class OperatorInput:
    """The operator's continuous input on one tick.

    command: what the sticks ask for, already scaled to speeds (deadzone, expo, turbo applied
    by the input device). deflection: the largest stick deflection in [0, 1], used to detect a
    takeover. connected: the input device is present.
    """

    deadman: bool = False
    command: Command = ZERO_COMMAND
    deflection: float = 0.0
    connected: bool = True


NO_INPUT = OperatorInput()


@dataclass(frozen=True)
class Decision:
    command: Command
    source: CommandSource
    mode: Mode
    action_mode: int | None
    reason: str = ""
    drop_policy_queue: bool = False  # a takeover or a help request started on this tick
    field: FieldStatus | None = None  # the protective field's verdict in a driving mode
    help: HelpStatus | None = None  # the help monitor in AUTO (requested: asking, holding)


_OPERATOR_MODES = (Mode.MANUAL, Mode.TAKEOVER)

# How long an acknowledged e-stop waits for the base to report its release (see
# Arbiter._awaiting_release): many state periods of a serial or ROS base, and short enough that
# a refusal (the base's own e-stop still engaged) reaches the operator within a second.
ESTOP_RELEASE_WAIT_MS = 1000.0

# How long the protective field may stay blind (no fresh scan) in RESET before the reset ends:
# the robot holds still meanwhile, as in AUTO. Five scan periods of a 10 Hz LiDAR.
RESET_BLIND_GRACE_MS = 500.0


class Arbiter:
    """Owned by the control loop's thread; other threads reach it through loop events."""

    def __init__(self, safety: SafetyConfig, policy_available: bool = False,
                 supervision: SupervisionConfig | None = None) -> None:
        self.safety = safety
        self.supervision = supervision or SupervisionConfig()
        self.help_monitor = HelpMonitor(self.supervision, safety.field.footprint_radius_m)
        self._asking: HelpStatus | None = None  # the help request in force, while asking
        self._backoff: MisalignedBackoff | None = None  # the robot's own retry, while backing out
        self._retries_used = 0  # misaligned retries since AUTO was last engaged
        self._last_field: FieldStatus | None = None  # the field's verdict on the tick before
        self.policy_available = policy_available
        self.reset_available = False  # the loop has a reset driver with a target
        self._reset_blind_since_ns: int | None = None  # RESET: since when the field is blind
        self.mode = Mode.IDLE
        self.reason = ""
        self._last = ZERO_COMMAND
        self._centred_since_ns: int | None = None
        self._drop_queue = False
        self._ack_requested = False
        self._ack_deadline_ns: int | None = None  # until when the base may still report its e-stop
        self._after_ack: list[OperatorEvent] = []
        self.field = ProtectiveField(safety.field)
        # The dock pose a simulator tells (ControlLoop.refresh_dock_pose), for the corridor.
        self.link_dock: Pose2D | None = None
        self._field_stopped = False  # the last tick was a protective stop (hysteresis)

    def set_supervision(self, supervision: SupervisionConfig) -> None:
        """[supervision] for a loop built before it was known (with the robot stopped)."""
        self.supervision = supervision
        self.help_monitor = HelpMonitor(supervision, self.safety.field.footprint_radius_m)
        self._asking = None

    @property
    def asking_for_help(self) -> HelpStatus | None:
        """The help request in force (the robot holds still until the operator answers)."""
        return self._asking

    @property
    def dock_pose(self) -> Pose2D | None:
        """Where the docking corridor is: from [safety.field.dock], or the link's dock."""
        dock = self.safety.field.dock
        if dock.source == "config":
            return Pose2D(dock.x_m, dock.y_m, dock.yaw_rad)
        return self.link_dock if dock.source == "link" else None

    # --- events ---------------------------------------------------------------------------------

    def handle(self, event: OperatorEvent) -> None:
        """Apply an operator request. Requests that the rules refuse leave a reason."""
        mode = self.mode
        if event is OperatorEvent.ESTOP:
            self._enter(Mode.ESTOP, "e-stop pressed")
            # A new press voids an acknowledgement still waiting for the base, and what was
            # asked for after it: only a new acknowledgement releases this one.
            self._ack_requested, self._ack_deadline_ns, self._after_ack = False, None, []
            return
        if event is OperatorEvent.ACKNOWLEDGE:
            if mode.latched:
                self._ack_requested = True  # checked against the next observation in decide()
            return
        if mode.latched and self._ack_requested:
            # Requested right after an acknowledgement: applies once the latch has cleared.
            self._after_ack.append(event)
            return
        if mode.latched:
            self.reason = f"{mode.value} is latched: acknowledge first"
            return
        if event is OperatorEvent.STOP:
            self._enter(Mode.IDLE, "stopped by operator")
        elif event is OperatorEvent.MANUAL:
            self._enter(Mode.MANUAL, "manual driving")
        elif event is OperatorEvent.AUTO:
            if not self.policy_available:
                self.reason = "no policy loaded: cannot engage AUTO"
                return
            if mode is Mode.AUTO and self._asking is not None:
                self._hand_back()
                return
            self._enter(Mode.AUTO, "policy driving")
        elif event is OperatorEvent.HAND_BACK:
            if mode is Mode.AUTO and self._asking is not None:
                self._hand_back()
            elif mode is Mode.TAKEOVER and self.policy_available:
                self._enter(Mode.AUTO, "handed back: policy driving")
            else:
                self.reason = "nothing to hand back: the robot is not asking for help"
        elif event is OperatorEvent.RESET:
            if not self.reset_available:
                self.reason = "no reset target: cannot reset"
                return
            self._enter(Mode.RESET, "resetting: undocking and driving to a start pose")
        elif event is OperatorEvent.TAKEOVER and mode is Mode.AUTO:
            self._start_takeover("takeover button")

    def reset_finished(self, reason: str) -> None:
        """The reset driver reached its target: RESET ends in IDLE (the loop calls this)."""
        if self.mode is Mode.RESET:
            self._enter(Mode.IDLE, reason)

    def _enter(self, mode: Mode, reason: str) -> None:
        self.mode = mode
        self.reason = reason
        self._centred_since_ns = None
        # Any change of mode (a takeover, a stop, a latch) ends a help request; the next AUTO
        # starts with fresh timers.
        self._asking = None
        self._backoff = None
        self._retries_used = 0
        self._last_field = None
        self.help_monitor.reset()

    def _hand_back(self) -> None:
        """The operator answered a help request without correcting: the policy drives on."""
        assert self._asking is not None
        why = self._asking.reason.value if self._asking.reason is not None else "help"
        self._enter(Mode.AUTO, f"handed back ({why}): policy driving")

    def _start_takeover(self, reason: str) -> None:
        self._enter(Mode.TAKEOVER, reason)
        self._drop_queue = True

    # --- per tick -------------------------------------------------------------------------------

    def decide(
        self,
        now_ns: int,
        obs: Observation | None,
        link_connected: bool,
        operator: OperatorInput,
        proposal: Command | None,
        dt_s: float,
        *,
        novelty: float | None = None,
        novelty_threshold: float | None = None,
    ) -> Decision:
        """The command for this tick. `now_ns` is on the link's clock, `dt_s` the tick period.
        novelty, novelty_threshold: the policy's score for this tick's proposal and its model
        card's threshold (control/help.py), None where the policy has none."""
        s = self.safety
        fresh = (
            link_connected
            and obs is not None
            and (now_ns - obs.t_ns) <= s.obs_freshness_ms * 1e6
        )
        # Latched faults first: they win over everything, including acknowledgement.
        if not link_connected:
            self._latch(Mode.LINK_LOST, "link down")
        elif obs is None:
            if self.mode is Mode.IDLE:
                self.reason = "waiting for the first observation from the robot"
            else:
                self._latch(Mode.LINK_LOST, "no observation from the robot")
        elif not fresh:
            self._latch(Mode.LINK_LOST, stale_reason(obs, now_ns, s.obs_freshness_ms))
        if obs is not None and obs.estop and self.mode is not Mode.LINK_LOST:
            self._latch(Mode.ESTOP, "the base reports its e-stop engaged")

        if self._ack_requested and self._awaiting_release(obs, now_ns):
            self.reason = "acknowledged: waiting for the base to release its e-stop"
        elif self._ack_requested:
            self._ack_requested, self._ack_deadline_ns = False, None
            self._try_acknowledge(obs, fresh)
            pending, self._after_ack = self._after_ack, []
            if not self.mode.latched:
                for event in pending:
                    self.handle(event)

        operator_in_control = self.mode in _OPERATOR_MODES or (
            self.mode in (Mode.AUTO, Mode.RESET) and s.deadman_in_auto
        )
        if operator_in_control and not operator.connected:
            self._enter(Mode.IDLE, "input device lost: robot stopped")

        drop = False
        if self.mode is Mode.AUTO and (operator.deflection > s.takeover_deflection):
            self._start_takeover("sticks moved: takeover")
        if self.mode is Mode.RESET and (operator.deflection > s.takeover_deflection):
            self._enter(Mode.IDLE, "reset stopped: sticks moved (drive by hand, or reset again)")
        if self._drop_queue:
            drop, self._drop_queue = True, False

        mode = self.mode
        if mode is Mode.MANUAL:
            return self._out(self._operator_command(operator, s.manual, dt_s),
                             ACTION_MODE_DEMONSTRATION, drop, s.field.manual, obs, now_ns)
        if mode is Mode.TAKEOVER:
            self._maybe_resume_auto(now_ns, operator)
            return self._out(self._operator_command(operator, s.takeover, dt_s),
                             ACTION_MODE_INTERVENTION, drop, s.field.takeover, obs, now_ns)
        if mode is Mode.AUTO:
            if self._backoff is not None:
                backing = self._backoff_out(operator, proposal, obs, dt_s, now_ns, drop)
                if backing is not None:
                    return backing
                drop = True  # backed out: the policy approaches again on a fresh chunk
            help_status = self._help(now_ns, obs, proposal, novelty, novelty_threshold)
            if self._backoff is not None:  # the robot answers the misaligned signal itself
                backing = self._backoff_out(operator, proposal, obs, dt_s, now_ns, True)
                if backing is not None:
                    return backing
            if self._asking is not None and help_status.since_ns == now_ns:
                drop = True  # the request began on this tick: re-plan after the hand-back
            if self._asking is not None:
                chosen = self._hold_command(operator, proposal, dt_s)
            else:
                chosen = self._policy_command(operator, proposal, dt_s)
            decision = self._out(chosen, ACTION_MODE_ROBOT, drop, s.field.auto, obs, now_ns)
            self._last_field = decision.field
            if decision.mode is not Mode.AUTO:  # a policy fault while asking: IDLE
                return decision
            return dataclasses.replace(decision, help=help_status)
        if mode is Mode.RESET:
            return self._reset_out(operator, proposal, dt_s, obs, now_ns)
        self._last = ZERO_COMMAND
        self._field_stopped = False
        return Decision(ZERO_COMMAND, CommandSource.NONE, mode, None, self.reason, drop)

    def _help(self, now_ns: int, obs: Observation | None, proposal: Command | None,
              novelty: float | None, novelty_threshold: float | None) -> HelpStatus:
        """Run the help monitor on this AUTO tick; start a request when a signal is confirmed
        and the robot may ask ([supervision] mode robot or both)."""
        verdict: HelpVerdict = self.help_monitor.update(
            now_ns, obs, proposal, self._last, self._last_field, novelty, novelty_threshold)
        if self._asking is not None:
            return dataclasses.replace(self._asking, score=verdict.score,
                                       threshold=verdict.threshold)
        confirmed = verdict.confirmed
        if (confirmed is not None and confirmed.reason is HelpReason.MISALIGNED
                and self.help_monitor.dock is not None and obs is not None
                and self._retries_used < self.supervision.risk.misaligned_retries):
            self._retries_used += 1
            self._backoff = MisalignedBackoff(
                self.help_monitor.dock, self.supervision.risk.misaligned_backoff_m,
                self.safety.field.footprint_radius_m, now_ns)
            self.reason = (f"misaligned ({confirmed.detail}): backing out to try again "
                           f"(retry {self._retries_used} of "
                           f"{self.supervision.risk.misaligned_retries})")
            return HelpStatus(False, None, verdict.score, verdict.threshold)
        if verdict.confirmed is not None and self.supervision.robot_gated:
            signal = verdict.confirmed
            self._asking = HelpStatus(True, signal.reason, verdict.score, verdict.threshold,
                                      since_ns=now_ns)
            self.reason = (f"asking for help ({signal.reason.value}: {signal.detail}): "
                           "take over, or hand back")
            return self._asking
        pending = verdict.raised[0].reason if verdict.raised else None
        return HelpStatus(False, pending, verdict.score, verdict.threshold)

    def _backoff_out(self, operator: OperatorInput, proposal: Command | None,
                     obs: Observation | None, dt_s: float, now_ns: int, drop: bool
                     ) -> Decision | None:
        """AUTO while the robot backs out of a misaligned approach (control/realign.py): its
        command under AUTO's limits, deadman and field, as the policy's. None once it is out
        (the policy drives on this tick) or has given up (then, robot-gated, it asks)."""
        s = self.safety
        backoff = self._backoff
        assert backoff is not None
        if obs is None or self._policy_fault(proposal) or (
                s.deadman_in_auto and not operator.deadman):
            # The policy's fault still stops the robot (IDLE), the deadman still holds it.
            chosen = self._policy_command(operator, proposal, dt_s)
        else:
            step = backoff.step(obs.odom, now_ns)
            if step.done:
                self._backoff = None
                self.help_monitor.reset()  # the approach starts afresh: every timer too
                if not step.ok and self.supervision.robot_gated:
                    self._asking = HelpStatus(True, HelpReason.MISALIGNED, since_ns=now_ns)
                    self.reason = f"asking for help ({step.why}): take over, or hand back"
                else:
                    self.reason = "policy driving: approaching again" if step.ok else step.why
                return None
            chosen = (self._limit(step.command, s.auto, dt_s), CommandSource.RESET, self.reason)
        decision = self._out(chosen, ACTION_MODE_ROBOT, drop, s.field.auto, obs, now_ns)
        self._last_field = decision.field
        if decision.mode is not Mode.AUTO:  # a policy fault: IDLE
            return decision
        return dataclasses.replace(decision, help=HelpStatus())

    def _hold_command(self, operator: OperatorInput, proposal: Command | None, dt_s: float
                      ) -> tuple[Command, CommandSource, str]:
        """While asking for help: the policy's proposal no longer drives; the last command
        slows to zero within the deceleration limits (a ramp, not the instant stop of a fault:
        the robot is not in danger, and a loaded robot braking at once may tip its load), then
        zero. A bad proposal is still a fault and the deadman still stops at once."""
        s = self.safety
        if self._policy_fault(proposal) or (s.deadman_in_auto and not operator.deadman):
            return self._policy_command(operator, proposal, dt_s)  # the fault, or the deadman
        last = self._last
        v = _rate_limit(last.v_mps, 0.0, 0.0, s.decel_v_mps2 * dt_s)
        w = _rate_limit(last.w_radps, 0.0, 0.0, s.decel_w_radps2 * dt_s)
        self._last = Command(v, w)
        if self._last.is_zero:
            return ZERO_COMMAND, CommandSource.NONE, self.reason
        return self._last, CommandSource.POLICY, self.reason

    def _out(self, chosen: tuple[Command, CommandSource, str], action_mode: int, drop: bool,
             field_behaviour: str, obs: Observation | None, now_ns: int) -> Decision:
        # The mode may have changed inside (a policy fault drops to IDLE).
        mode = self.mode
        driving = mode in (Mode.MANUAL, Mode.AUTO, Mode.TAKEOVER)
        status: FieldStatus | None = None
        if driving:
            chosen, status = self._protective_field(chosen, field_behaviour, obs, now_ns)
        command, source, why = chosen
        return Decision(command, source, mode, action_mode if driving else None,
                        why or self.reason, drop, status)

    def _reset_out(self, operator: OperatorInput, proposal: Command | None, dt_s: float,
                   obs: Observation | None, now_ns: int) -> Decision:
        """RESET: the reset driver's proposal under AUTO's limits and deadman, the field always
        limiting (a reset needs the LiDAR: without a scan it cannot start). Any stop ends the
        reset in IDLE, so nothing resumes without the operator; its steps are never labels."""
        s = self.safety
        if s.deadman_in_auto and not operator.deadman:
            return self._end_reset("reset stopped: deadman released")
        if proposal is None or not proposal.is_finite or (
                abs(proposal.v_mps) > s.policy_abs_max_v_mps
                or abs(proposal.w_radps) > s.policy_abs_max_w_radps):
            return self._end_reset(f"reset stopped: bad reset command {proposal}")
        chosen = (self._limit(proposal, s.auto, dt_s), CommandSource.RESET, "")
        (command, source, why), status = self._protective_field(chosen, "limit", obs, now_ns)
        if status.state is FieldState.STOPPED and not proposal.is_zero:
            return self._end_reset(f"reset stopped: {status.reason or status.state.value}", status)
        if status.state is FieldState.BLIND:
            # A scan a few ms late (10 Hz over a loaded link) stops this tick's motion, as in
            # AUTO; a LiDAR that stays blind ends the reset.
            if self._reset_blind_since_ns is None:
                self._reset_blind_since_ns = now_ns
            if now_ns - self._reset_blind_since_ns >= RESET_BLIND_GRACE_MS * 1e6:
                return self._end_reset(f"reset stopped: {status.reason or 'LiDAR blind'}",
                                       status)
        else:
            self._reset_blind_since_ns = None
        return Decision(command, source, Mode.RESET, None, why or self.reason, False, status)

    def _end_reset(self, reason: str, status: FieldStatus | None = None) -> Decision:
        self._reset_blind_since_ns = None
        self._enter(Mode.IDLE, reason)
        self._last = ZERO_COMMAND
        self._field_stopped = False
        return Decision(ZERO_COMMAND, CommandSource.NONE, Mode.IDLE, None, reason, False, status)

    def _protective_field(self, chosen: tuple[Command, CommandSource, str], behaviour: str,
                          obs: Observation | None, now_ns: int
                          ) -> tuple[tuple[Command, CommandSource, str], FieldStatus]:
        """The field after the mode's limits: `limit` replaces the command, `warn` only says
        what it would have done, `off` does nothing."""
        if behaviour == "off":
            self._field_stopped = False
            return chosen, FieldStatus(FieldState.OFF)
        command, source, why = chosen
        scan = obs.scan_m if obs is not None else None
        age_s = 0.0
        if obs is not None:
            # The scan's own stamp where the link keeps one per input, else the observation's.
            age_s = (now_ns - obs.input_t_ns.get("scan", obs.t_ns)) / 1e9
        verdict = self.field.apply(command, scan, age_s, obs.odom if obs is not None else None,
                                   self.dock_pose, self._field_stopped)
        status = verdict.status
        if behaviour == "warn":
            if verdict.command != command:
                status = FieldStatus(FieldState.WARNING, status.clearance_m,
                                     f"(warn only) {status.reason}")
            return (command, source, why or status.reason), status
        self._field_stopped = status.state is FieldState.STOPPED
        if verdict.command == command:
            return (command, source, why or status.reason), status
        self._last = verdict.command
        if verdict.command.is_zero:
            source = CommandSource.NONE
        return (verdict.command, source, why or status.reason), status

    def _latch(self, mode: Mode, reason: str) -> None:
        if self.mode is mode:
            self.reason = reason
            return
        if self.mode is Mode.ESTOP and mode is Mode.LINK_LOST:
            return  # an e-stop stays an e-stop; acknowledging it re-checks the link
        self._enter(mode, reason)
        self._ack_requested, self._ack_deadline_ns = False, None

    def _awaiting_release(self, obs: Observation | None, now_ns: int) -> bool:
        """Whether an acknowledged e-stop still waits for the base to say it released.

        The link forwards the release at once (`ControlLoop.post`), but a serial or ROS base
        reports it only in a later state message; until then every observation still carries
        the flag. Judging the acknowledgement on one of those refused about one press in four
        over TCP. So it waits, zero command all along, for an observation without the flag, at
        most ESTOP_RELEASE_WAIT_MS; a base whose e-stop is still engaged after that (its own
        button pressed) is refused as before."""
        if self.mode is not Mode.ESTOP or obs is None or not obs.estop:
            return False
        if self._ack_deadline_ns is None:
            self._ack_deadline_ns = now_ns + int(ESTOP_RELEASE_WAIT_MS * 1e6)
        return now_ns < self._ack_deadline_ns

    def _try_acknowledge(self, obs: Observation | None, fresh: bool) -> None:
        if self.mode is Mode.ESTOP:
            if obs is not None and obs.estop:
                self.reason = "cannot acknowledge: the base's e-stop is still engaged"
                return
            if not fresh:
                self._enter(Mode.LINK_LOST, "acknowledged e-stop, but the link is down")
                return
            self._enter(Mode.IDLE, "e-stop acknowledged")
        elif self.mode is Mode.LINK_LOST:
            if not fresh:
                self.reason = "cannot acknowledge: the link is still down or stale"
                return
            self._enter(Mode.IDLE, "link restored and acknowledged")

    def _maybe_resume_auto(self, now_ns: int, operator: OperatorInput) -> None:
        hold_s = self.safety.auto_resume_centered_s
        if hold_s <= 0:
            return
        if operator.deflection > 0.05:
            self._centred_since_ns = None
            return
        if self._centred_since_ns is None:
            self._centred_since_ns = now_ns
        elif now_ns - self._centred_since_ns >= hold_s * 1e9:
            self._enter(Mode.AUTO, "sticks centred: back to AUTO")

    def _operator_command(self, operator: OperatorInput, limits: SpeedLimits, dt_s: float
                          ) -> tuple[Command, CommandSource, str]:
        if not operator.deadman:
            self._last = ZERO_COMMAND
            return ZERO_COMMAND, CommandSource.NONE, "deadman released"
        cmd = operator.command
        if not cmd.is_finite:
            self._last = ZERO_COMMAND
            return ZERO_COMMAND, CommandSource.NONE, "invalid operator input"
        return self._limit(cmd, limits, dt_s), CommandSource.HUMAN, ""

    def _policy_command(self, operator: OperatorInput, proposal: Command | None, dt_s: float
                        ) -> tuple[Command, CommandSource, str]:
        s = self.safety
        if self._policy_fault(proposal):
            assert proposal is not None
            self._enter(Mode.IDLE, f"policy fault: output {proposal.v_mps}, {proposal.w_radps} "
                        "is NaN or out of range; robot stopped")
            self._last = ZERO_COMMAND
            return ZERO_COMMAND, CommandSource.NONE, self.reason
        if s.deadman_in_auto and not operator.deadman:
            self._last = ZERO_COMMAND
            return ZERO_COMMAND, CommandSource.NONE, "deadman released"
        if proposal is None:
            self._last = ZERO_COMMAND
            return ZERO_COMMAND, CommandSource.NONE, "no policy proposal"
        return self._limit(proposal, s.auto, dt_s), CommandSource.POLICY, ""

    def _policy_fault(self, proposal: Command | None) -> bool:
        """A NaN or out-of-range proposal: a fault, not something to clamp."""
        s = self.safety
        return proposal is not None and (
            not proposal.is_finite
            or abs(proposal.v_mps) > s.policy_abs_max_v_mps
            or abs(proposal.w_radps) > s.policy_abs_max_w_radps)

    def _limit(self, cmd: Command, limits: SpeedLimits, dt_s: float) -> Command:
        """Clamp to speed limits, then to acceleration limits relative to the last command."""
        s = self.safety
        v = _clip(cmd.v_mps, limits.max_v_mps)
        w = _clip(cmd.w_radps, limits.max_w_radps)
        if v == 0.0 and w == 0.0:
            self._last = ZERO_COMMAND
            return ZERO_COMMAND
        v = _rate_limit(self._last.v_mps, v, s.accel_v_mps2 * dt_s, s.decel_v_mps2 * dt_s)
        w = _rate_limit(self._last.w_radps, w, s.accel_w_radps2 * dt_s, s.decel_w_radps2 * dt_s)
        self._last = Command(v, w)
        return self._last


def stale_reason(obs: Observation, now_ns: int, limit_ms: float) -> str:
    """Why an observation is too old, naming its stalest input where the link stamps each one
    (`Observation.input_t_ns`): "scan 262 ms old (limit 250)", or for an input that has not
    arrived at all (stamped with when the link began waiting for it) "no scan received for
    3000 ms (limit 250)". A link with one stamp for everything: "observation N ms old"."""
    limit = f"(limit {limit_ms:.0f})"
    if not obs.input_t_ns:
        return f"observation {(now_ns - obs.t_ns) / 1e6:.0f} ms old {limit}"
    name, t_ns = min(obs.input_t_ns.items(), key=lambda item: item[1])
    age_ms = (now_ns - t_ns) / 1e6
    absent = (name == "scan" and obs.scan_m is None) or (name == "image" and obs.image is None)
    if absent:
        return f"no {name} received for {age_ms:.0f} ms {limit}"
    return f"{name} {age_ms:.0f} ms old {limit}"


def _clip(x: float, limit: float) -> float:
    return max(-limit, min(limit, x))


def _rate_limit(prev: float, target: float, up: float, down: float) -> float:
    """Move from prev towards target: at most `up` per tick when speeding up, `down` when
    slowing down; a sign change first slows to zero."""
    if prev != 0.0 and target != 0.0 and math.copysign(1.0, prev) != math.copysign(1.0, target):
        return 0.0 if abs(prev) <= down else prev - math.copysign(down, prev)
    if abs(target) >= abs(prev):
        return prev + _clip(target - prev, up)
    return prev + _clip(target - prev, down)
