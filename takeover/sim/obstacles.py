"""Dynamic obstacles of the simulated room: what the protective field is measured against.

Families (`sim://?obstacles=FAMILY`, `SimConfig.obstacles`; docs/simulator.md):
- `none`: the static room only (the default).
- `box`: a box (0.3-0.5 m a side, turned at random) set down in the robot's path, its nearest
  corner 0.35-0.8 m ahead of the robot's front, once the robot is driving; it is picked up again
  after 3-6 s.
- `person`: a person-sized cylinder (0.25 m radius) that walks across the robot's path, 0.9-1.6
  m ahead, at a walking pace (0.6-1.2 m/s), stops on the path for a moment (as long as the robot
  would take to get there at its present speed, at most 4 s) and walks on. Like a person it
  never walks into a robot: it waits while its next step would touch the robot, and walks on
  once the way is clear. Only a moving robot can hit it.
- `walk-in`: one of the two, chosen by the seed.

Everything is drawn from the episode's seed, so the same seed gives the same obstacle at the
same moment relative to the robot's motion. "The path" is the arc the robot is driving when the
obstacle is placed (its current linear and angular speed), so the obstacle does not depend on
who drives. The box appears beyond the stopping distance of a robot at walking speed: an
obstacle that appears closer than any robot can stop is not what a protective field is for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

OBSTACLE_FAMILIES = ("none", "box", "person", "walk-in")
#: The families as rows of `takeover dagger eval --suite robustness` (dagger/robustness.py).
EVAL_FAMILIES = {"obstacle_box": "box", "obstacle_person": "person"}
PERSON_RADIUS_M = 0.25
_PERSON_SIDES = 12
#: The robot must be driving at least this fast, and on an arc no tighter than this radius, for
#: an obstacle to be placed in its path (a path that curls back would put it on the robot).
_PLACE_MIN_SPEED_MPS = 0.12
_PLACE_MIN_RADIUS_M = 1.5
#: Keep obstacles at least this far from the dock face (the dock stays reachable).
_DOCK_KEEP_OUT_M = 0.35


@dataclass(frozen=True)
class ObstaclePlan:
    """What the seed chose; distances along the robot's arc from its centre."""

    kind: str  # "box" | "person"
    after_s: float  # placed at the first moment the robot drives after this long
    ahead_m: float  # box: gap from the robot's front to the box; person: crossing point
    size_m: float  # box side, or the person's walking speed (m/s) for a person
    hold_s: float  # box: how long it stays
    side: float  # person: +1 from the left, -1 from the right; box: its rotation (rad)


def plan_obstacle(family: str, seed: int) -> ObstaclePlan | None:
    """The obstacle of `family` for the episode of `seed` (None for `none`)."""
    if family not in OBSTACLE_FAMILIES:
        raise ValueError(f"unknown obstacle family {family!r}; use {', '.join(OBSTACLE_FAMILIES)}")
    if family == "none":
        return None
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0B57AC1E]))
    kind = family if family != "walk-in" else ("box" if rng.random() < 0.5 else "person")
    if kind == "box":
        return ObstaclePlan("box", after_s=float(rng.uniform(0.3, 1.5)),
                            ahead_m=float(rng.uniform(0.35, 0.8)), size_m=float(rng.uniform(0.3, 0.5)),
                            hold_s=float(rng.uniform(3.0, 6.0)),
                            side=float(rng.uniform(0.0, math.pi / 2)))
    return ObstaclePlan("person", after_s=float(rng.uniform(0.2, 1.0)),
                        ahead_m=float(rng.uniform(0.9, 1.6)), size_m=float(rng.uniform(0.6, 1.2)),
                        hold_s=0.0, side=1.0 if rng.random() < 0.5 else -1.0)


def _arc_point(x: float, y: float, yaw: float, v: float, w: float, s: float
               ) -> tuple[float, float, float]:
    """Pose reached after arc length s along the arc of (v, w) from (x, y, yaw)."""
    sign = 1.0 if v >= 0 else -1.0
    k = w / v if abs(v) > 1e-9 else 0.0  # curvature; the heading turns by w/|v| per metre
    heading = yaw + k * s * sign
    if abs(k) < 1e-9:
        return x + sign * s * math.cos(yaw), y + sign * s * math.sin(yaw), yaw
    return (x + (math.sin(heading) - math.sin(yaw)) / k,
            y - (math.cos(heading) - math.cos(yaw)) / k, heading)


