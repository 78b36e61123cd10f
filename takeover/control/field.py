"""The LiDAR protective field: speed-and-separation on every command (docs/safety.md).

Pure and fast (numpy over the beams, no state but the caller's): from the newest scan, in the
robot frame, it finds how far the robot can travel along the arc the command would drive
before its footprint comes within the protective distance of a return, and limits the speed so
that the robot can still stop there with the braking deceleration it is counted on for:

    v <= -a T + sqrt((a T)^2 + 2 a d)        (T = 0:  v <= sqrt(2 a d))

where d is that free travel, a the braking deceleration and T the reaction time (command to
braking wheels, plus the scan's age). The robot's footprint is a disc of `footprint_radius_m`
centred on the wheel axle and the LiDAR; the protective distance pads it, so d is the travel
before the padded disc touches a return: straight ahead that is the issue's
v <= sqrt(2 a (d_contact - d_protect)), and at the sides the same margin holds. The speed is
limited along the same arc (v and w scaled together), so the path the clearance was computed
for is the path driven. With no free travel left the command is a protective stop; a turn in
place sweeps nothing with a round footprint and passes unless a return is inside the body.

Fail safe: no scan, or one older than `scan_max_age_ms`, stops the robot (BLIND); fewer than
`min_valid_beam_frac` valid beams within +-45 degrees of the direction of motion count as
blocked (STOPPED).

Docking corridor: when the robot is near the dock face, on its axis and facing it, returns from
the dock and the wall around it are muted, and the robot may approach them at no more than
`creep_mps`; any other return still counts.

Scan convention (takeover.types.Observation): N beams over 360 degrees, counter-clockwise from
the forward axis, beam i at 2*pi*i/N, NaN where nothing returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from takeover.config import FieldConfig
from takeover.types import ZERO_COMMAND, Command, FieldState, FieldStatus, Odometry, Pose2D

FloatArray = npt.NDArray[np.float64]

#: Half-width of the sector around the direction of motion where valid beams are counted.
SECTOR_HALF_RAD = math.radians(45.0)
#: After a protective stop, travel resumes only once the free travel exceeds this: no chatter
#: between stop and creep at the edge of the protective distance.
RESUME_HYSTERESIS_M = 0.05
#: Returns at most this far in front of the dock face (and behind it) are the dock's, muted in
#: the corridor (eight times the simulated LiDAR's 1 cm noise); sideways the muted patch spans
#: the corridor plus the padded footprint.
DOCK_MUTE_FRONT_M = 0.08
#: Linear speeds below this are a turn in place (0.1 mm/s: no arc to speak of).
MIN_TRAVEL_MPS = 1e-4
#: Curvature below which the arc is treated as a straight line (deviation < 1 um over 1 m).
_STRAIGHT_CURVATURE = 1e-6
_TWO_PI = 2.0 * math.pi


def stopping_distance_m(v_mps: float, decel_mps2: float, reaction_s: float) -> float:
    """Travel from the moment a stop is decided until standstill, at speed |v|."""
    v = abs(v_mps)
    return v * reaction_s + v * v / (2.0 * decel_mps2)


def allowed_speed_mps(free_m: float, decel_mps2: float, reaction_s: float) -> float:
    """The largest speed whose stopping distance fits in `free_m` (inverse of the above)."""
    if free_m <= 0.0:
        return 0.0
    at = decel_mps2 * reaction_s
    return -at + math.sqrt(at * at + 2.0 * decel_mps2 * free_m)


def free_travel_m(x: FloatArray, y: FloatArray, v_mps: float, w_radps: float, radius_m: float,
                  limit_m: float) -> float:
    """How far (arc length, m) the robot can drive along the arc of (v, w) before a disc of
    `radius_m` around it first reaches one of the points (x, y), robot frame; at most
    `limit_m`. A point the disc already covers blocks at once if the motion approaches it,
    and not until the arc brings the disc back to it if the motion leaves it."""
    if v_mps == 0.0 or x.size == 0:
        return limit_m
    # Mirror a reverse motion onto a forward one: X = sign(v) x, curvature w / v.
    if v_mps < 0.0:
        x = -x
    k = w_radps / v_mps
    if k < 0.0:  # and a clockwise arc onto a counter-clockwise one
        y = -y
        k = -k
    r2 = radius_m * radius_m
    if k * limit_m < _STRAIGHT_CURVATURE:
        near = np.abs(y) <= radius_m
        if not near.any():
            return limit_m
        xs, h = x[near], np.sqrt(r2 - y[near] ** 2)
        if np.any((np.abs(xs) <= h) & (xs > 0.0)):
            return 0.0
        ahead = xs - h
        ahead = ahead[ahead > 0.0]
        return min(limit_m, float(ahead.min())) if ahead.size else limit_m
    big_r = 1.0 / k
    dy = y - big_r
    rho = np.hypot(x, dy)
    reach = np.abs(rho - big_r) <= radius_m
    if not reach.any():
        return limit_m
    x, dy, rho = x[reach], dy[reach], rho[reach]
    # The robot starts at angle -pi/2 around the centre (0, R) and turns counter-clockwise.
    # psi: how far it must turn to line up with the point; alpha: half the window of angles
    # in which the disc covers it.
    psi = np.mod(np.arctan2(dy, x) + math.pi / 2, _TWO_PI)
    cos_alpha = (big_r * big_r + rho * rho - r2) / (2.0 * big_r * np.maximum(rho, 1e-12))
    alpha = np.arccos(np.clip(cos_alpha, -1.0, 1.0))
    delta0 = np.where(psi > math.pi, _TWO_PI - psi, -psi)  # the robot's angle minus the point's
    inside = np.abs(delta0) <= alpha
    if np.any(inside & (delta0 < 0.0)):
        return 0.0  # covered and getting closer
    turn = np.where(inside, _TWO_PI - alpha - delta0, np.mod(-alpha - delta0, _TWO_PI))
    return min(limit_m, float(turn.min()) * big_r)


@dataclass(frozen=True)
class FieldDecision:
    command: Command
    status: FieldStatus


class ProtectiveField:
    """The filter of one robot's commands. `apply` is pure apart from the beam-angle cache."""

    def __init__(self, config: FieldConfig) -> None:
        self.config = config
        self._beams = -1
        self._cos: FloatArray = np.empty(0)
        self._sin: FloatArray = np.empty(0)
        self._angles: FloatArray = np.empty(0)

    def _beam_angles(self, n: int) -> None:
        if n != self._beams:
            self._angles = np.arange(n, dtype=np.float64) * (_TWO_PI / n)
            self._cos, self._sin = np.cos(self._angles), np.sin(self._angles)
            self._beams = n

    def lookahead_m(self, v_mps: float, reaction_s: float) -> float:
        """How far along the arc the field looks: the horizon at this speed, and at least the
        warning distance and the stopping distance."""
        c = self.config
        return max(abs(v_mps) * c.horizon_s, c.warning_m,
                   stopping_distance_m(v_mps, c.brake_decel_mps2, reaction_s)) + 1e-3

    def apply(self, command: Command, scan_m: npt.NDArray[np.floating] | None,
              scan_age_s: float, pose: Odometry | None = None, dock: Pose2D | None = None,
              stopped_before: bool = False) -> FieldDecision:
        """The command the field lets through, and why.

        scan_age_s: how old the scan is (on the link's clock). pose and dock (odometry frame)
        place the docking corridor; without both there is none. stopped_before: the previous
        tick was a protective stop (resume only with RESUME_HYSTERESIS_M to spare)."""
        c = self.config
        if scan_m is None:
            return FieldDecision(ZERO_COMMAND, FieldStatus(
                FieldState.BLIND, reason="protective field: no LiDAR scan, robot stopped"))
        if scan_age_s * 1000.0 > c.scan_max_age_ms:
            return FieldDecision(ZERO_COMMAND, FieldStatus(
                FieldState.BLIND, reason=f"protective field: LiDAR scan {scan_age_s * 1000:.0f} ms "
                f"old (limit {c.scan_max_age_ms:.0f}), robot stopped"))
        v, w = command.v_mps, command.w_radps
        scan = np.asarray(scan_m, dtype=np.float64)
        n = scan.shape[0]
        if n == 0:
            return FieldDecision(ZERO_COMMAND, FieldStatus(
                FieldState.BLIND, reason="protective field: empty LiDAR scan, robot stopped"))
        self._beam_angles(n)
        valid = np.isfinite(scan)
        radius = c.footprint_radius_m
        padded = radius + c.protective_m
        if abs(v) < MIN_TRAVEL_MPS:  # a turn in place (a speed this small has no arc to speak of)
            command, v = Command(0.0, w), 0.0
        reaction = c.reaction_time_s + max(0.0, scan_age_s)
        lookahead = self.lookahead_m(v, reaction)
        # Only returns within reach of the path over the look-ahead can matter (in a room, the
        # few near ones; the arc geometry below then runs on a handful of points).
        near = valid & (scan <= lookahead + padded)
        r = scan[near]
        x, y = r * self._cos[near], r * self._sin[near]
        muted = (self._corridor_mask(pose, dock, x, y)
                 if pose is not None and dock is not None else None)
        if muted is not None and not muted.any():
            muted = None
        # A return inside the body (the dock's, in the corridor, does not count: the robot
        # touches it to dock, and may turn and back away).
        inside = r if muted is None else r[~muted]
        touching = bool(inside.size) and float(inside.min()) < radius
        if v == 0.0:
            if w != 0.0 and touching:
                return FieldDecision(ZERO_COMMAND, FieldStatus(
                    FieldState.STOPPED, reason="protective field: a return inside the footprint, "
                    "no turn"))
            return FieldDecision(command, FieldStatus(FieldState.CLEAR))
        # Too few valid beams towards the motion: it cannot see, so it may not go.
        heading = (w / v) * min(lookahead, 1.0) / 2.0  # the chord's direction, mirrored frame
        direction = heading if v > 0 else math.pi - heading
        off = np.abs(np.mod(self._angles - direction + math.pi, _TWO_PI) - math.pi)
        sector = off <= SECTOR_HALF_RAD
        in_sector = int(np.count_nonzero(sector))
        if in_sector and np.count_nonzero(valid & sector) < c.min_valid_beam_frac * in_sector:
            return FieldDecision(Command(0.0, 0.0 if touching else w),
                                 FieldStatus(FieldState.STOPPED, reason="protective field: too "
                                             "few LiDAR returns towards the motion, blocked"))
        spare = RESUME_HYSTERESIS_M if stopped_before else 0.0
        free = free_travel_m(x, y, v, w, padded, lookahead)
        allowed = allowed_speed_mps(free - spare, c.brake_decel_mps2, reaction)
        if muted is not None:
            # In the corridor the dock (and the wall around it) may be approached at a creep;
            # any other return counts as everywhere else.
            free_other = free_travel_m(x[~muted], y[~muted], v, w, padded, lookahead)
            allowed_other = allowed_speed_mps(free_other - spare, c.brake_decel_mps2, reaction)
            if allowed < min(abs(v), allowed_other):  # the dock is what would slow it
                allowed = min(allowed_other, max(allowed, c.creep_mps))
                out = command
                if allowed < abs(v):
                    out = Command(v * allowed / abs(v), w * allowed / abs(v))
                return FieldDecision(out, FieldStatus(
                    FieldState.CORRIDOR, max(0.0, free), f"docking corridor: the dock may be "
                    f"reached at {min(allowed, abs(v)):.2f} m/s"))
            free, allowed = free_other, allowed_other
        clearance = max(0.0, free)
        if allowed >= abs(v):
            if clearance < c.warning_m:
                return FieldDecision(command, FieldStatus(
                    FieldState.WARNING, clearance,
                    f"protective field: {clearance:.2f} m clear along the path"))
            return FieldDecision(command, FieldStatus(FieldState.CLEAR, clearance))
        if allowed <= 1e-3:
            # Protective stop; a turn in place sweeps nothing with a round footprint.
            return FieldDecision(Command(0.0, 0.0 if touching else w), FieldStatus(
                FieldState.STOPPED, clearance, f"protective field: stopped, {clearance:.2f} m "
                "clear along the path"))
        scale = allowed / abs(v)
        return FieldDecision(Command(v * scale, w * scale), FieldStatus(
            FieldState.LIMITED, clearance, f"protective field: slowed to {allowed:.2f} m/s, "
            f"{clearance:.2f} m clear"))

    def in_corridor(self, pose: Odometry, dock: Pose2D) -> bool:
        """The robot's centre near the dock face, on its axis, facing it."""
        d = self.config.dock
        cd, sd = math.cos(dock.yaw_rad), math.sin(dock.yaw_rad)
        dx, dy = pose.x_m - dock.x_m, pose.y_m - dock.y_m
        out = cd * dx + sd * dy
        lateral = -sd * dx + cd * dy
        heading = math.atan2(math.sin(pose.yaw_rad - dock.yaw_rad - math.pi),
                             math.cos(pose.yaw_rad - dock.yaw_rad - math.pi))
        return (0.0 <= out <= d.length_m and abs(lateral) <= d.half_width_m
                and abs(heading) <= math.radians(d.heading_deg))

    def _corridor_mask(self, pose: Odometry, dock: Pose2D, x: FloatArray, y: FloatArray
                       ) -> npt.NDArray[np.bool_] | None:
        """Which returns are the dock's (and the wall's around it), when in the corridor."""
        if not self.in_corridor(pose, dock):
            return None
        c = self.config
        # Robot frame -> dock frame (x out of the face, y along it): one rotation by the
        # robot's yaw relative to the dock, then the robot's position in the dock frame.
        cd, sd = math.cos(dock.yaw_rad), math.sin(dock.yaw_rad)
        dx, dy = pose.x_m - dock.x_m, pose.y_m - dock.y_m
        rel = pose.yaw_rad - dock.yaw_rad
        cr, sr = math.cos(rel), math.sin(rel)
        out = cr * x - sr * y + (cd * dx + sd * dy)
        along = sr * x + cr * y + (-sd * dx + cd * dy)
        half = c.dock.half_width_m + c.footprint_radius_m + c.protective_m + 0.15
        mask: npt.NDArray[np.bool_] = (out <= DOCK_MUTE_FRONT_M) & (np.abs(along) <= half)
        return mask
