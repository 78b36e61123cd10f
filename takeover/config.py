"""takeover.toml: typed configuration, validated with unknown keys rejected.

Each section is a dataclass; `load_config` maps the TOML tables onto them and names the exact
key that is wrong (unknown, wrong type, out of range) in one line. Units are in the key names.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from takeover.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILENAME = "takeover.toml"
# tui.camera: how the TUI draws camera frames (tui/camera.py, docs/tui.md).
CAMERA_MODES = ("auto", "kitty", "sixel", "halfblock", "off")


@dataclass(frozen=True)
class SpeedLimits:
    """Per-mode limits on the command sent to the base."""

    max_v_mps: float = 0.5
    max_w_radps: float = 1.5


#: How the protective field treats a mode's commands ([safety.field] auto/manual/takeover).
FIELD_BEHAVIOURS = ("limit", "warn", "off")
#: Where the docking corridor's dock pose comes from ([safety.field.dock] source).
DOCK_SOURCES = ("link", "config", "none")


@dataclass(frozen=True)
class FieldDockConfig:
    """[safety.field.dock]: the docking corridor, where the field lets the robot creep to the
    dock face. The pose is the dock face's centre in the odometry frame, yaw its outward
    normal (into the room)."""

    source: str = "link"  # link (a simulator tells it) | config (x_m, y_m, yaw_rad) | none
    x_m: float = 0.0
    y_m: float = 0.0
    yaw_rad: float = 0.0
    length_m: float = 0.7  # the robot's centre at most this far out from the face
    half_width_m: float = 0.10  # and at most this far off the dock's axis
    heading_deg: float = 20.0  # and facing the dock within this


@dataclass(frozen=True)
class FieldConfig:
    """[safety.field]: the LiDAR protective field (control/field.py, docs/safety.md)."""

    auto: str = "limit"  # limit | warn | off, per mode
    manual: str = "warn"
    takeover: str = "warn"
    protective_m: float = 0.10  # stop before a return comes this close to the footprint
    warning_m: float = 0.50  # a return this close along the path: warn
    horizon_s: float = 2.0  # look ahead this long at the commanded speed
    footprint_radius_m: float = 0.22  # a round base, centred on the LiDAR and the wheel axle
    brake_decel_mps2: float = 0.8  # the deceleration the base is counted on to brake with
    reaction_time_s: float = 0.15  # command to braking wheels (the scan's age is added)
    scan_max_age_ms: float = 200.0  # an older scan counts as missing: the robot stops
    min_valid_beam_frac: float = 0.5  # fewer valid beams towards the motion: blocked
    creep_mps: float = 0.10  # in the docking corridor the dock may be reached at this speed
    dock: FieldDockConfig = field(default_factory=FieldDockConfig)


@dataclass(frozen=True)
class SafetyConfig:
    """The Arbiter's rules (docs/safety.md)."""

    manual: SpeedLimits = field(default_factory=SpeedLimits)
    auto: SpeedLimits = field(default_factory=lambda: SpeedLimits(0.4, 1.2))
    takeover: SpeedLimits = field(default_factory=SpeedLimits)
    accel_v_mps2: float = 1.0  # speeding up
    accel_w_radps2: float = 4.0
    decel_v_mps2: float = 2.5  # slowing down (stops to zero are always immediate)
    decel_w_radps2: float = 8.0
    # A policy output beyond these is a fault (not merely clamped): the robot stops.
    policy_abs_max_v_mps: float = 1.0
    policy_abs_max_w_radps: float = 3.0
    obs_freshness_ms: float = 250.0  # older observation: LINK_LOST (latched)
    deadman_in_auto: bool = True  # hold-to-run supervision
    takeover_deflection: float = 0.15  # stick deflection (0..1) that takes over in AUTO
    auto_resume_centered_s: float = 0.0  # >0: sticks centred this long return to AUTO
    field: FieldConfig = field(default_factory=FieldConfig)  # the LiDAR protective field


@dataclass(frozen=True)
class LoopConfig:
    rate_hz: float = 20.0
    # SCHED_FIFO priority for the loop thread (Linux, needs root or CAP_SYS_NICE); 0: off.
    realtime_priority: int = 10


@dataclass(frozen=True)
class RobotConfig:
    url: str = "sim://"
    camera_width: int = 96
    camera_height: int = 96


#: SDL GameController names (Xbox labels; PlayStation: a = cross, b = circle, x = square,
#: y = triangle, back = share, start = options, leftshoulder = L1, rightshoulder = R1).
GAMEPAD_BUTTONS = ("a", "b", "x", "y", "back", "guide", "start", "leftstick", "rightstick",
                   "leftshoulder", "rightshoulder", "dpup", "dpdown", "dpleft", "dpright")
