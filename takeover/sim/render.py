"""Camera and LiDAR rendering by 2D ray casting (numpy, vectorised over rays and segments).

The camera is a pinhole looking forward from the robot, at `CAMERA_HEIGHT_M`. Every column
casts one ray: the nearest tall surface (wall or clutter) fills the column between floor and
ceiling, the low dock box is drawn in front of it, and the floor is cast per pixel to a tiled
texture. The dock's marker (a fixed binary pattern, like an ArUco tag) sits on the wall above
the dock. Lighting and colours come from the world's per-seed appearance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from takeover.sim.world import (
    DOCK_HEIGHT_M,
    KIND_CLUTTER,
    KIND_DOCK,
    MARKER_WIDTH_M,
    MARKER_Z_M,
    WALL_HEIGHT_M,
    World,
)

CAMERA_HEIGHT_M = 0.30
CAMERA_FORWARD_M = 0.15
LIDAR_HEIGHT_M = 0.08  # low enough to see the dock

# The dock's marker: 6x6 cells, black border, fixed 4x4 code inside (asymmetric on purpose, so
# that it tells left from right).
_MARKER_CODE = np.array(
    [
        [1, 0, 1, 1],
        [0, 1, 0, 0],
        [1, 1, 0, 1],
        [0, 0, 1, 0],
    ],
    dtype=np.float64,
)
MARKER_CELLS = np.pad(_MARKER_CODE, 1)  # 6x6, border cells are 0 (black)

FloatArray = npt.NDArray[np.float64]
#: The colour of dynamic obstacles (sim/obstacles.py) in the camera: safety orange.
OBSTACLE_RGB = np.array([0.95, 0.45, 0.1])


def cast_rays(
    origin: FloatArray, dirs: FloatArray, seg_a: FloatArray, seg_b: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Distance along each unit ray to each segment, and where along the segment it hit.

    origin (2,), dirs (R, 2), seg_a/seg_b (S, 2) -> t (R, S) with inf for misses, s (R, S) in [0, 1].
    """
    edge = seg_b - seg_a  # (S, 2)
    rel = seg_a - origin  # (S, 2)
    denom = dirs[:, 0:1] * edge[None, :, 1] - dirs[:, 1:2] * edge[None, :, 0]  # (R, S)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (rel[None, :, 0] * edge[None, :, 1] - rel[None, :, 1] * edge[None, :, 0]) / denom
        s = (rel[None, :, 0] * dirs[:, 1:2] - rel[None, :, 1] * dirs[:, 0:1]) / denom
    hit = (np.abs(denom) > 1e-12) & (t > 1e-6) & (s >= 0.0) & (s <= 1.0)
    return np.where(hit, t, np.inf), np.where(hit, s, 0.0)


@dataclass(frozen=True)
class CameraModel:
    width_px: int = 96
    height_px: int = 96
    hfov_deg: float = 90.0

    @property
    def focal_px(self) -> float:
        return (self.width_px / 2) / math.tan(math.radians(self.hfov_deg) / 2)


