"""One episode file on disk: create, append steps, commit, finalize. Not thread-safe.

The threaded `EpisodeWriter`, the crash recovery and the bag importer all write through this
class, so every episode file has the same layout (see `schema.py`).

Crash safety (`crash_safe=True`, what the live recorder uses):
- the file is created and laid out under `ep_NNNN.hdf5.init`, switched to HDF5 SWMR mode
  (whose flushes keep the file consistent on disk at every instant), then renamed to
  `ep_NNNN.hdf5.partial` before the first step is written;
- `commit()` flushes the steps, fsyncs, then sets the `num_steps` attribute and flushes again:
  a reader or the recovery trusts exactly `num_steps` steps, all of which were on disk first;
- `finalize()` writes the end attributes in place, closes, fsyncs and renames the file to its
  final name.
Without crash safety (import, recovery), the file is written under a staging name that
recovery deletes, and renamed when complete.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import h5py
import numpy as np
import numpy.typing as npt

import takeover
from takeover.recorder import schema
from takeover.recorder.codec import Compression
from takeover.recorder.layout import (
    INIT_SUFFIX,
    PARTIAL_SUFFIX,
    check_robot_name,
)
from takeover.recorder.safeio import GuardedFile, WriteFailed
from takeover.recorder.schema import (
    ACTION_MODE_UNLABELED,
    MODE_CODES,
    SOURCE_CODES,
)
from takeover.types import (
    ACTION_MODE_DEMONSTRATION,
    ACTION_MODE_INTERVENTION,
    ACTION_MODE_ROBOT,
    Command,
    FieldState,
    Outcome,
    StepRecord,
)
from takeover.workspace.atomic import fsync_dir

#: Rows per chunk of the per-step datasets other than the image (12.8 s at 20 Hz).
COLUMN_CHUNK_ROWS = 256
#: HDF5 raw-data chunk cache per file: a few 640x480 frames.
CHUNK_CACHE_BYTES = 8 * 1024 * 1024

JsonValue = str | int | float | bool | None


@dataclass(frozen=True)
class EpisodeMeta:
    """What the caller knows about an episode when it starts (stored as file attributes).

    round: the round directory (0 = initial demonstrations; N = the run of model rN-1).
    rate_hz: the control loop's rate. config: the configuration in force (stored as JSON).
    extra: small caller metadata, e.g. {"seed": 7} for simulated episodes.
    start_time_ns: wall-clock start (ns since the Unix epoch); default: when the file is made.
    robot_name: the robot's name when several record into one workspace ([[robots]] name,
    `[a-z0-9][a-z0-9_-]{0,31}`): in the file's name and its `robot_name` attribute; "" for the
    one unnamed robot. (`robot_url` is how the robot was reached, not who it is.)
    """

    round: int
    rate_hz: float
    model_id: str = ""
    operator: str = ""
    robot_url: str = ""
    config: Mapping[str, Any] | str = field(default_factory=dict)
    extra: Mapping[str, JsonValue] = field(default_factory=dict)
    origin: str = "recorder"
    start_time_ns: int | None = None
    robot_name: str = ""

    def __post_init__(self) -> None:
        check_robot_name(self.robot_name)
        if self.round < 0:
            raise ValueError(f"round must be >= 0, got {self.round}")
        if not (self.rate_hz > 0 and math.isfinite(self.rate_hz)):
            raise ValueError(f"rate_hz must be a positive number, got {self.rate_hz}")


@dataclass(frozen=True)
class ObsSpec:
    """Observation shapes of one episode, fixed when its file is created.

    image_shape: (H, W, 3) or None without a camera. scan_beams: N or None without a LiDAR.
    The scan's angles: beam i points at angle_min_rad + i * angle_increment_rad,
    counter-clockwise from the robot's forward axis (default: N beams over 360 degrees).
    missing_inputs: inputs the robot's link expects ("scan", "image") that it had not sent when
    the file was made, each with how long the link had been waiting for it (s): the episode has
    no dataset for them, and says so in its `missing_inputs` attribute.
    """

    image_shape: tuple[int, int, int] | None = None
    scan_beams: int | None = None
    scan_angle_min_rad: float = 0.0
    scan_angle_increment_rad: float | None = None
    missing_inputs: tuple[tuple[str, float], ...] = ()

    @property
    def angle_increment_rad(self) -> float:
        if self.scan_angle_increment_rad is not None:
            return self.scan_angle_increment_rad
        return 2 * math.pi / self.scan_beams if self.scan_beams else 0.0


def encode_text(text: str, size: int) -> bytes:
    """UTF-8, truncated to `size` bytes on a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= size:
        return data
    return data[:size].decode("utf-8", errors="ignore").encode("utf-8")