GAMEPAD_AXES = ("leftx", "lefty", "rightx", "righty", "lefttrigger", "righttrigger")


@dataclass(frozen=True)
class GamepadConfig:
    """Gamepad mapping (teleop_twist_joy names; buttons and axes by SDL GameController name,
    so Xbox and PlayStation pads map alike). Stick up and stick left are positive: forward and
    counter-clockwise. Empty string: no button for that action."""

    enabled: bool = True
    enable_button: str = "leftshoulder"  # deadman: motion only while held
    enable_turbo_button: str = "rightshoulder"  # deadman with the turbo scales
    axis_linear: str = "lefty"
    scale_linear: float = 0.3  # m/s at full deflection
    scale_linear_turbo: float = 0.5
    axis_angular: str = "rightx"
    scale_angular: float = 1.0  # rad/s at full deflection
    scale_angular_turbo: float = 1.5
    deadzone: float = 0.08  # fraction of full deflection ignored around the centre
    expo: float = 0.3  # 0: linear response; 1: cubic (fine control near the centre)
    button_manual: str = "a"
    button_auto: str = "y"
    button_takeover: str = "x"
    button_estop: str = "b"
    button_acknowledge: str = "back"
    button_stop: str = "dpright"
    button_episode: str = "start"  # begin / end (as aborted unless labelled) an episode
    button_success: str = "dpup"
    button_failure: str = "dpdown"
    button_abort: str = "dpleft"
    poll_rate_hz: float = 100.0  # button and hot-plug polling (sticks are also read every tick)


@dataclass(frozen=True)
class KeyboardConfig:
    """Keyboard driving. Terminals send no key-release: a driving key holds its command only
    while its auto-repeat keeps arriving."""

    scale_linear: float = 0.25  # m/s while an arrow key is held
    scale_angular: float = 0.8  # rad/s
    # After the first press: long enough to bridge the terminal's auto-repeat delay.
    initial_hold_ms: float = 550.0
    # Once repeats arrive: the command drops to zero this long after the last one.
    repeat_hold_ms: float = 150.0


@dataclass(frozen=True)
class TuiConfig:
    refresh_hz: float = 20.0  # telemetry refresh of the drive screen
    # auto (Kitty or Sixel graphics where the terminal supports them, else half-block cells)
    # | kitty | sixel (forced) | halfblock | off
    camera: str = "auto"


@dataclass(frozen=True)
class PolicyConfig:
    """How the robot runs the ONNX policy (policy/runtime.py); the model's own shape (chunk
    size, inputs) comes from its metadata."""

    execution: str = "receding"  # receding | ensemble
    # receding: commands executed from each chunk before inferring again. 5, not 1: a policy that
    # re-plans every tick dithers between the approach and the back-out the demonstrations hold
    # near the dock (docs/policy.md, "Why some demonstration sets fail").
    n_action_steps: int = 5
    ensemble_k: float = 0.01  # ensemble: weights exp(-k * i) over stored predictions, i = 0 oldest
    threads: int = 1  # onnxruntime intra-op threads


# Intervention weightings of training ([train] weighting; policy/dataset.py sample_weights).
WEIGHTINGS = ("none", "iwr", "sirius")
# How `takeover dagger train` makes the next model ([train] dagger_retrain).
DAGGER_RETRAINS = ("auto", "warm", "scratch")


@dataclass(frozen=True)
class TrainSettings:
    """[train]: overrides of the training defaults (policy/model.py ModelConfig and
    policy/train.py TrainConfig, documented in docs/policy.md); a key left out keeps the
    default. `takeover train` flags override these in turn."""

    epochs: int | None = None
    warm_epochs: int | None = None  # a warm-started retrain (`takeover dagger train`); default 4
    warm_lr: float | None = None  # its OneCycle peak learning rate; default 5e-4
    batch_size: int | None = None
    lr: float | None = None
    weighting: str | None = None  # none | iwr | sirius; default none, iwr for a warm start
    # How `takeover dagger train` makes the next model: warm (from the deployed model's weights,
    # warm_epochs at warm_lr) | scratch (new weights, epochs at lr, as `takeover train`) | auto
    # (scratch while that costs no more than a warm retrain of 20k frames; policy/settings.py).
    dagger_retrain: str | None = None  # default auto
    keep: str | None = None  # last | best: the weights kept (policy/train.py TrainConfig.keep)
    label: str | None = None  # intent | sent
    pose_loss_weight: float | None = None
    augment: bool | str | None = None  # true (= "on") | false (= "off") | "camera"
    device: str | None = None  # auto | cpu | cuda | cuda:N
    threads: int | None = None
    seed: int | None = None
    backbone: str | None = None
    backbone_args: dict[str, Any] | None = None
    chunk_size: int | None = None
    use_proprio: bool | None = None
    proprio_dropout: float | None = None
    pose_head: bool | None = None
    # Uncertainty (docs/policy.md "Uncertainty"): ensemble chunk heads (1: no novelty output),
    # and the fraction of validation steps whose novelty may exceed the calibrated threshold.
    heads: int | None = None
    novelty_budget: float | None = None


