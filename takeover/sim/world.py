"""The simulated docking room, generated deterministically from a seed.

A rectangular room (walls at x=0, x=width, y=0, y=depth), boxes of clutter standing against the
walls, and a charging dock: a low box on one wall with a visual marker above it. The dock's wall
and position, the clutter, the start pose and the whole appearance (colours, textures, lighting)
vary with the seed (domain randomisation). The start pose always has the dock within the
camera's field of view: the task is visual docking from where a navigation stack hands over,
not search.

Geometry is held as segment arrays so that the camera, the LiDAR and the collision check can
work on all surfaces at once with numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from takeover.types import Pose2D

FloatArray = npt.NDArray[np.float64]

ROBOT_RADIUS_M = 0.22
DOCK_WIDTH_M = 0.30
DOCK_DEPTH_M = 0.08
DOCK_HEIGHT_M = 0.12
MARKER_WIDTH_M = 0.30
MARKER_Z_M = (0.20, 0.50)
WALL_HEIGHT_M = 2.5

# Segment kinds, used for texturing and for telling the dock apart in collision checks.
KIND_WALL = 0
KIND_CLUTTER = 1
KIND_DOCK = 2


@dataclass(frozen=True)
class Appearance:
    """Per-seed look of the room: colours in [0, 1] RGB, texture scales in metres."""

    wall_rgb: FloatArray
    wall_stripe_period_m: float
    wall_stripe_contrast: float
    floor_rgb_a: FloatArray
    floor_rgb_b: FloatArray
    floor_tile_m: float
    ceiling_rgb: FloatArray
    clutter_rgb: FloatArray  # (n_clutter, 3)
    dock_rgb: FloatArray
    brightness: float
    light_dir_rad: float
    tint_rgb: FloatArray


@dataclass(frozen=True)
class World:
    """One room. Surfaces are segments `seg_a[i] -> seg_b[i]` with `seg_kind[i]`.

    dock: pose of the centre of the dock's front face; yaw is the face's outward normal (into
    the room). A robot is docked when it touches that face facing the opposite way.
    """

    seed: int
    width_m: float
    depth_m: float
    seg_a: FloatArray  # (N, 2)
    seg_b: FloatArray  # (N, 2)
    seg_kind: npt.NDArray[np.int64]  # (N,)
    seg_color: FloatArray  # (N, 3)
    seg_normal_rad: FloatArray  # (N,) outward normal angle, for lighting
    dock: Pose2D
    start: Pose2D
    appearance: Appearance
    dock_wall: int  # index of the wall segment behind the dock, which carries the marker


def _box_segments(cx: float, cy: float, hx: float, hy: float) -> list[tuple[FloatArray, FloatArray, float]]:
    """The four edges of an axis-aligned box as (a, b, outward normal angle)."""
    x0, x1, y0, y1 = cx - hx, cx + hx, cy - hy, cy + hy
    return [
        (np.array([x0, y0]), np.array([x1, y0]), -math.pi / 2),
        (np.array([x1, y0]), np.array([x1, y1]), 0.0),
        (np.array([x1, y1]), np.array([x0, y1]), math.pi / 2),
        (np.array([x0, y1]), np.array([x0, y0]), math.pi),
    ]


def _wall_frame(wall: int, width: float, depth: float) -> tuple[FloatArray, FloatArray, FloatArray, float]:
    """(origin, tangent, inward normal, length) of wall 0..3: south, east, north, west."""
    if wall == 0:
        return np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), width
    if wall == 1:
        return np.array([width, 0.0]), np.array([0.0, 1.0]), np.array([-1.0, 0.0]), depth
    if wall == 2:
        return np.array([width, depth]), np.array([-1.0, 0.0]), np.array([0.0, -1.0]), width
    return np.array([0.0, depth]), np.array([0.0, -1.0]), np.array([1.0, 0.0]), depth


def segment_distance(p: FloatArray, a: FloatArray, b: FloatArray) -> npt.NDArray[np.float64]:
    """Distance from point p (2,) to each segment a[i]-b[i] (N, 2)."""
    ab = b - a
    t = np.clip(np.einsum("ij,ij->i", p - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12), 0, 1)
    closest = a + t[:, None] * ab
    return np.asarray(np.hypot(*(p - closest).T))


def generate_world(seed: int) -> World:
    """Build the room for `seed`; the same seed always gives the same room."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xD0C4]))
    width = float(rng.uniform(4.5, 7.0))
    depth = float(rng.uniform(4.5, 7.0))

    segs: list[tuple[FloatArray, FloatArray, int, FloatArray, float]] = []
    appearance = _random_appearance(rng, n_clutter=8)

    corners = [np.array(c, dtype=float) for c in ((0, 0), (width, 0), (width, depth), (0, depth))]
    wall_normals = [math.pi / 2, math.pi, -math.pi / 2, 0.0]  # inward-facing surfaces
    for i in range(4):
        segs.append((corners[i], corners[(i + 1) % 4], KIND_WALL, appearance.wall_rgb, wall_normals[i]))

    # The dock: on a random wall, away from the corners.
    dock_wall = int(rng.integers(4))
    origin, tangent, inward, length = _wall_frame(dock_wall, width, depth)
    along = float(rng.uniform(1.3, length - 1.3))
    face_centre = origin + tangent * along + inward * DOCK_DEPTH_M
    dock_yaw = math.atan2(inward[1], inward[0])
    dock = Pose2D(float(face_centre[0]), float(face_centre[1]), dock_yaw)
    half = DOCK_WIDTH_M / 2
    back_l = origin + tangent * (along - half)
    back_r = origin + tangent * (along + half)
    front_l, front_r = back_l + inward * DOCK_DEPTH_M, back_r + inward * DOCK_DEPTH_M
    dock_normal = dock_yaw
    segs.append((front_l, front_r, KIND_DOCK, appearance.dock_rgb, dock_normal))
    segs.append((back_l, front_l, KIND_DOCK, appearance.dock_rgb * 0.8, dock_normal - math.pi / 2))
    segs.append((front_r, back_r, KIND_DOCK, appearance.dock_rgb * 0.8, dock_normal + math.pi / 2))

    # Clutter: boxes against the walls, kept clear of the dock's approach.
    n_clutter = int(rng.integers(3, 7))
    placed = 0
    for _ in range(60):
        if placed >= n_clutter:
            break
        wall = int(rng.integers(4))
        o, t, n, wall_len = _wall_frame(wall, width, depth)
        size_t = float(rng.uniform(0.3, 0.9))
        size_n = float(rng.uniform(0.3, 0.55))
        pos = float(rng.uniform(size_t / 2, wall_len - size_t / 2))
        centre = o + t * pos + n * (size_n / 2)
        if wall == dock_wall and abs(pos - along) < 1.2 + size_t / 2:
            continue
        if np.hypot(*(centre - face_centre)) < 1.6:
            continue
        hx = abs(t[0]) * size_t / 2 + abs(n[0]) * size_n / 2
        hy = abs(t[1]) * size_t / 2 + abs(n[1]) * size_n / 2
        colour = appearance.clutter_rgb[placed % len(appearance.clutter_rgb)]
        for a, b, normal in _box_segments(float(centre[0]), float(centre[1]), hx, hy):
            segs.append((a, b, KIND_CLUTTER, colour, normal))
        placed += 1

    seg_a = np.array([s[0] for s in segs], dtype=float)
    seg_b = np.array([s[1] for s in segs], dtype=float)
    seg_kind = np.array([s[2] for s in segs], dtype=np.int64)
    seg_color = np.array([s[3] for s in segs], dtype=float)
    seg_normal = np.array([s[4] for s in segs], dtype=float)

    start = _sample_start(rng, dock, seg_a, seg_b)
    return World(
        seed=seed,
        width_m=width,
        depth_m=depth,
        seg_a=seg_a,
        seg_b=seg_b,
        seg_kind=seg_kind,
        seg_color=seg_color,
        seg_normal_rad=seg_normal,
        dock=dock,
        start=start,
        appearance=appearance,
        dock_wall=dock_wall,
    )