def _command_row(cmd: Command | None) -> tuple[float, float]:
    return (math.nan, math.nan) if cmd is None else (cmd.v_mps, cmd.w_radps)


class StepColumns:
    """Accumulates per-step values (every dataset but the image) until they are written."""

    def __init__(self, spec: ObsSpec) -> None:
        self.spec = spec
        self.mismatched_scans = 0
        self._rows: dict[str, list[Any]] = {name: [] for name in self._names()}

    def _names(self) -> tuple[str, ...]:
        names = schema.COLUMN_NAMES
        if self.spec.scan_beams is None:
            names = tuple(n for n in names if n != "obs/scan")
        return names

    def __len__(self) -> int:
        return len(self._rows["t_ns"])

    def add_record(self, r: StepRecord) -> None:
        rows = self._rows
        rows["t_ns"].append(r.t_ns)
        rows["step"].append(r.step)
        obs = r.observation
        rows["obs/valid"].append(obs is not None)
        if obs is None:
            rows["obs/t_ns"].append(-1)
            rows["obs/odom"].append((math.nan,) * 5)
            rows["obs/battery_frac"].append(math.nan)
            rows["obs/docked"].append(False)
            rows["obs/estop"].append(False)
            rows["obs/bumper"].append(False)
        else:
            o = obs.odom
            rows["obs/t_ns"].append(obs.t_ns)
            rows["obs/odom"].append((o.x_m, o.y_m, o.yaw_rad, o.v_mps, o.w_radps))
            rows["obs/battery_frac"].append(obs.battery_frac)
            rows["obs/docked"].append(obs.docked)
            rows["obs/estop"].append(obs.estop)
            rows["obs/bumper"].append(obs.bumper)
        if self.spec.scan_beams is not None:
            scan = None if obs is None else obs.scan_m
            if scan is not None and scan.shape != (self.spec.scan_beams,):
                self.mismatched_scans += 1
                scan = None
            rows["obs/scan"].append(scan)
        rows["action"].append(_command_row(r.command))
        rows["policy_action"].append(_command_row(r.policy_action))
        rows["human_action"].append(_command_row(r.human_action))
        rows["action_mode"].append(
            ACTION_MODE_UNLABELED if r.action_mode is None else r.action_mode
        )
        rows["source"].append(SOURCE_CODES[r.source])
        rows["mode"].append(MODE_CODES[r.mode])
        rows["reason"].append(encode_text(r.reason, schema.REASON_BYTES))
        rows["timing/loop_late_ns"].append(r.loop_late_ns)
        rows["timing/policy_latency_ns"].append(r.policy_latency_ns)
        fs = r.field
        rows["field/state"].append(0 if fs is None else schema.FIELD_STATE_CODES[fs.state])
        rows["field/clearance_m"].append(math.nan if fs is None else fs.clearance_m)
        hs = r.help
        rows["help/requested"].append(hs is not None and hs.requested)
        rows["help/reason"].append(0 if hs is None else schema.HELP_REASON_CODES[hs.reason])
        rows["help/score"].append(math.nan if hs is None else hs.score)

    def add_row(self, values: Mapping[str, Any]) -> None:
        """One step given as {dataset name: value} (the importer's path); every name needed but
        those with a fill (schema.COLUMN_FILL: what an import does not know)."""
        for name, column in self._rows.items():
            column.append(values[name] if name in values or name not in schema.COLUMN_FILL
                          else schema.COLUMN_FILL[name])

    def take(self) -> dict[str, np.ndarray]:
        """The accumulated rows as arrays with the schema's dtypes; the buffer is emptied."""
        out: dict[str, np.ndarray] = {}
        n = len(self)
        for name, column in self._rows.items():
            spec = schema.DATASET_BY_NAME[name]
            if name == "obs/scan":
                beams = self.spec.scan_beams or 0
                arr = np.full((n, beams), np.nan, dtype=spec.dtype)
                for i, scan in enumerate(column):
                    if scan is not None:
                        arr[i] = scan
            else:
                arr = np.asarray(column, dtype=spec.dtype)
                if n == 0:
                    arr = arr.reshape((0, *[s or 0 for s in spec.shape]))
            out[name] = arr
            column.clear()
        return out


