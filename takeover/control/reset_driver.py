"""Undock and drive back to a start pose between docking attempts, by odometry alone.

A real base has no teleport: after an attempt the robot stands where it ended (on the charger,
against something, or stalled in the room), and somebody has to bring it back out. This driver
does, in three phases, as opennav_docking's undocking and a staging pose do:

1. **undock**: back out straight (no turning) by `undock_m` of odometry travel. From the
   charger that is along the dock's axis, and it frees a bumper contact anywhere else.
2. **drive**: to the target's position: turn towards it when it is well off the heading, else
   drive forward and steer (a proportional go-to-point controller), slowing near it.
3. **align**: turn in place to the target's heading.

The targets are poses relative to the docked pose (`DockFrame`: where the robot stood when its
charge was confirmed): a new start pose drawn from the start region ([docking.reset]), or the
staging pose straight out from the dock for a retry.

It only proposes commands: the control loop hands them to the Arbiter in RESET mode, which
applies the deadman, the speed and acceleration limits and the protective field, and ends the
reset (IDLE) on any stop; nothing here decides safety. Pure logic on Observations: no clock but
the observations' own stamps, no I/O.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from takeover.config import ResetConfig
from takeover.types import ZERO_COMMAND, Command, Observation, Odometry, Pose2D


class ResetPhase(enum.Enum):
    UNDOCK = "undock"
    DRIVE = "drive"
    ALIGN = "align"
    DONE = "done"


#: Turn in place (no forward motion) while the target's bearing is more than this off the heading.
TURN_FIRST_RAD = math.radians(35.0)
#: Steering gain of the go-to-point phase (rad/s per rad of bearing error).
STEER_GAIN = 1.5
#: Heading gain of the align phase (rad/s per rad of heading error).
ALIGN_GAIN = 2.0
#: The slowest forward or turning speed the controller asks for while short of its tolerance:
#: a real base's wheels do not move below some command.
MIN_V_MPS = 0.03
MIN_W_RADPS = 0.15


@dataclass(frozen=True)
class DockFrame:
    """The docked pose in the odometry frame: the robot's centre and heading on the charger.
    The dock's outward axis (into the room) points the opposite way to that heading."""

    pose: Pose2D

    def out_of_dock(self, distance_m: float, bearing_rad: float = 0.0,
                    heading_off_rad: float = 0.0) -> Pose2D:
        """The pose `distance_m` out from the docked pose at `bearing_rad` off the dock's axis,
        facing the docked pose turned by `heading_off_rad`."""
        d = self.pose
        out = d.yaw_rad + math.pi  # the dock's axis, into the room
        x = d.x_m + distance_m * math.cos(out + bearing_rad)
        y = d.y_m + distance_m * math.sin(out + bearing_rad)
        facing = math.atan2(d.y_m - y, d.x_m - x) + heading_off_rad
        return Pose2D(x, y, _wrap(facing))

    def face(self, radius_m: float) -> Pose2D:
        """The dock face's centre and outward normal (the protective field's docking
        corridor, [safety.field.dock]): `radius_m` ahead of the docked robot's centre."""
        d = self.pose
        return Pose2D(d.x_m + radius_m * math.cos(d.yaw_rad),
                      d.y_m + radius_m * math.sin(d.yaw_rad), _wrap(d.yaw_rad + math.pi))


def scan_points(odom: Odometry, scan_m: np.ndarray) -> np.ndarray:
    """The scan's returns as (N, 2) points in the odometry frame (beam i at 2 pi i / N,
    counter-clockwise from the robot's forward axis; NaN beams dropped)."""
    n = scan_m.shape[0]
    angles = odom.yaw_rad + 2.0 * math.pi * np.arange(n) / n
    ranges = np.asarray(scan_m, dtype=np.float64)
    ok = np.isfinite(ranges)
    return np.stack([odom.x_m + ranges[ok] * np.cos(angles[ok]),
                     odom.y_m + ranges[ok] * np.sin(angles[ok])], axis=1)


#: Draws of a start pose before giving up on one the LiDAR sees free.
START_POSE_DRAWS = 100


def draw_start_pose(frame: DockFrame, config: ResetConfig, rng: np.random.Generator,
                    obstacles: np.ndarray | None = None) -> Pose2D | None:
    """A start pose from the configured region around the dock's axis; with `obstacles`
    ((N, 2) points in the odometry frame, e.g. the LiDAR's returns) one at least
    `clearance_m` from all of them, or None when no draw is."""
    for _ in range(START_POSE_DRAWS):
        distance = float(rng.uniform(config.distance_min_m, config.distance_max_m))
        bearing = math.radians(float(rng.uniform(-config.bearing_deg, config.bearing_deg)))
        heading = math.radians(float(rng.uniform(-config.heading_deg, config.heading_deg)))
        pose = frame.out_of_dock(distance, bearing, heading)
        if obstacles is None or obstacles.size == 0:
            return pose
        gap = np.hypot(obstacles[:, 0] - pose.x_m, obstacles[:, 1] - pose.y_m).min()
        if gap >= config.clearance_m:
            return pose
    return None