@dataclass(frozen=True)
class DemonstrationConfig:
    """[demonstration]: noise injected into the executed command while the operator
    demonstrates (DART; control/perturbation.py). The operator's own command is what is recorded
    as the label; the noise makes the demonstrations show how to recover from small errors.
    Standard deviations of 0 (the default): off."""

    noise_v_mps: float = 0.0
    noise_w_radps: float = 0.0
    tau_s: float = 0.5  # correlation time of the noise (an Ornstein-Uhlenbeck process)

    @property
    def active(self) -> bool:
        return self.noise_v_mps > 0 or self.noise_w_radps > 0

    def check(self) -> None:
        """ConfigError (one line) for noise a demonstrator could not drive against."""
        if not (0.0 <= self.noise_v_mps <= 0.3 and 0.0 <= self.noise_w_radps <= 1.0):
            raise ConfigError("demonstration noise: noise_v_mps must be within 0..0.3 and "
                              "noise_w_radps within 0..1.0 (standard deviations; 0 is off)")
        if not 0.05 <= self.tau_s <= 10.0:
            raise ConfigError("demonstration.tau_s must be between 0.05 and 10 seconds")


#: Which sign of BatteryState.current means charging on a base ([docking] current_sign).
CURRENT_SIGNS = ("positive", "negative")


#: Where resets take the dock pose from ([docking.reset] dock).
RESET_DOCK_SOURCES = ("anchor", "config")


@dataclass(frozen=True)
class ResetConfig:
    """[docking.reset]: undocking and driving back to a start pose between attempts
    (control/reset_driver.py, docs/docking.md). Poses are in the odometry frame; the start
    region is relative to the docked pose (where the robot stood when its charge was
    confirmed), like the simulator's start distribution: out along the dock's axis, within a
    bearing of it, facing the dock within a heading error."""

    # anchor: the odometry pose at each confirmed dock (x_m.. below until the first one);
    # config: always x_m, y_m, yaw_rad.
    dock: str = "anchor"
    x_m: float | None = None  # the docked pose: the robot's centre and heading when docked
    y_m: float | None = None
    yaw_rad: float | None = None
    undock_m: float = 0.35  # back out straight along the dock's axis this far first
    undock_mps: float = 0.10
    staging_m: float = 0.6  # retries start here: straight out from the docked pose
    distance_min_m: float = 1.1  # start poses: this far out from the docked pose...
    distance_max_m: float = 2.0
    bearing_deg: float = 30.0  # ...within this bearing of the dock's axis...
    heading_deg: float = 20.0  # ...facing the dock within this
    clearance_m: float = 0.45  # ...and this far from every LiDAR return (the robot's centre)
    cruise_mps: float = 0.25  # driving to the start pose (the Arbiter's AUTO limits apply too)
    turn_radps: float = 0.8
    position_tolerance_m: float = 0.08
    heading_tolerance_deg: float = 4.0
    timeout_s: float = 60.0  # a reset not done by then stops (not reached)
    seed: int = 0  # start poses are drawn from this seed, one per reset