@dataclass
class StepCounts:
    """Running summary of action_mode over an episode (the end attributes)."""

    demo: int = 0
    robot: int = 0
    intervention: int = 0
    unlabeled: int = 0
    interventions: int = 0
    _last_mode: int | None = None
    protective_stops: int = 0  # runs of field/state STOPPED
    _last_stopped: bool = False

    def update(self, action_mode: npt.NDArray[np.int8]) -> None:
        if action_mode.size == 0:
            return
        modes = action_mode.astype(np.int16)
        self.demo += int(np.count_nonzero(modes == ACTION_MODE_DEMONSTRATION))
        self.robot += int(np.count_nonzero(modes == ACTION_MODE_ROBOT))
        self.intervention += int(np.count_nonzero(modes == ACTION_MODE_INTERVENTION))
        self.unlabeled += int(np.count_nonzero(modes == ACTION_MODE_UNLABELED))
        is_h = modes == ACTION_MODE_INTERVENTION
        prev = np.concatenate(([self._last_mode == ACTION_MODE_INTERVENTION], is_h[:-1]))
        self.interventions += int(np.count_nonzero(is_h & ~prev))
        self._last_mode = int(modes[-1])

    def update_field(self, field_state: npt.NDArray[np.uint8]) -> None:
        if field_state.size == 0:
            return
        stopped = field_state == schema.FIELD_STATE_CODES[FieldState.STOPPED]
        prev = np.concatenate(([self._last_stopped], stopped[:-1]))
        self.protective_stops += int(np.count_nonzero(stopped & ~prev))
        self._last_stopped = bool(stopped[-1])


def create_datasets(f: h5py.File, spec: ObsSpec, compression: Compression) -> None:
    """Lay out every per-step dataset with zero rows (extended as steps arrive)."""
    small = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    for d in schema.DATASETS:
        if d.name == "obs/image":
            if spec.image_shape is None:
                continue
            shape = spec.image_shape
            f.create_dataset(
                d.name, shape=(0, *shape), maxshape=(None, *shape), chunks=(1, *shape),
                dtype=d.dtype, fillvalue=0, **compression.h5py_kwargs(),
            )
        elif d.name == "obs/scan":
            if spec.scan_beams is None:
                continue
            ds = f.create_dataset(
                d.name, shape=(0, spec.scan_beams), maxshape=(None, spec.scan_beams),
                chunks=(COLUMN_CHUNK_ROWS, spec.scan_beams), dtype=d.dtype,
                fillvalue=np.nan, **small,
            )
            ds.attrs["angle_min_rad"] = spec.scan_angle_min_rad
            ds.attrs["angle_increment_rad"] = spec.angle_increment_rad
        else:
            step_shape = tuple(s or 0 for s in d.shape)
            f.create_dataset(
                d.name, shape=(0, *step_shape), maxshape=(None, *step_shape),
                chunks=(COLUMN_CHUNK_ROWS, *step_shape), dtype=d.dtype, **small,
            )
        ds = f[d.name]
        ds.attrs["units"] = d.units
    f["obs/odom"].attrs["columns"] = ",".join(schema.ODOM_COLUMNS)
    for name in ("action", "policy_action", "human_action"):
        f[name].attrs["columns"] = ",".join(schema.ACTION_COLUMNS)
    f["mode"].attrs["labels"] = ",".join(m.value for m in schema.MODE_CODES)
    f["source"].attrs["labels"] = ",".join(s.value for s in schema.SOURCE_CODES)
    f["field/state"].attrs["labels"] = ",".join(s.value for s in schema.FIELD_STATE_CODES)
    f["help/reason"].attrs["labels"] = ",".join("none" if r is None else r.value
                                                for r in schema.HELP_REASON_CODES)
    # Which datasets are absent because the robot never sent what its link expects: written
    # with the layout, since nothing can be added to the file's attributes once it is in SWMR.
    f.attrs["missing_inputs"] = json.dumps(
        {name: round(waited_s, 3) for name, waited_s in spec.missing_inputs}, sort_keys=True)


