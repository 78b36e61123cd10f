"""Core value types shared by every layer. Units are in the names.

Nothing here imports anything heavier than numpy: these types travel through the control loop,
the links, the recorder and the UI.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt


class Mode(enum.Enum):
    """The Arbiter's modes (see docs/safety.md)."""

    IDLE = "IDLE"  # zero command
    MANUAL = "MANUAL"  # the operator drives: a demonstration
    AUTO = "AUTO"  # the policy drives, the operator supervises
    TAKEOVER = "TAKEOVER"  # the operator overrides the policy: a correction
    ESTOP = "ESTOP"  # latched; the operator must acknowledge
    LINK_LOST = "LINK_LOST"  # latched; the operator must acknowledge
    # Undocking and driving back to a start pose between attempts (control/reset_driver.py):
    # never a demonstration, its steps are unlabeled.
    RESET = "RESET"

    @property
    def latched(self) -> bool:
        return self in (Mode.ESTOP, Mode.LINK_LOST)


class CommandSource(enum.Enum):
    """Who decided the command that went to the base on one tick."""

    NONE = "none"  # zero command: idle, deadman released, or a safety stop
    HUMAN = "human"  # the operator's input (gamepad, keyboard, or a simulated operator)
    POLICY = "policy"  # the learned policy
    RESET = "reset"  # the reset driver: undock and drive to a start pose between attempts


# Sirius convention for per-step `action_mode`.
ACTION_MODE_DEMONSTRATION = -1
ACTION_MODE_ROBOT = 0
ACTION_MODE_INTERVENTION = 1


@dataclass(frozen=True, slots=True)
class Command:
    """A velocity command for a differential-drive base."""

    v_mps: float = 0.0
    w_radps: float = 0.0

    @property
    def is_finite(self) -> bool:
        return math.isfinite(self.v_mps) and math.isfinite(self.w_radps)

    @property
    def is_zero(self) -> bool:
        return self.v_mps == 0.0 and self.w_radps == 0.0


ZERO_COMMAND = Command(0.0, 0.0)


@dataclass(frozen=True, slots=True)
class Odometry:
    """Base odometry: pose in the odometry (or map) frame and measured body velocities."""

    x_m: float = 0.0
    y_m: float = 0.0
    yaw_rad: float = 0.0
    v_mps: float = 0.0
    w_radps: float = 0.0


@dataclass(frozen=True, slots=True)
class Pose2D:
    x_m: float
    y_m: float
    yaw_rad: float


@dataclass(frozen=True, slots=True, eq=False)
class Observation:
    """What the robot reports at one instant.

    t_ns: when the observation was taken, on the link's clock (`RobotLink.now_ns`), in integer
    nanoseconds; the control loop compares it with the same clock to judge freshness.
    image: uint8 (H, W, 3) RGB from the forward camera, or None when the robot has no camera.
    scan_m: float32 (N,) LiDAR ranges in metres over 360 degrees, counter-clockwise from the
    robot's forward axis; NaN where a beam returned nothing. None without a LiDAR.
    """

    t_ns: int
    odom: Odometry = field(default_factory=Odometry)
    image: npt.NDArray[np.uint8] | None = None
    scan_m: npt.NDArray[np.float32] | None = None
    battery_frac: float = 1.0
    docked: bool = False
    estop: bool = False
    bumper: bool = False
    # The raw charging signals of sensor_msgs/BatteryState, for charge detection
    # (control/docking_outcome.py): the current in amperes as the base reports it, sign not
    # normalised (REP 145 says positive while charging, but bases disagree: [docking]
    # current_sign), and power_supply_status (POWER_SUPPLY_STATUS_*). None: the link does not
    # have them (yet).
    battery_current_a: float | None = None
    power_supply_status: int | None = None
    # When each input last arrived, on the same clock as t_ns, by name ("odom", "scan", "image",
    # ...): t_ns is the oldest of them, and a too-old observation can name the input that is
    # stale. An input the link expects that has not arrived yet is there with the time the link
    # began waiting for it, so it makes the observation stale too and is named as missing (the
    # Arbiter's reason, the episode's `missing_inputs`). Empty where a link has one stamp for
    # everything (the simulator).
    input_t_ns: dict[str, int] = field(default_factory=dict)


# sensor_msgs/msg/BatteryState.power_supply_status, as every link reports it.
POWER_SUPPLY_STATUS_UNKNOWN = 0
POWER_SUPPLY_STATUS_CHARGING = 1
POWER_SUPPLY_STATUS_DISCHARGING = 2
POWER_SUPPLY_STATUS_NOT_CHARGING = 3
POWER_SUPPLY_STATUS_FULL = 4
POWER_SUPPLY_STATUS_NAMES = {0: "unknown", 1: "charging", 2: "discharging", 3: "not charging",
                             4: "full"}


class FieldState(enum.Enum):
    """What the LiDAR protective field (control/field.py, docs/safety.md) did on one tick."""

    OFF = "off"  # not active in this mode
    CLEAR = "clear"  # active; nothing within the warning distance along the path
    WARNING = "warning"  # a return within the warning distance, or (warn-only) it would have acted
    LIMITED = "limited"  # speed reduced so that the robot can stop before the protective distance
    STOPPED = "stopped"  # protective stop: no travel along the path (a turn in place may pass)
    BLIND = "blind"  # no usable scan (missing or stale): the robot is stopped
    CORRIDOR = "corridor"  # in the docking corridor: the dock is muted, travel capped to a creep


