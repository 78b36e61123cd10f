"""The protective field's geometry (control/field.py): free travel along arcs, the speed limit,
protective stops, turns in place, blindness, the docking corridor; and the property that no
command it passes reaches an obstacle at a speed it cannot stop from."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from takeover.config import FieldConfig
from takeover.control.field import (
    ProtectiveField,
    allowed_speed_mps,
    free_travel_m,
    stopping_distance_m,
)
from takeover.types import Command, FieldState, Odometry, Pose2D

BEAMS = 180
ANGLES = np.arange(BEAMS) * (2 * math.pi / BEAMS)
CFG = FieldConfig()
RADIUS = CFG.footprint_radius_m
PADDED = RADIUS + CFG.protective_m


def scan_of_points(points: list[tuple[float, float]], far_m: float = 6.0) -> np.ndarray:
    """A scan in open space (every beam returns at `far_m`) with returns at these points."""
    scan = np.full(BEAMS, far_m, dtype=np.float32)
    for x, y in points:
        i = round(math.atan2(y, x) / (2 * math.pi / BEAMS)) % BEAMS
        scan[i] = min(scan[i], math.hypot(x, y))
    return scan


def wall_ahead(distance_m: float) -> np.ndarray:
    """A wall across the robot's path at x = distance_m (robot frame)."""
    with np.errstate(divide="ignore"):
        r = np.where(np.cos(ANGLES) > 1e-9, distance_m / np.cos(ANGLES), np.inf)
    return np.minimum(r, 6.0).astype(np.float32)