def write_start_attrs(
    f: h5py.File, meta: EpisodeMeta, episode_index: int, compression: Compression
) -> None:
    start_ns = meta.start_time_ns if meta.start_time_ns is not None else time.time_ns()
    config = meta.config if isinstance(meta.config, str) else json.dumps(
        dict(meta.config), sort_keys=True, default=str
    )
    a = f.attrs
    a["schema"] = schema.SCHEMA_NAME
    a["schema_version"] = schema.SCHEMA_VERSION
    a["round"] = meta.round
    a["episode"] = episode_index
    a["model_id"] = meta.model_id
    a["operator"] = meta.operator
    a["robot_url"] = meta.robot_url
    a["robot_name"] = meta.robot_name
    a["rate_hz"] = float(meta.rate_hz)
    a["start_time_ns"] = np.int64(start_ns)
    a["start_time"] = dt.datetime.fromtimestamp(start_ns / 1e9, dt.timezone.utc).isoformat()
    a["config"] = config
    a["extra"] = json.dumps(dict(meta.extra), sort_keys=True, default=str)
    a["origin"] = meta.origin
    a["takeover_version"] = takeover.__version__
    a["image_compression"] = str(compression)
    # End attributes exist from the start with fixed types, so that they can be updated in
    # place in SWMR mode (which cannot add attributes).
    for name, dtype in {**schema.END_ATTR_DTYPES, **schema.DETECTION_ATTR_DTYPES}.items():
        a.create(name, np.zeros((), dtype=dtype), dtype=dtype)
    a.modify("outcome", np.bytes_(schema.OUTCOME_RECORDING))
    a.modify("outcome_evidence", np.bytes_(b"{}"))


def set_end_attrs(
    f: h5py.File, *, outcome: str, end_reason: str, end_time_ns: int, num_steps: int,
    duration_s: float, counts: StepCounts, dropped_steps: int, recovered: bool,
    detected_outcome: str = "", outcome_evidence: dict[str, Any] | None = None,
) -> None:
    a = f.attrs
    if detected_outcome and "detected_outcome" in a:
        a.modify("detected_outcome", np.bytes_(Outcome.parse(detected_outcome).value))
        a.modify("outcome_evidence", np.bytes_(evidence_json(outcome_evidence or {})))
    a.modify("num_steps", np.int64(num_steps))
    a.modify("duration_s", np.float64(duration_s))
    a.modify("demo_steps", np.int64(counts.demo))
    a.modify("robot_steps", np.int64(counts.robot))
    a.modify("intervention_steps", np.int64(counts.intervention))
    a.modify("human_steps", np.int64(counts.demo + counts.intervention))
    a.modify("unlabeled_steps", np.int64(counts.unlabeled))
    a.modify("interventions", np.int64(counts.interventions))
    a.modify("dropped_steps", np.int64(dropped_steps))
    a.modify("recovered", np.bool_(recovered))
    a.modify("protective_stops", np.int64(counts.protective_stops))
    a.modify("end_time_ns", np.int64(end_time_ns))
    a.modify("end_reason", np.bytes_(encode_text(end_reason, 64)))
    a.modify("outcome", np.bytes_(outcome))
    a.modify("summary", np.bytes_(summary_json(a)))  # last: the rest is set


