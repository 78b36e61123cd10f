"""ROS 2 in tests: DDS kept on this host and on a domain of this test run's own, and a scripted
robot on a second Context (a DDS participant of its own, talking to the link over real DDS).

Call `isolate_dds()` before anything initialises rclpy (the fixtures below do): it sets
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a ROS_DOMAIN_ID (1-100) derived from the process id,
or under pytest-xdist from the run and the worker, so parallel runs never hear each other; child
processes inherit both.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
import time
import zlib
from typing import Any

import numpy as np
from ci_needs import need


def isolate_dds() -> int:
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if "TAKEOVER_TEST_ROS_DOMAIN_ID" not in os.environ:
        os.environ["TAKEOVER_TEST_ROS_DOMAIN_ID"] = str(1 + _run_slot() % 100)
    domain = int(os.environ["TAKEOVER_TEST_ROS_DOMAIN_ID"])
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    return domain


def _run_slot() -> int:
    """This test process's slot: its pid, or under pytest-xdist (`make test-fast`) the run's
    shared id plus the worker's number, so two workers of one run never share a domain."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    run_uid = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")
    if worker.startswith("gw") and worker[2:].isdigit() and run_uid:
        return zlib.crc32(run_uid.encode()) + int(worker[2:])
    return os.getpid()


def need_rclpy() -> None:
    need(importlib.util.find_spec("rclpy") is not None,
         "rclpy is not installed (pip install 'takeover[ros2]')")


class ScriptedRobot:
    """A ROS 2 robot base on a Context of its own: odometry (and what else a test asks for) at
    `rate_hz` from a thread, stamped `stamp_offset_s` away from this computer's clock."""

    def __init__(self, namespace: str = "", rate_hz: float = 50.0,
                 stamp_offset_s: float = 0.0, scan_reliable: bool = False,
                 image: tuple[str, np.ndarray] | None = None, clock: bool = False,
                 cmd_type: str = "stamped", cmd_durability: str = "volatile") -> None:
        from geometry_msgs.msg import Twist, TwistStamped
        from nav_msgs.msg import Odometry
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Image, LaserScan

        from takeover.hw.ros2.node import NodeThread
        from takeover.hw.ros2.qos import reliable_qos, sensor_qos

        self.ros = NodeThread(NodeThread.unique_name("scripted_robot"), namespace)
        node = self.ros.node
        self.offset_ns = int(stamp_offset_s * 1e9)
        self.odom_pub = node.create_publisher(Odometry, "odom", reliable_qos(10))
        self.scan_pub = node.create_publisher(
            LaserScan, "scan", reliable_qos() if scan_reliable else sensor_qos())
        self.image_pub = node.create_publisher(Image, "camera/image_raw", sensor_qos())
        self.clock_pub = node.create_publisher(Clock, "/clock", reliable_qos()) if clock else None
        self.image = image
        self.commands: list[Any] = []
        cmd_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL
                             if cmd_durability == "transient_local" else DurabilityPolicy.VOLATILE)
        node.create_subscription(TwistStamped if cmd_type == "stamped" else Twist, "cmd_vel",
                                 self.commands.append, cmd_qos)
        self._msgs = (Odometry, LaserScan, Image, Clock)
        self._rate_hz = rate_hz
        self._stop = threading.Event()
        self.ros.start("scripted-robot-spin")
        self._thread = threading.Thread(target=self._run, name="scripted-robot", daemon=True)
        self._thread.start()

    def stamp(self) -> int:
        return time.time_ns() + self.offset_ns

    def _run(self) -> None:
        from takeover.hw.ros2 import convert

        Odometry, LaserScan, _, Clock = self._msgs
        k = 0
        while not self._stop.wait(1.0 / self._rate_hz):
            t = self.stamp()
            msg = Odometry()
            msg.header.stamp = convert.time_msg(t)
            msg.pose.pose.orientation.w = 1.0
            self.odom_pub.publish(msg)
            if self.clock_pub is not None:
                self.clock_pub.publish(Clock(clock=convert.time_msg(t)))
            scan = LaserScan()
            scan.header.stamp = convert.time_msg(t)
            scan.angle_min, scan.angle_increment = -math.pi, 2 * math.pi / 8
            scan.range_min, scan.range_max = 0.05, 10.0
            scan.ranges = [1.0 + i for i in range(8)]
            self.scan_pub.publish(scan)
            if self.image is not None:
                encoding, rgb = self.image
                self.image_pub.publish(convert.image_msg_from_rgb(rgb, encoding, t))
            k += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.ros.stop()
