"""The ROS 2 link over real DDS: against `takeover sim serve --ros2` in another process, and
against a scripted robot on a second Context (its own DDS participant) in this one.

DDS stays on this host (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) on a domain of this run's own
(ros2_support.isolate_dds). No timed assertions: orders and counts, with bounded waits."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from ros2_support import ScriptedRobot, isolate_dds, need_rclpy
from waiting import wait_for

from takeover.bench.links import serve_sim
from takeover.errors import LinkError, UsageError
from takeover.hw.base import LinkOptions, open_link
from takeover.hw.ros2 import convert
from takeover.hw.ros2.config import Ros2Config, parse_ros2_url
from takeover.types import Command
from takeover.workspace.layout import init_workspace

DOMAIN = isolate_dds()


@pytest.fixture(scope="module", autouse=True)
def _rclpy() -> None:
    need_rclpy()


# --- URL options (no DDS) ----------------------------------------------------------------------


def test_url_namespace_and_defaults() -> None:
    assert parse_ros2_url("ros2://") == Ros2Config()
    c = parse_ros2_url("ros2:///fleet/robot1?twist=plain&scan=/front/scan&image="
                       "camera/color/image_raw/compressed&domain=7&scan_qos=reliable")
    assert c.namespace == "/fleet/robot1" and not c.twist_stamped and c.domain_id == 7
    assert c.resolve(c.odom_topic) == "/fleet/robot1/odom"
    assert c.resolve(c.scan_topic) == "/front/scan"  # absolute names ignore the namespace
    assert c.image_compressed and c.scan_reliable and not c.image_reliable
    assert parse_ros2_url("ros2://r1?image=cam/raw&image_type=compressed").image_compressed
    assert parse_ros2_url("ros2://r1?scan=").expected_inputs == {"odom": "odom",
                                                                 "image": "camera/image_raw"}


@pytest.mark.parametrize(("url", "says"), [
    ("ros2://?speed=1", "unknown option 'speed'; ros2:// accepts"),
    ("ros2://?twist=maybe", "twist='maybe' is not one of them; use stamped or plain"),
    ("ros2://?domain=999", "domain='999' must be between 0 and 232"),
    ("ros2://?odom=", "odom= cannot be empty"),
    ("ros2://?scan_qos=fast", "scan_qos='fast' is not one of them; use sensor or reliable"),
    ("ros2://robot-1", "namespace 'robot-1' is not a ROS name"),
    ("ros2://?scan=front%20scan", "scan='front scan' is not a ROS topic name"),
    ("ros2://?timeout_ms=0", "timeout_ms='0' must be a positive number"),
])
def test_bad_url_options_are_one_line(url: str, says: str) -> None:
    with pytest.raises(UsageError) as info:
        open_link(url)
    text = str(info.value)
    assert says in text and "\n" not in text


# --- conversions (no DDS) ----------------------------------------------------------------------


def test_scan_maps_any_angle_min_onto_the_robot_frame() -> None:
    n = 8
    inc = 2 * math.pi / n
    robot = np.arange(1, n + 1, dtype=np.float32)  # beam i at 2*pi*i/n
    # A LiDAR starting at -pi, counter-clockwise: its beam k is the robot's (k - n/2) mod n.
    lidar = np.roll(robot, n // 2)
    np.testing.assert_array_equal(convert.scan_to_robot_frame(lidar, -math.pi, inc), robot)
    # Clockwise (negative increment) from +pi.
    clockwise = robot[[(n // 2 - k) % n for k in range(n)]]
    np.testing.assert_array_equal(convert.scan_to_robot_frame(clockwise, math.pi, -inc), robot)
    # A front sensor over a quarter turn: NaN where it does not look; out of range is NaN.
    front = convert.scan_to_robot_frame([0.5, 9.0, 0.01], -inc, inc, 0.05, 8.0)
    assert front[n - 1] == 0.5 and math.isnan(front[0]) and math.isnan(front[1])
    assert np.isnan(front[2:n - 1]).all()


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "rgba8", "bgra8"])
def test_raw_image_encodings_round_trip(encoding: str) -> None:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    msg = convert.image_msg_from_rgb(rgb, encoding, 1)
    # Row padding (step > width * channels) as some drivers send.
    channels = msg.step // msg.width
    padded = np.zeros((6, msg.step + 4), np.uint8)
    padded[:, :msg.step] = np.frombuffer(bytes(msg.data), np.uint8).reshape(6, msg.step)
    out = convert.raw_image_to_rgb(padded.tobytes(), encoding, 10, 6, msg.step + 4, 10, 6)
    expected = rgb if channels != 1 else np.repeat(rgb.mean(axis=2).astype(np.uint8)[:, :, None],
                                                   3, axis=2)
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="16UC1"):
        convert.raw_image_to_rgb(bytes(120), "16UC1", 10, 6, 20, 10, 6)


# --- over DDS, a scripted robot on a second Context ---------------------------------------------


def _link(url: str, timeout_s: float = 10.0) -> object:
    """Connected: connect waits for odometry (discovery), then for a scan and a frame until
    `timeout_s` (an input that never comes costs the whole of it)."""
    link = open_link(url)
    link.connect(timeout_s=timeout_s)
    return link


@pytest.mark.parametrize("encoding", ["bgr8", "mono8"])
def test_image_encodings_over_dds(encoding: str) -> None:
    """bgr8 and mono8 frames from a robot arrive as the same RGB picture."""
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[:, :8] = (200, 30, 10)  # left half red, right half blue
    rgb[:, 8:] = (10, 30, 200)
    robot = ScriptedRobot(namespace=f"enc_{encoding}", image=(encoding, rgb))
    try:
        link = open_link(f"ros2://enc_{encoding}", LinkOptions(camera_width=16, camera_height=12))
        link.connect(timeout_s=10.0)
        try:
            wait_for(lambda: (o := link.latest()) is not None and o.image is not None, 10,
                     f"a {encoding} frame")
            obs = link.latest()
            assert obs is not None and obs.image is not None
            if encoding == "bgr8":
                np.testing.assert_array_equal(obs.image, rgb)
            else:
                grey = rgb.mean(axis=2).astype(np.uint8)
                np.testing.assert_array_equal(obs.image[:, :, 0], grey)
                np.testing.assert_array_equal(obs.image[:, :, 2], grey)
            assert set(obs.input_t_ns) == {"odom", "scan", "image"}
            assert obs.t_ns == min(obs.input_t_ns.values())
        finally:
            link.close()
    finally:
        robot.close()


def test_qos_mismatch_is_named() -> None:
    """A reliable scan subscription against a best-effort LiDAR, and a robot whose cmd_vel
    subscriber asks for transient-local durability: each named, topic and policy."""
    robot = ScriptedRobot(namespace="qos", cmd_durability="transient_local")
    try:
        link = _link("ros2://qos?scan_qos=reliable&image=", timeout_s=4.0)
        try:
            wait_for(lambda: len(link.problems) >= 2, 10, "two QoS problems")  # type: ignore[attr-defined]
            problems = link.problems  # type: ignore[attr-defined]
            assert "QoS mismatch on /qos/scan (reliability)" in problems["/qos/scan"]
            assert "best effort" in problems["/qos/scan"] and "this link asks for reliable" \
                in problems["/qos/scan"]
            assert "QoS mismatch on /qos/cmd_vel (durability)" in problems["/qos/cmd_vel"]
            assert "transient local" in problems["/qos/cmd_vel"]
            assert "QoS mismatch on /qos/scan" in link.health().detail  # type: ignore[attr-defined]
            # Nothing flows on the mismatched scan topic; odometry still does (observations
            # without the scan once the link has waited for it as long as connect does).
            wait_for(lambda: link.latest() is not None, 5, "an observation")  # type: ignore[attr-defined]
            obs = link.latest()  # type: ignore[attr-defined]
            assert obs is not None and obs.scan_m is None
        finally:
            link.close()  # type: ignore[attr-defined]
    finally:
        robot.close()


def test_command_type_mismatch_is_named() -> None:
    robot = ScriptedRobot(namespace="plain", cmd_type="plain")
    try:
        link = _link("ros2://plain?image=")
        try:
            wait_for(lambda: "/plain/cmd_vel#type" in link.problems, 10, "the type mismatch")  # type: ignore[attr-defined]
            text = link.problems["/plain/cmd_vel#type"]  # type: ignore[attr-defined]
            assert "geometry_msgs/msg/Twist" in text and "set twist=plain" in text
        finally:
            link.close()  # type: ignore[attr-defined]
    finally:
        robot.close()


def test_stamp_offset_is_reported_once_and_freshness_uses_arrival() -> None:
    """A robot on sim time (stamps 1000 s behind, /clock published): one notice, however many
    messages; observations carry host receive times; commands carry the robot's clock."""
    robot = ScriptedRobot(namespace="simtime", stamp_offset_s=-1000.0, clock=True)
    try:
        before = time.monotonic_ns()
        link = _link("ros2://simtime?image=")
        try:
            wait_for(lambda: link.health().extra["odom"] >= 40, 10, "40 odometry messages")  # type: ignore[attr-defined]
            notices = [n for n in link.notices if "stamps are" in n]  # type: ignore[attr-defined]
            assert len(notices) == 1 and "behind" in notices[0]
            assert any("sim time" in n for n in link.notices)  # type: ignore[attr-defined]
            obs = link.latest()  # type: ignore[attr-defined]
            assert obs is not None and obs.t_ns >= before  # arrival time, not the stamp
            # Sent until the robot's subscription has matched ours (as the loop does, each tick).
            wait_for(lambda: link.send(Command(0.1, 0.0)) and len(robot.commands) >= 5, 10,  # type: ignore[attr-defined]
                     "the commands")
            sent = convert.stamp_ns(robot.commands[-1].header.stamp)
            assert sent < time.time_ns() - 500 * 10**9  # stamped on the robot's (sim) clock
        finally:
            link.close()  # type: ignore[attr-defined]
    finally:
        robot.close()


