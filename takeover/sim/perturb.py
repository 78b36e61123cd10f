"""Perturbation families: what the simulated robot senses or does, made worse on a 0..1 scale.

For robustness evaluation (`takeover dagger eval --suite robustness`, `--perturb F=S`) and for
training-time domain randomisation (`random=S`): a spec such as `lighting=0.5,lidar_dropout=1`
reaches the simulator through the robot URL (`sim://?perturb=lighting=0.5`) or
`SimConfig.perturb`. The simulator calls `attach_perturbation` at the end of every reset, and
`ActivePerturbation.command` on every command it receives; everything else happens here.

Severity 0 leaves the family switched off (bit for bit the nominal simulator); 1 is the harshest
level this module models, chosen to be harsh but plausible for a shop floor (the table in
docs/evaluation.md lists what 1 means for each family). Between, every parameter scales linearly.
Each family draws what it randomises (a sign, a side, a colour) from its own generator seeded by
(world seed, family), so an episode's seed fixes everything, and adding a family to a spec does
not change another family's draws. The simulator's own generators are never touched.

Where the families act:
- the camera image, after rendering, in the order a camera sees it: scene lighting, exposure,
  optics (blur), sensor noise, compression (JPEG); the mount offset re-renders with the camera
  turned (yaw) and shifts the image for pitch (the small-angle approximation of a rotation about
  the camera's horizontal axis);
- the LiDAR scan, after casting: dropped beams, noise, a shorter maximum range;
- the base: extra command delay, per-wheel scale error (on the commands it receives), wheel
  slip (on its motion: the wheels turn, the robot moves less);
- the world at reset: the dock's marker partly covered, the dock's colour, the start pose, room
  textures outside the training distribution.
"""

from __future__ import annotations

import dataclasses
import io
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from takeover.errors import UsageError
from takeover.sim.render import MARKER_CELLS, CameraModel, Renderer
from takeover.sim.world import KIND_CLUTTER, KIND_DOCK, KIND_WALL, ROBOT_RADIUS_M, World, segment_distance
from takeover.types import Command, Pose2D

if TYPE_CHECKING:
    from takeover.sim.simulator import Simulator

FloatArray = npt.NDArray[np.float64]

# family -> what severity 1 does (the documentation of the scale; docs/evaluation.md repeats it).
FAMILIES: dict[str, str] = {
    "lighting": "scene light: brightness x2^(+-0.6), contrast x0.5, colour temperature "
                "+-30% red/blue (warm or cool, per seed)",
    "camera_noise": "Gaussian sensor noise, sigma 10% of full scale per pixel and channel",
    "camera_blur": "Gaussian blur, sigma 2 px at 96 px width (defocus, motion)",
    "camera_exposure": "exposure off by +-2 stops (per seed), clipped at black and white",
    "camera_jpeg": "JPEG compression at quality 10 (90 - 80 s)",
    "camera_mount": "camera mount off by +-5 degrees in yaw and +-5 in pitch (signs per seed)",
    "lidar_dropout": "half of the LiDAR beams missing (NaN), drawn per scan",
    "lidar_noise": "Gaussian range noise, sigma 8 cm",
    "lidar_range": "maximum LiDAR range 1.5 m instead of 8 m (beyond: NaN)",
    "actuation_delay": "150 ms more command-to-wheel delay (the base's own is 20-60 ms)",
    "wheel_slip": "traction lost at random: while each command lasts the robot moves 50-100% "
                  "of what its wheels turn (the wheel speeds, and odometry's velocity, do not "
                  "show it)",
    "actuation_scale": "each wheel's radius off by up to +-20% (per seed): speed and turn-rate "
                       "scale errors and a drift to one side",
    "dock_occlusion": "half of the dock's marker covered (a wall-coloured patch from one side, "
                      "per seed)",
    "dock_colour": "the dock body painted a bright colour never used in training",
    "start_pose": "starts 1.2 m farther (2.5-4.2 m), bearings to +-75 degrees off the dock's "
                  "axis, headings to +-42 degrees off the dock (still in view)",
    "textures": "walls, floor and ceiling in colours and patterns never used in training (dark "
                "walls, fine high-contrast stripes and floor tiles)",
}
#: Domain randomisation: `random=S` switches each family on with probability 1/2 per episode, at
#: a severity drawn uniformly in [0, S] (per seed); `random_appearance=S` does so over what the
#: camera sees only (light, camera, dock, textures), leaving the base, the LiDAR, the start and
#: the mount alone. The expert's commands answer the dynamics it feels but the policy cannot
#: see (a wheel 20 % small, 150 ms of delay), so randomising those in demonstrations turns
#: labels into noise; appearance changes nothing the expert does.
RANDOM = "random"
RANDOM_APPEARANCE = "random_appearance"
APPEARANCE_FAMILIES = ("lighting", "camera_noise", "camera_blur", "camera_exposure",
                       "camera_jpeg", "dock_occlusion", "dock_colour", "textures")