def evidence_json(evidence: dict[str, Any]) -> bytes:
    """The detector's evidence as its fixed-size attribute holds it: whole JSON, or (were it
    ever too long) only its signal and time, never a cut-off text."""
    size = schema.DETECTION_ATTR_DTYPES["outcome_evidence"].itemsize
    text = json.dumps(evidence, sort_keys=True, default=str).encode()
    if len(text) > size:
        text = json.dumps({k: evidence[k] for k in ("signal", "t_ns") if k in evidence}).encode()
    return text


def summary_json(attrs: h5py.AttributeManager) -> bytes:
    """The `summary` attribute: every attribute in SUMMARY_ATTRS as one JSON object (without
    `extra` if that would not fit; readers then read `extra` itself)."""
    values: dict[str, Any] = {}
    for name in schema.SUMMARY_ATTRS:
        v = attrs[name]
        if isinstance(v, bytes | np.bytes_):
            v = bytes(v).decode("utf-8", errors="replace")
        elif isinstance(v, np.generic):
            v = v.item()
        values[name] = v
    text = json.dumps(values, sort_keys=True).encode()
    if len(text) > schema.SUMMARY_BYTES:
        del values["extra"]
        text = json.dumps(values, sort_keys=True).encode()
    return text


def duration_of(t_first_ns: int | None, t_last_ns: int | None, rate_hz: float) -> float:
    """(t_last - t_first) + one period: the time the steps cover."""
    if t_first_ns is None or t_last_ns is None:
        return 0.0
    return (t_last_ns - t_first_ns) / 1e9 + 1.0 / rate_hz


class _TranslateAfterFailure:
    """Once a write has failed, HDF5 may report the consequences as any exception; make them
    all the WriteFailed that caused them."""

    def __init__(self, io: GuardedFile) -> None:
        self.io = io

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if exc is not None and self.io.error is not None and not isinstance(exc, WriteFailed) \
                and isinstance(exc, Exception):
            err = self.io.error
            raise WriteFailed(err.errno, err.strerror or str(err), str(self.io.path)) from exc


P = ParamSpec("P")
R = TypeVar("R")


def _guarded(method: Callable[Concatenate[EpisodeFileWriter, P], R]
             ) -> Callable[Concatenate[EpisodeFileWriter, P], R]:
    @functools.wraps(method)
    def wrapper(self: EpisodeFileWriter, *args: P.args, **kwargs: P.kwargs) -> R:
        with _TranslateAfterFailure(self._io):
            return method(self, *args, **kwargs)
    return wrapper