class DynamicObstacles:
    """The obstacle of one episode, stepped with the simulator (sim time)."""

    def __init__(self, family: str, seed: int, dock_xy: tuple[float, float],
                 robot_radius_m: float) -> None:
        self.plan = plan_obstacle(family, seed)
        self.dock_xy = dock_xy
        self.robot_radius_m = robot_radius_m
        self.placed = False  # its moment has come (it may have found no room on the path)
        self.appeared = False  # it was in the room (stays True after it left)
        self.active = False  # in the room now
        self.kind = self.plan.kind if self.plan is not None else ""
        self._t_placed = 0.0
        self._box: FloatArray | None = None  # (4, 2) corners
        self._person = np.zeros(2)
        self._walk_dir = np.zeros(2)
        self._walk_left_m = 0.0
        self._wait_s = 0.0
        self._pause_at: float | None = None  # walk left when it reaches the path
        self._pause_s = 0.0

    # --- stepping -----------------------------------------------------------------------------

    def step(self, t_s: float, dt_s: float, x: float, y: float, yaw: float, v: float,
             w: float) -> None:
        plan = self.plan
        if plan is None:
            return
        if not self.placed:
            if (t_s >= plan.after_s and abs(v) >= _PLACE_MIN_SPEED_MPS
                    and abs(w) * _PLACE_MIN_RADIUS_M <= abs(v)):
                self._place(t_s, x, y, yaw, v, w)
            return
        if not self.active:
            return
        if plan.kind == "box":
            if t_s - self._t_placed >= plan.hold_s:
                self.active = False  # picked up again
            return
        if self._wait_s > 0:
            self._wait_s -= dt_s
            return
        if self._pause_at is not None and self._walk_left_m <= self._pause_at:
            self._pause_at = None
            self._wait_s = self._pause_s  # stands on the path for a moment
            return
        step = self._walk_dir * plan.size_m * dt_s
        robot = np.array([x, y])
        away = self._person - robot
        gap = float(np.hypot(*away))
        touch = PERSON_RADIUS_M + self.robot_radius_m + 0.02
        if gap < touch + plan.size_m * dt_s and float(np.dot(step, away)) < 0:
            # A person does not walk into a robot: they step around it (no step towards it).
            radial = away / max(gap, 1e-9)
            step = step - np.dot(step, radial) * radial
        self._person = self._person + step
        self._walk_left_m -= plan.size_m * dt_s
        if self._walk_left_m <= 0:
            self.active = False  # walked out of the way (and out of the room)

    def _place(self, t_s: float, x: float, y: float, yaw: float, v: float, w: float) -> None:
        plan = self.plan
        assert plan is not None
        self.placed = True
        self._t_placed = t_s
        if plan.kind == "box":
            half = plan.size_m / 2
            # Centre: the gap ahead of the robot's front plus the box's half diagonal along the
            # arc, so that however it is turned no corner is nearer than the gap.
            s = self.robot_radius_m + plan.ahead_m + half * math.sqrt(2.0)
            cx, cy, _ = _arc_point(x, y, yaw, v, w, s)
            if math.hypot(cx - self.dock_xy[0], cy - self.dock_xy[1]) < half * 1.5 + _DOCK_KEEP_OUT_M:
                return  # the path ends at the dock before there: no obstacle this episode
            c, sn = math.cos(plan.side), math.sin(plan.side)
            corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
            rot = np.array([[c, -sn], [sn, c]])
            self._box = corners @ rot.T + np.array([cx, cy])
            self.active = self.appeared = True
            return
        px, py, heading = _arc_point(x, y, yaw, v, w, plan.ahead_m)
        if math.hypot(px - self.dock_xy[0], py - self.dock_xy[1]) < PERSON_RADIUS_M + _DOCK_KEEP_OUT_M:
            return
        # Walk across the path (perpendicular to it at the crossing point), to get there a
        # little before the robot would at its present speed (starting at most 2.5 m out),
        # stand there until about when it would have passed, and walk on.
        normal = np.array([-math.sin(heading), math.cos(heading)]) * plan.side
        t_robot = plan.ahead_m / abs(v)
        approach = plan.size_m * 0.6 * t_robot
        start = min(approach, 2.5)
        self._wait_s = (approach - start) / plan.size_m
        self._person = np.array([px, py]) + normal * start
        self._walk_dir = -normal
        self._walk_left_m = start + 1.5
        self._pause_at = 1.5
        self._pause_s = min(t_robot, 4.0)
        self.active = self.appeared = True

    # --- geometry -------------------------------------------------------------------------------

    def segments(self) -> tuple[FloatArray, FloatArray] | None:
        """The obstacle's outline as segments a[i] -> b[i] (for the LiDAR and the camera);
        None when no obstacle is in the room. The person's outline is a 12-gon around its
        circle (the LiDAR sees it at most 3.5 % larger)."""
        if not self.active:
            return None
        if self.kind == "box":
            assert self._box is not None
            pts = self._box
        else:
            ang = np.arange(_PERSON_SIDES) * (2 * math.pi / _PERSON_SIDES)
            r = PERSON_RADIUS_M / math.cos(math.pi / _PERSON_SIDES)
            pts = self._person + r * np.stack([np.cos(ang), np.sin(ang)], axis=1)
        return pts, np.roll(pts, -1, axis=0)

    def distance_m(self, x: float, y: float) -> float:
        """From the point (x, y) to the obstacle's surface (inf when none is in the room)."""
        if not self.active:
            return math.inf
        if self.kind == "person":
            return float(np.hypot(*(self._person - np.array([x, y])))) - PERSON_RADIUS_M
        assert self._box is not None
        a, b = self._box, np.roll(self._box, -1, axis=0)
        p = np.array([x, y])
        ab = b - a
        t = np.clip(np.einsum("ij,ij->i", p - a, ab) / np.einsum("ij,ij->i", ab, ab), 0, 1)
        d = float(np.hypot(*(p - (a + t[:, None] * ab)).T).min())
        inside = _inside_convex(p, a, b)
        return -d if inside else d


def _inside_convex(p: FloatArray, a: FloatArray, b: FloatArray) -> bool:
    cross = (b[:, 0] - a[:, 0]) * (p[1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (p[0] - a[:, 0])
    return bool(np.all(cross >= 0) or np.all(cross <= 0))
