"""Real ROS 1 and ROS 2 (sqlite3, MCAP) bags written with rosbags' writers, then imported."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from rosbags.rosbag1 import Writer as Writer1
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Writer2
from rosbags.typesys import Stores, get_typestore

from takeover.errors import UsageError
from takeover.recorder.bag_import import ImportOptions, TopicMap, import_bag
from takeover.recorder.reader import read_episode
from takeover.sim.simulator import Simulator
from takeover.types import Command

T0_NS = 1_700_000_000_000_000_000  # bag clocks are Unix time
PERIOD_NS = 50_000_000


@dataclass
class BagContent:
    """What was written, per topic: [(t_ns, value)]."""

    cmd: list[tuple[int, tuple[float, float]]] = field(default_factory=list)
    odom: list[tuple[int, tuple[float, ...]]] = field(default_factory=list)
    scan: list[tuple[int, np.ndarray]] = field(default_factory=list)
    image: list[tuple[int, np.ndarray]] = field(default_factory=list)


class Msgs:
    """Message builders for one typestore (ROS 1 headers have a seq field)."""

    def __init__(self, ros1: bool) -> None:
        self.ros1 = ros1
        self.ts = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
        self.T = self.ts.types

    def ser(self, msg: Any) -> bytes:
        if self.ros1:
            return bytes(self.ts.serialize_ros1(msg, msg.__msgtype__))
        return bytes(self.ts.serialize_cdr(msg, msg.__msgtype__))

    def header(self, t_ns: int, frame: str = "base") -> Any:
        stamp = self.T["builtin_interfaces/msg/Time"](sec=t_ns // 10**9, nanosec=t_ns % 10**9)
        if self.ros1:
            return self.T["std_msgs/msg/Header"](seq=0, stamp=stamp, frame_id=frame)
        return self.T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame)

    def vec(self, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> Any:
        return self.T["geometry_msgs/msg/Vector3"](x=x, y=y, z=z)

    def twist(self, v: float, w: float) -> Any:
        return self.T["geometry_msgs/msg/Twist"](linear=self.vec(v), angular=self.vec(0, 0, w))

    def twist_stamped(self, t_ns: int, v: float, w: float) -> Any:
        return self.T["geometry_msgs/msg/TwistStamped"](header=self.header(t_ns),
                                                        twist=self.twist(v, w))

    def odometry(self, t_ns: int, x: float, y: float, yaw: float, v: float, w: float) -> Any:
        T = self.T
        pose = T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=x, y=y, z=0.0),
            orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(yaw / 2),
                                                          w=math.cos(yaw / 2)))
        return T["nav_msgs/msg/Odometry"](
            header=self.header(t_ns, "odom"), child_frame_id="base",
            pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose,
                                                           covariance=np.zeros(36)),
            twist=T["geometry_msgs/msg/TwistWithCovariance"](twist=self.twist(v, w),
                                                             covariance=np.zeros(36)))

    def laser(self, t_ns: int, ranges: np.ndarray) -> Any:
        return self.T["sensor_msgs/msg/LaserScan"](
            header=self.header(t_ns, "laser"), angle_min=-math.pi,
            angle_max=math.pi, angle_increment=2 * math.pi / len(ranges), time_increment=0.0,
            scan_time=0.1, range_min=0.05, range_max=8.0,
            ranges=ranges.astype(np.float32), intensities=np.zeros(0, dtype=np.float32))

    def compressed(self, t_ns: int, rgb: np.ndarray) -> Any:
        buf = io.BytesIO()
        PILImage.fromarray(rgb).save(buf, format="PNG")
        return self.T["sensor_msgs/msg/CompressedImage"](
            header=self.header(t_ns, "cam"), format="png",
            data=np.frombuffer(buf.getvalue(), dtype=np.uint8))

    def raw_image(self, t_ns: int, rgb: np.ndarray, encoding: str) -> Any:
        px = rgb[:, :, ::-1] if encoding == "bgr8" else rgb
        h, w, _ = rgb.shape
        step = w * 3 + 4  # padded rows, as some drivers send them
        rows = np.zeros((h, step), dtype=np.uint8)
        rows[:, : w * 3] = px.reshape(h, w * 3)
        return self.T["sensor_msgs/msg/Image"](
            header=self.header(t_ns, "cam"), height=h, width=w, encoding=encoding,
            is_bigendian=0, step=step, data=rows.reshape(-1))


def write_bag(path: Path, *, ros1: bool, storage: StoragePlugin = StoragePlugin.SQLITE3,
              steps: int = 40, stamped: bool = False, image: str = "png",
              jitter: bool = False, markers: list[tuple[int, str, Any]] | None = None,
              cmd_topic: str = "/cmd_vel", move: bool = False) -> BagContent:
    """A drive by the simulator: cmd_vel at 20 Hz, odom at 50 Hz, scan and camera at 10 Hz.
    The simulated robot follows the commands only with `move`; otherwise it stands still (a
    stuck robot, as far as the odometry can tell)."""
    m = Msgs(ros1)
    sim = Simulator(11)
    rng = np.random.default_rng(3)
    content = BagContent()
    writer: Any = Writer1(path) if ros1 else Writer2(path, version=9, storage_plugin=storage)
    with writer:
        def conn(topic: str, msgtype: str) -> Any:
            return writer.add_connection(topic, msgtype, typestore=m.ts)
        c_cmd = conn(cmd_topic, "geometry_msgs/msg/TwistStamped" if stamped
                     else "geometry_msgs/msg/Twist")
        c_odom = conn("/odom", "nav_msgs/msg/Odometry")
        c_scan = conn("/scan", "sensor_msgs/msg/LaserScan")
        c_img = conn("/camera/image" + ("/compressed" if image == "png" else ""),
                     "sensor_msgs/msg/CompressedImage" if image == "png"
                     else "sensor_msgs/msg/Image")
        c_mark = conn("/episode", "std_msgs/msg/String") if markers else None
        events: list[tuple[int, Any, bytes]] = []
        for i in range(steps * 5 // 2):  # 50 Hz physics
            t = T0_NS + i * 20_000_000 + (int(rng.integers(-3, 4)) * 1_000_000 if jitter else 0)
            obs = sim.observe(with_image=(i % 5 == 1), with_scan=(i % 5 == 3))
            o = obs.odom
            content.odom.append((t, (o.x_m, o.y_m, o.yaw_rad, o.v_mps, o.w_radps)))
            events.append((t, c_odom, m.ser(m.odometry(t, *content.odom[-1][1]))))
            if obs.scan_m is not None:
                ranges = obs.scan_m.copy()
                ranges[::17] = np.inf
                events.append((t + 1, c_scan, m.ser(m.laser(t, ranges))))
                expected = ranges.copy()
                expected[~np.isfinite(expected) | (expected > 8.0) | (expected < 0.05)] = np.nan
                content.scan.append((t + 1, expected))
            if obs.image is not None:
                msg = m.compressed(t, obs.image) if image == "png" else \
                    m.raw_image(t, obs.image, image)
                events.append((t + 2, c_img, m.ser(msg)))
                content.image.append((t + 2, obs.image))
            if move:
                k = min(steps - 1, i * 2 // 5)  # the command in force at this 50 Hz tick
                sim.command(Command(0.1 + 0.01 * k, -0.3 + 0.013 * k))
            sim.step(0.02)
        for k in range(steps):
            t = T0_NS + k * PERIOD_NS + (int(rng.integers(-5, 6)) * 1_000_000 if jitter and k
                                         else 0)
            v, w = 0.1 + 0.01 * k, -0.3 + 0.013 * k
            msg = m.twist_stamped(t, v, w) if stamped else m.twist(v, w)
            events.append((t, c_cmd, m.ser(msg)))
            content.cmd.append((t, (v, w)))
        for t, kind, value in markers or []:
            assert c_mark is not None and kind == "string"
            events.append((t, c_mark, m.ser(m.T["std_msgs/msg/String"](data=value))))
        for t, c, data in sorted(events, key=lambda e: e[0]):
            writer.write(c, t, data)
    return content


def _latest(series: list[tuple[int, Any]], t: int) -> Any:
    best = None
    for ts, value in series:
        if ts <= t:
            best = value
    return best


def check_episode(path: Path, content: BagContent, grid: np.ndarray,
                  timeout_ns: int = 500_000_000) -> None:
    ep = read_episode(path)
    np.testing.assert_array_equal(ep.t_ns, grid)
    for k, t in enumerate(grid):
        ts, (v, w) = max(((ts, val) for ts, val in content.cmd if ts <= t), key=lambda e: e[0])
        expected = (0.0, 0.0) if t - ts > timeout_ns else (v, w)
        assert tuple(ep.action[k]) == expected, k
        odom = _latest(content.odom, t)
        if odom is None:
            assert np.isnan(ep.odom[k]).all()
        else:
            np.testing.assert_allclose(ep.odom[k], odom, rtol=0, atol=1e-12)
        scan = _latest(content.scan, t)
        if scan is None:
            assert ep.scan is not None and np.isnan(ep.scan[k]).all()
        else:
            np.testing.assert_array_equal(ep.scan[k], scan)  # type: ignore[index]
        img = _latest(content.image, t)
        assert ep.image is not None
        if img is None:
            assert not ep.image[k].any()
        else:
            np.testing.assert_array_equal(ep.image[k], img)
    assert (ep.action_mode == -1).all()
    np.testing.assert_array_equal(ep.human_action, ep.action)
    assert np.isnan(ep.policy_action).all()


@pytest.mark.parametrize("storage", [StoragePlugin.SQLITE3, StoragePlugin.MCAP],
                         ids=["sqlite3", "mcap"])
def test_ros2_bag_actions_and_timestamps_match(tmp_path: Path, workspace: Path,
                                               storage: StoragePlugin) -> None:
    bag = tmp_path / "drive"
    content = write_bag(bag, ros1=False, storage=storage,
                        stamped=storage is StoragePlugin.MCAP,
                        image="png" if storage is StoragePlugin.SQLITE3 else "bgr8")
    result = import_bag(bag, workspace)
    assert result.topics["action"] == "/cmd_vel" and result.topics["odom"] == "/odom"
    [path] = result.episodes
    assert path == workspace / "rounds" / "r000" / "ep_0001.hdf5"
    grid = np.array([t for t, _ in content.cmd])  # one step per message, on its timestamp
    check_episode(path, content, grid)
    ep = read_episode(path)
    assert [tuple(a) for a in ep.action] == [v for _, v in content.cmd]
    assert ep.info.origin == "ros2-bag" and ep.info.outcome == "success"
    assert ep.info.start_time_ns == content.cmd[0][0]
    assert ep.scan_angle_min_rad == pytest.approx(-math.pi)


def test_ros1_bag_actions_and_timestamps_match(tmp_path: Path, workspace: Path) -> None:
    bag = tmp_path / "drive.bag"
    content = write_bag(bag, ros1=True, image="rgb8")
    result = import_bag(bag, workspace, ImportOptions(round=3, operator="sam"))
    [path] = result.episodes
    assert path.parent.name == "r003"
    grid = np.array([t for t, _ in content.cmd])
    check_episode(path, content, grid)
    ep = read_episode(path)
    assert ep.info.origin == "ros1-bag" and ep.info.operator == "sam"
    assert [tuple(a) for a in ep.action] == [v for _, v in content.cmd]


def test_resampling_zero_order_hold_and_stale_commands(tmp_path: Path, workspace: Path) -> None:
    bag = tmp_path / "jittery"
    content = write_bag(bag, ros1=False, jitter=True, steps=40)
    opts = ImportOptions(rate_hz=30.0, action_timeout_ms=30.0)
    [path] = import_bag(bag, workspace, opts).episodes
    t0, t1 = content.cmd[0][0], max(t for t, _ in content.cmd)
    n = math.floor((t1 - t0) / (1e9 / 30) + 1e-9) + 1
    grid = t0 + np.round(np.arange(n) * (1e9 / 30)).astype(np.int64)
    check_episode(path, content, grid, timeout_ns=30_000_000)
    assert (read_episode(path).action == 0).all(axis=1).any()  # some commands went stale


def test_markers_split_into_episodes_with_outcomes(tmp_path: Path, workspace: Path) -> None:
    bag = tmp_path / "marked"
    markers = [(T0_NS + 2 * PERIOD_NS - 1, "string", "start"),
               (T0_NS + 12 * PERIOD_NS - 1, "string", "success"),
               (T0_NS + 20 * PERIOD_NS - 1, "string", "start"),
               (T0_NS + 30 * PERIOD_NS - 1, "string", "failure"),
               (T0_NS + 33 * PERIOD_NS - 1, "string", "next")]  # opens a segment to the end
    content = write_bag(bag, ros1=False, markers=markers)
    result = import_bag(bag, workspace, ImportOptions(topics=TopicMap(marker="/episode"),
                                                      outcome="aborted"))
    infos = [read_episode(p) for p in result.episodes]
    assert [len(e) for e in infos] == [10, 10, 7]
    assert [e.info.outcome for e in infos] == ["success", "failure", "aborted"]
    cmd_t = [t for t, _ in content.cmd]
    np.testing.assert_array_equal(infos[0].t_ns, cmd_t[2:12])
    np.testing.assert_array_equal(infos[1].t_ns, cmd_t[20:30])
    assert [p.name for p in result.episodes] == ["ep_0001.hdf5", "ep_0002.hdf5", "ep_0003.hdf5"]


def test_bad_inputs_give_one_line_and_touch_nothing(tmp_path: Path, workspace: Path) -> None:
    bag = tmp_path / "good"
    write_bag(bag, ros1=False, steps=10, cmd_topic="/base/cmd")
    cases: list[tuple[Any, ImportOptions, str]] = [
        (tmp_path / "missing", ImportOptions(), "does not exist"),
        (tmp_path, ImportOptions(), "is not a ROS bag"),
        (bag, ImportOptions(topics=TopicMap(action="/nope")), "not in bag"),
        (bag, ImportOptions(topics=TopicMap(action="/odom")), "has type nav_msgs/msg/Odometry"),
        (bag, ImportOptions(outcome="great"), "unknown outcome"),
    ]
    (tmp_path / "junk.bag").write_bytes(b"not a bag at all")
    cases.append((tmp_path / "junk.bag", ImportOptions(), "cannot read bag"))
    for path, opts, text in cases:
        with pytest.raises(UsageError) as err:
            import_bag(path, workspace, opts)
        assert text in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UsageError, match="unknown role 'acton'"):
        TopicMap.parse({"acton": "/cmd_vel"})
    with pytest.raises(UsageError, match="must start with '/'"):
        TopicMap.parse({"action": "cmd_vel"})
    # The action topic is found by type even under another name.
    assert import_bag(bag, workspace).topics["action"] == "/base/cmd"
    assert len(list((workspace / "rounds" / "r000").glob("*.hdf5"))) == 1


def test_damaged_ros1_bag_is_one_line(tmp_path: Path, workspace: Path) -> None:
    bag = tmp_path / "cut.bag"
    write_bag(bag, ros1=True, steps=20, image="rgb8")
    data = bag.read_bytes()
    bag.write_bytes(data[: len(data) // 2])  # the recording was cut off: no index
    with pytest.raises(UsageError) as err:
        import_bag(bag, workspace)
    assert "cannot read bag" in str(err.value) and "\n" not in str(err.value)
    assert not (workspace / "rounds").exists() or not list(workspace.rglob("*.hdf5"))