class EpisodeFileWriter:
    """Writes one episode file. Use from one thread.

    final: the path the finished episode will have (rounds/rNNN/ep_NNNN.hdf5).
    crash_safe: SWMR + `.partial` (salvageable after a crash) rather than a staging name.
    staging_suffix: the name suffix while writing when not crash-safe (`.init`: deleted by
    recovery, `.recovering`: likewise).
    fsync: fsync at every commit (survives power loss, not just a process crash).
    reserved: the `.init` file was created by `layout.reserve_episode` to hold the episode's
    number; it is built in place (deleting it first would let another recorder take the
    number).
    """

    def __init__(
        self,
        final: Path,
        meta: EpisodeMeta,
        spec: ObsSpec,
        compression: Compression,
        *,
        episode_index: int,
        crash_safe: bool = True,
        staging_suffix: str = INIT_SUFFIX,
        fsync: bool = True,
        reserved: bool = False,
    ) -> None:
        self.final = final
        self.meta = meta
        self.spec = spec
        self.compression = compression
        self.crash_safe = crash_safe
        self.fsync = fsync
        self.rows = 0  # per-step rows written (not necessarily committed)
        self.frames = 0  # image dataset length
        self.frames_raw = 0  # frames stored uncompressed because the writer was behind
        self.committed = 0
        self.counts = StepCounts()
        self.t_first_ns: int | None = None
        self.t_last_ns: int | None = None
        self.closed = False
        self._last_frame: np.ndarray | None = None
        self._last_chunk: tuple[bytes | memoryview, int] | None = None

        creating = final.with_name(final.name + INIT_SUFFIX)
        self.path = final.with_name(final.name + (PARTIAL_SUFFIX if crash_safe else staging_suffix))
        build_at = creating if crash_safe else self.path
        for stale in (creating, self.path):
            if reserved and stale == build_at:
                continue
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        if final.exists():
            raise FileExistsError(f"{final} exists already; an episode is never overwritten")
        self._io = GuardedFile(build_at)
        try:
            self._f = h5py.File(self._io, "w", libver=schema.LIBVER,
                                rdcc_nbytes=CHUNK_CACHE_BYTES)
        except BaseException:
            self._io.close()
            build_at.unlink(missing_ok=True)
            raise
        try:
            self._lay_out(episode_index, creating)
        except BaseException:
            self._close_quietly()
            with contextlib.suppress(FileNotFoundError):
                build_at.unlink()
            raise

    @_guarded
    def _lay_out(self, episode_index: int, creating: Path) -> None:
        write_start_attrs(self._f, self.meta, episode_index, self.compression)
        create_datasets(self._f, self.spec, self.compression)
        self._datasets = {name: self._f[name] for name in schema.COLUMN_NAMES if name in self._f}
        self._image = self._f.get("obs/image", None)
        if self.crash_safe:
            self._f.swmr_mode = True
            self._f.flush()
            if self.fsync:
                self._io.fsync()
            self._io.check()
            os.replace(creating, self.path)
            fsync_dir(self.final.parent)

    # --- steps ----------------------------------------------------------------------------

    @_guarded
    def write_frame(self, frame: npt.NDArray[np.uint8] | None, compress: bool = True) -> bool:
        """Append the next step's camera frame (None: no frame, stored as zeros).

        Frames run ahead of the other per-step data, which is written in batches by
        `append_columns`; both must have the same length before `commit`. compress=False
        stores the frame raw with the filter marked as skipped (HDF5's per-chunk filter mask),
        which readers decode transparently: the writer does this while it is behind. Returns
        False if the frame did not match the episode's image shape (stored as zeros).
        """
        if self._image is None:
            return frame is None
        i = self.frames
        self._image.resize(i + 1, axis=0)
        self.frames = i + 1
        if frame is None:
            return True
        if frame.shape != self.spec.image_shape or frame.dtype != np.uint8:
            return False
        if not compress and self.compression.name != "none":
            raw = memoryview(np.ascontiguousarray(frame).data).cast("B")
            self._image.id.write_direct_chunk((i, 0, 0, 0), raw, 0b1)
            self.frames_raw += 1
        elif self.compression.encodes_outside_hdf5:
            if frame is self._last_frame and self._last_chunk is not None:
                chunk = self._last_chunk  # the loop ran faster than the camera: same frame
            else:
                chunk = self.compression.encode(frame)
                self._last_frame, self._last_chunk = frame, chunk
            self._image.id.write_direct_chunk((i, 0, 0, 0), chunk[0], chunk[1])
        else:
            self._image[i] = frame
        self._io.check()
        return True

    @_guarded
    def write_raw_chunk(self, data: bytes, filter_mask: int) -> None:
        """Append the next frame as an already-encoded chunk (recovery's fast copy)."""
        assert self._image is not None
        i = self.frames
        self._image.resize(i + 1, axis=0)
        self.frames = i + 1
        self._image.id.write_direct_chunk((i, 0, 0, 0), data, filter_mask)
        self._io.check()

    def skip_frame(self) -> None:
        self.write_frame(None)

    @_guarded
    def append_columns(self, columns: Mapping[str, np.ndarray]) -> None:
        """Append rows to every per-step dataset but the image (all the same length); a column
        with a fill (schema.COLUMN_FILL) may be left out."""
        n = len(columns["t_ns"])
        if n == 0:
            return
        start = self.rows
        for name, ds in self._datasets.items():
            if name in columns:
                data = columns[name]
            elif name in schema.COLUMN_FILL:  # not known to the source (an import, an old file)
                data = np.full(n, schema.COLUMN_FILL[name], dtype=ds.dtype)
            else:
                raise KeyError(name)
            if len(data) != n:
                raise ValueError(f"column {name} has {len(data)} rows, expected {n}")
            ds.resize(start + n, axis=0)
            ds[start:] = data
        self._io.check()
        self.rows = start + n
        self.counts.update(np.asarray(columns["action_mode"]))
        if "field/state" in columns:
            self.counts.update_field(np.asarray(columns["field/state"]))
        t = columns["t_ns"]
        if self.t_first_ns is None:
            self.t_first_ns = int(t[0])
        self.t_last_ns = int(t[-1])

    @_guarded
    def commit(self) -> int:
        """Make every complete step durable and counted in `num_steps`; returns that count."""
        ready = self.rows if self._image is None else min(self.rows, self.frames)
        if ready == self.committed:
            return ready
        self._f.flush()
        if self.fsync:
            self._io.fsync()
        self._io.check()  # the steps are on disk before num_steps counts them
        self._f.attrs.modify("num_steps", np.int64(ready))
        self._f.flush()
        self._io.check()
        self.committed = ready
        return ready

    # --- end ------------------------------------------------------------------------------

    @_guarded
    def finalize(
        self, outcome: Outcome | str, *, end_reason: str = "", dropped_steps: int = 0,
        recovered: bool = False, end_time_ns: int | None = None,
        detected_outcome: str = "", outcome_evidence: dict[str, Any] | None = None,
    ) -> Path:
        """Write the end attributes, close, and move the file to its final name.
        detected_outcome, outcome_evidence: the docking outcome detector's verdict and why."""
        if self._image is not None and self.frames != self.rows:
            raise ValueError(f"{self.frames} frames but {self.rows} steps at finalize")
        outcome_text = outcome.value if isinstance(outcome, Outcome) else Outcome.parse(outcome).value
        self.commit()
        set_end_attrs(
            self._f, outcome=outcome_text, end_reason=end_reason,
            end_time_ns=time.time_ns() if end_time_ns is None else end_time_ns,
            num_steps=self.rows,
            duration_s=duration_of(self.t_first_ns, self.t_last_ns, self.meta.rate_hz),
            counts=self.counts, dropped_steps=dropped_steps, recovered=recovered,
            detected_outcome=detected_outcome, outcome_evidence=outcome_evidence,
        )
        self._f.flush()
        self._f.close()
        if self.fsync:
            self._io.fsync()
        self.closed = True
        error = self._io.error
        self._io.close()
        if error is not None:  # keep the partial (recovery salvages it); never rename it
            raise WriteFailed(error.errno, error.strerror or str(error), str(self.path))
        if self.final.exists():
            raise FileExistsError(f"{self.final} exists already; an episode is never overwritten")
        os.replace(self.path, self.final)
        fsync_dir(self.final.parent)
        return self.final

    def abandon(self) -> None:
        """Close without finishing (after a write error): a `.partial` stays for recovery.

        Once a write has failed, GuardedFile drops every later write, so HDF5 closes cleanly
        and the file on disk stays as it was at the failure.
        """
        if self.closed:
            return
        self.closed = True
        self._close_quietly()

    def _close_quietly(self) -> None:
        if self._io.error is None:
            # Not a write failure (an exception of ours): stop writing anyway, so that what is
            # on disk stays a consistent prefix of the writes.
            self._io.error = OSError(0, "abandoned")
        with contextlib.suppress(Exception):
            self._f.close()
        self._io.close()