def pts(*xy: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    a = np.array(xy, dtype=np.float64)
    return a[:, 0], a[:, 1]


# --- geometry -----------------------------------------------------------------------------


def test_free_travel_straight_ahead_and_behind() -> None:
    x, y = pts((1.0, 0.0))
    assert free_travel_m(x, y, 0.3, 0.0, 0.2, 5.0) == pytest.approx(0.8)
    assert free_travel_m(x, y, -0.3, 0.0, 0.2, 5.0) == 5.0  # reversing away from it
    x, y = pts((-1.0, 0.1))
    assert free_travel_m(x, y, -0.3, 0.0, 0.2, 5.0) == pytest.approx(1.0 - math.sqrt(0.2**2 - 0.1**2))
    x, y = pts((1.0, 0.25))  # beside the swept corridor
    assert free_travel_m(x, y, 0.3, 0.0, 0.2, 5.0) == 5.0
    assert free_travel_m(x, y, 0.3, 0.0, 0.2, 0.5) == 0.5  # capped at the look-ahead


def test_free_travel_along_an_arc_to_a_point_on_it() -> None:
    """Radius-1 arc to the left; the point a quarter turn along it at (1, 1). The disc touches
    it where the chord to it equals the disc's radius."""
    x, y = pts((1.0, 1.0))
    r = 0.2
    expected = math.pi / 2 - 2 * math.asin(r / 2)
    assert free_travel_m(x, y, 0.5, 0.5, r, 5.0) == pytest.approx(expected, abs=1e-9)
    # The same arc mirrored: clockwise to (1, -1), and reversing to (-1, 1) and (-1, -1).
    assert free_travel_m(*pts((1.0, -1.0)), 0.5, -0.5, r, 5.0) == pytest.approx(expected, abs=1e-9)
    assert free_travel_m(*pts((-1.0, 1.0)), -0.5, -0.5, r, 5.0) == pytest.approx(expected, abs=1e-9)
    assert free_travel_m(*pts((-1.0, -1.0)), -0.5, 0.5, r, 5.0) == pytest.approx(expected, abs=1e-9)


def test_a_point_the_footprint_covers_blocks_only_motion_towards_it() -> None:
    x, y = pts((0.25, 0.0))
    assert free_travel_m(x, y, 0.2, 0.0, 0.3, 5.0) == 0.0
    assert free_travel_m(x, y, -0.2, 0.0, 0.3, 5.0) == 5.0
    # Turning away on a tight circle, the disc comes back to it after most of a turn.
    back = free_travel_m(x, y, -0.2, 1.0, 0.3, 5.0)
    assert 0.2 < back < 2 * math.pi * 0.2


def test_speed_limit_is_the_inverse_of_the_stopping_distance() -> None:
    for v in (0.05, 0.2, 0.4, 0.6):
        d = stopping_distance_m(v, 0.8, 0.15)
        assert allowed_speed_mps(d, 0.8, 0.15) == pytest.approx(v)
    assert allowed_speed_mps(0.3, 0.8, 0.0) == pytest.approx(math.sqrt(2 * 0.8 * 0.3))
    assert allowed_speed_mps(-0.1, 0.8, 0.15) == 0.0


# --- the filter ---------------------------------------------------------------------------


def field(**overrides: object) -> ProtectiveField:
    return ProtectiveField(dataclasses.replace(CFG, **overrides))  # type: ignore[arg-type]


def test_open_space_passes_the_command_unchanged() -> None:
    d = field().apply(Command(0.4, 0.3), np.full(BEAMS, 6.0, np.float32), 0.0)
    assert d.command == Command(0.4, 0.3) and d.status.state is FieldState.CLEAR


def test_speed_is_limited_along_the_same_arc_before_a_wall() -> None:
    f = field()
    d = f.apply(Command(0.4, 0.1), wall_ahead(0.45), 0.0)
    assert d.status.state is FieldState.LIMITED
    assert 0.0 < d.command.v_mps < 0.4
    assert d.command.w_radps / d.command.v_mps == pytest.approx(0.1 / 0.4)  # same curvature
    stop = stopping_distance_m(d.command.v_mps, CFG.brake_decel_mps2, CFG.reaction_time_s)
    assert stop <= d.status.clearance_m + 1e-9 < 0.45 - PADDED + 0.01


def test_protective_stop_inside_the_protective_distance_but_a_turn_in_place_passes() -> None:
    d = field().apply(Command(0.2, 0.5), wall_ahead(RADIUS + 0.05), 0.0)
    assert d.status.state is FieldState.STOPPED
    assert d.command == Command(0.0, 0.5), "turning in place sweeps nothing with a round base"
    # Reversing away from the wall is free.
    d = field().apply(Command(-0.2, 0.0), wall_ahead(RADIUS + 0.05), 0.0)
    assert d.command == Command(-0.2, 0.0)
    # A return inside the body (contact): no turn either.
    d = field().apply(Command(0.0, 0.5), scan_of_points([(0.1, 0.0)]), 0.0)
    assert d.command == Command(0.0, 0.0) and d.status.state is FieldState.STOPPED


def test_no_scan_or_a_stale_one_stops_the_robot_and_says_so() -> None:
    d = field().apply(Command(0.2, 0.0), None, 0.0)
    assert d.command == Command(0.0, 0.0) and d.status.state is FieldState.BLIND
    assert "no LiDAR scan" in d.status.reason
    d = field().apply(Command(0.2, 0.0), np.full(BEAMS, 6.0, np.float32), 0.35)
    assert d.command == Command(0.0, 0.0) and d.status.state is FieldState.BLIND
    assert "350 ms old" in d.status.reason


def test_too_few_valid_beams_towards_the_motion_is_blocked() -> None:
    scan = np.full(BEAMS, 6.0, np.float32)
    ahead = np.abs(np.mod(ANGLES + math.pi, 2 * math.pi) - math.pi) < math.radians(40)
    scan[ahead] = np.nan
    d = field().apply(Command(0.2, 0.0), scan, 0.0)
    assert d.command.v_mps == 0.0 and d.status.state is FieldState.STOPPED
    assert "too few" in d.status.reason
    assert field().apply(Command(-0.2, 0.0), scan, 0.0).command == Command(-0.2, 0.0)
    assert field(min_valid_beam_frac=0.0).apply(Command(0.2, 0.0), scan, 0.0).command == \
        Command(0.2, 0.0)


def test_the_stop_holds_until_the_path_is_clear_by_a_margin() -> None:
    f = field()
    scan = wall_ahead(PADDED + 0.02)  # 2 cm of free travel: barely moving
    assert f.apply(Command(0.3, 0.0), scan, 0.0).status.state is FieldState.LIMITED
    held = f.apply(Command(0.3, 0.0), scan, 0.0, stopped_before=True)
    assert held.status.state is FieldState.STOPPED and held.command.v_mps == 0.0


# --- the docking corridor -----------------------------------------------------------------

DOCK = Pose2D(0.0, 0.0, 0.0)  # the face at the origin, facing +x (into the room)


def dock_scan(robot: Odometry) -> np.ndarray:
    """The dock's face (0.3 m wide) and the wall 8 cm behind it, seen from `robot`."""
    points = [(0.0, y) for y in np.linspace(-0.15, 0.15, 31)]
    points += [(-0.08, y) for y in np.linspace(-1.5, 1.5, 151) if abs(y) > 0.15]
    c, s = math.cos(robot.yaw_rad), math.sin(robot.yaw_rad)
    local = [((px - robot.x_m) * c + (py - robot.y_m) * s,
              -(px - robot.x_m) * s + (py - robot.y_m) * c) for px, py in points]
    return scan_of_points(local)


def test_in_the_corridor_the_robot_may_creep_to_the_dock_face() -> None:
    robot = Odometry(RADIUS + 0.05, 0.0, math.pi)  # 5 cm from the face, on its axis, facing it
    scan = dock_scan(robot)
    f = field()
    outside = f.apply(Command(0.2, 0.0), scan, 0.0)  # no dock known: it is an obstacle
    assert outside.status.state is FieldState.STOPPED
    d = f.apply(Command(0.2, 0.0), scan, 0.0, pose=robot, dock=DOCK)
    assert d.status.state is FieldState.CORRIDOR
    assert d.command.v_mps == pytest.approx(CFG.creep_mps)
    assert f.apply(Command(0.05, 0.0), scan, 0.0, pose=robot, dock=DOCK).command == Command(0.05, 0.0)


def test_off_the_corridor_the_dock_is_an_obstacle_like_any_other() -> None:
    robot = Odometry(RADIUS + 0.05, 0.25, math.pi)  # 25 cm off the dock's axis
    d = field().apply(Command(0.2, 0.0), dock_scan(robot), 0.0, pose=robot, dock=DOCK)
    assert d.status.state is FieldState.STOPPED and d.command.v_mps == 0.0


def test_an_obstacle_in_the_corridor_still_stops_the_robot() -> None:
    robot = Odometry(0.6, 0.0, math.pi)
    scan = np.minimum(dock_scan(robot), scan_of_points([(RADIUS + 0.05, 0.0)]))  # a box
    d = field().apply(Command(0.2, 0.0), scan, 0.0, pose=robot, dock=DOCK)
    assert d.status.state is FieldState.STOPPED and d.command.v_mps == 0.0


# --- the property ------------------------------------------------------------------------


def min_distance_along_arc(x: np.ndarray, y: np.ndarray, v: float, w: float, length: float
                           ) -> np.ndarray:
    """Exact distance from each point to the robot's centre line over the first `length` m of
    the arc of (v, w), computed apart from the filter: a circle arc's nearest point is the
    foot of the radius when the point's bearing from the centre lies within the arc, else an
    end of it."""
    sign = 1.0 if v > 0 else -1.0
    xs = x * sign
    k = w / v
    ys = y if k >= 0 else -y
    k = abs(k)
    if k < 1e-9:
        t = np.clip(xs, 0.0, length)
        return np.hypot(xs - t, ys)
    big_r = 1.0 / k
    span = length * k  # radians turned
    bearing = np.mod(np.arctan2(ys - big_r, xs) + math.pi / 2, 2 * math.pi)
    rho = np.hypot(xs, ys - big_r)
    end = np.array([math.sin(span) * big_r, big_r - math.cos(span) * big_r])
    ends = np.minimum(np.hypot(xs, ys), np.hypot(xs - end[0], ys - end[1]))
    if span >= 2 * math.pi:
        return np.abs(rho - big_r)
    return np.where(bearing <= span, np.abs(rho - big_r), ends)


@st.composite
def scans(draw: st.DrawFn) -> np.ndarray:
    """A room-like scan: a ring of walls, a few objects at random bearings and ranges, and a
    few beams without a return."""
    scan = np.full(BEAMS, draw(st.floats(0.3, 6.0)), dtype=np.float64)
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, BEAMS - 1))
        width = draw(st.integers(1, 25))
        rng = draw(st.floats(0.05, 3.0))
        scan[np.arange(start, start + width) % BEAMS] = rng
    for i in draw(st.lists(st.integers(0, BEAMS - 1), max_size=20)):
        scan[i] = np.nan
    noise = draw(st.floats(0.0, 0.02))
    scan = scan + noise * np.sin(np.arange(BEAMS) * 7.1)
    return scan.astype(np.float32)


