"""Reading episode files: metadata from attributes, arrays in one call, or frames on demand.

The policy dataset and the metrics read episodes only through this module:

    info = read_info(path)                      # attributes only (cheap)
    ep = read_episode(path)                     # every per-step array in memory
    with EpisodeReader(path) as r:              # lazy: frames decoded only when asked
        frames = r.frames(slice(10, 20))        # (10, H, W, 3) uint8
        actions = r.column("action")            # (T, 2) float64

Both finished files and `.partial` files (being written, or left by a crash) can be read; a
partial file yields exactly the steps its writer had committed (`num_steps`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from takeover.recorder import schema
from takeover.recorder.errors import EpisodeError
from takeover.recorder.layout import PARTIAL_SUFFIX, final_path_of, parse_episode, parse_round
from takeover.recorder.safeio import ClearedFlagsReader


def attr_text(value: Any) -> str:
    """An attribute as str, whether HDF5 stored it as variable- or fixed-length text."""
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return attr_text(value[()])
    return str(value)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:160]


def open_h5(path: Path) -> h5py.File:
    """Open an episode file read-only; EpisodeError (one line) if it cannot be opened.

    A `.partial` file whose writer is still running or died is read at the state of its last
    flush (its "open for writing" flags are ignored, see safeio.ClearedFlagsReader).
    """
    if not path.exists():
        raise EpisodeError(f"{path}: no such episode file")
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as err:  # h5py raises OSError for unreadable files
        error: BaseException = err
    if path.name.endswith(PARTIAL_SUFFIX):
        # Its writer is running or died: the superblock still says "open for writing".
        # Read it as `h5clear -s` would leave it, without changing the file.
        try:
            return h5py.File(ClearedFlagsReader(path), "r")
        except (OSError, ValueError) as err:
            error = err
    raise EpisodeError(f"{path}: not a readable HDF5 file ({_short(error)})")


def check_schema(path: Path, attrs: h5py.AttributeManager | dict[str, Any]) -> None:
    if attr_text(attrs.get("schema", "")) != schema.SCHEMA_NAME:
        raise EpisodeError(f"{path}: not a takeover episode file (no schema attribute)")
    version = int(attrs.get("schema_version", -1))
    if version > schema.SCHEMA_VERSION:
        raise EpisodeError(
            f"{path}: written with schema version {version}, this takeover reads up to "
            f"{schema.SCHEMA_VERSION}; upgrade takeover"
        )
    if version < 1:
        raise EpisodeError(f"{path}: bad schema_version {version}")


@dataclass(frozen=True)
class EpisodeInfo:
    """An episode's metadata, from its attributes only (no dataset is read).

    Counts are by Sirius label: demo_steps (-1), robot_steps (0), intervention_steps (1),
    unlabeled_steps (-128); human_steps = demo_steps + intervention_steps (the operator drove);
    interventions = takeovers. They are those the writer stored at the end; in a
    `.partial` file they are zero and `num_steps` is the committed step count.
    """

    path: Path
    round: int
    episode: int
    outcome: str
    num_steps: int
    duration_s: float
    rate_hz: float
    start_time_ns: int
    end_time_ns: int
    model_id: str
    operator: str
    robot_url: str
    origin: str
    demo_steps: int
    robot_steps: int
    intervention_steps: int
    human_steps: int
    unlabeled_steps: int
    interventions: int
    dropped_steps: int
    recovered: bool
    end_reason: str
    schema_version: int
    size_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)
    protective_stops: int = 0  # the protective field stopped the robot (0 in version-1 files)
    # The docking outcome detector's verdict and evidence ("" and {} when nothing ran it, and
    # in files written before it existed).
    detected_outcome: str = ""
    outcome_evidence: dict[str, Any] = field(default_factory=dict)
    # The robot's name when several record into one workspace ("" for the unnamed robot and
    # in files written before names existed).
    robot_name: str = ""

    @property
    def key(self) -> str:
        """'r000/ep_0001': the episode's name in its workspace."""
        return f"r{self.round:03d}/ep_{self.episode:04d}"

    @property
    def partial(self) -> bool:
        return self.path.name.endswith(PARTIAL_SUFFIX)

    @property
    def labeled_steps(self) -> int:
        return self.demo_steps + self.robot_steps + self.intervention_steps

    @classmethod
    def from_attrs(cls, path: Path, attrs: h5py.AttributeManager, size_bytes: int) -> EpisodeInfo:
        summary = attr_text(attrs.get("summary", ""))
        if summary:  # one attribute read instead of twenty (see schema.SUMMARY_ATTRS)
            try:
                values = json.loads(summary)
            except ValueError:
                values = None
            if isinstance(values, dict) and "schema" in values:
                check_schema(path, values)
                if "extra" not in values:
                    values["extra"] = attr_text(attrs.get("extra", "{}"))
                for name in ("detected_outcome", "outcome_evidence", "robot_name"):  # not in it
                    if name in attrs:
                        values[name] = attrs[name]
                try:
                    return cls._from_values(path, values, size_bytes)
                except (EpisodeError, TypeError, ValueError):
                    pass  # fall back to the attributes themselves
        check_schema(path, attrs)
        return cls._from_values(path, attrs, size_bytes)

    @classmethod
    def _from_values(cls, path: Path, attrs: Any, size_bytes: int) -> EpisodeInfo:
        try:
            extra = json.loads(attr_text(attrs.get("extra", "{}")))
        except ValueError:
            extra = {}
        try:
            return cls(
                path=path,
                round=int(attrs["round"]),
                episode=int(attrs["episode"]),
                outcome=attr_text(attrs["outcome"]),
                num_steps=int(attrs["num_steps"]),
                duration_s=float(attrs["duration_s"]),
                rate_hz=float(attrs["rate_hz"]),
                start_time_ns=int(attrs["start_time_ns"]),
                end_time_ns=int(attrs["end_time_ns"]),
                model_id=attr_text(attrs["model_id"]),
                operator=attr_text(attrs["operator"]),
                robot_url=attr_text(attrs["robot_url"]),
                origin=attr_text(attrs["origin"]),
                demo_steps=int(attrs["demo_steps"]),
                robot_steps=int(attrs["robot_steps"]),
                intervention_steps=int(attrs["intervention_steps"]),
                human_steps=int(attrs["human_steps"]),
                unlabeled_steps=int(attrs["unlabeled_steps"]),
                interventions=int(attrs["interventions"]),
                dropped_steps=int(attrs["dropped_steps"]),
                recovered=bool(attrs["recovered"]),
                end_reason=attr_text(attrs["end_reason"]),
                schema_version=int(attrs["schema_version"]),
                size_bytes=size_bytes,
                extra=extra if isinstance(extra, dict) else {},
                protective_stops=int(attrs.get("protective_stops", 0)),
                detected_outcome=attr_text(attrs.get("detected_outcome", "")),
                outcome_evidence=_evidence(attrs.get("outcome_evidence", "{}")),
                robot_name=attr_text(attrs.get("robot_name", "")),
            )
        except KeyError as err:
            raise EpisodeError(f"{path}: attribute {err.args[0]!r} is missing") from None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EpisodeInfo:
        return cls(**{**d, "path": Path(d["path"])})


