"""Import ROS bags (ROS 1 `.bag`; ROS 2 sqlite3 or MCAP) as episodes, through `rosbags`.

The topic map names the bag's topics for each role; a role left out is found by message type
(and by the usual name where several topics have the type):

    action  geometry_msgs/Twist or TwistStamped (required)  the command sent to the base
    odom    nav_msgs/Odometry                                 default name /odom
    scan    sensor_msgs/LaserScan                             default name /scan
    image   sensor_msgs/CompressedImage or Image              (rgb8, bgr8, rgba8, bgra8, mono8)
    marker  std_msgs/String, Bool, Empty or an integer       optional: splits the bag

Resampling: every topic is timed by the bag's receive timestamps (one clock for all topics;
a Twist has no header). Steps are laid on a grid at `rate_hz` from the segment's first action
message to its last; each step takes, from every topic, the newest message at or before its
time (what a control loop at that rate would have seen). An action older than
`action_timeout_ms` at a step counts as zero, as the base's watchdog would have made it. When the
action topic runs at the grid's rate, steps and messages correspond one to one, with the
messages' own timestamps.

Segments: without a marker topic the whole bag is one episode. With one, a String marker
"start"/"begin" opens a segment and "stop"/"end" closes it ("success"/"failure"/"aborted" close
it with that outcome); a Bool opens on true and closes on false; any other marker message
(Empty, an integer, other text) closes the current segment and opens the next.

Hygiene (import_hygiene.py): a bag whose content was imported already is skipped with one line
unless `force`; a segment whose robot never moves though it was commanded is flagged `stuck`
in its `extra` and in the result's `warnings`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from takeover.recorder.codec import Compression
from takeover.recorder.episode_file import EpisodeFileWriter, EpisodeMeta, ObsSpec, StepColumns
from takeover.recorder.errors import BagImportError, TopicMapError
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
from takeover.recorder.schema import MODE_CODES, SOURCE_CODES
from takeover.types import (
    ACTION_MODE_DEMONSTRATION,
    ACTION_MODE_INTERVENTION,
    ACTION_MODE_ROBOT,
    CommandSource,
    Mode,
    Outcome,
)

ROLES = ("action", "odom", "scan", "image", "marker")
ROLE_TYPES: dict[str, tuple[str, ...]] = {
    "action": ("geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped"),
    "odom": ("nav_msgs/msg/Odometry",),
    "scan": ("sensor_msgs/msg/LaserScan",),
    "image": ("sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/Image"),
    "marker": ("std_msgs/msg/String", "std_msgs/msg/Bool", "std_msgs/msg/Empty",
               *(f"std_msgs/msg/{t}" for t in ("Int8", "Int16", "Int32", "Int64", "UInt8",
                                              "UInt16", "UInt32", "UInt64"))),
}
DEFAULT_NAMES = {"action": "/cmd_vel", "odom": "/odom", "scan": "/scan", "image": "",
                 "marker": ""}
ACTION_MODE_NAMES = {"demonstration": ACTION_MODE_DEMONSTRATION, "robot": ACTION_MODE_ROBOT,
                     "intervention": ACTION_MODE_INTERVENTION}
_START_WORDS = {"start", "begin"}
_END_WORDS = {"stop", "end"}


@dataclass(frozen=True)
class TopicMap:
    """Topic name per role; None = find it by message type."""

    action: str | None = None
    odom: str | None = None
    scan: str | None = None
    image: str | None = None
    marker: str | None = None

    @classmethod
    def parse(cls, items: Mapping[str, Any]) -> TopicMap:
        """From {role: topic}; TopicMapError (one line) for an unknown role or a bad value."""
        unknown = sorted(set(items) - set(ROLES))
        if unknown:
            raise TopicMapError(f"topic map: unknown role {unknown[0]!r}; roles are "
                                f"{', '.join(ROLES)}")
        values: dict[str, str | None] = {}
        for role, topic in items.items():
            if topic is None or topic == "":
                values[role] = None
                continue
            if not isinstance(topic, str) or not topic.startswith("/"):
                raise TopicMapError(f"topic map: {role} = {topic!r} is not a topic name "
                                    "(it must start with '/')")
            values[role] = topic
        return cls(**values)

    @classmethod
    def from_pairs(cls, pairs: list[str]) -> TopicMap:
        """From ['action=/cmd_vel', 'odom=/odom', ...] (the CLI's --topic)."""
        items: dict[str, str] = {}
        for pair in pairs:
            role, sep, topic = pair.partition("=")
            if not sep:
                raise TopicMapError(f"--topic {pair!r}: expected ROLE=/topic, e.g. "
                                    "action=/cmd_vel")
            items[role.strip()] = topic.strip()
        return cls.parse(items)


@dataclass(frozen=True)
class ImportOptions:
    """How to import. action_mode: the Sirius label of the imported steps (-1 by default:
    a bag of someone driving is a demonstration). outcome: of every imported episode.
    force: import a bag whose content is in the workspace already."""

    round: int = 0
    rate_hz: float = 20.0
    topics: TopicMap = field(default_factory=TopicMap)
    action_mode: int = ACTION_MODE_DEMONSTRATION
    outcome: str = Outcome.SUCCESS.value
    operator: str = ""
    action_timeout_ms: float = 500.0
    min_steps: int = 2
    compression: str | None = None
    force: bool = False


@dataclass(frozen=True)
class ImportResult:
    bag: Path
    episodes: list[Path]
    topics: dict[str, str]  # role -> topic used
    skipped: list[str]  # one line per segment or frame left out
    warnings: list[str] = field(default_factory=list)  # one line per flagged episode (stuck)
    already_imported: list[str] = field(default_factory=list)  # earlier episodes of this content
    digest: str = ""  # source_digest of the bag


@dataclass
class _Stream:
    topic: str
    msgtype: str
    t_ns: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    def times(self) -> npt.NDArray[np.int64]:
        return np.asarray(self.t_ns, dtype=np.int64)


def _bag_kind(path: Path) -> tuple[Path, str]:
    """(the path rosbags opens, 'ros1-bag' | 'ros2-bag')."""
    if not path.exists():
        raise BagImportError(f"bag {path} does not exist")
    if path.is_file() and path.suffix == ".bag":
        return path, "ros1-bag"
    if path.is_file() and path.suffix in (".db3", ".mcap") and \
            (path.parent / "metadata.yaml").exists():
        return path.parent, "ros2-bag"
    if path.is_dir() and (path / "metadata.yaml").exists():
        return path, "ros2-bag"
    raise BagImportError(f"{path} is not a ROS bag: expected a ROS 1 .bag file or a ROS 2 bag "
                         "directory (with metadata.yaml)")


def _open_reader(path: Path, kind: str) -> Any:
    from rosbags.highlevel import AnyReader, AnyReaderError
    from rosbags.typesys import Stores, get_typestore

    store = Stores.ROS1_NOETIC if kind == "ros1-bag" else Stores.ROS2_HUMBLE
    try:
        reader = AnyReader([path], default_typestore=get_typestore(store))
        reader.open()
    except (AnyReaderError, OSError, ValueError, KeyError) as err:
        raise BagImportError(f"cannot read bag {path}: {str(err).strip() or type(err).__name__}"
                             ) from None
    return reader


def _resolve_topics(reader: Any, wanted: TopicMap, bag: Path) -> dict[str, str]:
    available = {name: info.msgtype for name, info in reader.topics.items()}
    chosen: dict[str, str] = {}
    for role in ROLES:
        types = ROLE_TYPES[role]
        topic = getattr(wanted, role)
        if topic is not None:
            if topic not in available:
                raise TopicMapError(f"topic map: {role} topic {topic} is not in bag {bag.name} "
                                    f"(topics: {', '.join(sorted(available)) or 'none'})")
            if available[topic] not in types:
                raise TopicMapError(f"topic map: {role} topic {topic} has type "
                                    f"{available[topic]}, expected {' or '.join(types)}")
            chosen[role] = topic
            continue
        if role == "marker":
            continue  # markers are only used when asked for
        candidates = sorted(t for t, ty in available.items() if ty in types)
        if len(candidates) > 1 and DEFAULT_NAMES[role] in candidates:
            candidates = [DEFAULT_NAMES[role]]
        if len(candidates) == 1:
            chosen[role] = candidates[0]
        elif len(candidates) > 1:
            raise TopicMapError(f"bag {bag.name} has several {role} topics "
                                f"({', '.join(candidates)}); choose one with --topic "
                                f"{role}=TOPIC")
        elif role == "action":
            raise TopicMapError(f"bag {bag.name} has no action topic (Twist or TwistStamped); "
                                f"topics: {', '.join(sorted(available)) or 'none'}")
    return chosen


def _yaw(q: Any) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def decode_image(msg: Any, topic: str) -> npt.NDArray[np.uint8]:
    """An RGB (H, W, 3) uint8 frame from a sensor_msgs Image or CompressedImage."""
    if hasattr(msg, "format"):  # CompressedImage
        from PIL import Image, UnidentifiedImageError
        try:
            with Image.open(io.BytesIO(bytes(msg.data))) as im:
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as err:
            raise BagImportError(f"{topic}: cannot decode a {msg.format!r} image ({err})"
                                 ) from None
    encoding = msg.encoding.lower()
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(encoding)
    if channels is None:
        raise BagImportError(f"{topic}: image encoding {msg.encoding!r} is not supported "
                             "(use rgb8, bgr8, rgba8, bgra8, mono8 or a CompressedImage)")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(h, step)
    px = rows[:, : w * channels].reshape(h, w, channels)
    if encoding == "mono8":
        return np.repeat(px, 3, axis=2)
    if encoding.startswith("bgr"):
        px = px[:, :, 2::-1]
    return np.ascontiguousarray(px[:, :, :3])


def _marker_event(msg: Any, msgtype: str) -> tuple[str, str | None]:
    """('start' | 'end' | 'split', outcome or None) for one marker message."""
    if msgtype.endswith("/String"):
        word = str(msg.data).strip().lower()
        if word in _START_WORDS:
            return "start", None
        if word in _END_WORDS:
            return "end", None
        if word in {o.value for o in Outcome}:
            return "end", word
        return "split", None
    if msgtype.endswith("/Bool"):
        return ("start", None) if bool(msg.data) else ("end", None)
    return "split", None


def _segments(markers: _Stream | None, t_first: int, t_last: int
              ) -> list[tuple[int, int, str | None]]:
    """[(start_ns, end_ns exclusive, outcome or None)] in time order."""
    if markers is None:
        return [(t_first, t_last + 1, None)]
    segments: list[tuple[int, int, str | None]] = []
    open_at: int | None = t_first
    for t, (event, outcome) in zip(markers.t_ns, markers.values, strict=True):
        if event == "start":
            open_at = t
        elif event == "end":
            if open_at is not None:
                segments.append((open_at, t, outcome))
            open_at = None
        else:
            if open_at is not None:
                segments.append((open_at, t, None))
            open_at = t
    if open_at is not None:
        segments.append((open_at, t_last + 1, None))
    return segments


def _read_streams(reader: Any, topics: dict[str, str]) -> dict[str, _Stream]:
    """Pass 1: every message but the images' pixels (image times only)."""
    conns = {c.topic: c for c in reader.connections if c.topic in topics.values()}
    role_of = {topic: role for role, topic in topics.items()}
    streams = {role: _Stream(topic, conns[topic].msgtype) for role, topic in topics.items()}
    selected = [c for c in reader.connections if c.topic in role_of]
    for conn, t_ns, raw in reader.messages(connections=selected):
        role = role_of[conn.topic]
        s = streams[role]
        s.t_ns.append(t_ns)
        if role == "image":
            continue
        msg = reader.deserialize(raw, conn.msgtype)
        if role == "action":
            twist = msg.twist if hasattr(msg, "twist") else msg
            s.values.append((float(twist.linear.x), float(twist.angular.z)))
        elif role == "odom":
            p, tw = msg.pose.pose, msg.twist.twist
            s.values.append((float(p.position.x), float(p.position.y), _yaw(p.orientation),
                             float(tw.linear.x), float(tw.angular.z)))
        elif role == "scan":
            ranges = np.asarray(msg.ranges, dtype=np.float32).copy()
            bad = ~np.isfinite(ranges) | (ranges < msg.range_min) | (ranges > msg.range_max)
            ranges[bad] = np.nan
            s.values.append((ranges, float(msg.angle_min), float(msg.angle_increment)))
        else:
            s.values.append(_marker_event(msg, conn.msgtype))
    return streams


def _image_messages(reader: Any, topic: str) -> Iterator[Any]:
    selected = [c for c in reader.connections if c.topic == topic]
    for conn, _, raw in reader.messages(connections=selected):
        yield reader.deserialize(raw, conn.msgtype)


def import_bag(bag: Path | str, workspace: Path | str,
               options: ImportOptions | None = None) -> ImportResult:
    """Import one bag into `workspace/rounds/rNNN/` (see the module doc)."""
    opts = options or ImportOptions()
    ws = check_workspace(workspace)
    if opts.action_mode not in (ACTION_MODE_DEMONSTRATION, ACTION_MODE_ROBOT,
                                ACTION_MODE_INTERVENTION):
        raise BagImportError(f"action mode {opts.action_mode} is not -1, 0 or 1")
    if not opts.rate_hz > 0:
        raise BagImportError(f"rate must be positive, got {opts.rate_hz}")
    try:
        Outcome.parse(opts.outcome)
    except ValueError as err:
        raise BagImportError(str(err)) from None
    compression = Compression.parse(opts.compression)
    path = Path(bag).expanduser()
    open_path, kind = _bag_kind(path)
    digest = source_digest(open_path)
    with WorkspaceLock(ws):
        earlier = earlier_imports(ws, digest)
        if earlier and not opts.force:
            return ImportResult(path, [], {}, [], already_imported=earlier, digest=digest)
        reader = _open_reader(open_path, kind)
        try:
            topics = _resolve_topics(reader, opts.topics, path)
            streams = _read_streams(reader, topics)
            episodes, skipped, warnings = _write_episodes(reader, streams, topics, opts, ws, path,
                                                          kind, compression, digest)
        except _bag_errors() as err:  # a damaged bag: one line, episodes written so far stay
            raise BagImportError(f"cannot read bag {path}: {str(err).strip() or type(err).__name__}"
                                 ) from None
        finally:
            reader.close()
    return ImportResult(path, episodes, topics, skipped, warnings, digest=digest)


def _bag_errors() -> tuple[type[Exception], ...]:
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as Ros1ReaderError
    from rosbags.rosbag2 import ReaderError as Ros2ReaderError
    from rosbags.serde import SerdeError
    return (AnyReaderError, Ros1ReaderError, Ros2ReaderError, SerdeError)


def _write_episodes(reader: Any, streams: dict[str, _Stream], topics: dict[str, str],
                    opts: ImportOptions, ws: Path, bag: Path, kind: str,
                    compression: Compression, digest: str
                    ) -> tuple[list[Path], list[str], list[str]]:
    action = streams["action"]
    if not action.t_ns:
        raise BagImportError(f"bag {bag.name}: action topic {action.topic} has no message")
    act_t = action.times()
    act_v = np.asarray(action.values, dtype=np.float64)
    period_ns = 1e9 / opts.rate_hz
    timeout_ns = opts.action_timeout_ms * 1e6
    image_stream = streams.get("image")
    image_iter = _image_messages(reader, image_stream.topic) if image_stream else None
    image_pos = -1  # index of the last image message taken from image_iter
    image_frame: npt.NDArray[np.uint8] | None = None
    spec = _obs_spec(streams, reader)

    episodes: list[Path] = []
    skipped: list[str] = []
    warnings: list[str] = []
    directory = round_dir(ws, opts.round)
    segments = _segments(streams.get("marker"), int(act_t[0]), int(act_t[-1]))
    for seg_no, (start, end, seg_outcome) in enumerate(segments):
        inside = np.flatnonzero((act_t >= start) & (act_t < end))
        if len(inside) == 0:
            skipped.append(f"segment {seg_no}: no action message")
            continue
        t0, t1 = int(act_t[inside[0]]), int(act_t[inside[-1]])
        n = math.floor((t1 - t0) / period_ns + 1e-9) + 1
        if n < opts.min_steps:
            skipped.append(f"segment {seg_no}: {n} step(s), fewer than {opts.min_steps}")
            continue
        grid = t0 + np.round(np.arange(n) * period_ns).astype(np.int64)
        ia = _latest(action, grid)
        io_, isc, iim = (_latest(streams.get("odom"), grid), _latest(streams.get("scan"), grid),
                         _latest(image_stream, grid))
        cmds = act_v[ia]
        stale = (grid - act_t[ia]) > timeout_ns
        cmds[stale] = 0.0
        columns = StepColumns(spec)
        bad_scans = 0
        odom = streams.get("odom")
        scan = streams.get("scan")
        mode = {ACTION_MODE_DEMONSTRATION: Mode.MANUAL, ACTION_MODE_ROBOT: Mode.AUTO,
                ACTION_MODE_INTERVENTION: Mode.TAKEOVER}[opts.action_mode]
        source = CommandSource.POLICY if opts.action_mode == ACTION_MODE_ROBOT \
            else CommandSource.HUMAN
        for k in range(n):
            has_odom = odom is not None and io_[k] >= 0
            obs_times = [odom.t_ns[io_[k]] if has_odom and odom else -1,
                         image_stream.t_ns[iim[k]] if image_stream and iim[k] >= 0 else -1,
                         scan.t_ns[isc[k]] if scan and isc[k] >= 0 else -1]
            valid = any(t >= 0 for t in obs_times)
            row: dict[str, Any] = {
                "t_ns": grid[k], "step": k, "obs/valid": valid,
                "obs/t_ns": next((t for t in obs_times if t >= 0), -1),
                "obs/odom": odom.values[io_[k]] if has_odom and odom else (math.nan,) * 5,
                "obs/battery_frac": math.nan, "obs/docked": False, "obs/estop": False,
                "obs/bumper": False,
                "action": cmds[k], "policy_action": (math.nan, math.nan),
                "human_action": cmds[k] if source is CommandSource.HUMAN else (math.nan,) * 2,
                "action_mode": opts.action_mode, "source": SOURCE_CODES[source],
                "mode": MODE_CODES[mode], "reason": b"",
                "timing/loop_late_ns": 0, "timing/policy_latency_ns": 0,
            }
            if spec.scan_beams is not None:
                assert scan is not None
                ranges = scan.values[isc[k]][0] if isc[k] >= 0 else None
                if ranges is not None and len(ranges) != spec.scan_beams:
                    bad_scans += 1
                    ranges = None
                row["obs/scan"] = ranges
            columns.add_row(row)

        arrays = columns.take()
        stuck = stuck_robot(arrays["action"], arrays["obs/odom"], opts.rate_hz)
        extra: dict[str, str | int] = {"bag": str(bag), "segment": seg_no, DIGEST_KEY: digest}
        if stuck:
            extra.update({FLAGS_KEY: STUCK_FLAG, STUCK_FLAG: stuck})
        index, final = reserve_episode(directory)
        meta = EpisodeMeta(
            round=opts.round, rate_hz=opts.rate_hz, operator=opts.operator,
            robot_url=f"bag://{bag.name}", origin=kind, start_time_ns=int(grid[0]),
            config={"import": {"bag": str(bag), "topics": topics, "rate_hz": opts.rate_hz,
                               "action_timeout_ms": opts.action_timeout_ms}},
            extra=extra,
        )
        out = EpisodeFileWriter(final, meta, spec, compression, episode_index=index,
                                crash_safe=False, staging_suffix=INIT_SUFFIX, reserved=True)
        try:
            bad_frames = 0
            for k in range(n):
                frame = None
                if image_iter is not None and iim[k] >= 0:
                    while image_pos < iim[k]:
                        msg = next(image_iter)
                        image_pos += 1
                        if image_pos == iim[k]:
                            image_frame = decode_image(msg, image_stream.topic)  # type: ignore[union-attr]
                    frame = image_frame
                if not out.write_frame(frame):
                    bad_frames += 1
            out.append_columns(arrays)
            last_t = int(grid[-1])
            path = out.finalize(seg_outcome or opts.outcome, end_reason="imported",
                                end_time_ns=last_t + int(period_ns))
        except BaseException:
            out.abandon()
            out.path.unlink(missing_ok=True)
            raise
        if bad_frames:
            skipped.append(f"{path.name}: {bad_frames} frame(s) of another size stored empty")
        if bad_scans:
            skipped.append(f"{path.name}: {bad_scans} scan(s) with another beam count stored "
                           "as NaN")
        if stuck:
            warnings.append(f"{path.parent.name}/{path.name.removesuffix('.hdf5')}: {stuck}")
        episodes.append(path)
    return episodes, skipped, warnings


def _latest(stream: _Stream | None, grid: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Per grid time, the index of the stream's newest message at or before it (-1: none)."""
    if stream is None or not stream.t_ns:
        return np.full(len(grid), -1, dtype=np.int64)
    return np.searchsorted(stream.times(), grid, side="right").astype(np.int64) - 1


def _obs_spec(streams: dict[str, _Stream], reader: Any) -> ObsSpec:
    image_shape = None
    image = streams.get("image")
    if image is not None and image.t_ns:
        first = next(_image_messages(reader, image.topic))
        h, w, _ = decode_image(first, image.topic).shape
        image_shape = (h, w, 3)
    scan = streams.get("scan")
    if scan is not None and scan.values:
        ranges, angle_min, angle_inc = scan.values[0]
        return ObsSpec(image_shape, len(ranges), angle_min, angle_inc)
    return ObsSpec(image_shape, None)


def parse_action_mode(text: str) -> int:
    """'demonstration' | 'robot' | 'intervention' or -1 | 0 | 1."""
    t = text.strip().lower()
    if t in ACTION_MODE_NAMES:
        return ACTION_MODE_NAMES[t]
    if t in ("-1", "0", "1"):
        return int(t)
    raise BagImportError(f"action mode {text!r}: use demonstration, robot or intervention")


__all__ = ["ImportOptions", "ImportResult", "TopicMap", "decode_image", "import_bag",
           "parse_action_mode"]