def staging_pose(frame: DockFrame, config: ResetConfig) -> Pose2D:
    """Straight out from the docked pose by `staging_m`, facing the dock: where retries start."""
    return frame.out_of_dock(config.staging_m)


class ResetDriver:
    """Proposes the commands of one reset, from the odometry in each observation.

    `start(target)` begins a reset to `target`; `propose(obs)` gives the next command (zero
    once done); `done`, `phase` and `progress` say where it stands.
    """

    def __init__(self, config: ResetConfig) -> None:
        self.config = config
        self.target: Pose2D | None = None
        self.phase = ResetPhase.DONE
        self._undock_from: tuple[float, float] | None = None
        self._start_distance_m: float | None = None
        self._last_distance_m: float | None = None

    @property
    def done(self) -> bool:
        return self.phase is ResetPhase.DONE

    @property
    def active(self) -> bool:
        return self.target is not None and not self.done

    def start(self, target: Pose2D, undock: bool = True) -> None:
        """Begin a reset to `target`; `undock`: back out straight first."""
        self.target = target
        self.phase = ResetPhase.UNDOCK if undock else ResetPhase.DRIVE
        self._undock_from = None
        self._start_distance_m = None
        self._last_distance_m = None

    def cancel(self) -> None:
        self.phase = ResetPhase.DONE
        self.target = None

    @property
    def progress(self) -> float:
        """0..1: how much of the way to the target's position is behind (1 when done)."""
        if self.done:
            return 1.0
        if self._start_distance_m is None or self._last_distance_m is None:
            return 0.0
        if self._start_distance_m <= 0:
            return 1.0
        return max(0.0, min(1.0, 1.0 - self._last_distance_m / self._start_distance_m))

    # --- the PolicyDriver protocol the control loop calls ------------------------------------

    def reset(self) -> None:
        self.cancel()

    def drop_queued_actions(self) -> None:
        """Nothing is queued: every command is computed from the newest odometry."""

    def propose(self, obs: Observation) -> Command | None:
        if self.target is None or self.done:
            return ZERO_COMMAND
        odom = obs.odom
        if self.phase is ResetPhase.UNDOCK:
            command = self._undock(odom)
            if command is not None:
                return command
            self.phase = ResetPhase.DRIVE
        if self.phase is ResetPhase.DRIVE:
            command = self._drive(odom, self.target)
            if command is not None:
                return command
            self.phase = ResetPhase.ALIGN
        if self.phase is ResetPhase.ALIGN:
            command = self._align(odom, self.target)
            if command is not None:
                return command
            self.phase = ResetPhase.DONE
        return ZERO_COMMAND

    # --- phases --------------------------------------------------------------------------------

    def _undock(self, odom: Odometry) -> Command | None:
        if self._undock_from is None:
            self._undock_from = (odom.x_m, odom.y_m)
        backed = math.hypot(odom.x_m - self._undock_from[0], odom.y_m - self._undock_from[1])
        if backed >= self.config.undock_m:
            return None
        return Command(-self.config.undock_mps, 0.0)

    def _drive(self, odom: Odometry, target: Pose2D) -> Command | None:
        cfg = self.config
        dx, dy = target.x_m - odom.x_m, target.y_m - odom.y_m
        distance = math.hypot(dx, dy)
        if self._start_distance_m is None:
            self._start_distance_m = distance
        self._last_distance_m = distance
        if distance <= cfg.position_tolerance_m:
            return None
        bearing = _wrap(math.atan2(dy, dx) - odom.yaw_rad)
        w = _clip(STEER_GAIN * bearing, cfg.turn_radps)
        if abs(bearing) > TURN_FIRST_RAD:
            return Command(0.0, math.copysign(max(abs(w), MIN_W_RADPS), w))
        # Slow down over the last half metre (and while the heading is still off), so the
        # Arbiter's deceleration limit never has to cut the command short of the target.
        v = min(cfg.cruise_mps, max(MIN_V_MPS, distance)) * math.cos(bearing)
        return Command(max(MIN_V_MPS, v), w)

    def _align(self, odom: Odometry, target: Pose2D) -> Command | None:
        cfg = self.config
        error = _wrap(target.yaw_rad - odom.yaw_rad)
        if abs(error) <= math.radians(cfg.heading_tolerance_deg):
            return None
        w = _clip(ALIGN_GAIN * error, cfg.turn_radps)
        return Command(0.0, math.copysign(max(abs(w), MIN_W_RADPS), w))


def _wrap(a: float) -> float:
    return math.atan2(math.sin(a), math.cos(a))


def _clip(x: float, limit: float) -> float:
    return max(-limit, min(limit, x))