@dataclass(frozen=True, slots=True)
class FieldStatus:
    """The protective field's verdict on one tick's command.

    clearance_m: how far the robot could drive along the commanded arc before its footprint
    comes within the protective distance of a LiDAR return, capped at the look-ahead; NaN when
    the command does not travel or there is no usable scan.
    """

    state: FieldState
    clearance_m: float = math.nan
    reason: str = ""

    @property
    def acted(self) -> bool:
        """It changed the command (limited, stopped, blind, or capped to a creep)."""
        return self.state in (FieldState.LIMITED, FieldState.STOPPED, FieldState.BLIND,
                              FieldState.CORRIDOR)


class HelpReason(enum.Enum):
    """Why the robot asks for help (control/help.py, docs/safety.md): one signal each."""

    BLOCKED = "blocked"  # constraint: the protective field holds the commanded travel, bumper
    NOVELTY = "novelty"  # uncertainty: the policy's ensemble disagrees beyond its threshold
    NO_PROGRESS = "no_progress"  # risk: odometry still while the policy commands motion
    CLEARANCE = "clearance"  # risk: LiDAR clearance ahead below the margin while driving forward
    SLIP = "slip"  # risk: the measured twist diverges from the command sent
    # risk: creeping into the dock face off its axis or heading, beyond the contact tolerance
    MISALIGNED = "misaligned"

    @property
    def priority(self) -> HelpPriority:
        return _HELP_PRIORITY[self]


class HelpPriority(enum.IntEnum):
    """Fleet-DAgger's C.U.R. order (Hoque et al., 2022): a constraint violation before
    uncertainty before risk. Higher asks first (a fleet's operator queue)."""

    RISK = 1
    UNCERTAINTY = 2
    CONSTRAINT = 3


_HELP_PRIORITY = {
    HelpReason.BLOCKED: HelpPriority.CONSTRAINT,
    HelpReason.NOVELTY: HelpPriority.UNCERTAINTY,
    HelpReason.NO_PROGRESS: HelpPriority.RISK,
    HelpReason.CLEARANCE: HelpPriority.RISK,
    HelpReason.SLIP: HelpPriority.RISK,
    HelpReason.MISALIGNED: HelpPriority.RISK,
}


@dataclass(frozen=True, slots=True)
class HelpStatus:
    """The help monitor's state on one AUTO tick (control/help.py).

    requested: the robot is asking for help on this tick (it brakes to a stop and holds until
    the operator takes over or hands back). reason: the request's reason while requested;
    otherwise the highest-priority signal raised but not yet held for `help_confirm_ms`, or
    None. score: the policy's novelty this tick (NaN when it has none); threshold: the one in
    force (NaN when none). since_ns: when the request began (loop clock), None when not asking.
    """

    requested: bool = False
    reason: HelpReason | None = None
    score: float = math.nan
    threshold: float = math.nan
    since_ns: int | None = None

    @property
    def priority(self) -> HelpPriority | None:
        return None if self.reason is None else self.reason.priority


@dataclass(frozen=True, slots=True, eq=False)
class StepRecord:
    """What one control tick did: the unit of recording and of UI updates.

    t_ns: tick start on the loop's clock. loop_late_ns: how far past its deadline the tick
    started. policy_action: what the policy proposed (None when it proposed nothing), also while
    the human drives. action_mode: the Sirius convention (-1 demonstration, 0 robot, 1 human
    intervention), or None on ticks that are not part of a demonstration or a supervised run
    (IDLE, ESTOP, LINK_LOST).
    """

    step: int
    t_ns: int
    observation: Observation | None
    command: Command
    source: CommandSource
    mode: Mode
    policy_action: Command | None
    human_action: Command | None
    action_mode: int | None
    loop_late_ns: int
    policy_latency_ns: int
    reason: str = ""
    field: FieldStatus | None = None  # the protective field's verdict (None outside driving modes)
    help: HelpStatus | None = None  # the help monitor in AUTO (None outside AUTO or without one)


class StepSink(Protocol):
    """Receives every StepRecord from the control loop (recorder, UI, metrics).

    `offer` is called on the loop's thread and must never block: put the record on a bounded
    queue and return False if it had to be dropped.
    """

    def offer(self, record: StepRecord) -> bool: ...


class Outcome(enum.Enum):
    """How an episode ended."""

    SUCCESS = "success"  # docked
    FAILURE = "failure"  # collision, misaligned contact, or the operator judged it failed
    ABORTED = "aborted"  # the operator ended it without a verdict (or quit the app)
    INTERRUPTED = "interrupted"  # recording stopped early: crash, full disk, write error

    @classmethod
    def parse(cls, text: str) -> Outcome:
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(o.value for o in cls)
            raise ValueError(f"unknown outcome {text!r}; expected one of {names}") from None


#: The outcomes a person can give (the operator's verdict; `interrupted` is the recorder's).
VERDICTS = (Outcome.SUCCESS, Outcome.FAILURE, Outcome.ABORTED)
OUTCOME_NAMES = tuple(o.value for o in Outcome)