def _evidence(value: Any) -> dict[str, Any]:
    try:
        evidence = json.loads(attr_text(value) or "{}")
    except ValueError:
        return {}
    return evidence if isinstance(evidence, dict) else {}


def read_info(path: Path | str) -> EpisodeInfo:
    """An episode's attributes (EpisodeError, one line, if the file is unreadable)."""
    path = Path(path)
    with open_h5(path) as f:
        return EpisodeInfo.from_attrs(path, f.attrs, path.stat().st_size)


@dataclass(frozen=True, eq=False)
class Episode:
    """Every per-step array of one episode (T steps). See docs/dataset-format.md.

    image: (T, H, W, 3) uint8 or None (no camera, or read with images=False).
    scan: (T, N) float32 metres, NaN = no return, or None without a LiDAR.
    odom: (T, 5) x_m, y_m, yaw_rad, v_mps, w_radps. action / policy_action / human_action:
    (T, 2) v_mps, w_radps (NaN rows where there was no proposal / input).
    action_mode: (T,) int8, -1 demonstration, 0 robot, 1 intervention, -128 unlabeled.
    """

    info: EpisodeInfo
    t_ns: npt.NDArray[np.int64]
    step: npt.NDArray[np.int64]
    obs_valid: npt.NDArray[np.bool_]
    obs_t_ns: npt.NDArray[np.int64]
    image: npt.NDArray[np.uint8] | None
    scan: npt.NDArray[np.float32] | None
    odom: npt.NDArray[np.float64]
    battery_frac: npt.NDArray[np.float32]
    docked: npt.NDArray[np.bool_]
    estop: npt.NDArray[np.bool_]
    bumper: npt.NDArray[np.bool_]
    action: npt.NDArray[np.float64]
    policy_action: npt.NDArray[np.float64]
    human_action: npt.NDArray[np.float64]
    action_mode: npt.NDArray[np.int8]
    source: npt.NDArray[np.uint8]
    mode: npt.NDArray[np.uint8]
    reason: npt.NDArray[np.bytes_]
    loop_late_ns: npt.NDArray[np.int64]
    policy_latency_ns: npt.NDArray[np.int64]
    scan_angle_min_rad: float = 0.0
    scan_angle_increment_rad: float = 0.0
    # The protective field on each step (schema version 2; None in older files): state codes
    # (schema.FIELD_STATE_CODES) and the clearance along the commanded arc (m, NaN: none).
    field_state: npt.NDArray[np.uint8] | None = None
    field_clearance_m: npt.NDArray[np.float32] | None = None
    # The help monitor on each step (control/help.py; None in files written before it):
    # whether the robot was asking for help, the reason code (schema.HELP_REASON_CODES) and
    # the policy's novelty (NaN: none).
    help_requested: npt.NDArray[np.bool_] | None = None
    help_reason: npt.NDArray[np.uint8] | None = None
    help_score: npt.NDArray[np.float32] | None = None

    def __len__(self) -> int:
        return len(self.t_ns)

    @property
    def labeled(self) -> npt.NDArray[np.bool_]:
        """Steps that carry a Sirius label (everything but IDLE/ESTOP/LINK_LOST ticks)."""
        return self.action_mode != schema.ACTION_MODE_UNLABELED


