"""Export episodes to MCAP with Foxglove's protobuf schemas, so that an episode opens in
Foxglove (3D, Image, Plot, State Transitions and Log panels).

| topic | schema | what (every step unless said) |
| --- | --- | --- |
| `/camera/image` | `foxglove.CompressedImage` | the camera frame, JPEG (default) or PNG (*) |
| `/scan` | `foxglove.LaserScan` | LiDAR ranges in `base_link`, NaN = no return (*) |
| `/odom` | `foxglove.Odometry` | pose in `odom`, measured velocity in `base_link` (*) |
| `/pose` | `foxglove.PoseInFrame` | the same pose, for the 3D panel (*) |
| `/tf` | `foxglove.FrameTransform` | odom -> base_link (*) |
| `/cmd_vel` | `takeover.Twist` | the command sent: linear.x m/s, angular.z rad/s |
| `/policy_action`, `/human_action` | `takeover.Twist` | the policy's proposal, the operator's input |
| `/drive_state` | `takeover.DriveState` | mode, who drove (source), Sirius label, reason, contacts, battery |
| `/log` | `foxglove.Log` | episode start and end (outcome); each change of mode or of who drives |

(*) on steps with an observation.

Foxglove has no schema for a velocity command or for a drive mode, so those two are small
protobuf messages of our own (`takeover.Twist` mirrors geometry_msgs/Twist, with a
timestamp); their schemas travel inside the file like Foxglove's. Times are wall-clock:
`start_time_ns` plus the tick's offset on the loop clock. Each episode's attributes are an MCAP
metadata record `takeover.episode`.

OUT ending in `.mcap` receives every given episode in one file; any other OUT is a directory that
receives one `rNNN_ep_NNNN.mcap` per episode. Files are written under a temporary name and
renamed when complete; existing files are replaced only when asked.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from takeover.recorder import schema
from takeover.recorder.errors import ExportError
from takeover.recorder.reader import Episode, read_episode
from takeover.workspace.atomic import fsync_dir

IMAGE_FORMATS = ("jpeg", "png")
ODOM_FRAME = "odom"
BASE_FRAME = "base_link"
CAMERA_FRAME = "camera"
LABEL_NAMES = {-1: "demonstration", 0: "robot", 1: "intervention",
               schema.ACTION_MODE_UNLABELED: "unlabeled"}
_PROTO_FILE = "takeover/drive.proto"


@dataclass(frozen=True)
class McapExportSummary:
    files: list[Path]
    episodes: int
    messages: dict[str, int] = field(default_factory=dict)  # topic -> messages written


def export_mcap(episodes: Iterable[Path], out: Path | str, *, image_format: str = "jpeg",
                jpeg_quality: int = 90, overwrite: bool = False) -> McapExportSummary:
    """Write the episode files `episodes` to `out` (see the module doc)."""
    paths = list(episodes)
    if not paths:
        raise ExportError("no episode given")
    if image_format not in IMAGE_FORMATS:
        raise ExportError(f"image format {image_format!r}: use {' or '.join(IMAGE_FORMATS)}")
    out = Path(out).expanduser().absolute()
    single = out.suffix == ".mcap"
    if single:
        targets = [(out, paths)]
    else:
        if out.exists() and not out.is_dir():
            raise ExportError(f"{out} exists and is not a directory (end OUT with .mcap for "
                              "one file)")
        targets = [(out / _file_name(p), [p]) for p in paths]
    if not out.parent.is_dir():
        raise ExportError(f"cannot write {out}: directory {out.parent} does not exist")
    existing = [t for t, _ in targets if t.exists()]
    if existing and not overwrite:
        raise ExportError(f"{existing[0]} exists; not overwriting it (pass --force to replace it)")
    if not single:
        out.mkdir(exist_ok=True)
    counts: Counter[str] = Counter()
    written: list[Path] = []
    for target, sources in targets:
        episodes_read = [read_episode(p) for p in sources] if single else None
        _write_file(target, episodes_read or [read_episode(sources[0])], image_format,
                    jpeg_quality, counts)
        written.append(target)
    return McapExportSummary(written, len(paths), dict(counts))


def _file_name(path: Path) -> str:
    return f"{path.parent.name}_{path.name.split('.')[0]}.mcap"


def _write_file(target: Path, episodes: list[Episode], image_format: str, jpeg_quality: int,
                counts: Counter[str]) -> None:
    from mcap_protobuf.writer import Writer

    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            writer = Writer(f)
            for ep in episodes:
                _write_episode(writer, ep, image_format, jpeg_quality, counts)
            writer.finish()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _write_episode(writer: Any, ep: Episode, image_format: str, jpeg_quality: int,
                   counts: Counter[str]) -> None:
    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
    from foxglove_schemas_protobuf.FrameTransform_pb2 import FrameTransform
    from foxglove_schemas_protobuf.LaserScan_pb2 import LaserScan
    from foxglove_schemas_protobuf.Log_pb2 import Log
    from foxglove_schemas_protobuf.Odometry_pb2 import Odometry
    from foxglove_schemas_protobuf.PoseInFrame_pb2 import PoseInFrame

    twist_cls, state_cls = drive_messages()
    info = ep.info
    if len(ep) == 0:
        return
    wall = info.start_time_ns + (ep.t_ns - ep.t_ns[0])
    record = {k: str(v) for k, v in info.to_json().items() if k != "extra"}
    writer.add_metadata("takeover.episode", {"key": info.key, **record})

    def put(topic: str, message: Any, t_ns: int) -> None:
        writer.write_message(topic, message, log_time=int(t_ns), publish_time=int(t_ns))
        counts[topic] += 1

    def log(t_ns: int, level: Any, text: str) -> None:
        msg = Log(level=level, message=text, name="takeover")
        msg.timestamp.FromNanoseconds(int(t_ns))
        put("/log", msg, t_ns)

    info_level, warning_level = Log.Level.INFO, Log.Level.WARNING
    log(int(wall[0]), info_level,
        f"{info.key} start: round {info.round}, model {info.model_id or '-'}, operator "
        f"{info.operator or '-'}, robot {info.robot_url or '-'}")
    previous: tuple[int, int] | None = None
    encoded: tuple[npt.NDArray[np.uint8], bytes] | None = None  # the last frame, encoded
    beams = ep.scan.shape[1] if ep.scan is not None else 0
    for k in range(len(ep)):
        t = int(wall[k])
        mode = schema.MODE_BY_CODE[int(ep.mode[k])]
        source = schema.SOURCE_BY_CODE[int(ep.source[k])]
        label = int(ep.action_mode[k])
        reason = bytes(ep.reason[k]).decode("utf-8", errors="replace")
        if previous != (int(ep.mode[k]), int(ep.source[k])):
            change = f"mode {mode.value}, {source.value} drives ({LABEL_NAMES.get(label, label)})"
            log(t, warning_level if label == 1 else info_level,
                change + (f": {reason}" if reason else ""))
            previous = (int(ep.mode[k]), int(ep.source[k]))
        state = state_cls(mode=mode.value, source=source.value, action_mode=label,
                          label=LABEL_NAMES.get(label, str(label)), reason=reason,
                          obs_valid=bool(ep.obs_valid[k]), docked=bool(ep.docked[k]),
                          estop=bool(ep.estop[k]), bumper=bool(ep.bumper[k]),
                          battery_frac=float(ep.battery_frac[k]))
        state.timestamp.FromNanoseconds(t)
        put("/drive_state", state, t)
        for topic, row in (("/cmd_vel", ep.action[k]), ("/policy_action", ep.policy_action[k]),
                           ("/human_action", ep.human_action[k])):
            if topic != "/cmd_vel" and not np.isfinite(row).all():
                continue
            twist = twist_cls()
            twist.timestamp.FromNanoseconds(t)
            twist.linear.x = float(row[0])
            twist.angular.z = float(row[1])
            put(topic, twist, t)
        if not ep.obs_valid[k]:
            continue
        x, y, yaw, v, w = (float(a) for a in ep.odom[k])
        if all(math.isfinite(a) for a in (x, y, yaw)):
            qz, qw = math.sin(yaw / 2), math.cos(yaw / 2)
            odom = Odometry(frame_id=ODOM_FRAME, body_frame_id=BASE_FRAME)
            odom.timestamp.FromNanoseconds(t)
            odom.pose.position.x, odom.pose.position.y = x, y
            odom.pose.orientation.z, odom.pose.orientation.w = qz, qw
            odom.linear_velocity.x = v
            odom.angular_velocity.z = w
            put("/odom", odom, t)
            pose = PoseInFrame(frame_id=ODOM_FRAME)
            pose.timestamp.FromNanoseconds(t)
            pose.pose.CopyFrom(odom.pose)
            put("/pose", pose, t)
            tf = FrameTransform(parent_frame_id=ODOM_FRAME, child_frame_id=BASE_FRAME)
            tf.timestamp.FromNanoseconds(t)
            tf.translation.x, tf.translation.y = x, y
            tf.rotation.z, tf.rotation.w = qz, qw
            put("/tf", tf, t)
        if ep.scan is not None:
            start = ep.scan_angle_min_rad
            scan = LaserScan(frame_id=BASE_FRAME, start_angle=start,
                             end_angle=start + (beams - 1) * ep.scan_angle_increment_rad,
                             ranges=ep.scan[k].astype(np.float64).tolist())
            scan.pose.orientation.w = 1.0
            scan.timestamp.FromNanoseconds(t)
            put("/scan", scan, t)
        if ep.image is not None:
            frame = ep.image[k]
            if encoded is None or not np.array_equal(encoded[0], frame):  # camera slower than loop
                encoded = (frame, encode_image(frame, image_format, jpeg_quality))
            image = CompressedImage(frame_id=CAMERA_FRAME, data=encoded[1],
                                    format=image_format)
            image.timestamp.FromNanoseconds(t)
            put("/camera/image", image, t)
    end = int(wall[-1])
    log(end, info_level, f"{info.key} end: {info.outcome}"
        + (f" ({info.end_reason})" if info.end_reason else ""))


def encode_image(frame: npt.NDArray[np.uint8], image_format: str, jpeg_quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    if image_format == "png":
        Image.fromarray(frame).save(buf, format="PNG")
    else:
        Image.fromarray(frame).save(buf, format="JPEG", quality=jpeg_quality)
    return buf.getvalue()


def drive_messages() -> tuple[Any, Any]:
    """The protobuf classes `takeover.Twist` and `takeover.DriveState`, built once in the
    default descriptor pool (next to Foxglove's, whose Vector3 they use)."""
    from foxglove_schemas_protobuf import Vector3_pb2
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_PROTO_FILE)
    except KeyError:
        proto = descriptor_pb2.FileDescriptorProto(
            name=_PROTO_FILE, package="takeover", syntax="proto3",
            dependency=[timestamp_pb2.DESCRIPTOR.name, Vector3_pb2.DESCRIPTOR.name])
        f = descriptor_pb2.FieldDescriptorProto

        def add(message: Any, name: str, number: int, kind: int, type_name: str = "") -> None:
            field = message.field.add(name=name, number=number, type=kind,
                                      label=f.LABEL_OPTIONAL)
            if type_name:
                field.type_name = type_name

        twist = proto.message_type.add(name="Twist")
        add(twist, "timestamp", 1, f.TYPE_MESSAGE, ".google.protobuf.Timestamp")
        add(twist, "linear", 2, f.TYPE_MESSAGE, ".foxglove.Vector3")
        add(twist, "angular", 3, f.TYPE_MESSAGE, ".foxglove.Vector3")
        state = proto.message_type.add(name="DriveState")
        add(state, "timestamp", 1, f.TYPE_MESSAGE, ".google.protobuf.Timestamp")
        add(state, "mode", 2, f.TYPE_STRING)
        add(state, "source", 3, f.TYPE_STRING)
        add(state, "action_mode", 4, f.TYPE_SINT32)
        add(state, "label", 5, f.TYPE_STRING)
        add(state, "reason", 6, f.TYPE_STRING)
        add(state, "obs_valid", 7, f.TYPE_BOOL)
        add(state, "docked", 8, f.TYPE_BOOL)
        add(state, "estop", 9, f.TYPE_BOOL)
        add(state, "bumper", 10, f.TYPE_BOOL)
        add(state, "battery_frac", 11, f.TYPE_DOUBLE)
        pool.Add(proto)
    twist_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("takeover.Twist"))
    state_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("takeover.DriveState"))
    return twist_cls, state_cls