RANDOM_GROUPS: dict[str, tuple[str, ...]] = {RANDOM: tuple(FAMILIES),
                                             RANDOM_APPEARANCE: APPEARANCE_FAMILIES}

TRACK_WIDTH_M = 0.36  # wheel separation of the simulated base (for the per-wheel scale error)


@dataclass(frozen=True)
class PerturbSpec:
    """Families with their severities, in the order given."""

    items: tuple[tuple[str, float], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.items)

    def __str__(self) -> str:
        return ",".join(f"{family}={severity:g}" for family, severity in self.items)


def parse_perturb(text: str, where: str = "--perturb") -> PerturbSpec:
    """`family=severity[,family=severity...]` (`:` works as well as `=`, handy in a URL); an
    empty text is no perturbation. Errors are one line naming what is wrong and what works."""
    items: list[tuple[str, float]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        family, sep, value = part.replace(":", "=").partition("=")
        family = family.strip().replace("-", "_")
        if not sep or not value.strip():
            raise UsageError(f"{where} {text!r}: expected FAMILY=SEVERITY (e.g. lighting=0.5)")
        if family not in FAMILIES and family not in RANDOM_GROUPS:
            raise UsageError(f"{where} {text!r}: unknown family {family!r}; families: "
                             f"{', '.join(FAMILIES)} (or {' or '.join(RANDOM_GROUPS)} for domain "
                             "randomisation)")
        try:
            severity = float(value)
        except ValueError:
            raise UsageError(f"{where} {text!r}: severity {value.strip()!r} is not a number "
                             "(0 = off .. 1 = harshest)") from None
        if not 0.0 <= severity <= 1.0:
            raise UsageError(f"{where} {text!r}: severity {severity:g} must be between 0 (off) "
                             "and 1 (harshest)")
        if any(f == family for f, _ in items):
            raise UsageError(f"{where} {text!r}: {family} is given twice")
        items.append((family, severity))
    return PerturbSpec(tuple(items))


def family_rng(seed: int, family: str) -> np.random.Generator:
    """The generator of one family in one episode (seed): independent of every other family's."""
    return np.random.default_rng(np.random.SeedSequence([seed, 0x9E27, zlib.crc32(family.encode())]))


def resolve(spec: PerturbSpec, seed: int) -> dict[str, float]:
    """The active families of one episode with their severities (`random` drawn per seed)."""
    active: dict[str, float] = {}
    for family, severity in spec.items:
        if family in RANDOM_GROUPS:
            rng = family_rng(seed, family)
            for name in RANDOM_GROUPS[family]:
                on, level = rng.random() < 0.5, float(rng.uniform(0.0, severity))
                if on and level > 0 and name not in active:
                    active[name] = level
        elif severity > 0:
            active[family] = severity
    return active


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


# --- the camera -------------------------------------------------------------------------------

ImageOp = Callable[[FloatArray], FloatArray]


def _lighting(s: float, rng: np.random.Generator) -> ImageOp:
    gain = 2.0 ** (0.6 * s * _sign(rng))
    contrast = 1.0 - 0.5 * s
    warm = 0.3 * s * _sign(rng)
    tint = np.array([1.0 + warm, 1.0, 1.0 - warm])
    return lambda img: ((img - 0.5) * contrast + 0.5) * gain * tint


def _exposure(s: float, rng: np.random.Generator) -> ImageOp:
    gain = 2.0 ** (2.0 * s * _sign(rng))
    return lambda img: img * gain


def _blur(s: float, width_px: int) -> ImageOp:
    sigma = 2.0 * s * width_px / 96
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()

    def blur(img: FloatArray) -> FloatArray:
        for axis in (0, 1):  # separable: rows, then columns, edges replicated
            pad = [(0, 0)] * 3
            pad[axis] = (radius, radius)
            padded = np.pad(img, pad, mode="edge")
            n = img.shape[axis]
            out = np.zeros_like(img)
            for i, k in enumerate(kernel):
                out += k * np.take(padded, np.arange(i, i + n), axis=axis)
            img = out
        return img

    return blur


def _noise(s: float, rng: np.random.Generator) -> ImageOp:
    sigma = 0.10 * s
    return lambda img: img + rng.normal(0.0, sigma, size=img.shape)


def _jpeg(s: float) -> Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.uint8]]:
    quality = max(1, round(90 - 80 * s))

    def compress(img: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        from PIL import Image  # pillow is a base dependency; imported when a frame needs it

        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        return np.asarray(Image.open(buf).convert("RGB"), dtype=np.uint8)

    return compress


def _shift_rows(img: npt.NDArray[np.uint8], rows: int) -> npt.NDArray[np.uint8]:
    """The image moved down by `rows` (up when negative), the edge row repeated into the gap:
    a camera pitched up by atan(rows / focal) sees the world lower in its frame."""
    if rows == 0:
        return img
    out = np.empty_like(img)
    if rows > 0:
        out[rows:] = img[:-rows]
        out[:rows] = img[0]
    else:
        out[:rows] = img[-rows:]
        out[rows:] = img[-1]
    return out


class PerturbedRenderer(Renderer):
    """The simulator's renderer with the camera and LiDAR families applied to its output."""

    def __init__(self, world: World, camera: CameraModel, lidar_beams: int,
                 active: dict[str, float], seed: int) -> None:
        super().__init__(world, camera, lidar_beams=lidar_beams)
        rngs = {f: family_rng(seed, f) for f in active}
        self._image_ops: list[ImageOp] = []
        self._yaw_offset = 0.0
        self._pitch_rows = 0
        self._jpeg: Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.uint8]] | None = None
        if "camera_mount" in active:
            s, rng = active["camera_mount"], rngs["camera_mount"]
            self._yaw_offset = math.radians(5.0 * s) * _sign(rng)
            pitch = math.radians(5.0 * s) * _sign(rng)
            self._pitch_rows = round(camera.focal_px * math.tan(pitch))
        if "lighting" in active:
            self._image_ops.append(_lighting(active["lighting"], rngs["lighting"]))
        if "camera_exposure" in active:
            self._image_ops.append(_exposure(active["camera_exposure"], rngs["camera_exposure"]))
        if "camera_blur" in active:
            self._image_ops.append(_blur(active["camera_blur"], camera.width_px))
        if "camera_noise" in active:
            self._image_ops.append(_noise(active["camera_noise"], rngs["camera_noise"]))
        if "camera_jpeg" in active:
            self._jpeg = _jpeg(active["camera_jpeg"])
        self._dropout = 0.5 * active.get("lidar_dropout", 0.0)
        self._range_sigma = 0.08 * active.get("lidar_noise", 0.0)
        self._max_range = 8.0 - 6.5 * active.get("lidar_range", 0.0)
        self._lidar_rng = {f: rngs[f] for f in ("lidar_dropout", "lidar_noise") if f in rngs}
        if "dock_occlusion" in active:
            self._occlude_marker(active["dock_occlusion"], rngs["dock_occlusion"])

    def _occlude_marker(self, s: float, rng: np.random.Generator) -> None:
        # The pattern at 4x its cell resolution (drawn identically), so that the patch can cover
        # a fraction finer than one cell; covered cells read as no marker, so the wall shows.
        fine: FloatArray = np.kron(MARKER_CELLS, np.ones((4, 4))).astype(np.float64)
        n = fine.shape[0]
        k = round(0.5 * s * n)
        side = int(rng.integers(4))  # which edge the patch covers: two sides, top, bottom
        if k:
            if side == 0:
                fine[:, n - k:] = -1
            elif side == 1:
                fine[:, :k] = -1
            elif side == 2:
                fine[:k, :] = -1
            else:
                fine[n - k:, :] = -1
        self.marker_cells = fine

    def render(self, x: float, y: float, yaw: float, rng: np.random.Generator | None = None,
               extra: tuple[FloatArray, FloatArray] | None = None) -> npt.NDArray[np.uint8]:
        img = super().render(x, y, yaw + self._yaw_offset, rng, extra)
        img = _shift_rows(img, self._pitch_rows)
        if self._image_ops:
            f = img.astype(np.float64) / 255.0
            for op in self._image_ops:
                f = op(f)
            img = np.asarray(np.clip(np.rint(f * 255.0), 0, 255), dtype=np.uint8)
        if self._jpeg is not None:
            img = self._jpeg(img)
        return img

    def scan(self, x: float, y: float, yaw: float, rng: np.random.Generator | None = None,
             extra: tuple[FloatArray, FloatArray] | None = None) -> npt.NDArray[np.float32]:
        ranges = super().scan(x, y, yaw, rng, extra).astype(np.float64)
        if self._range_sigma:
            noise_rng = self._lidar_rng["lidar_noise"]
            ranges = np.maximum(ranges + noise_rng.normal(0.0, self._range_sigma, ranges.shape),
                                0.0)
        if self._max_range < 8.0:
            ranges = np.where(ranges <= self._max_range, ranges, np.nan)
        if self._dropout:
            drop_rng = self._lidar_rng["lidar_dropout"]
            ranges = np.where(drop_rng.random(ranges.shape) < self._dropout, np.nan, ranges)
        return ranges.astype(np.float32)