_FIELD_OF_DATASET = {
    "t_ns": "t_ns", "step": "step", "obs/valid": "obs_valid", "obs/t_ns": "obs_t_ns",
    "obs/scan": "scan", "obs/odom": "odom", "obs/battery_frac": "battery_frac",
    "obs/docked": "docked", "obs/estop": "estop", "obs/bumper": "bumper",
    "action": "action", "policy_action": "policy_action", "human_action": "human_action",
    "action_mode": "action_mode", "source": "source", "mode": "mode", "reason": "reason",
    "timing/loop_late_ns": "loop_late_ns", "timing/policy_latency_ns": "policy_latency_ns",
}


class EpisodeReader:
    """Lazy, read-only access to one episode file (final or `.partial`)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._f = open_h5(self.path)
        try:
            self.info = EpisodeInfo.from_attrs(self.path, self._f.attrs, self.path.stat().st_size)
            lengths = [self._f[name].shape[0] for name in schema.COLUMN_NAMES
                       if name in self._f]
            if "obs/image" in self._f:
                lengths.append(self._f["obs/image"].shape[0])
            missing = [n for n in ("t_ns", "action", "action_mode") if n not in self._f]
            if missing:
                raise EpisodeError(f"{self.path}: dataset {missing[0]!r} is missing")
        except BaseException:
            self._f.close()
            raise
        available = min(lengths) if lengths else 0
        # A partial file is trusted up to its committed count; a final one is whole.
        self.num_steps = min(self.info.num_steps, available) if self.info.partial else available

    def __enter__(self) -> EpisodeReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    @property
    def has_image(self) -> bool:
        return "obs/image" in self._f

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        if not self.has_image:
            return None
        h, w, c = self._f["obs/image"].shape[1:]
        return (h, w, c)

    @property
    def scan_beams(self) -> int | None:
        """N, the LiDAR's beam count, or None without a LiDAR."""
        return int(self._f["obs/scan"].shape[1]) if "obs/scan" in self._f else None

    @property
    def scan_angles_rad(self) -> tuple[float, float] | None:
        """(angle_min_rad, angle_increment_rad) of the LiDAR, or None without one."""
        if "obs/scan" not in self._f:
            return None
        attrs = self._f["obs/scan"].attrs
        return (float(attrs.get("angle_min_rad", 0.0)), float(attrs.get("angle_increment_rad", 0.0)))

    @property
    def config(self) -> dict[str, Any]:
        """The configuration in force when the episode was recorded."""
        try:
            value = json.loads(attr_text(self._f.attrs.get("config", "{}")))
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def column(self, name: str) -> np.ndarray:
        """A whole per-step dataset (any but obs/image) as an array of num_steps rows."""
        if name not in self._f:
            raise EpisodeError(f"{self.path}: dataset {name!r} is missing")
        try:
            return np.asarray(self._f[name][: self.num_steps])
        except (OSError, ValueError, KeyError) as err:  # damage inside the file
            raise EpisodeError(f"{self.path}: dataset {name!r} cannot be read ({_short(err)}); "
                               "run `takeover data verify`") from None

    def frames(self, index: int | slice | npt.NDArray[np.integer]) -> npt.NDArray[np.uint8]:
        """Camera frames: (H, W, 3) for an int, (K, H, W, 3) for a slice or index array."""
        if not self.has_image:
            raise EpisodeError(f"{self.path}: this episode has no camera frames")
        try:
            return self._frames(index)
        except (OSError, ValueError, KeyError) as err:  # a damaged chunk
            raise EpisodeError(f"{self.path}: camera frames cannot be read ({_short(err)}); "
                               "run `takeover data verify --deep`") from None

    def _frames(self, index: int | slice | npt.NDArray[np.integer]) -> npt.NDArray[np.uint8]:
        ds = self._f["obs/image"]
        if isinstance(index, slice):
            return np.asarray(ds[slice(*index.indices(self.num_steps))])
        if isinstance(index, int | np.integer):
            i = int(index)
            if not -self.num_steps <= i < self.num_steps:
                raise IndexError(f"frame {i} out of range for {self.num_steps} steps")
            return np.asarray(ds[i % self.num_steps])
        idx = np.asarray(index, dtype=np.int64)
        if idx.size and (idx.min() < -self.num_steps or idx.max() >= self.num_steps):
            raise IndexError(f"frame index out of range for {self.num_steps} steps")
        # h5py wants strictly increasing indices: read each frame once, then reorder.
        unique, inverse = np.unique(idx % max(self.num_steps, 1), return_inverse=True)
        return np.asarray(ds[unique])[inverse.reshape(-1)]

    def read(self, images: bool = True) -> Episode:
        """Every per-step array in memory (frames too unless images=False)."""
        arrays: dict[str, Any] = {}
        for name, fld in _FIELD_OF_DATASET.items():
            arrays[fld] = self.column(name) if name in self._f else None
        if arrays["scan"] is None and "obs/scan" not in self._f:
            arrays["scan"] = None
        image = self.frames(slice(None)) if images and self.has_image else None
        angle_min = angle_inc = 0.0
        if "obs/scan" in self._f:
            angle_min = float(self._f["obs/scan"].attrs.get("angle_min_rad", 0.0))
            angle_inc = float(self._f["obs/scan"].attrs.get("angle_increment_rad", 0.0))
        for name, fld in _FIELD_OF_DATASET.items():
            if arrays[fld] is None and name != "obs/scan":
                raise EpisodeError(f"{self.path}: dataset {name!r} is missing")
        field_state = self.column("field/state") if "field/state" in self._f else None
        clearance = self.column("field/clearance_m") if "field/clearance_m" in self._f else None
        helps = [self.column(name) if name in self._f else None
                 for name in schema.HELP_DATASETS]
        return Episode(info=self.info, image=image, scan_angle_min_rad=angle_min,
                       scan_angle_increment_rad=angle_inc, field_state=field_state,
                       field_clearance_m=clearance, help_requested=helps[0],
                       help_reason=helps[1], help_score=helps[2], **arrays)


def read_episode(path: Path | str, images: bool = True) -> Episode:
    """Read a whole episode into memory. EpisodeError (one line) if it can't be read."""
    with EpisodeReader(path) as r:
        return r.read(images=images)


def episode_key_of(path: Path) -> str | None:
    """'r000/ep_0001' from a path inside a workspace, or None if it isn't named like one."""
    parsed = parse_episode(final_path_of(path).name)
    r = parse_round(path.parent.name)
    if parsed is None or r is None:
        return None
    return f"r{r:03d}/ep_{parsed[0]:04d}"