@dataclass(frozen=True)
class DockingConfig:
    """[docking]: how an attempt's outcome is detected from what a real base reports
    (control/docking_outcome.py, docs/configuration.md). Nav2's opennav_docking conventions:
    charging = the battery current above a threshold after sign normalisation."""

    charging_current_a: float = 0.5  # charging: current (sign-normalised) above this
    current_sign: str = "positive"  # positive (REP 145) | negative: the sign of charging here
    charge_confirm_ms: float = 500.0  # charging (or the docked topic) held this long = docked
    # After the attempt stops at a contact, how long to wait for charging to show (a
    # BatteryState at 1-2 Hz lags the contact); opennav_docking's wait_charge_timeout.
    charge_wait_s: float = 3.0
    use_docked_topic: bool = False  # also count the base's docked flag (a /docked Bool topic)
    stall_s: float = 8.0  # no progress this long: failure
    stall_distance_m: float = 0.05  # progress: the robot moved this far since the last progress
    stall_angle_deg: float = 5.0  # or turned this much
    timeout_s: float = 60.0  # the attempt's limit: failure
    # > 0: stopped this close to the docked pose ([docking.reset], anchored at each dock) after
    # driving is at the dock: the attempt stops driving and waits for the charge
    # (opennav_docking's docking_threshold). 0: off (a learned policy hesitates near the dock).
    dock_threshold_m: float = 0.0
    # After each attempt, undock and drive to a new start pose without being asked (the TUI;
    # `takeover drive --reset drive` always does).
    auto_reset: bool = False
    max_retries: int = 0  # after a failed attempt, back to staging and try again this often
    reset: ResetConfig = field(default_factory=ResetConfig)


#: [supervision] mode: who decides when the operator looks (docs/configuration.md).
SUPERVISION_MODES = ("human", "robot", "both")


@dataclass(frozen=True)
class HelpRiskConfig:
    """[supervision.risk]: the risk signals beside the policy's novelty (control/help.py).
    A signal whose threshold is 0 is off."""

    # No progress: odometry still (below still_v_mps and still_w_radps) this long while the
    # policy commands motion (above twice those).
    no_progress_s: float = 2.0
    still_v_mps: float = 0.02
    still_w_radps: float = 0.05
    # Clearance: the nearest LiDAR return within front_half_angle_deg of straight ahead comes
    # within clearance_margin_m of the footprint while AUTO drives forward (outside the
    # docking corridor, where the dock itself is that close).
    clearance_margin_m: float = 0.0
    front_half_angle_deg: float = 30.0
    # Slip: the measured twist differs from the command sent by more than these.
    slip_v_mps: float = 0.0
    slip_w_radps: float = 0.0
    # Blocked (a constraint): the protective field stops the policy's travel, or the bumper
    # is pressed, this long (at least help_confirm_ms). A person walking past the robot holds
    # it for a second or two; measured in docs/safety.md.
    blocked_s: float = 2.0
    # No approach: the robot has come no approach_m closer to the dock than its closest for
    # no_approach_s (asks as no_progress; off without a known dock pose). Measured in
    # docs/safety.md and docs/policy.md (Supervision).
    no_approach_s: float = 8.0
    approach_m: float = 0.05
    # Misaligned: driving forward with the robot's front (the [safety.field] footprint radius
    # ahead of its centre) within misaligned_gap_m of the dock face, and its heading off the
    # dock's by more than misaligned_heading_deg or its centre off the axis by more than
    # misaligned_lateral_m: a contact there misses the charger's tolerance (off without a known
    # dock pose; gap 0: off). Measured in docs/policy.md (Supervision).
    misaligned_gap_m: float = 0.06
    misaligned_heading_deg: float = 3.5
    misaligned_lateral_m: float = 0.025
    # The robot's own answer first (control/realign.py, opennav_docking's retry): in AUTO, a
    # confirmed misaligned signal makes the robot reverse out until its front is
    # misaligned_backoff_m from the dock face and lets the policy approach again, this many
    # times per engagement of AUTO, before it asks for help (0: ask at once). In every
    # supervision mode: the policy alone retries too. Measured in docs/policy.md (Supervision).
    misaligned_retries: int = 1
    misaligned_backoff_m: float = 0.5


@dataclass(frozen=True)
class SupervisionConfig:
    """[supervision]: human-gated, robot-gated, or both (control/help.py, docs/safety.md)."""

    # human: the operator watches and takes over (no requests); robot: the robot asks for help
    # and holds still until the operator takes over or hands back; both.
    mode: str = "human"
    help_confirm_ms: float = 300.0  # a signal held this long in AUTO is a request
    novelty_threshold: float | None = None  # override of the model card's threshold
    operator_reaction_s: float = 1.0  # the simulated operator's reaction to a request
    # Several robots: a request waiting this long is served before newer ones of a higher C.U.R.
    # priority (control/help_queue.py; strict C.U.R. starves `no_progress` when saturated).
    help_max_wait_s: float = 20.0
    risk: HelpRiskConfig = field(default_factory=HelpRiskConfig)

    @property
    def robot_gated(self) -> bool:
        """The robot asks for help (robot or both)."""
        return self.mode in ("robot", "both")