# --- the world --------------------------------------------------------------------------------

def _lerp(a: FloatArray | float, b: FloatArray | float, s: float) -> FloatArray:
    return np.asarray(a, dtype=np.float64) * (1.0 - s) + np.asarray(b, dtype=np.float64) * s


def _recolour(world: World, kind: int, rgb: FloatArray) -> FloatArray:
    """seg_color with the segments of `kind` in `rgb` (the dock's sides keep their 0.8 shade)."""
    colours = world.seg_color.copy()
    idx = np.flatnonzero(world.seg_kind == kind)
    colours[idx] = rgb
    if kind == KIND_DOCK and len(idx) > 1:
        colours[idx[1:]] = rgb * 0.8
    return colours


def _unseen_textures(world: World, s: float, rng: np.random.Generator) -> World:
    app = world.appearance
    dark = rng.uniform(0.05, 0.3, size=3)  # training walls: 0.35-0.9
    floor_a, floor_b = rng.uniform(0.0, 0.15, size=3), rng.uniform(0.8, 1.0, size=3)
    new_app = dataclasses.replace(
        app,
        wall_rgb=_lerp(app.wall_rgb, dark, s),
        wall_stripe_period_m=float(_lerp(app.wall_stripe_period_m, rng.uniform(0.05, 0.15), s)),
        wall_stripe_contrast=float(_lerp(app.wall_stripe_contrast, rng.uniform(0.4, 0.6), s)),
        floor_rgb_a=_lerp(app.floor_rgb_a, floor_a, s),  # training: 0.2-0.7 each
        floor_rgb_b=_lerp(app.floor_rgb_b, floor_b, s),
        floor_tile_m=float(_lerp(app.floor_tile_m, rng.uniform(0.08, 0.2), s)),
        ceiling_rgb=_lerp(app.ceiling_rgb, rng.uniform(0.15, 0.4, size=3), s),
        clutter_rgb=_lerp(app.clutter_rgb, rng.uniform(0.0, 1.0, size=app.clutter_rgb.shape), s),
    )
    colours = _recolour(world, KIND_WALL, new_app.wall_rgb)
    clutter = np.flatnonzero(world.seg_kind == KIND_CLUTTER)
    colours[clutter] = _lerp(world.seg_color[clutter], rng.uniform(0.0, 1.0, (len(clutter), 3)), s)
    return dataclasses.replace(world, appearance=new_app, seg_color=colours)