@pytest.mark.parametrize("zeros", ["release", "always"])
def test_zeros_on_release_then_quiet(zeros: str) -> None:
    """zeros=release: after the robot is let go, zeros for a moment and then nothing (so a
    twist_mux hands the base back); zeros=always: zeros on every tick; a latched e-stop:
    zeros on every tick either way."""
    robot = ScriptedRobot(namespace=f"zeros_{zeros}")
    try:
        link = _link(f"ros2://zeros_{zeros}?image=&zeros={zeros}")
        try:
            def published() -> float:
                return link.health().extra["tx_messages"]  # type: ignore[attr-defined, no-any-return]

            assert link.send(Command(0.2, 0.0)) == Command(0.2, 0.0)  # type: ignore[attr-defined]
            counts = []
            for _ in range(40):  # 40 ticks of a 50 Hz loop, at least 0.8 s
                before = published()
                link.send(Command(0.0, 0.0))  # type: ignore[attr-defined]
                counts.append(published() - before)
                time.sleep(0.02)
            if zeros == "release":
                assert counts[0] == 1 and sum(counts) < 40 and sum(counts[-10:]) == 0
            else:
                assert sum(counts) == 40
            link.estop()  # type: ignore[attr-defined]
            before = published()
            for _ in range(10):
                link.send(Command(0.3, 0.0))  # type: ignore[attr-defined]
                time.sleep(0.02)
            assert published() - before == 10  # latched: a zero on every tick
        finally:
            link.close()  # type: ignore[attr-defined]
    finally:
        robot.close()