@settings(max_examples=400, deadline=None)
@given(scan=scans(), v=st.floats(-0.6, 0.6), w=st.floats(-2.0, 2.0), age_s=st.floats(0.0, 0.19),
       stopped_before=st.booleans())
def test_no_passed_command_reaches_an_obstacle_at_a_speed_it_cannot_stop_from(
        scan: np.ndarray, v: float, w: float, age_s: float, stopped_before: bool) -> None:
    """For any scan and command: driving the passed command's arc for the reaction time (plus
    the scan's age) and then braking at the braking deceleration, the footprint never comes
    within the protective distance of a return it approaches (nor closer to one than it
    already was), and a turn in place passes only with no return inside the body."""
    f = ProtectiveField(CFG)
    out = f.apply(Command(v, w), scan, age_s, stopped_before=stopped_before).command
    valid = np.isfinite(scan)
    r = scan[valid].astype(np.float64)
    x, y = r * np.cos(ANGLES[valid]), r * np.sin(ANGLES[valid])
    if out.v_mps == 0.0:
        if out.w_radps != 0.0:
            assert r.size == 0 or r.min() >= RADIUS
        return
    assert math.copysign(1, out.v_mps) == math.copysign(1, v) and abs(out.v_mps) <= abs(v)
    assert out.w_radps * v == pytest.approx(w * out.v_mps, abs=1e-12)  # the same arc
    stop = stopping_distance_m(out.v_mps, CFG.brake_decel_mps2, CFG.reaction_time_s + age_s)
    nearest = min_distance_along_arc(x, y, out.v_mps, out.w_radps, stop)
    start = np.hypot(x, y)
    assert np.all(nearest >= np.minimum(PADDED, start) - 1e-6)


def test_touching_the_dock_face_the_robot_may_still_turn_and_back_away() -> None:
    robot = Odometry(RADIUS - 0.01, 0.0, math.pi)  # the face 1 cm inside the body (contact)
    scan = dock_scan(robot)
    f = field()
    assert f.apply(Command(0.0, 0.3), scan, 0.0).command == Command(0.0, 0.0)  # no dock known
    assert f.apply(Command(0.0, 0.3), scan, 0.0, pose=robot, dock=DOCK).command == \
        Command(0.0, 0.3)
    assert f.apply(Command(-0.1, 0.2), scan, 0.0, pose=robot, dock=DOCK).command == \
        Command(-0.1, 0.2)
