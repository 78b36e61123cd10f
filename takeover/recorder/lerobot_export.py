"""Export a workspace's episodes as a LeRobot dataset (v3.0), for LeRobot's `LeRobotDataset`.

What maps to what (one frame per exported step; `lerobot_format.py` has the layout):

| LeRobot feature | dtype, shape | from the episode |
| --- | --- | --- |
| `observation.images.front` | video (H, W, 3) | `obs/image`, encoded as MP4 (AV1 by default) |
| `observation.state` | float32 (5) | `obs/odom`: x_m, y_m, yaw_rad, v_mps, w_radps |
| `observation.environment_state` | float32 (N) | `obs/scan` (LiDAR), no return = 0.0 |
| `action` | float32 (2) | `action`: the command sent, v_mps, w_radps |
| `next.reward`, `next.done`, `next.success` | float32, bool, bool | on an episode's last frame (*) |
| `complementary_info.is_intervention` | bool | `action_mode == 1` (the operator took over) |
| `complementary_info.action_mode` | int64 | Sirius label -1, 0, 1 (-128 with unlabeled steps) |
| `complementary_info.source`, `.mode` | int64 | `source`, `mode` codes (schema.py) |
| `complementary_info.obs_valid` | bool | `obs/valid` |
| `complementary_info.policy_action`, `.human_action` | float32 (2) | the same datasets (NaN = none) |
| `complementary_info.t_ns` | int64 | `t_ns`, the tick's time on the loop clock |

(*) `next.done` is true on the last frame; `next.reward` is 1 and `next.success` true there
when the episode's outcome is success.

A step without an observation holds the last valid odometry and scan (the first valid one
before it), so that no NaN reaches a policy's normaliser; `obs_valid` says which steps those
are. Steps without a Sirius label (IDLE, ESTOP, LINK_LOST ticks) are left out unless asked for,
as in the robomimic export. At another `fps` than the recording rate each frame takes the
newest step at or before its tick (the loop's `step` counter is the clock).

The dataset is written into a temporary directory next to OUT and renamed to OUT at the end:
OUT is either the whole dataset or absent. The episode files are only read.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import takeover
from takeover.recorder import lerobot_format as fmt
from takeover.recorder import schema
from takeover.recorder.errors import EpisodeError, ExportError
from takeover.recorder.reader import EpisodeInfo, EpisodeReader
from takeover.recorder.store import EpisodeStore
from takeover.recorder.video import VideoSettings, VideoWriter, video_info
from takeover.types import ACTION_MODE_INTERVENTION, Outcome
from takeover.workspace.atomic import fsync_dir

DEFAULT_TASK = "Dock the robot to its charger."
ROBOT_TYPE = "takeover_diff_drive"
FRAMES_PER_READ = 64  # camera frames decoded from the episode file at a time


@dataclass(frozen=True)
class LeRobotExportSummary:
    path: Path
    episodes: int
    frames: int
    fps: int
    camera: tuple[int, int, int] | None  # (H, W, 3) or None without a camera
    scan_beams: int | None
    skipped: list[str] = field(default_factory=list)  # one line per episode left out


def export_lerobot(
    workspace: Path | str,
    out: Path | str,
    *,
    rounds: Iterable[int] | None = None,
    outcomes: Iterable[str] | None = None,
    fps: int | None = None,
    task: str = DEFAULT_TASK,
    include_unlabeled: bool = False,
    video: VideoSettings | None = None,
    overwrite: bool = False,
    data_file_mb: float = fmt.DATA_FILE_MB,
    video_file_mb: float = fmt.VIDEO_FILE_MB,
) -> LeRobotExportSummary:
    """Write the dataset to the directory `out` (see the module doc)."""
    store = EpisodeStore(workspace)
    out = Path(out).expanduser().absolute()
    if out.exists() and not overwrite:
        raise ExportError(f"{out} exists; not overwriting it (pass --force to replace it)")
    if not out.parent.is_dir():
        raise ExportError(f"cannot write {out}: directory {out.parent} does not exist")
    if not task.strip():
        raise ExportError("the task text is empty")
    wanted_rounds = None if rounds is None else set(rounds)
    wanted_outcomes = None if outcomes is None else set(outcomes)
    infos = [i for i in store.episodes()
             if (wanted_rounds is None or i.round in wanted_rounds)
             and (wanted_outcomes is None or i.outcome in wanted_outcomes)]
    skipped = [f"{p.name}: unreadable ({why})" for p, why in store.unreadable]
    if not infos:
        raise ExportError(f"no episode to export in {store.workspace}"
                          + (" with these filters" if rounds or outcomes else ""))
    frame_rate = _choose_fps(infos, fps)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        writer = _DatasetWriter(tmp, frame_rate, task.strip(), include_unlabeled,
                                video or VideoSettings(), data_file_mb, video_file_mb)
        try:
            for info in infos:
                why = writer.add_episode(info)
                if why:
                    skipped.append(f"{info.key}: {why}")
        finally:
            writer.close()
        if writer.frames == 0:
            raise ExportError("no step to export: every episode was left out ("
                              + "; ".join(skipped[:3]) + ")")
        writer.write_meta()
        _fsync_tree(tmp)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return LeRobotExportSummary(out, writer.episodes, writer.frames, frame_rate,
                                writer.image_shape, writer.scan_beams, skipped)


def _choose_fps(infos: list[EpisodeInfo], fps: int | None) -> int:
    if fps is not None:
        if fps <= 0:
            raise ExportError(f"fps must be positive, got {fps}")
        return fps
    rates = sorted({round(i.rate_hz, 6) for i in infos})
    if len(rates) > 1:
        raise ExportError("the episodes were recorded at " + ", ".join(f"{r:g}" for r in rates)
                          + " Hz; LeRobot needs one fps: pass --fps N")
    if abs(rates[0] - round(rates[0])) > 1e-6:
        raise ExportError(f"recorded at {rates[0]:g} Hz, but LeRobot's fps is an integer: "
                          "pass --fps N")
    return round(rates[0])


def select_steps(step: npt.NDArray[np.int64], rate_hz: float, fps: int) -> npt.NDArray[np.int64]:
    """Row indices, one per output frame: each frame's tick takes the newest row at or before it
    (identity when fps is the recording rate)."""
    if abs(rate_hz - fps) < 1e-9 or len(step) == 0:
        return np.arange(len(step), dtype=np.int64)
    ticks_per_frame = rate_hz / fps
    n = math.floor((int(step[-1]) - int(step[0])) / ticks_per_frame + 1e-9) + 1
    grid = int(step[0]) + np.arange(n) * ticks_per_frame
    return (np.searchsorted(step, grid + 1e-9, side="right") - 1).astype(np.int64)


def hold_last_valid(values: npt.NDArray[Any], valid: npt.NDArray[np.bool_]) -> npt.NDArray[Any]:
    """Rows where `valid` is false take the last valid row before them (the first valid row
    when none is before); all zeros when no row is valid."""
    if len(values) == 0 or valid.all():
        return values
    if not valid.any():
        return np.zeros_like(values)
    idx = np.where(valid, np.arange(len(valid)), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = int(np.argmax(valid))
    return values[idx]


class _Files:
    """The (chunk, file) a kind of file is at, rolled over by size after an episode."""

    def __init__(self, limit_mb: float) -> None:
        self.limit_bytes = limit_mb * 1024 * 1024
        self.chunk = 0
        self.file = 0

    def full(self, size_bytes: int) -> bool:
        return size_bytes >= self.limit_bytes

    def advance(self) -> None:
        self.chunk, self.file = fmt.next_file(self.chunk, self.file)


class _DatasetWriter:
    """Writes frames, videos and per-episode metadata into `root`, episode by episode."""

    def __init__(self, root: Path, fps: int, task: str, include_unlabeled: bool,
                 video: VideoSettings, data_file_mb: float, video_file_mb: float) -> None:
        self.root = root
        self.fps = fps
        self.task = task
        self.include_unlabeled = include_unlabeled
        self.video_settings = video
        self.data_file_mb = data_file_mb
        self.video_file_mb = video_file_mb
        self.episodes = 0
        self.frames = 0
        self.image_shape: tuple[int, int, int] | None = None
        self.scan_beams: int | None = None
        self.scan_angles: tuple[float, float] | None = None
        self._shapes_fixed = False
        self._data = _Files(data_file_mb)
        self._videos = _Files(video_file_mb)
        self._parquet: Any = None
        self._parquet_path: Path | None = None
        self._video: VideoWriter | None = None
        self._video_frames = 0  # frames in the current video file
        self._first_video: Path | None = None
        self._episode_rows: list[dict[str, Any]] = []
        self._episode_stats: list[dict[str, dict[str, npt.NDArray[Any]]]] = []
        self._sources: list[dict[str, Any]] = []

    # --- one episode ----------------------------------------------------------------------

    def add_episode(self, info: EpisodeInfo) -> str | None:
        """Append one episode; a reason when it is left out, else None."""
        try:
            with EpisodeReader(info.path) as reader:
                return self._add(info, reader)
        except EpisodeError as err:
            return f"unreadable ({err})"
        except (OSError, KeyError) as err:  # damage inside the file past the reader's checks
            raise ExportError(f"{info.key}: cannot be exported ({err}); run `takeover data "
                              "verify`") from None

    def _add(self, info: EpisodeInfo, r: EpisodeReader) -> str | None:
        step = r.column("step")
        modes = r.column("action_mode")
        rows = select_steps(step, info.rate_hz, self.fps)
        if not self.include_unlabeled:
            rows = rows[modes[rows] != schema.ACTION_MODE_UNLABELED]
        if len(rows) == 0:
            return "no labeled step"
        why = self._check_shapes(r)
        if why:
            return why
        n = len(rows)
        valid = r.column("obs/valid").astype(bool)
        odom = hold_last_valid(r.column("obs/odom"), valid)[rows]
        action = r.column("action")[rows]
        action_mode = modes[rows].astype(np.int64)
        last_success = info.outcome == Outcome.SUCCESS.value
        done = np.zeros(n, dtype=bool)
        done[-1] = True
        reward = np.zeros(n, dtype=np.float32)
        reward[-1] = 1.0 if last_success else 0.0
        success = done & last_success
        columns: dict[str, npt.NDArray[Any]] = {
            fmt.STATE_KEY: np.nan_to_num(odom).astype(np.float32),
            fmt.ACTION_KEY: action.astype(np.float32),
            fmt.REWARD_KEY: reward,
            fmt.DONE_KEY: done,
            fmt.SUCCESS_KEY: success,
            fmt.INTERVENTION_KEY: action_mode == ACTION_MODE_INTERVENTION,
            fmt.ACTION_MODE_KEY: action_mode,
            fmt.SOURCE_KEY: r.column("source")[rows].astype(np.int64),
            fmt.MODE_KEY: r.column("mode")[rows].astype(np.int64),
            fmt.OBS_VALID_KEY: valid[rows],
            fmt.POLICY_ACTION_KEY: r.column("policy_action")[rows].astype(np.float32),
            fmt.HUMAN_ACTION_KEY: r.column("human_action")[rows].astype(np.float32),
            fmt.T_NS_KEY: r.column("t_ns")[rows].astype(np.int64),
        }
        if self.scan_beams is not None:
            scan = hold_last_valid(r.column("obs/scan"), valid)[rows]
            columns[fmt.SCAN_KEY] = np.where(np.isfinite(scan), scan,
                                             fmt.NO_RETURN_M).astype(np.float32)
        frame_index = np.arange(n, dtype=np.int64)
        columns["timestamp"] = (frame_index / self.fps).astype(np.float32)
        columns["frame_index"] = frame_index
        columns["episode_index"] = np.full(n, self.episodes, dtype=np.int64)
        columns["index"] = self.frames + frame_index
        columns["task_index"] = np.zeros(n, dtype=np.int64)

        stats = {key: fmt.vector_stats(values) for key, values in columns.items()}
        row: dict[str, Any] = {"episode_index": self.episodes, "tasks": [self.task],
                               "length": n}
        row.update(self._write_data(columns))
        if self.image_shape is not None:
            video_row, frame_stats = self._write_video(r, rows)
            row.update(video_row)
            stats[fmt.CAMERA_KEY] = frame_stats
        row["dataset_from_index"] = self.frames
        row["dataset_to_index"] = self.frames + n
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        for key, s in stats.items():
            for name, value in s.items():
                row[f"stats/{key}/{name}"] = np.asarray(value).tolist()
        row["success"] = last_success
        row["takeover/outcome"] = info.outcome
        row["takeover/episode"] = info.key
        row["takeover/round"] = info.round
        self._episode_rows.append(row)
        self._episode_stats.append(stats)
        self._sources.append({"episode_index": self.episodes, "takeover_episode": info.key,
                              "outcome": info.outcome, "model_id": info.model_id,
                              "operator": info.operator, "robot_url": info.robot_url,
                              "robot_name": info.robot_name,
                              "rate_hz": info.rate_hz, "start_time_ns": info.start_time_ns,
                              "steps": len(step), "frames": n})
        self.episodes += 1
        self.frames += n
        return None

    def _check_shapes(self, r: EpisodeReader) -> str | None:
        """The first exported episode fixes the camera and LiDAR; others must match."""
        beams = r.scan_beams
        angles = r.scan_angles_rad
        if not self._shapes_fixed:
            self.image_shape = r.image_shape
            self.scan_beams = beams
            self.scan_angles = angles
            self._shapes_fixed = True
            return None
        if r.image_shape != self.image_shape:
            return (f"camera {_shape_text(r.image_shape)} differs from the first exported "
                    f"episode's {_shape_text(self.image_shape)}")
        if beams != self.scan_beams:
            return (f"LiDAR of {beams or 'no'} beams differs from the first exported episode's "
                    f"{self.scan_beams or 'no'}")
        return None

    def _write_data(self, columns: dict[str, npt.NDArray[Any]]) -> dict[str, int]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.root / fmt.DATA_PATH.format(chunk_index=self._data.chunk,
                                                file_index=self._data.file)
        if self._parquet is not None and self._data.full(path.stat().st_size):
            self._parquet.close()
            self._parquet = None
            self._data.advance()
            path = self.root / fmt.DATA_PATH.format(chunk_index=self._data.chunk,
                                                    file_index=self._data.file)
        table = pa.table({key: _arrow_column(values) for key, values in columns.items()})
        if self._parquet is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._parquet = pq.ParquetWriter(path, table.schema, compression="snappy")
            self._parquet_path = path
        self._parquet.write_table(table)
        return {"data/chunk_index": self._data.chunk, "data/file_index": self._data.file}

    def _write_video(self, r: EpisodeReader, rows: npt.NDArray[np.int64]
                     ) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        assert self.image_shape is not None
        key = fmt.CAMERA_KEY
        if self._video is not None and self._videos.full(self._video.bytes_encoded):
            self._video.close()
            self._video = None
            self._videos.advance()
        if self._video is None:
            path = self.root / fmt.VIDEO_PATH.format(video_key=key, chunk_index=self._videos.chunk,
                                                     file_index=self._videos.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            h, w, _ = self.image_shape
            self._video = VideoWriter(path, fps=self.fps, width=w, height=h,
                                      settings=self.video_settings)
            self._video_frames = 0
            self._first_video = self._first_video or path
        from_frame = self._video_frames
        per_read: list[dict[str, npt.NDArray[Any]]] = []
        for start in range(0, len(rows), FRAMES_PER_READ):
            frames = r.frames(rows[start:start + FRAMES_PER_READ])
            for frame in frames:
                self._video.write(frame)
            per_read.append(fmt.image_stats(frames))
        self._video_frames += len(rows)
        meta = {
            f"videos/{key}/chunk_index": self._videos.chunk,
            f"videos/{key}/file_index": self._videos.file,
            f"videos/{key}/from_timestamp": from_frame / self.fps,
            f"videos/{key}/to_timestamp": self._video_frames / self.fps,
        }
        return meta, fmt.aggregate_stats(per_read)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._video is not None:
            self._video.close()
            self._video = None

    # --- the dataset's metadata --------------------------------------------------------------

    def write_meta(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        features = self._features()
        info = fmt.info_json(fps=self.fps, features=features, total_episodes=self.episodes,
                             total_frames=self.frames, total_tasks=1, robot_type=ROBOT_TYPE,
                             data_file_mb=self.data_file_mb, video_file_mb=self.video_file_mb)
        meta = self.root / "meta"
        (meta / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
        _write_json(self.root / fmt.INFO_PATH, info)
        keys = self._episode_stats[0].keys()
        stats = {k: fmt.aggregate_stats([s[k] for s in self._episode_stats]) for k in keys}
        _write_json(self.root / fmt.STATS_PATH, fmt.stats_json(stats))
        pq.write_table(_tasks_table([self.task]), self.root / fmt.TASKS_PATH)
        episodes = pa.Table.from_pylist(self._episode_rows)
        pq.write_table(episodes, self.root / fmt.EPISODES_PATH.format(chunk_index=0,
                                                                      file_index=0))
        takeover_meta: dict[str, Any] = {
            "exported_by": f"takeover {takeover.__version__}",
            "episode_schema_version": schema.SCHEMA_VERSION,
            "fps": self.fps,
            "include_unlabeled": self.include_unlabeled,
            "codes": {"action_mode": {"demonstration": -1, "robot": 0, "intervention": 1,
                                      "unlabeled": schema.ACTION_MODE_UNLABELED},
                      "mode": {m.value: c for m, c in schema.MODE_CODES.items()},
                      "source": {s.value: c for s, c in schema.SOURCE_CODES.items()}},
            "episodes": self._sources,
        }
        if self.scan_angles is not None:
            takeover_meta["scan"] = {"angle_min_rad": self.scan_angles[0],
                                     "angle_increment_rad": self.scan_angles[1],
                                     "no_return_m": fmt.NO_RETURN_M}
        _write_json(self.root / fmt.TAKEOVER_PATH, takeover_meta)

    def _features(self) -> dict[str, dict[str, Any]]:
        f = fmt.feature
        fps = self.fps
        features: dict[str, dict[str, Any]] = {}
        if self.image_shape is not None:
            assert self._first_video is not None
            camera = f("video", self.image_shape, ["height", "width", "channels"], fps)
            del camera["fps"]  # a video feature's rate is in its info block (LeRobot)
            camera["info"] = video_info(self._first_video)
            features[fmt.CAMERA_KEY] = camera
        features[fmt.STATE_KEY] = f("float32", (5,), list(schema.ODOM_COLUMNS), fps)
        if self.scan_beams is not None:
            features[fmt.SCAN_KEY] = f("float32", (self.scan_beams,),
                                       [f"scan_{i:03d}" for i in range(self.scan_beams)], fps)
        action_names = list(schema.ACTION_COLUMNS)
        features[fmt.ACTION_KEY] = f("float32", (2,), action_names, fps)
        features[fmt.REWARD_KEY] = f("float32", (1,), None, fps)
        features[fmt.DONE_KEY] = f("bool", (1,), None, fps)
        features[fmt.SUCCESS_KEY] = f("bool", (1,), None, fps)
        features[fmt.INTERVENTION_KEY] = f("bool", (1,), None, fps)
        features[fmt.ACTION_MODE_KEY] = f("int64", (1,), None, fps)
        features[fmt.SOURCE_KEY] = f("int64", (1,), None, fps)
        features[fmt.MODE_KEY] = f("int64", (1,), None, fps)
        features[fmt.OBS_VALID_KEY] = f("bool", (1,), None, fps)
        features[fmt.POLICY_ACTION_KEY] = f("float32", (2,), action_names, fps)
        features[fmt.HUMAN_ACTION_KEY] = f("float32", (2,), action_names, fps)
        features[fmt.T_NS_KEY] = f("int64", (1,), None, fps)
        features.update(fmt.index_features(fps))
        return features


def _shape_text(shape: tuple[int, ...] | None) -> str:
    return "none" if shape is None else "x".join(map(str, shape))


def _arrow_column(values: npt.NDArray[Any]) -> Any:
    """A numpy column as Arrow: scalars as themselves, (n, d) rows as fixed-size lists (what
    `datasets.Sequence(length=d)` reads)."""
    import pyarrow as pa

    if values.ndim == 1:
        return pa.array(values)
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def _tasks_table(tasks: list[str]) -> Any:
    """meta/tasks.parquet as LeRobot writes it with pandas: the task text is the index,
    `task_index` the one column. The pandas metadata says so, for `pd.read_parquet`."""
    import pyarrow as pa

    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                            "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    table = pa.table({"task_index": pa.array(range(len(tasks)), type=pa.int64()),
                      "__index_level_0__": pa.array(tasks, type=pa.string())})
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=4, allow_nan=False) + "\n")


def _fsync_tree(root: Path) -> None:
    """Every file and directory of the new dataset on disk before it gets its name."""
    for directory, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(directory))


def _replace_dir(tmp: Path, out: Path) -> None:
    """Give `tmp` the name `out`; an existing `out` (--force) is moved aside first and removed
    only once the new one is in place."""
    old: Path | None = None
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise ExportError(f"{out} exists and is not a directory; not replacing it")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            with contextlib.suppress(OSError):
                os.replace(old, out)
        raise
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
