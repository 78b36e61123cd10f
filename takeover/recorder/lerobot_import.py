"""Import a LeRobot dataset (v3.x) of a mobile base as episodes of a workspace.

One LeRobot episode becomes one episode file in `rounds/rNNN/` (round 0 by default), at the
dataset's fps. What is read:

- `action`: the command, (v, w) in m/s and rad/s. A dataset whose action has more than two
  components (an arm on a base, LeKiwi's x.vel/y.vel/theta.vel) names the two with
  `action_names` ("x.vel", "theta.vel"); the units are taken as they are.
- the camera: the dataset's one video or image feature, or the one named by `camera`.
- `observation.state`: odometry when its names are takeover's (x_m, y_m, yaw_rad, v_mps,
  w_radps); measured v and w alone when it names them (v_mps/w_radps, or x.vel/theta.vel);
  otherwise it is not mapped and the odometry is NaN.
- `observation.environment_state` named scan_000... (takeover's LiDAR): ranges, 0 = no return.
- takeover's `complementary_info.*` (Sirius label, source, mode, validity, the proposals,
  the tick times) when present. Without them every step gets `action_mode` (demonstration by
  default), or 1 where LeRobot's `complementary_info.is_intervention` is true.
- the outcome: takeover's `takeover/outcome` column of meta/episodes, else LeRobot's
  `success` column or `next.success` on the last frame, else `outcome` (success by default).

A dataset imported before (same content, see import_hygiene.py) is skipped unless `force`.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from takeover.recorder import lerobot_format as fmt
from takeover.recorder import schema
from takeover.recorder.codec import Compression
from takeover.recorder.episode_file import EpisodeFileWriter, EpisodeMeta, ObsSpec
from takeover.recorder.errors import LeRobotError
from takeover.recorder.import_hygiene import (
    DIGEST_KEY,
    FLAGS_KEY,
    STUCK_FLAG,
    earlier_imports,
    source_digest,
    stuck_robot,
)
from takeover.recorder.layout import (
    INIT_SUFFIX,
    WorkspaceLock,
    check_workspace,
    reserve_episode,
    round_dir,
)
from takeover.recorder.video import read_frames
from takeover.types import (
    ACTION_MODE_DEMONSTRATION,
    ACTION_MODE_INTERVENTION,
    ACTION_MODE_ROBOT,
    CommandSource,
    Mode,
    Outcome,
)

#: Names of measured (v, w) in an `observation.state` that is not takeover's odometry.
VELOCITY_NAMES = (("v_mps", "w_radps"), ("x.vel", "theta.vel"), ("linear.x", "angular.z"))
_MODE_OF_LABEL = {ACTION_MODE_DEMONSTRATION: Mode.MANUAL, ACTION_MODE_ROBOT: Mode.AUTO,
                  ACTION_MODE_INTERVENTION: Mode.TAKEOVER,
                  schema.ACTION_MODE_UNLABELED: Mode.IDLE}
_SOURCE_OF_LABEL = {ACTION_MODE_DEMONSTRATION: CommandSource.HUMAN,
                    ACTION_MODE_ROBOT: CommandSource.POLICY,
                    ACTION_MODE_INTERVENTION: CommandSource.HUMAN,
                    schema.ACTION_MODE_UNLABELED: CommandSource.NONE}


@dataclass(frozen=True)
class LeRobotImportOptions:
    round: int = 0
    camera: str | None = None
    action_names: tuple[str, str] | None = None
    action_mode: int = ACTION_MODE_DEMONSTRATION
    outcome: str = Outcome.SUCCESS.value
    operator: str = ""
    compression: str | None = None
    force: bool = False


@dataclass(frozen=True)
class LeRobotImportResult:
    dataset: Path
    episodes: list[Path]
    skipped: list[str] = field(default_factory=list)  # one line per episode or part left out
    warnings: list[str] = field(default_factory=list)  # one line per flagged episode (stuck)
    already_imported: list[str] = field(default_factory=list)
    digest: str = ""


def import_lerobot(dataset: Path | str, workspace: Path | str,
                   options: LeRobotImportOptions | None = None) -> LeRobotImportResult:
    """Import every episode of the dataset directory `dataset` (see the module doc)."""
    opts = options or LeRobotImportOptions()
    ws = check_workspace(workspace)
    if opts.action_mode not in (ACTION_MODE_DEMONSTRATION, ACTION_MODE_ROBOT,
                                ACTION_MODE_INTERVENTION):
        raise LeRobotError(f"action mode {opts.action_mode} is not -1, 0 or 1")
    try:
        Outcome.parse(opts.outcome)
    except ValueError as err:
        raise LeRobotError(str(err)) from None
    compression = Compression.parse(opts.compression)
    root = Path(dataset).expanduser()
    info = fmt.read_info(root)
    plan = _Plan(root, info, opts)
    digest = source_digest(root)
    with WorkspaceLock(ws):
        earlier = earlier_imports(ws, digest)
        if earlier and not opts.force:
            return LeRobotImportResult(root, [], already_imported=earlier, digest=digest)
        try:
            return plan.run(ws, compression, digest)
        except (OSError, ValueError, KeyError) as err:  # damaged parquet or video
            text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise LeRobotError(f"cannot read LeRobot dataset {root}: {text}") from None


def _names(feature: dict[str, Any]) -> list[str]:
    names = feature.get("names")
    if isinstance(names, dict):  # older datasets: {"motors": [...]}
        names = next(iter(names.values()), None)
    return [str(n) for n in names] if isinstance(names, list) else []


class _Plan:
    """Which columns mean what in this dataset; checked before anything is written."""

    def __init__(self, root: Path, info: dict[str, Any], opts: LeRobotImportOptions) -> None:
        self.root = root
        self.info = info
        self.opts = opts
        self.fps = float(info["fps"])
        self.features: dict[str, dict[str, Any]] = info["features"]
        self.meta = fmt.read_takeover_meta(root)
        action = self.features.get(fmt.ACTION_KEY)
        if action is None:
            raise LeRobotError(f"{root}: the dataset has no 'action' feature")
        shape = list(action.get("shape", []))
        names = _names(action)
        if opts.action_names is not None:
            missing = [n for n in opts.action_names if n not in names]
            if missing:
                raise LeRobotError(f"{root}: action has no component {missing[0]!r} (names: "
                                   f"{', '.join(names) or 'none'})")
            self.action_index = [names.index(n) for n in opts.action_names]
        elif shape == [2]:
            self.action_index = [0, 1]
        else:
            raise LeRobotError(
                f"{root}: action has shape {shape} ({', '.join(names) or 'unnamed'}), not (v, w); "
                "name the two components with --action-names V,W")
        cameras = [k for k, f in self.features.items() if f.get("dtype") in ("video", "image")]
        if opts.camera is not None:
            if opts.camera not in cameras:
                raise LeRobotError(f"{root}: no camera feature {opts.camera!r} (cameras: "
                                   f"{', '.join(cameras) or 'none'})")
            self.camera: str | None = opts.camera
        elif len(cameras) > 1:
            raise LeRobotError(f"{root}: several cameras ({', '.join(cameras)}); choose one "
                               "with --camera KEY")
        else:
            self.camera = cameras[0] if cameras else None
        self.video = self.camera is not None and self.features[self.camera]["dtype"] == "video"
        if self.video and not info.get("video_path"):
            raise LeRobotError(f"{root}: camera {self.camera} is a video but info.json has no "
                               "video_path")
        state_names = _names(self.features.get(fmt.STATE_KEY, {}))
        self.state_odom = state_names == list(schema.ODOM_COLUMNS)
        self.state_velocity: list[int] | None = None
        for v_name, w_name in VELOCITY_NAMES:
            if not self.state_odom and v_name in state_names and w_name in state_names:
                self.state_velocity = [state_names.index(v_name), state_names.index(w_name)]
                break
        scan_names = _names(self.features.get(fmt.SCAN_KEY, {}))
        self.scan = bool(scan_names) and all(n.startswith("scan_") for n in scan_names)
        scan_meta = self.meta.get("scan", {}) if isinstance(self.meta.get("scan"), dict) else {}
        self.scan_angle_min = float(scan_meta.get("angle_min_rad", 0.0))
        self.scan_angle_inc = scan_meta.get("angle_increment_rad")
        self.notes: list[str] = []
        if state_names and not self.state_odom and self.state_velocity is None:
            self.notes.append(f"observation.state ({', '.join(state_names[:4])}"
                              f"{', ...' if len(state_names) > 4 else ''}) is not odometry: "
                              "not imported")
        self._tables: dict[Path, Any] = {}

    # --- reading ---------------------------------------------------------------------------

    def _episodes(self) -> list[dict[str, Any]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = sorted((self.root / fmt.EPISODES_DIR).glob("*/*.parquet"))
        if not files:
            raise LeRobotError(f"{self.root} is not a LeRobot v3 dataset: no "
                               f"{fmt.EPISODES_DIR}/chunk-*/file-*.parquet")
        tables = []
        for file in files:
            schema_names = pq.read_schema(file).names
            tables.append(pq.read_table(file, columns=[n for n in schema_names
                                                       if not n.startswith("stats/")]))
        rows: list[dict[str, Any]] = pa.concat_tables(tables, promote_options="default").to_pylist()
        return sorted(rows, key=lambda r: int(r["episode_index"]))

    def _data_table(self, ep: dict[str, Any]) -> Any:
        import pyarrow.parquet as pq

        path = self.root / str(self.info["data_path"]).format(
            chunk_index=int(ep.get("data/chunk_index", 0)),
            file_index=int(ep.get("data/file_index", 0)), episode_index=ep["episode_index"])
        if path not in self._tables:
            if not path.is_file():
                raise LeRobotError(f"{self.root}: episode {ep['episode_index']}'s data file "
                                   f"{path.relative_to(self.root)} is missing")
            self._tables.clear()  # one file in memory at a time
            self._tables[path] = pq.read_table(path)
        return self._tables[path]

    # --- writing ---------------------------------------------------------------------------

    def run(self, ws: Path, compression: Compression, digest: str) -> LeRobotImportResult:
        episodes: list[Path] = []
        skipped = list(self.notes)
        warnings: list[str] = []
        sources = {int(e.get("episode_index", -1)): e for e in self.meta.get("episodes", [])
                   if isinstance(e, dict)}
        for ep in self._episodes():
            index = int(ep["episode_index"])
            path, lines, warning = self._import_episode(ep, sources.get(index, {}), ws,
                                                        compression, digest)
            skipped.extend(f"episode {index}: {line}" for line in lines)
            if path is not None:
                episodes.append(path)
            if warning:
                warnings.append(warning)
        return LeRobotImportResult(self.root, episodes, skipped, warnings, digest=digest)

    def _import_episode(self, ep: dict[str, Any], source: dict[str, Any], ws: Path,
                        compression: Compression, digest: str
                        ) -> tuple[Path | None, list[str], str | None]:
        import pyarrow.compute as pc

        table = self._data_table(ep)
        index = int(ep["episode_index"])
        rows = table.filter(pc.equal(table["episode_index"], index))
        if rows.num_rows == 0:
            return None, ["no frame in the data files"], None
        rows = rows.sort_by("frame_index") if "frame_index" in rows.column_names else rows
        n = rows.num_rows
        cols = _Columns(rows)
        timestamps = cols.scalar("timestamp", np.float64, None)
        if timestamps is None:
            timestamps = np.arange(n) / self.fps
        lines: list[str] = []

        action = cols.vector(fmt.ACTION_KEY)[:, self.action_index].astype(np.float64)
        labels = cols.scalar(fmt.ACTION_MODE_KEY, np.int64, None)
        if labels is None:
            labels = np.full(n, self.opts.action_mode, dtype=np.int64)
            intervention = cols.scalar(fmt.INTERVENTION_KEY, bool, None)
            if intervention is not None:
                labels[intervention] = ACTION_MODE_INTERVENTION
        unknown = ~np.isin(labels, list(_MODE_OF_LABEL))
        if unknown.any():
            raise LeRobotError(f"{self.root}: episode {index} has action_mode "
                               f"{int(labels[unknown][0])}; expected -1, 0, 1 or -128")
        source_codes = cols.scalar(fmt.SOURCE_KEY, np.int64, None)
        if source_codes is None:
            source_codes = np.array([schema.SOURCE_CODES[_SOURCE_OF_LABEL[int(m)]]
                                     for m in labels], dtype=np.int64)
        mode_codes = cols.scalar(fmt.MODE_KEY, np.int64, None)
        if mode_codes is None:
            mode_codes = np.array([schema.MODE_CODES[_MODE_OF_LABEL[int(m)]] for m in labels],
                                  dtype=np.int64)
        valid = cols.scalar(fmt.OBS_VALID_KEY, bool, np.ones(n, dtype=bool))
        assert valid is not None
        t_ns = cols.scalar(fmt.T_NS_KEY, np.int64, None)
        if t_ns is None:
            t_ns = np.round(timestamps * 1e9).astype(np.int64)

        odom = np.full((n, 5), np.nan)
        if self.state_odom:
            odom = cols.vector(fmt.STATE_KEY).astype(np.float64)
        elif self.state_velocity is not None:
            odom[:, 3:5] = cols.vector(fmt.STATE_KEY)[:, self.state_velocity]
        odom[~valid] = np.nan
        human = cols.vector_or_none(fmt.HUMAN_ACTION_KEY)
        if human is None:
            human = np.where((source_codes == schema.SOURCE_CODES[CommandSource.HUMAN])[:, None],
                             action, np.nan)
        policy = cols.vector_or_none(fmt.POLICY_ACTION_KEY)
        if policy is None:
            policy = np.full((n, 2), np.nan)

        scan: npt.NDArray[np.float32] | None = None
        spec = ObsSpec()
        if self.scan:
            scan = cols.vector(fmt.SCAN_KEY).astype(np.float32)
            scan[scan <= fmt.NO_RETURN_M] = np.nan
            scan[~valid] = np.nan
            beams = scan.shape[1]
            inc = self.scan_angle_inc
            spec = ObsSpec(None, beams, self.scan_angle_min,
                           float(inc) if inc is not None else None)

        frames: npt.NDArray[np.uint8] | None = None
        found = np.zeros(n, dtype=bool)
        if self.camera is not None:
            frames, found = self._frames(ep, rows, timestamps)
            if not found.all():
                lines.append(f"{int((~found).sum())} of {n} camera frame(s) not in the video: "
                             "stored empty")
            found &= valid
            h, w = frames.shape[1:3]
            spec = ObsSpec((h, w, 3), spec.scan_beams, spec.scan_angle_min_rad,
                           spec.scan_angle_increment_rad)

        arrays: dict[str, npt.NDArray[Any]] = {
            "t_ns": t_ns, "step": np.arange(n, dtype=np.int64), "obs/valid": valid,
            "obs/t_ns": np.where(valid, t_ns, -1),
            "obs/odom": odom, "obs/battery_frac": np.full(n, np.nan, dtype=np.float32),
            "obs/docked": np.zeros(n, dtype=bool), "obs/estop": np.zeros(n, dtype=bool),
            "obs/bumper": np.zeros(n, dtype=bool),
            "action": action, "policy_action": policy.astype(np.float64),
            "human_action": human.astype(np.float64),
            "action_mode": labels, "source": source_codes, "mode": mode_codes,
            "reason": np.full(n, b"", dtype=f"S{schema.REASON_BYTES}"),
            "timing/loop_late_ns": np.zeros(n, dtype=np.int64),
            "timing/policy_latency_ns": np.zeros(n, dtype=np.int64),
        }
        if scan is not None:
            arrays["obs/scan"] = scan
        arrays = {name: np.asarray(v, dtype=schema.DATASET_BY_NAME[name].dtype)
                  for name, v in arrays.items()}

        outcome = self._outcome(ep, cols)
        stuck = stuck_robot(arrays["action"], arrays["obs/odom"], self.fps)
        extra: dict[str, str | int] = {"lerobot": str(self.root), "episode_index": index,
                                       DIGEST_KEY: digest}
        if source.get("takeover_episode"):
            extra["exported_from"] = str(source["takeover_episode"])
        if stuck:
            extra.update({FLAGS_KEY: STUCK_FLAG, STUCK_FLAG: stuck})
        start_ns = source.get("start_time_ns")
        meta = EpisodeMeta(
            round=self.opts.round, rate_hz=self.fps, operator=self.opts.operator or
            str(source.get("operator", "")), model_id=str(source.get("model_id", "")),
            robot_url=f"lerobot://{self.root.name}", origin="lerobot",
            start_time_ns=int(start_ns) if isinstance(start_ns, int) else None,
            config={"import": {"lerobot": str(self.root), "episode_index": index,
                               "fps": self.fps, "camera": self.camera,
                               "codebase_version": self.info.get("codebase_version")}},
            extra=extra,
        )
        directory = round_dir(ws, self.opts.round)
        number, final = reserve_episode(directory)
        out = EpisodeFileWriter(final, meta, spec, compression, episode_index=number,
                                crash_safe=False, staging_suffix=INIT_SUFFIX, reserved=True)
        try:
            for k in range(n):
                out.write_frame(frames[k] if frames is not None and found[k] else None)
            out.append_columns(arrays)
            end_ns = None
            if meta.start_time_ns is not None:
                end_ns = meta.start_time_ns + int(t_ns[-1] - t_ns[0]) + round(1e9 / self.fps)
            path = out.finalize(outcome, end_reason="imported", end_time_ns=end_ns)
        except BaseException:
            out.abandon()
            with contextlib.suppress(OSError):
                out.path.unlink()
            raise
        key = f"{path.parent.name}/{path.name.removesuffix('.hdf5')}"
        warning = f"{key}: {stuck}" if stuck else None
        return path, lines, warning

    def _outcome(self, ep: dict[str, Any], cols: _Columns) -> str:
        text = ep.get("takeover/outcome")
        if isinstance(text, str) and text in {o.value for o in Outcome}:
            return text
        if isinstance(ep.get("success"), bool):
            return Outcome.SUCCESS.value if ep["success"] else Outcome.FAILURE.value
        success = cols.scalar(fmt.SUCCESS_KEY, bool, None)
        if success is not None:
            return Outcome.SUCCESS.value if bool(success[-1]) else Outcome.FAILURE.value
        return Outcome.parse(self.opts.outcome).value

    def _frames(self, ep: dict[str, Any], rows: Any, timestamps: npt.NDArray[np.float64]
                ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
        assert self.camera is not None
        n = len(timestamps)
        if not self.video:
            return _image_column(rows.column(self.camera).to_pylist())
        key = self.camera
        chunk = int(ep.get(f"videos/{key}/chunk_index", 0))
        file = int(ep.get(f"videos/{key}/file_index", 0))
        path = self.root / str(self.info["video_path"]).format(
            video_key=key, chunk_index=chunk, file_index=file, episode_index=ep["episode_index"])
        if not path.is_file():
            raise LeRobotError(f"{self.root}: episode {ep['episode_index']}'s video "
                               f"{path.relative_to(self.root)} is missing")
        start = float(ep.get(f"videos/{key}/from_timestamp", 0.0)) + float(timestamps[0])
        frames, found = read_frames(path, start_s=start, count=n, fps=self.fps)
        if frames.shape[1] == 0:
            shape = self.features[key].get("shape", [0, 0, 3])
            frames = np.zeros((n, int(shape[0]), int(shape[1]), 3), dtype=np.uint8)
        return frames, found


class _Columns:
    """Columns of one episode's frames as numpy arrays."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.n = table.num_rows

    def scalar(self, name: str, dtype: Any, default: npt.NDArray[Any] | None
               ) -> npt.NDArray[Any] | None:
        if name not in self.table.column_names:
            return default
        values = self.table.column(name).to_numpy(zero_copy_only=False)
        if values.dtype == object:  # a (1,)-shaped list column
            values = np.array([v[0] if isinstance(v, list | np.ndarray) else v for v in values])
        return np.asarray(values).reshape(self.n).astype(dtype)

    def vector(self, name: str) -> npt.NDArray[np.float64]:
        import pyarrow as pa

        column = self.table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(column.type):
            flat = column.flatten().to_numpy(zero_copy_only=False)
            return np.asarray(flat, dtype=np.float64).reshape(self.n, column.type.list_size)
        return np.array(column.to_pylist(), dtype=np.float64).reshape(self.n, -1)

    def vector_or_none(self, name: str) -> npt.NDArray[np.float64] | None:
        return self.vector(name) if name in self.table.column_names else None


def _image_column(cells: list[Any]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """LeRobot `image` features: PNG/JPEG bytes in a {bytes, path} struct per frame."""
    from PIL import Image, UnidentifiedImageError

    images: list[npt.NDArray[np.uint8] | None] = []
    for cell in cells:
        data = cell.get("bytes") if isinstance(cell, dict) else None
        if not data:
            images.append(None)
            continue
        try:
            with Image.open(io.BytesIO(data)) as picture:
                images.append(np.asarray(picture.convert("RGB"), dtype=np.uint8))
        except (UnidentifiedImageError, OSError):
            images.append(None)
    shape = next((im.shape for im in images if im is not None), (0, 0, 3))
    frames = np.zeros((len(cells), *shape), dtype=np.uint8)
    found = np.zeros(len(cells), dtype=bool)
    for k, im in enumerate(images):
        if im is not None and im.shape == shape:
            frames[k] = im
            found[k] = True
    return frames, found


def parse_action_names(text: str | None) -> tuple[str, str] | None:
    """'x.vel,theta.vel' -> ('x.vel', 'theta.vel')."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise LeRobotError(f"--action-names {text!r}: expected two names, V,W (e.g. "
                           "x.vel,theta.vel)")
    return parts[0], parts[1]