def _sample_start(rng: np.random.Generator, dock: Pose2D, seg_a: FloatArray, seg_b: FloatArray) -> Pose2D:
    """A collision-free start 1.3-3.0 m out from the dock, facing it within +-30 degrees."""
    normal = np.array([math.cos(dock.yaw_rad), math.sin(dock.yaw_rad)])
    tangent = np.array([-normal[1], normal[0]])
    face = np.array([dock.x_m, dock.y_m])
    for _ in range(500):
        r = rng.uniform(1.3, 3.0)
        bearing = rng.uniform(-math.radians(50), math.radians(50))
        p = face + r * (math.cos(bearing) * normal + math.sin(bearing) * tangent)
        if segment_distance(p, seg_a, seg_b).min() < ROBOT_RADIUS_M + 0.25:
            continue
        to_dock = math.atan2(face[1] - p[1], face[0] - p[0])
        yaw = to_dock + rng.uniform(-math.radians(30), math.radians(30))
        return Pose2D(float(p[0]), float(p[1]), float(math.atan2(math.sin(yaw), math.cos(yaw))))
    raise RuntimeError("could not place a collision-free start pose")  # pragma: no cover


def _random_appearance(rng: np.random.Generator, n_clutter: int) -> Appearance:
    def colour(lo: float = 0.15, hi: float = 0.9) -> FloatArray:
        return rng.uniform(lo, hi, size=3)

    return Appearance(
        wall_rgb=colour(0.35, 0.9),
        wall_stripe_period_m=float(rng.uniform(0.2, 1.2)),
        wall_stripe_contrast=float(rng.uniform(0.0, 0.25)),
        floor_rgb_a=colour(0.2, 0.7),
        floor_rgb_b=colour(0.2, 0.7),
        floor_tile_m=float(rng.uniform(0.25, 0.8)),
        ceiling_rgb=colour(0.6, 0.95),
        clutter_rgb=rng.uniform(0.1, 0.9, size=(n_clutter, 3)),
        dock_rgb=colour(0.1, 0.5),
        brightness=float(rng.uniform(0.65, 1.25)),
        light_dir_rad=float(rng.uniform(-math.pi, math.pi)),
        tint_rgb=rng.uniform(0.85, 1.15, size=3),
    )