def test_no_robot_is_one_line() -> None:
    with pytest.raises(LinkError) as info:
        _link("ros2://nobody_here", timeout_s=2.0)
    assert "no odometry on /nobody_here/odom" in str(info.value) or "no ROS 2 robot" \
        in str(info.value)
    assert "\n" not in str(info.value)


# --- against `takeover sim serve --ros2` in another process -------------------------------------


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    # The served robot SCHED_FIFO where permitted (root, CI): its own computer, in effect, so
    # the rest of the suite's work does not make its scans late.
    with serve_sim("ros2:simbot", seed=3, extra=["--realtime-priority", "10"]) as url:
        assert url == "ros2://simbot"
        yield url


@pytest.mark.slow
def test_expert_docks_through_drive(sim_url: str, tmp_path: Path) -> None:
    """`takeover drive --robot ros2://... --driver expert` docks the served simulator.

    What is under test is the link's plumbing over DDS, so the freshness limit is widened to
    1 s: on a loaded 2-core machine the served simulator's 10 Hz scans arrive more than 250 ms
    apart, which stops the robot as it should (tests/control/test_stale_inputs.py) but says
    nothing about the link."""
    ws = init_workspace(tmp_path / "ws")
    toml = ws / "takeover.toml"
    toml.write_text(toml.read_text().replace("obs_freshness_ms = 250.0", "obs_freshness_ms = 1000.0"))
    out = subprocess.run(
        [sys.executable, "-m", "takeover.cli", "drive", "--robot", sim_url, "--driver",
         "expert", "--episodes", "2", "--seed", "1", "--workspace", str(ws), "--json"],
        capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["episodes"] == 2 and result["successes"] == 2, result["per_episode"]
    # The charge came over DDS too (BatteryState at 2 Hz): the detector saw it, held.
    for episode in result["per_episode"]:
        assert episode["outcome_detected"] == episode["outcome_truth"] == "success", episode
        assert episode["outcome_evidence"]["signal"] == "battery_current"


def test_estop_battery_and_reset_against_the_server(sim_url: str) -> None:
    link = open_link(sim_url)
    link.connect(timeout_s=10.0)
    try:
        assert link.supports_sim_control
        link.reset(11)
        dock = link.dock_pose()
        obs = link.latest()
        assert obs is not None and obs.scan_m is not None and obs.image is not None
        assert obs.scan_m.shape == (180,) and obs.image.shape == (96, 96, 3)
        assert link.health().extra["old_world"] >= 0
        link.estop()
        wait_for(lambda: link.latest().estop and link.latest().input_t_ns["odom"]  # type: ignore[union-attr]
                 > obs.input_t_ns["odom"], 5, "the base's e-stop")
        assert link.send(Command(0.3, 0.0)) == Command(0.0, 0.0)  # latched: zero goes out
        link.clear_estop()
        wait_for(lambda: not link.latest().estop, 5, "the e-stop released")  # type: ignore[union-attr]
        # After a reset the link keeps the percentage but not the old world's charge (status
        # unknown) until the next BatteryState (2 Hz): wait for one of this world.
        wait_for(lambda: link.battery() is not None  # type: ignore[attr-defined]
                 and link.battery().power_supply_status is not None,  # type: ignore[attr-defined]
                 5, "a BatteryState of the new world")
        battery = link.battery()  # type: ignore[attr-defined]
        assert 0 <= battery.percentage <= 1 and battery.status_name == "discharging"
        assert battery.current_a < 0
        # The observation carries the charging signals (control/docking_outcome.py reads them).
        wait_for(lambda: link.latest().battery_current_a is not None,  # type: ignore[union-attr]
                 5, "an observation with a current")
        obs = link.latest()
        assert obs is not None and obs.battery_current_a is not None
        assert obs.battery_current_a < 0 and obs.power_supply_status == 2  # DISCHARGING
        link.reset(11)
        assert link.dock_pose() == dock  # the same seed, the same world
    finally:
        link.close()


def test_no_observation_without_its_camera_after_a_reset(sim_url: str) -> None:
    """A reset clears the old world's frame and scan; odometry of the new world comes first.
    No observation may go out without the camera and scan the link expects (a policy would
    fault on it: 'the robot has no camera'), while the loop keeps reading during resets."""
    link = open_link(sim_url)
    link.connect(timeout_s=10.0)
    seen: list[object] = []
    stop = threading.Event()

    def watch() -> None:
        last = None
        while not stop.is_set():
            obs = link.latest()
            if obs is not None and obs is not last:
                seen.append(obs)
                last = obs
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for seed in (21, 22, 23, 24, 25):
            before = len(seen)
            link.reset(seed)
            # The watcher must see this world too, or the check below would pass on nothing.
            wait_for(lambda n=before: len(seen) > n, 10, f"an observation after reset({seed})")
    finally:
        stop.set()
        watcher.join()
        link.close()
    assert len(seen) >= 5  # at least one for each of the five worlds
    incomplete = [o for o in seen if o.image is None or o.scan_m is None]  # type: ignore[attr-defined]
    assert incomplete == []


# --- takeover probe -----------------------------------------------------------------------------


def _probe(*args: str) -> tuple[int, dict[str, object]]:
    out = subprocess.run([sys.executable, "-m", "takeover.cli", "probe", *args, "--json"],
                         capture_output=True, text=True, timeout=60, env=os.environ.copy())
    return out.returncode, json.loads(out.stdout.strip().splitlines()[-1])


def test_probe_reports_what_the_served_robot_offers(sim_url: str) -> None:
    code, r = _probe(sim_url)
    assert code == 0 and r["verdict"] == "ready", r
    assert str(r["summary"]).startswith("ready: takeover can drive this robot")
    offers = {o["name"]: o for o in r["offers"]}  # type: ignore[attr-defined]
    scan, image = offers["/simbot/scan"], offers["/simbot/camera/image_raw"]
    assert scan["type"] == "sensor_msgs/msg/LaserScan" and scan["rate_hz"] > 0
    assert scan["qos"].startswith("best effort") and "180 beams from -180 deg" in scan["detail"]
    assert image["detail"] == "96x96 rgb8" and image["rate_hz"] > 0
    assert offers["/simbot/odom"]["qos"].startswith("reliable")
    assert "1 subscriber(s)" in offers["/simbot/cmd_vel"]["detail"]
    expects = {e["input"]: e for e in r["expects"]}  # type: ignore[attr-defined]
    for name in ("odom", "scan", "image", "battery", "estop", "cmd_vel"):
        assert expects[name]["found"], expects[name]
    assert not expects["clock"]["found"] and expects["clock"]["need"] == "optional"
    assert r["clock"]["stamp_offset_s"] is not None and r["clock"]["sim_time"] is False  # type: ignore[index]
    assert r["round_trip_ms"]["samples"] == 10  # type: ignore[index]
    assert "/simbot/sim/get_dock_pose" in r["services"]  # type: ignore[operator]
    assert r["problems"] == []


def test_probe_names_what_does_not_match(sim_url: str) -> None:
    code, r = _probe(sim_url + "?twist=plain&scan_qos=reliable&image=camera/color/image_raw")
    assert code == 1 and r["verdict"] == "not usable"
    problems = "\n".join(r["problems"])  # type: ignore[arg-type]
    assert "/simbot/cmd_vel takes geometry_msgs/msg/TwistStamped" in problems
    assert "(set twist=stamped)" in problems
    assert "QoS mismatch on /simbot/scan (reliability)" in problems
    assert "no image on /simbot/camera/color/image_raw: no such topic in the graph; " \
           "sensor_msgs/msg/Image is on /simbot/camera/image_raw (set image=)" in problems


def test_probe_other_schemes_share_the_report() -> None:
    code, r = _probe("sim://", "--seconds", "0.5")
    assert code == 0 and r["scheme"] == "sim" and r["verdict"] == "ready"
    assert {o["name"] for o in r["offers"]} >= {"observation", "image", "scan"}  # type: ignore[attr-defined]
    bad = subprocess.run([sys.executable, "-m", "takeover.cli", "probe", "ros2://?bogus=1"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().count("\n") == 0 and "unknown option 'bogus'" in bad.stderr