def _dock_colour(world: World, s: float, rng: np.random.Generator) -> World:
    bright = rng.uniform(0.6, 1.0, size=3)  # training docks: 0.1-0.5 per channel
    bright[int(rng.integers(3))] = rng.uniform(0.0, 0.2)  # saturated: one channel low
    rgb = _lerp(world.appearance.dock_rgb, bright, s)
    return dataclasses.replace(world, appearance=dataclasses.replace(world.appearance, dock_rgb=rgb),
                               seg_color=_recolour(world, KIND_DOCK, rgb))


def _far_start(world: World, s: float, rng: np.random.Generator) -> Pose2D:
    """A collision-free start farther out and at wider angles than training's (1.3-3.0 m,
    bearing +-50, heading +-30 degrees); the dock stays within the 90-degree camera's view. A
    room too small for any such pose keeps its own start."""
    dock = world.dock
    normal = np.array([math.cos(dock.yaw_rad), math.sin(dock.yaw_rad)])
    tangent = np.array([-normal[1], normal[0]])
    face = np.array([dock.x_m, dock.y_m])
    r_lo, r_hi = 1.3 + 1.2 * s, 3.0 + 1.2 * s
    bearing_max, heading_max = math.radians(50 + 25 * s), math.radians(30 + 12 * s)
    for attempt in range(2000):
        # A small room may not fit the far end of the range: shrink it gradually.
        shrink = 1.0 - attempt / 2000
        r = rng.uniform(r_lo, r_lo + (r_hi - r_lo) * shrink)
        bearing = rng.uniform(-bearing_max, bearing_max)
        p = face + r * (math.cos(bearing) * normal + math.sin(bearing) * tangent)
        if segment_distance(p, world.seg_a, world.seg_b).min() < ROBOT_RADIUS_M + 0.25:
            continue
        # Sideways-on approaches come from the wider bearings; keep them inside the room.
        if not (0 < p[0] < world.width_m and 0 < p[1] < world.depth_m):
            continue
        to_dock = math.atan2(face[1] - p[1], face[0] - p[0])
        yaw = to_dock + rng.uniform(-heading_max, heading_max)
        return Pose2D(float(p[0]), float(p[1]), math.atan2(math.sin(yaw), math.cos(yaw)))
    return world.start