class Renderer:
    """Renders camera frames and LiDAR scans of one world. Precomputes per-camera constants."""

    def __init__(self, world: World, camera: CameraModel, lidar_beams: int = 180,
                 lidar_max_range_m: float = 8.0) -> None:
        self.world = world
        self.camera = camera
        self.lidar_beams = lidar_beams
        self.lidar_max_range_m = lidar_max_range_m
        # The marker's cells (sim/perturb.py covers some of them: -1 draws the wall instead).
        self.marker_cells: FloatArray = MARKER_CELLS
        w, h, f = camera.width_px, camera.height_px, camera.focal_px
        # Column ray offsets (left of centre positive) and row heights in the image plane.
        self._col_offset = np.arctan(((w / 2) - (np.arange(w) + 0.5)) / f)  # (W,)
        self._col_cos = np.cos(self._col_offset)
        self._row_y = (h / 2) - (np.arange(h) + 0.5)  # (H,) +up
        self._lidar_angles = np.linspace(0, 2 * math.pi, lidar_beams, endpoint=False)
        tall = world.seg_kind != KIND_DOCK
        self._tall = np.flatnonzero(tall)
        self._dock = np.flatnonzero(~tall)
        app = world.appearance
        normals = world.seg_normal_rad
        shade = 0.65 + 0.35 * np.abs(np.cos(normals - app.light_dir_rad))
        self._seg_rgb = world.seg_color * shade[:, None]
        self._seg_len = np.hypot(*(world.seg_b - world.seg_a).T)
        self._light = app.brightness * app.tint_rgb
        self._is_clutter = world.seg_kind == KIND_CLUTTER
        # Floor and ceiling rows never change with pose except through the floor texture.
        below = self._row_y < 0
        self._floor_rows = np.flatnonzero(below)
        self._floor_depth = CAMERA_HEIGHT_M * f / -self._row_y[below]  # (Hf,) along the axis

    def camera_origin(self, x: float, y: float, yaw: float) -> FloatArray:
        return np.array([x + CAMERA_FORWARD_M * math.cos(yaw), y + CAMERA_FORWARD_M * math.sin(yaw)])

    def render(self, x: float, y: float, yaw: float, rng: np.random.Generator | None = None,
               extra: tuple[FloatArray, FloatArray] | None = None) -> npt.NDArray[np.uint8]:
        """The camera frame (H, W, 3) uint8 RGB for the robot at (x, y, yaw). extra: more tall
        surfaces as segments a[i] -> b[i] (the dynamic obstacles), drawn in OBSTACLE_RGB."""
        world, cam = self.world, self.camera
        app = world.appearance
        h, w, f = cam.height_px, cam.width_px, cam.focal_px
        origin = self.camera_origin(x, y, yaw)
        angles = yaw + self._col_offset
        dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (W, 2)

        seg_a, seg_b = world.seg_a, world.seg_b
        tall, seg_rgb, seg_len, is_clutter = self._tall, self._seg_rgb, self._seg_len, self._is_clutter
        if extra is not None:
            n, m = len(seg_a), len(extra[0])
            seg_a, seg_b = np.concatenate([seg_a, extra[0]]), np.concatenate([seg_b, extra[1]])
            tall = np.concatenate([tall, n + np.arange(m)])
            seg_rgb = np.concatenate([seg_rgb, np.tile(OBSTACLE_RGB, (m, 1))])
            seg_len = np.concatenate([seg_len, np.hypot(*(extra[1] - extra[0]).T)])
            is_clutter = np.concatenate([is_clutter, np.ones(m, dtype=bool)])
        t_all, s_all = cast_rays(origin, dirs, seg_a, seg_b)
        t_tall = t_all[:, tall]
        nearest = np.argmin(t_tall, axis=1)
        cols = np.arange(w)
        t_wall = t_tall[cols, nearest]
        seg = tall[nearest]  # (W,) segment index
        u_wall = s_all[cols, seg] * seg_len[seg]  # metres along the segment
        depth_wall = np.maximum(t_wall * self._col_cos, 1e-3)

        # World height seen by each pixel at the wall's depth: (H, W).
        z = CAMERA_HEIGHT_M + self._row_y[:, None] * depth_wall[None, :] / f
        img = np.empty((h, w, 3), dtype=np.float64)

        # Ceiling and floor first; walls overwrite the rows they cover.
        img[:] = app.ceiling_rgb * (0.85 + 0.15 * (self._row_y[:, None, None] / (h / 2)))
        floor_rows = self._floor_rows
        fd = self._floor_depth[:, None] / self._col_cos[None, :]  # distance along each ray
        fx = origin[0] + fd * dirs[None, :, 0]
        fy = origin[1] + fd * dirs[None, :, 1]
        tile = app.floor_tile_m
        checker = ((np.floor(fx / tile) + np.floor(fy / tile)) % 2)[..., None]
        floor_rgb = app.floor_rgb_a * checker + app.floor_rgb_b * (1 - checker)
        fog = (1.0 / (1.0 + 0.08 * fd))[..., None]
        img[floor_rows] = floor_rgb * (0.6 + 0.4 * fog)

        wall_mask = (z >= 0.0) & (z <= WALL_HEIGHT_M)
        base = seg_rgb[seg]  # (W, 3)
        stripe = 1.0 - app.wall_stripe_contrast * (
            np.sin(2 * math.pi * u_wall / app.wall_stripe_period_m) > 0
        )
        stripe = np.where(is_clutter[seg], 1.0 - 0.25 * (np.abs(u_wall - 0.5 * seg_len[seg])
                                                          > 0.5 * seg_len[seg] - 0.03), stripe)
        wall_rgb = base * stripe[:, None] / (1.0 + 0.06 * depth_wall[:, None])
        wall_pix = np.broadcast_to(wall_rgb[None, :, :], (h, w, 3))
        marker = self._marker_mask(seg, u_wall, z)  # (H, W) in {-1: none, 0: black, 1: white}
        img = np.where(wall_mask[..., None], wall_pix, img)
        img = np.where((marker == 0)[..., None], 0.04, img)
        img = np.where((marker == 1)[..., None], 0.96, img)

        # The low dock box, in front of whatever tall surface is behind it.
        if self._dock.size:
            t_dock_all = t_all[:, self._dock]
            dn = np.argmin(t_dock_all, axis=1)
            t_dock = t_dock_all[cols, dn]
            visible = np.isfinite(t_dock) & (t_dock < t_wall)
            if visible.any():
                dseg = self._dock[dn]
                depth_dock = np.maximum(t_dock * self._col_cos, 1e-3)
                zd = CAMERA_HEIGHT_M + self._row_y[:, None] * depth_dock[None, :] / f
                dmask = visible[None, :] & (zd >= 0.0) & (zd <= DOCK_HEIGHT_M)
                u_d = s_all[cols, dseg] * self._seg_len[dseg]
                # Two bright contact strips on the front face.
                contacts = (world.seg_kind[dseg] == KIND_DOCK) & (
                    np.abs(np.abs(u_d - 0.15) - 0.07) < 0.02
                )
                drgb = self._seg_rgb[dseg] / (1.0 + 0.06 * depth_dock[:, None])
                drgb = np.where(contacts[:, None] & (dseg == self._dock[0])[:, None], 0.85, drgb)
                img = np.where(dmask[..., None], drgb[None, :, :], img)

        img = img * self._light
        if rng is not None:
            img = img + rng.normal(0.0, 0.012, size=img.shape)
        return np.asarray(np.clip(img * 255.0, 0, 255), dtype=np.uint8)

    def _marker_mask(self, seg: npt.NDArray[np.int64], u_wall: FloatArray, z: FloatArray
                     ) -> npt.NDArray[np.int8]:
        world = self.world
        dock_wall = world.dock_wall
        # Marker centre in wall coordinates: the dock's position along its wall.
        a, b = world.seg_a[dock_wall], world.seg_b[dock_wall]
        along = (b - a) / np.hypot(*(b - a))
        centre_u = float(np.dot(np.array([world.dock.x_m, world.dock.y_m]) - a, along))
        du = (u_wall - (centre_u - MARKER_WIDTH_M / 2)) / MARKER_WIDTH_M  # 0..1 across
        dz = (MARKER_Z_M[1] - z) / (MARKER_Z_M[1] - MARKER_Z_M[0])  # 0..1 downwards
        on_wall = (seg == dock_wall)[None, :] & (du >= 0)[None, :] & (du < 1)[None, :]
        inside = on_wall & (dz >= 0) & (dz < 1)
        n = self.marker_cells.shape[0]
        ci = np.clip((dz * n).astype(np.int64), 0, n - 1)
        cj = np.clip((np.broadcast_to(du[None, :], z.shape) * n).astype(np.int64), 0, n - 1)
        # The wall runs left-to-right as seen from the room, so the marker reads the same way
        # from every wall.
        cell = self.marker_cells[ci, n - 1 - cj]
        out = np.full(z.shape, -1, dtype=np.int8)
        out[inside] = cell[inside].astype(np.int8)
        return out

    def scan(self, x: float, y: float, yaw: float, rng: np.random.Generator | None = None,
             extra: tuple[FloatArray, FloatArray] | None = None) -> npt.NDArray[np.float32]:
        """LiDAR ranges (beams,) in metres, counter-clockwise from forward; NaN past max range.
        extra: more surfaces (the dynamic obstacles), as in `render`."""
        angles = yaw + self._lidar_angles
        dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        seg_a, seg_b = self.world.seg_a, self.world.seg_b
        if extra is not None:
            seg_a, seg_b = np.concatenate([seg_a, extra[0]]), np.concatenate([seg_b, extra[1]])
        t, _ = cast_rays(np.array([x, y]), dirs, seg_a, seg_b)
        ranges = t.min(axis=1)
        if rng is not None:
            ranges = ranges + rng.normal(0.0, 0.01, size=ranges.shape)
        ranges = np.where(ranges <= self.lidar_max_range_m, ranges, np.nan)
        return ranges.astype(np.float32)