@dataclass(frozen=True)
class Config:
    robot: RobotConfig = field(default_factory=RobotConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    gamepad: GamepadConfig = field(default_factory=GamepadConfig)
    keyboard: KeyboardConfig = field(default_factory=KeyboardConfig)
    tui: TuiConfig = field(default_factory=TuiConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    demonstration: DemonstrationConfig = field(default_factory=DemonstrationConfig)
    docking: DockingConfig = field(default_factory=DockingConfig)
    supervision: SupervisionConfig = field(default_factory=SupervisionConfig)
    # [[robots]]: several robots in one `takeover run` (empty: the one robot of [robot]).
    robots: tuple[RobotEntry, ...] = ()


#: A robot's name in [[robots]]: in episode file names, so short and path-safe.
ROBOT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
#: The tables a [[robots]] entry may override, merged key by key over the workspace's.
ROBOT_OVERRIDES = ("robot", "safety", "supervision", "docking")


@dataclass(frozen=True)
class RobotEntry:
    """One robot of [[robots]]: its name, its URL, and the whole config its control core runs
    with (the workspace's, with the entry's own [robots.safety], [robots.supervision],
    [robots.robot] and [robots.docking] keys merged over it; `robots` itself empty)."""

    name: str
    url: str
    config: Config


T = TypeVar("T")


def _check_value(path: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table, got {value!r}")
        return _build(annotation, value, path)  # type: ignore[arg-type]
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_value(path, value, arg)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: {value!r} is not a valid value")
    return value


def _build(cls: type[T], table: dict[str, Any], prefix: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            raise ConfigError(f"unknown key {path!r}; known keys here: {', '.join(sorted(fields))}")
        kwargs[key] = _check_value(path, value, hints[key])
    return cls(**kwargs)


def _validate(config: Config) -> None:
    if not 1.0 <= config.loop.rate_hz <= 50.0:
        raise ConfigError(f"loop.rate_hz = {config.loop.rate_hz}: must be between 1 and 50")
    if not 0 <= config.loop.realtime_priority <= 99:
        raise ConfigError("loop.realtime_priority must be between 0 (off) and 99")
    s = config.safety
    for name in ("manual", "auto", "takeover"):
        lim: SpeedLimits = getattr(s, name)
        if lim.max_v_mps <= 0 or lim.max_w_radps <= 0:
            raise ConfigError(f"safety.{name}: speed limits must be positive")
    for name in ("accel_v_mps2", "accel_w_radps2", "decel_v_mps2", "decel_w_radps2",
                 "obs_freshness_ms"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"safety.{name} must be positive")
    if not 0.0 < s.takeover_deflection < 1.0:
        raise ConfigError("safety.takeover_deflection must be between 0 and 1")
    _validate_field(s.field)
    _validate_inputs(config)
    pc = config.policy
    if pc.execution not in ("receding", "ensemble"):
        raise ConfigError(f"policy.execution = {pc.execution!r}: use receding or ensemble")
    if not 1 <= pc.n_action_steps <= 100:
        raise ConfigError("policy.n_action_steps must be between 1 and 100 (a model with a shorter "
                          "chunk executes its whole chunk)")
    if not 1 <= pc.threads <= 64:
        raise ConfigError("policy.threads must be between 1 and 64")
    t = config.train
    for name in ("epochs", "warm_epochs", "batch_size", "chunk_size", "threads", "heads"):
        value = getattr(t, name)
        if value is not None and value < 1:
            raise ConfigError(f"train.{name} must be at least 1")
    choices = {"weighting": WEIGHTINGS, "label": ("intent", "sent"),
               "keep": ("last", "best"), "dagger_retrain": DAGGER_RETRAINS}
    for name, allowed in choices.items():
        value = getattr(t, name)
        if value is not None and value not in allowed:
            raise ConfigError(f"train.{name} = {value!r}: use one of {', '.join(allowed)}")
    if isinstance(t.augment, str) and t.augment not in ("on", "off", "camera"):
        raise ConfigError(f"train.augment = {t.augment!r}: use true, false or \"camera\" (the "
                          "camera families of the robustness suite drawn on training images)")
    for name in ("lr", "warm_lr"):
        value = getattr(t, name)
        if value is not None and not 0.0 < value <= 1.0:
            raise ConfigError(f"train.{name} = {value}: must be above 0 and at most 1")
    if t.proprio_dropout is not None and not 0.0 <= t.proprio_dropout < 1.0:
        raise ConfigError("train.proprio_dropout must be between 0 and 1")
    if t.novelty_budget is not None and not 0.0 <= t.novelty_budget < 1.0:
        raise ConfigError(f"train.novelty_budget = {t.novelty_budget}: must be a fraction of "
                          "steps, at least 0 and below 1 (default 0.05)")
    config.demonstration.check()
    _validate_docking(config.docking)
    _validate_supervision(config.supervision)


def _validate_docking(d: DockingConfig) -> None:
    if not 0.0 < d.charging_current_a <= 100.0:
        raise ConfigError(f"docking.charging_current_a = {d.charging_current_a}: must be above 0 "
                          "and at most 100 (amperes, after the sign is normalised)")
    if d.current_sign not in CURRENT_SIGNS:
        raise ConfigError(f"docking.current_sign = {d.current_sign!r}: use positive (charging "
                          "current reported above zero, REP 145) or negative")
    if not 0.0 <= d.charge_confirm_ms <= 60_000.0:
        raise ConfigError("docking.charge_confirm_ms must be between 0 and 60000")
    if not 0.0 <= d.charge_wait_s <= 120.0 or d.charge_wait_s * 1000 < d.charge_confirm_ms:
        raise ConfigError("docking.charge_wait_s must be between 0 and 120 s and at least "
                          "charge_confirm_ms (else a charge could never be confirmed in it)")
    if not 0.0 <= d.dock_threshold_m <= 1.0:
        raise ConfigError(f"docking.dock_threshold_m = {d.dock_threshold_m}: must be between 0 "
                          "(off) and 1 m")
    for name in ("stall_s", "timeout_s", "stall_distance_m", "stall_angle_deg"):
        value = getattr(d, name)
        if not 0.0 < value <= 3600.0:
            raise ConfigError(f"docking.{name} = {value}: must be above 0 (and at most 3600)")
    if not 0 <= d.max_retries <= 100:
        raise ConfigError(f"docking.max_retries = {d.max_retries}: must be between 0 and 100")
    _validate_reset(d.reset)


def _validate_reset(r: ResetConfig) -> None:
    if r.dock not in RESET_DOCK_SOURCES:
        raise ConfigError(f"docking.reset.dock = {r.dock!r}: use anchor (the pose at each "
                          "confirmed dock) or config (x_m, y_m, yaw_rad)")
    given = [name for name in ("x_m", "y_m", "yaw_rad") if getattr(r, name) is not None]
    if given and len(given) != 3:
        missing = sorted({"x_m", "y_m", "yaw_rad"} - set(given))
        raise ConfigError(f"docking.reset: {', '.join(given)} given without {', '.join(missing)} "
                          "(the docked pose needs all three)")
    if r.dock == "config" and not given:
        raise ConfigError("docking.reset.dock = \"config\" needs x_m, y_m and yaw_rad (the "
                          "docked pose in the odometry frame)")
    for name in ("undock_m", "undock_mps", "staging_m", "distance_min_m", "distance_max_m",
                 "cruise_mps", "turn_radps", "position_tolerance_m", "heading_tolerance_deg",
                 "timeout_s", "clearance_m"):
        value = getattr(r, name)
        if not 0.0 < value <= 3600.0:
            raise ConfigError(f"docking.reset.{name} = {value}: must be above 0 (and at most "
                              "3600)")
    if r.distance_min_m > r.distance_max_m:
        raise ConfigError(f"docking.reset.distance_min_m = {r.distance_min_m} is above "
                          f"distance_max_m = {r.distance_max_m}")
    if r.undock_m > r.staging_m or r.staging_m > r.distance_max_m:
        raise ConfigError("docking.reset: undock_m <= staging_m <= distance_max_m, please "
                          f"(now {r.undock_m}, {r.staging_m}, {r.distance_max_m})")
    for name, top in (("bearing_deg", 90.0), ("heading_deg", 90.0)):
        value = getattr(r, name)
        if not 0.0 <= value <= top:
            raise ConfigError(f"docking.reset.{name} = {value}: must be between 0 and {top:g}")


def _validate_field(f: FieldConfig) -> None:
    for name in ("auto", "manual", "takeover"):
        if getattr(f, name) not in FIELD_BEHAVIOURS:
            raise ConfigError(f"safety.field.{name} = {getattr(f, name)!r}: use "
                              f"{', '.join(FIELD_BEHAVIOURS)}")
    for name in ("footprint_radius_m", "brake_decel_mps2", "horizon_s", "scan_max_age_ms"):
        if not getattr(f, name) > 0:
            raise ConfigError(f"safety.field.{name} must be positive")
    for name in ("protective_m", "warning_m", "reaction_time_s", "creep_mps"):
        if not getattr(f, name) >= 0:
            raise ConfigError(f"safety.field.{name} must not be negative")
    if f.warning_m < f.protective_m:
        raise ConfigError("safety.field.warning_m must be at least protective_m")
    if not 0.0 <= f.min_valid_beam_frac <= 1.0:
        raise ConfigError("safety.field.min_valid_beam_frac must be between 0 and 1")
    d = f.dock
    if d.source not in DOCK_SOURCES:
        raise ConfigError(f"safety.field.dock.source = {d.source!r}: use {', '.join(DOCK_SOURCES)}")
    if not (d.length_m > 0 and d.half_width_m > 0 and 0 < d.heading_deg <= 90):
        raise ConfigError("safety.field.dock: length_m and half_width_m must be positive, "
                          "heading_deg within 0..90")


def _validate_supervision(sv: SupervisionConfig) -> None:
    if sv.mode not in SUPERVISION_MODES:
        raise ConfigError(f"supervision.mode = {sv.mode!r}: use human (the operator watches), "
                          "robot (the robot asks for help) or both")
    if not 0 <= sv.help_confirm_ms <= 10000:
        raise ConfigError(f"supervision.help_confirm_ms = {sv.help_confirm_ms}: must be between "
                          "0 and 10000")
    if sv.novelty_threshold is not None and not sv.novelty_threshold > 0:
        raise ConfigError(f"supervision.novelty_threshold = {sv.novelty_threshold}: must be above "
                          "0 (leave it out to use the model card's)")
    if not 0 <= sv.operator_reaction_s <= 30:
        raise ConfigError(f"supervision.operator_reaction_s = {sv.operator_reaction_s}: must be "
                          "between 0 and 30")
    if not 0 < sv.help_max_wait_s <= 3600:
        raise ConfigError(f"supervision.help_max_wait_s = {sv.help_max_wait_s}: must be above 0 "
                          "and at most 3600")
    r = sv.risk
    for name, top in (("no_progress_s", 600.0), ("blocked_s", 600.0), ("still_v_mps", 1.0),
                      ("still_w_radps", 3.0),
                      ("clearance_margin_m", 5.0), ("front_half_angle_deg", 180.0),
                      ("slip_v_mps", 2.0), ("slip_w_radps", 6.0),
                      ("no_approach_s", 600.0), ("approach_m", 5.0),
                      ("misaligned_gap_m", 1.0)):
        value = getattr(r, name)
        if not 0 <= value <= top:
            raise ConfigError(f"supervision.risk.{name} = {value}: must be between 0 (off) and "
                              f"{top:g}")
    # The misaligned signal's tolerances: 0 would call every approach misaligned (its gap
    # turns it off).
    for name, top in (("misaligned_heading_deg", 90.0), ("misaligned_lateral_m", 1.0)):
        value = getattr(r, name)
        if not 0 < value <= top:
            raise ConfigError(f"supervision.risk.{name} = {value}: must be above 0 and at most "
                              f"{top:g} (misaligned_gap_m = 0 turns the signal off)")
    if not 0 <= r.misaligned_retries <= 10:
        raise ConfigError(f"supervision.risk.misaligned_retries = {r.misaligned_retries}: must be "
                          "between 0 (ask at once) and 10")
    if not r.misaligned_gap_m < r.misaligned_backoff_m <= 3.0:
        raise ConfigError(f"supervision.risk.misaligned_backoff_m = {r.misaligned_backoff_m}: "
                          f"must be above misaligned_gap_m ({r.misaligned_gap_m:g}) and at most 3")


def _validate_inputs(config: Config) -> None:
    g = config.gamepad
    for f in dataclasses.fields(g):
        value = getattr(g, f.name)
        if f.name.startswith("button_") or f.name in ("enable_button", "enable_turbo_button"):
            if value not in GAMEPAD_BUTTONS and not (value == "" and f.name.startswith("button_")):
                raise ConfigError(f"gamepad.{f.name} = {value!r}: not a gamepad button; use one of "
                                  f"{', '.join(GAMEPAD_BUTTONS)}")
        elif f.name.startswith("axis_") and value not in GAMEPAD_AXES:
            raise ConfigError(f"gamepad.{f.name} = {value!r}: not a gamepad axis; use one of "
                              f"{', '.join(GAMEPAD_AXES)}")
        elif f.name.startswith("scale_") and value < 0:
            raise ConfigError(f"gamepad.{f.name} must not be negative")
    if g.enable_button == g.enable_turbo_button:
        raise ConfigError("gamepad.enable_turbo_button must differ from gamepad.enable_button")
    if not 0.0 <= g.deadzone < 0.9:
        raise ConfigError("gamepad.deadzone must be between 0 and 0.9")
    if not 0.0 <= g.expo <= 1.0:
        raise ConfigError("gamepad.expo must be between 0 and 1")
    if not 1.0 <= g.poll_rate_hz <= 1000.0:
        raise ConfigError("gamepad.poll_rate_hz must be between 1 and 1000")
    k = config.keyboard
    for name in ("scale_linear", "scale_angular", "initial_hold_ms", "repeat_hold_ms"):
        if getattr(k, name) <= 0:
            raise ConfigError(f"keyboard.{name} must be positive")
    if k.repeat_hold_ms > 1000 or k.initial_hold_ms > 2000:
        raise ConfigError("keyboard hold times: repeat_hold_ms <= 1000, initial_hold_ms <= 2000")
    if not 1.0 <= config.tui.refresh_hz <= 60.0:
        raise ConfigError("tui.refresh_hz must be between 1 and 60")
    if config.tui.camera not in CAMERA_MODES:
        raise ConfigError(f"tui.camera = {config.tui.camera!r}: use {', '.join(CAMERA_MODES[:-1])} "
                          f"or {CAMERA_MODES[-1]}")


def config_from_dict(table: dict[str, Any], source: str = CONFIG_FILENAME) -> Config:
    try:
        shared = {k: v for k, v in table.items() if k != "robots"}
        config = _build(Config, shared, "")
        _validate(config)
        if "robots" in table:
            robots = _robots(table["robots"], shared)
            config = dataclasses.replace(config, robots=robots)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return config


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into `base` key by key, tables recursively (neither is changed)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _robots(raw: Any, shared: dict[str, Any]) -> tuple[RobotEntry, ...]:
    """[[robots]]: each entry's name and URL checked, its overrides merged over the
    workspace's tables and the result validated as a whole config (so a limit that breaks a
    rule with the workspace's other values is named too)."""
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise ConfigError("robots: expected [[robots]] tables (name, url, and overrides)")
    entries: list[RobotEntry] = []
    for i, entry in enumerate(raw):
        name = entry.get("name")
        where = f"robots[{i}]" if not isinstance(name, str) else f"robots[{i}] ({name})"
        if not isinstance(name, str) or not ROBOT_NAME.fullmatch(name):
            raise ConfigError(f"{where}.name = {name!r}: 1 to 32 of a-z 0-9 _ -, starting with "
                              "a letter or digit (it names the robot's episode files)")
        if any(e.name == name for e in entries):
            raise ConfigError(f"{where}.name = {name!r}: used by an earlier robot; names must "
                              "be unique")
        url = entry.get("url")
        if not isinstance(url, str) or not url:
            raise ConfigError(f"{where}.url: a robot URL is required (sim://, serial://..., "
                              "socket://HOST:PORT, ws://HOST:9090, ros2://NS)")
        overrides: dict[str, Any] = {}
        for key, value in entry.items():
            if key in ("name", "url"):
                continue
            if key not in ROBOT_OVERRIDES:
                raise ConfigError(f"unknown key 'robots.{key}' in {where}; known keys here: "
                                  f"name, url, {', '.join(ROBOT_OVERRIDES)}")
            if not isinstance(value, dict):
                raise ConfigError(f"robots.{key} in {where}: expected a table, got {value!r}")
            overrides[key] = value
        overrides = _merged(overrides, {"robot": {"url": url}})
        try:
            config = _build(Config, _merged(shared, overrides), "")
            _validate(config)
        except ConfigError as e:
            # The key named as the robot's: "robots.safety.deadman_in_aut" (in robots[1] (b)).
            message = str(e)
            for key in ROBOT_OVERRIDES:
                message = message.replace(f"'{key}.", f"'robots.{key}.")
                if message.startswith(f"{key}."):
                    message = f"robots.{message}"
            raise ConfigError(f"{message} (in {where})") from None
        entries.append(RobotEntry(name, url, config))
    return tuple(entries)


def load_config(path: Path | None) -> Config:
    """Load and validate a takeover.toml; None or a missing default file gives the defaults."""
    if path is None:
        return Config()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (create one with `takeover init DIR`)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return config_from_dict(table, str(path))


def workspace_config(workspace: Path) -> Config:
    """The config of a workspace directory, or the defaults if it has no takeover.toml."""
    path = workspace / CONFIG_FILENAME
    return load_config(path) if path.exists() else Config()