# --- actuation and the hook -------------------------------------------------------------------

class ActivePerturbation:
    """One episode's perturbation (the families active for this seed, their draws). Made by
    `attach_perturbation` at each reset; the simulator passes every command through `command`."""

    def __init__(self, active: dict[str, float], sim: Simulator) -> None:
        self.active = active
        self.seed = sim.seed
        self.extra_delay_s = 0.15 * active.get("actuation_delay", 0.0)
        self._sim = sim
        self._slip = 0.5 * active.get("wheel_slip", 0.0)
        self._traction = sim.slip  # the seed's own constant scale (SimConfig.slip_frac)
        self._slip_rng = family_rng(sim.seed, "wheel_slip")
        scale = 0.2 * active.get("actuation_scale", 0.0)
        rng = family_rng(sim.seed, "actuation_scale")
        # Per-wheel scale errors: the delivered wheel speeds are (1 + e) x the commanded ones.
        self._e_left, self._e_right = (float(rng.uniform(-scale, scale)) for _ in range(2))

    def command(self, cmd: Command) -> Command:
        """The command as this base executes it (scale error). Slip is drawn here too, one
        traction level per command, and acts where wheels meet floor: on the simulator's
        motion scale, not on the wheel speeds."""
        v, w = cmd.v_mps, cmd.w_radps
        if self._e_left or self._e_right:
            half = TRACK_WIDTH_M / 2
            left = (v - w * half) * (1.0 + self._e_left)
            right = (v + w * half) * (1.0 + self._e_right)
            v, w = (left + right) / 2, (right - left) / TRACK_WIDTH_M
        if self._slip:
            self._sim.slip = self._traction * (1.0 - self._slip * float(self._slip_rng.random()))
        return Command(v, w) if (v, w) != (cmd.v_mps, cmd.w_radps) else cmd


def attach_perturbation(sim: Simulator) -> ActivePerturbation | None:
    """Apply `sim.config.perturb` to a freshly reset simulator: the world (dock, textures), the
    start pose, the renderer and the delay. None, and nothing touched, when no family is
    active for this seed."""
    active = resolve(parse_perturb(sim.config.perturb, "perturb"), sim.seed)
    if not active:
        return None
    world = sim.world
    if "textures" in active:
        world = _unseen_textures(world, active["textures"], family_rng(sim.seed, "textures"))
    if "dock_colour" in active:
        world = _dock_colour(world, active["dock_colour"], family_rng(sim.seed, "dock_colour"))
    if "start_pose" in active:
        start = _far_start(world, active["start_pose"], family_rng(sim.seed, "start_pose"))
        world = dataclasses.replace(world, start=start)
        sim.x, sim.y, sim.yaw = start.x_m, start.y_m, start.yaw_rad
    sim.world = world
    sim.renderer = PerturbedRenderer(world, sim.config.camera, sim.config.lidar_beams, active,
                                     sim.seed)
    perturbation = ActivePerturbation(active, sim)
    sim.delay_s += perturbation.extra_delay_s
    return perturbation
