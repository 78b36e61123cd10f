"""The simulator exposed as a native ROS 2 robot (`takeover sim serve --ros2 [NAMESPACE]`).

What another node sees (names relative to the namespace; docs/ros2.md has the details):

    publishes  odom                        nav_msgs/msg/Odometry           50 Hz   reliable
               scan                        sensor_msgs/msg/LaserScan       10 Hz   sensor data
                                           (angle_min -pi, counter-clockwise, as 360-degree
                                           LiDARs publish; no return is +inf)
               camera/image_raw            sensor_msgs/msg/Image rgb8      20 Hz   sensor data
               camera/image_raw/compressed sensor_msgs/msg/CompressedImage (JPEG)  sensor data
               battery_state               sensor_msgs/msg/BatteryState    2 Hz    reliable
               estop, docked, bumper       std_msgs/msg/Bool               10 Hz and on change
               dock_pose                   geometry_msgs/msg/PoseStamped   1 Hz    (sim only)
               /clock                      rosgraph_msgs/msg/Clock         50 Hz   (--sim-time)
    subscribes cmd_vel                     geometry_msgs/msg/TwistStamped  reliable (as
                                           diff_drive_controller on Jazzy and later), or Twist
                                           with --twist plain
    services   estop/set                   std_srvs/srv/SetBool (true latches, false releases)
               sim/get_dock_pose           std_srvs/srv/Trigger: message = JSON {seed,
                                           dock_pose {x, y, theta}, reset_stamp_ns}
               sim/command_latency         std_srvs/srv/Trigger: JSON of the commands' stamp-
                                           to-arrival latency since the last call (the bench)
    parameter  takeover_sim seed           setting it resets the world with that seed
                                           (`ros2 param set /takeover_sim seed 7`)

With `--reset drive` (a base whose simulator plays a real one, `RealTimeBase.real_base`) there
is no dock_pose topic, no sim/ service and no seed parameter (a client's probe sees a real
robot), and docked is published and always false: the battery tells a dock.

The world's control uses standard interfaces only (a parameter and Trigger services), so no
package of custom interfaces has to be built or installed on either side.

Stamps are this computer's clock (ROS time without sim time), or with `sim_time` the simulated
clock since the server started, published on /clock as a Gazebo world does. The base stops when
the last subscriber of its commands goes away (the publisher's node exited), as the rosbridge
server stops it when its client hangs up; its watchdog (250 ms) stops it otherwise.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt

from takeover.hw.ros2 import convert
from takeover.hw.ros2.node import NodeThread
from takeover.hw.ros2.qos import reliable_qos, sensor_qos
from takeover.sim.camera_feed import CameraFeed
from takeover.sim.realtime import BaseState, RealTimeBase
from takeover.types import Command

NODE_NAME = "takeover_sim"
BATTERY_PERIOD_NS = 500_000_000
FLAGS_PERIOD_NS = 100_000_000
DOCK_POSE_PERIOD_NS = 1_000_000_000
LATENCY_SAMPLES = 100_000
OLD_WORLD_SLACK_NS = 20_000_000  # physics runs in real time: its clock never leads by this much


def quaternion_from_yaw(yaw: float) -> tuple[float, float, float, float]:
    return 0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)


def encode_jpeg(image: npt.NDArray[np.uint8], quality: int = 90) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image, "RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


class SimRos2Server:
    """A simulated base behind a ROS 2 node; rclpy spins on a thread of its own."""

    def __init__(self, namespace: str = "", seed: int = 0, domain_id: int | None = None,
                 twist_stamped: bool = True, sim_time: bool = False,
                 camera: tuple[int, int, float] | None = None,
                 base: RealTimeBase | None = None) -> None:
        from geometry_msgs.msg import PoseStamped, Twist, TwistStamped
        from nav_msgs.msg import Odometry
        from rcl_interfaces.msg import SetParametersResult
        from rclpy.event_handler import SubscriptionEventCallbacks
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import BatteryState, CompressedImage, Image, LaserScan
        from std_msgs.msg import Bool
        from std_srvs.srv import SetBool, Trigger

        self._msgs = {"Odometry": Odometry, "LaserScan": LaserScan, "Image": Image,
                      "CompressedImage": CompressedImage, "BatteryState": BatteryState,
                      "Bool": Bool, "PoseStamped": PoseStamped, "Clock": Clock}
        self._SetParametersResult = SetParametersResult
        self.namespace = namespace.strip("/")
        self.twist_stamped = twist_stamped
        self.sim_time = sim_time
        self.base = base or RealTimeBase(seed)
        self._t0_ns = time.monotonic_ns() - 1_000_000_000  # sim time starts at 1 s (0 = unset)
        self._reset_stamp_ns = self.stamp_now()
        self._reset_mono_ns = time.monotonic_ns()
        self._last_flags: tuple[bool, bool, bool] | None = None
        self._next_battery_ns = self._next_flags_ns = self._next_dock_ns = 0
        self._latency_ns: deque[int] = deque(maxlen=LATENCY_SAMPLES)
        self._drivers = 0
        self.commands_in = 0
        self._lock = threading.Lock()

        self._ros = NodeThread(NODE_NAME, "/" + self.namespace if self.namespace else "",
                               domain_id, parameter_services=True)
        node = self._ros.node
        self.domain_id: int = self._ros.context.get_domain_id()
        self._pub = {
            "odom": node.create_publisher(Odometry, "odom", reliable_qos(10)),
            "scan": node.create_publisher(LaserScan, "scan", sensor_qos()),
            "image": node.create_publisher(Image, "camera/image_raw", sensor_qos()),
            "compressed": node.create_publisher(CompressedImage, "camera/image_raw/compressed",
                                                sensor_qos()),
            "battery": node.create_publisher(BatteryState, "battery_state", reliable_qos()),
            "estop": node.create_publisher(Bool, "estop", reliable_qos()),
            "docked": node.create_publisher(Bool, "docked", reliable_qos()),
            "bumper": node.create_publisher(Bool, "bumper", reliable_qos()),
        }
        # A simulator playing a real base (base.real_base, `sim serve --ros2 --reset drive`)
        # offers none of the simulator's privileges: no dock pose, no sim services, no seed.
        if not self.base.real_base:
            self._pub["dock_pose"] = node.create_publisher(PoseStamped, "dock_pose",
                                                           reliable_qos())
        if sim_time:
            self._pub["clock"] = node.create_publisher(Clock, "/clock", reliable_qos())
        node.create_subscription(
            TwistStamped if twist_stamped else Twist, "cmd_vel", self._on_cmd_vel,
            reliable_qos(), event_callbacks=SubscriptionEventCallbacks(matched=self._on_matched))
        node.create_service(SetBool, "estop/set", self._on_estop_set)
        if not self.base.real_base:
            node.create_service(Trigger, "sim/get_dock_pose", self._on_get_dock_pose)
            node.create_service(Trigger, "sim/command_latency", self._on_command_latency)
            node.declare_parameter("seed", int(self.base.seed))
            node.add_on_set_parameters_callback(self._on_set_parameters)
        self._feed: CameraFeed | None = None
        self.base.set_sink(self)
        if camera is not None:
            self._feed = CameraFeed(self.base, self, *camera)
        self._ros.start("ros2-sim-spin")
        self.base.start()

    @property
    def url(self) -> str:
        return f"ros2://{self.namespace}"

    def stamp_now(self) -> int:
        """The robot's clock: this computer's (ROS time), or the sim clock with sim_time."""
        if self.sim_time:
            return time.monotonic_ns() - self._t0_ns
        return time.time_ns()

    def close(self) -> None:
        self.base.set_sink(None)
        if self._feed is not None:
            self._feed.close()
        self.base.stop()
        self._ros.stop()

    def __enter__(self) -> SimRos2Server:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- commands and services (spin thread) -----------------------------------------------------

    def _on_cmd_vel(self, msg: Any) -> None:
        self.commands_in += 1
        if self.twist_stamped and not self.sim_time:
            sent = convert.stamp_ns(msg.header.stamp)
            if sent:
                self._latency_ns.append(time.time_ns() - sent)
        try:
            command = convert.command_from_msg(msg)
        except (AttributeError, TypeError, ValueError):
            return
        self.base.command(command if command.is_finite else Command())

    def _on_matched(self, event: Any) -> None:
        count = int(event.current_count)
        if count < self._drivers:  # a commander went away: stop now, not at the watchdog
            self.base.host_gone()
        self._drivers = count

    def _on_estop_set(self, request: Any, response: Any) -> Any:
        self.base.set_estop(bool(request.data))
        response.success = True
        response.message = "e-stop latched" if request.data else "released"
        return response

    def _dock_values(self) -> dict[str, Any]:
        dock = self.base.dock_pose()
        return {"seed": self.base.seed, "reset_stamp_ns": self._reset_stamp_ns,
                "dock_pose": {"x": dock.x_m, "y": dock.y_m, "theta": dock.yaw_rad}}

    def _on_get_dock_pose(self, request: Any, response: Any) -> Any:
        response.success = True
        response.message = json.dumps(self._dock_values())
        return response

    def _on_command_latency(self, request: Any, response: Any) -> Any:
        samples = sorted(self._latency_ns)
        self._latency_ns.clear()

        def pct(q: float) -> float | None:
            if not samples:
                return None
            return samples[min(len(samples) - 1, max(0, math.ceil(q * len(samples)) - 1))] / 1e6

        response.success = True
        response.message = json.dumps({"samples": len(samples), "p50_ms": pct(0.5),
                                       "p99_ms": pct(0.99), "max_ms": pct(1.0)})
        return response

    def _on_set_parameters(self, params: list[Any]) -> Any:
        for param in params:
            if param.name != "seed":
                continue
            if not isinstance(param.value, int):
                return self._SetParametersResult(successful=False,
                                                 reason="seed must be an integer")
            with self._lock:
                self.base.reset(int(param.value))
                self._reset_mono_ns = time.monotonic_ns()
                self._reset_stamp_ns = self.stamp_now()
        return self._SetParametersResult(successful=True)

    # --- telemetry (physics thread) ----------------------------------------------------------------

    def _publish(self, key: str, msg: Any) -> None:
        with contextlib.suppress(Exception):  # the node is closing
            self._pub[key].publish(msg)

    def _old_world(self, t_ns: int) -> bool:
        """Telemetry the physics thread computed before a reset but hands over after it: its
        sim time (since its world's reset) is more than has passed since the last reset. Such
        a message would be stamped after the reset; it is dropped instead."""
        with self._lock:
            return t_ns > time.monotonic_ns() - self._reset_mono_ns + OLD_WORLD_SLACK_NS

    def on_state(self, state: BaseState) -> None:
        if self._old_world(state.t_ns):
            return
        m = self._msgs
        now = self.stamp_now()
        stamp = convert.time_msg(now)
        if self.sim_time:
            self._publish("clock", m["Clock"](clock=stamp))
        odom = m["Odometry"]()
        odom.header.stamp = stamp
        odom.header.frame_id = "odom"
        odom.child_frame_id = "base_link"
        o = state.odom
        odom.pose.pose.position.x, odom.pose.pose.position.y = o.x_m, o.y_m
        q = odom.pose.pose.orientation
        q.x, q.y, q.z, q.w = quaternion_from_yaw(o.yaw_rad)
        odom.twist.twist.linear.x, odom.twist.twist.angular.z = o.v_mps, o.w_radps
        self._publish("odom", odom)
        t = state.t_ns
        flags = (state.estop, state.docked, state.bumper)
        if flags != self._last_flags or t >= self._next_flags_ns or t < self._next_flags_ns \
                - FLAGS_PERIOD_NS:
            self._last_flags = flags
            self._next_flags_ns = t + FLAGS_PERIOD_NS
            for key, value in zip(("estop", "docked", "bumper"), flags, strict=True):
                self._publish(key, m["Bool"](data=value))
        if t >= self._next_battery_ns or t < self._next_battery_ns - BATTERY_PERIOD_NS:
            self._next_battery_ns = t + BATTERY_PERIOD_NS
            battery = m["BatteryState"]()
            battery.header.stamp = stamp
            battery.header.frame_id = "base_link"
            battery.voltage = 24.0 * (0.85 + 0.15 * state.battery_frac)
            battery.current = float(state.battery_current_a)  # REP 145: positive = charging
            battery.percentage = float(state.battery_frac)
            battery.power_supply_status = state.power_supply_status
            battery.present = True
            self._publish("battery", battery)
        if "dock_pose" in self._pub and (t >= self._next_dock_ns
                                         or t < self._next_dock_ns - DOCK_POSE_PERIOD_NS):
            self._next_dock_ns = t + DOCK_POSE_PERIOD_NS
            dock = self.base.sim.dock_pose
            pose = m["PoseStamped"]()
            pose.header.stamp = stamp
            pose.header.frame_id = "odom"
            pose.pose.position.x, pose.pose.position.y = dock.x_m, dock.y_m
            q = pose.pose.orientation
            q.x, q.y, q.z, q.w = quaternion_from_yaw(dock.yaw_rad)
            self._publish("dock_pose", pose)

    def on_scan(self, t_ns: int, ranges_m: npt.NDArray[np.float32]) -> None:
        if self._old_world(t_ns):
            return
        n = len(ranges_m)
        increment = 2 * math.pi / n
        scan = self._msgs["LaserScan"]()
        scan.header.stamp = convert.time_msg(self.stamp_now())
        scan.header.frame_id = "laser"
        # Beam k at -pi + k * increment (a 360-degree LiDAR's habit): takeover's beam
        # (k - n/2) mod n.
        rolled = np.roll(np.asarray(ranges_m, dtype=np.float32), n // 2)
        scan.angle_min = -math.pi
        scan.angle_increment = increment
        scan.angle_max = -math.pi + increment * (n - 1)
        scan.time_increment = 0.0
        scan.scan_time = 1.0 / self.base.scan_rate_hz
        scan.range_min, scan.range_max = 0.05, 8.0
        scan.ranges = np.where(np.isfinite(rolled), rolled, np.inf).astype(np.float32).tolist()
        self._publish("scan", scan)

    def on_image(self, t_ns: int, image: npt.NDArray[np.uint8]) -> None:
        if self._old_world(t_ns):
            return
        now = self.stamp_now()
        with contextlib.suppress(Exception):
            if self._pub["image"].get_subscription_count() > 0:
                self._publish("image", convert.image_msg_from_rgb(image, "rgb8", now))
            if self._pub["compressed"].get_subscription_count() > 0:
                msg = self._msgs["CompressedImage"]()
                msg.header.stamp = convert.time_msg(now)
                msg.header.frame_id = "camera"
                msg.format = "rgb8; jpeg compressed bgr8"  # what image_transport writes
                msg.data = encode_jpeg(image)
                self._publish("compressed", msg)
