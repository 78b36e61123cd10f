"""`ros2://[namespace]`: a ROS 2 robot reached natively over rclpy (docs/ros2.md).

    ros2://robot1?twist=stamped&image=camera/image_raw&scan=scan

Options and defaults are in `takeover.hw.ros2.config`. Threads: rclpy is spun by a thread of
its own (`NodeThread`: own Context, own executor), which runs every subscription callback;
camera frames are converted on another thread, newest only, so a large frame never delays
odometry. `send` publishes from the caller's thread (rclpy publishers are safe to use from any
thread) and returns at once; `latest` returns a reference. Neither waits on the network.

Commands: at the loop rate while takeover drives; when it lets go, zeros for 250 ms and then
nothing until it drives again (teleop_twist_joy's habit: a twist_mux then hands the base back
to navigation, and the base's cmd_vel_timeout holds it still meanwhile); `zeros=always` keeps
sending zeros instead. A latched e-stop sends zeros at the loop rate, and close() one zero.

Time: freshness is judged on the host's receive time (`time.monotonic_ns`, `now_ns`), never on
a message's stamp, so a robot on sim time (/clock) or with an unsynchronised clock is not
"stale". A stamp far from this computer's clock is reported once (`notices`, health detail),
and stamped commands then carry the robot's clock (this computer's plus the offset seen), so
diff_drive_controller's cmd_vel_timeout does not drop them.

Observation: one per odometry message (odometry paces the link, as on the other links).
`input_t_ns` holds when odom, scan and image last arrived (by those names); an input the
configuration expects that has not arrived yet counts from the moment the link connected (or
the world was reset), so it shows as stale and is named, never silently absent. `t_ns` is the
oldest of them. The battery (`battery()`: percentage, current, power_supply_status) is kept
apart: BatteryState comes at 1-2 Hz and is not a freshness input.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from takeover.errors import LinkError, UsageError
from takeover.hw.base import LinkHealth, LinkOptions, RobotLink
from takeover.hw.ros2 import convert
from takeover.hw.ros2.config import Ros2Config, parse_ros2_url
from takeover.hw.ros2.node import NodeThread
from takeover.hw.ros2.qos import describe_mismatch, qos_for, sensor_qos
from takeover.types import ZERO_COMMAND, Command, Observation, Odometry, Pose2D

STAMP_OFFSET_REPORT_S = 1.0  # a stamp further than this from our clock is reported (once)
SERVICE_TIMEOUT_S = 2.0
SIM_DISCOVERY_S = 1.0  # how long connect looks for the simulator's services in the graph
LATENCY_SAMPLES = 20_000
ZERO_HOLD_NS = 250_000_000  # zeros=release: how long zeros go out after the robot is let go
GRAPH_CHECK_S = 1.0  # how often the link looks at the graph for type mismatches
CLOSE_ACK_TIMEOUT_S = 0.3


@dataclass(frozen=True)
class BatteryReading:
    """The newest sensor_msgs/BatteryState (for the docking lifecycle: charge detection).

    percentage: 0..1 (NaN when the base does not say); current_a: amperes as the base reports
    them (REP 145: negative while discharging; NaN when unknown); power_supply_status: the
    message's constant (1 charging, 2 discharging, ...); t_ns: host receive time."""

    percentage: float
    current_a: float
    voltage_v: float
    power_supply_status: int | None  # None: not known since a simulator reset
    t_ns: int

    @property
    def status_name(self) -> str:
        status = self.power_supply_status
        return "unknown" if status is None else convert.POWER_SUPPLY_STATUS.get(status, "unknown")


def open_ros2_link(url: str, options: LinkOptions) -> Ros2Link:
    return Ros2Link(url, parse_ros2_url(url), options)


class _LatestWorker:
    """Runs `work` on its own thread over the newest item only (older ones are dropped)."""

    def __init__(self, name: str, work: Callable[[int, Any], None]) -> None:
        self._work = work
        self._cond = threading.Condition()
        self._pending: tuple[int, Any] | None = None
        self._stop = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, t_ns: int, item: Any) -> None:
        with self._cond:
            if self._pending is not None:
                self.dropped += 1
            self._pending = (t_ns, item)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(2.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                assert self._pending is not None
                t_ns, item = self._pending
                self._pending = None
            self._work(t_ns, item)


class Ros2Link(RobotLink):
    """A ROS 2 robot over rclpy. Thread-safe."""

    def __init__(self, url: str, config: Ros2Config, options: LinkOptions | None = None) -> None:
        super().__init__(url)
        self.config = config
        self.options = options or LinkOptions()
        self._node: NodeThread | None = None
        self._cmd_pub: Any = None
        self._dock_client: Any = None
        self._estop_client: Any = None
        self._params_client: Any = None
        self._images: _LatestWorker | None = None
        self._lock = threading.Lock()
        self._obs_cond = threading.Condition()
        self._running = False
        self._estop_latched = False
        self._is_sim = False
        self._probed = False
        self._dock: Pose2D | None = None
        # incoming state (written by the spin thread, read anywhere)
        self._odom: Odometry | None = None
        self._odom_t_ns = 0
        self._scan: tuple[int, npt.NDArray[np.float32]] | None = None
        self._image: tuple[int, npt.NDArray[np.uint8]] | None = None
        self._image_info: tuple[int, int, str] | None = None  # width, height, encoding/format
        self._battery: BatteryReading | None = None
        self._estop = self._docked = self._bumper = False
        self._latest: Observation | None = None
        self._since_ns = 0  # inputs not seen yet count from here (connect, reset)
        self._hold_until_ns = 0  # observations wait for every expected input until then
        self._min_stamp_ns: int | None = None  # after a sim reset: older messages are the old world
        self._last_rx_ns = 0
        self._stamp_offset_ns: int | None = None  # robot stamp - our wall clock, once it is large
        self._sim_clock = False
        self._cmd_subscribers = 0
        self._released_ns: int | None = None  # when the commands became zero (zeros=release)
        self._graph_types: dict[str, tuple[str, bool]] = {}  # topic -> (our type, we publish)
        self.problems: dict[str, str] = {}  # topic -> what is wrong (QoS or type mismatch)
        self.notices: list[str] = []  # things said once (stamp offset, sim time)
        self._counts: dict[str, int] = {
            "odom": 0, "scans": 0, "images": 0, "image_frames": 0, "image_errors": 0,
            "battery": 0, "flags": 0, "bad_messages": 0, "old_world": 0, "tx_messages": 0,
            "qos_mismatches": 0, "clock": 0,
        }
        self._tx_latency_ns: deque[int] = deque(maxlen=LATENCY_SAMPLES)

    # --- capabilities ----------------------------------------------------------------------------

    @property
    def supports_sim_control(self) -> bool:
        """Before connecting: True (a ROS 2 graph may hold the simulator's server, so a caller
        may plan for it). After: whether the graph offers its services; reset() on a real robot
        raises UsageError."""
        return self._is_sim if self._probed else True

    # --- RobotLink ---------------------------------------------------------------------------------

    def connect(self, timeout_s: float = 5.0) -> None:
        if self._node is not None:
            return
        deadline = time.monotonic() + timeout_s
        c = self.config
        node_thread = NodeThread(NodeThread.unique_name("takeover"), c.namespace, c.domain_id)
        self._node = node_thread
        try:
            self._create_entities(node_thread.node)
        except Exception:
            self._shutdown()
            raise
        self._since_ns = time.monotonic_ns()
        self._hold_until_ns = self._since_ns + int(timeout_s * 1e9)
        self._running = True
        node_thread.start("ros2-link-spin")
        with self._obs_cond:
            while self._odom is None and time.monotonic() < deadline:
                self._obs_cond.wait(0.05)
        if self._odom is None:
            reason = self._no_odometry_reason()
            self._shutdown()
            raise LinkError(f"{self.url}: {reason}")
        self._is_sim = self._dock_client.wait_for_service(
            timeout_sec=max(0.0, min(SIM_DISCOVERY_S, deadline - time.monotonic())))
        self._probed = True
        self._wait_complete_observation(deadline)

    def send(self, command: Command) -> Command:
        t_call_ns = time.monotonic_ns()
        if self._estop_latched or not command.is_finite:
            command = ZERO_COMMAND
        pub = self._cmd_pub
        if not self._running or pub is None:
            return ZERO_COMMAND
        if command.is_zero and not self._estop_latched and not self.config.zeros_always:
            # Let go: zeros for a moment, then quiet, so a twist_mux hands the base back to a
            # lower priority (navigation); the base's own timeout holds it meanwhile.
            if self._released_ns is None:
                self._released_ns = t_call_ns
            elif t_call_ns - self._released_ns > ZERO_HOLD_NS:
                return command
        else:
            self._released_ns = None
        try:
            pub.publish(self._twist(command))
        except Exception:  # the node is closing under us
            return ZERO_COMMAND
        self._tx_latency_ns.append(time.monotonic_ns() - t_call_ns)
        self._counts["tx_messages"] += 1
        return command

    def latest(self) -> Observation | None:
        return self._latest

    def health(self) -> LinkHealth:
        now = time.monotonic_ns()
        age_ms = float("inf") if self._last_rx_ns == 0 else (now - self._last_rx_ns) / 1e6
        odom_age_ms = float("inf") if self._odom_t_ns == 0 else (now - self._odom_t_ns) / 1e6
        extra = {k: float(v) for k, v in self._counts.items()}
        extra["images_dropped"] = float(self._images.dropped if self._images else 0)
        extra["cmd_subscribers"] = float(self._cmd_subscribers)
        if self._stamp_offset_ns is not None:
            extra["stamp_offset_s"] = self._stamp_offset_ns / 1e9
        parts = [f"ROS 2 {self.config.namespace or '/'} (domain "
                 f"{self._node.context.get_domain_id() if self._node else '-'})"]
        if self._running and odom_age_ms >= self.config.timeout_ms:
            parts.append(f"no odometry on {self.config.resolve(self.config.odom_topic)} for "
                         f"{odom_age_ms:.0f} ms")
        if self._running and self._cmd_subscribers == 0:
            parts.append(f"nobody subscribes to {self.config.resolve(self.config.cmd_vel_topic)}")
        parts.extend(list(self.problems.values()))  # (a copy: the spin thread adds to it)
        parts.extend(self.notices[-1:])
        return LinkHealth(
            connected=self._running and odom_age_ms < self.config.timeout_ms,
            frames_ok=sum(self._counts[k] for k in ("odom", "scans", "images", "battery",
                                                     "flags")),
            frames_bad=self._counts["bad_messages"] + self._counts["image_errors"],
            lost=0,
            last_rx_age_ms=age_ms,
            rtt_ms=None,
            detail="; ".join(parts),
            extra=extra,
        )

    def close(self) -> None:
        if self._node is None:
            return
        pub = self._cmd_pub
        if pub is not None and self._running:
            with contextlib.suppress(Exception):  # stop the base before letting go
                pub.publish(self._twist(ZERO_COMMAND))
                from rclpy.duration import Duration

                pub.wait_for_all_acked(Duration(seconds=CLOSE_ACK_TIMEOUT_S))
        self._shutdown()

    def estop(self) -> None:
        self._estop_latched = True
        self.send(ZERO_COMMAND)
        self._set_base_estop(True)

    def clear_estop(self) -> None:
        self._set_base_estop(False)
        self._estop_latched = False

    # --- what else the robot tells ---------------------------------------------------------------

    def battery(self) -> BatteryReading | None:
        """The newest BatteryState, or None before any (or without a battery topic)."""
        return self._battery

    @property
    def sim_clock(self) -> bool:
        """The robot publishes /clock (it runs on sim time)."""
        return self._sim_clock

    def tx_latency_samples_ns(self) -> list[int]:
        """Command-to-wire latencies (send() call until rclpy's publish returned)."""
        return list(self._tx_latency_ns)

    # --- simulator control -----------------------------------------------------------------------

    def reset(self, seed: int) -> None:
        if not self._is_sim:
            raise UsageError(
                f"{self.url}: reset is only available on a simulator (the graph has no "
                f"{self.config.resolve(self.config.dock_service)} service)")
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters

        request = SetParameters.Request()
        request.parameters = [Parameter(name="seed", value=ParameterValue(
            type=ParameterType.PARAMETER_INTEGER, integer_value=int(seed)))]
        reply = self._call(self._params_client, request, "set_parameters seed")
        if not reply.results or not reply.results[0].successful:
            why = reply.results[0].reason if reply.results else "no result"
            raise LinkError(f"{self.url}: the simulator refused the reset: {why}")
        values = self._sim_values()
        with self._obs_cond:
            self._min_stamp_ns = int(values.get("reset_stamp_ns", 0)) or None
            self._latest = None
            self._odom = None
            self._scan = self._image = None
            # The old world's charge is no evidence about the new one: unknown until the next
            # BatteryState (the percentage stays, a battery does not change with the room).
            if self._battery is not None:
                self._battery = dataclasses.replace(self._battery, current_a=math.nan,
                                                    power_supply_status=None)
            self._since_ns = time.monotonic_ns()
            self._hold_until_ns = self._since_ns + int(SERVICE_TIMEOUT_S * 1e9)
        self._wait_complete_observation(time.monotonic() + SERVICE_TIMEOUT_S)

    def dock_pose(self) -> Pose2D:
        if self._dock is not None:
            return self._dock
        if not self._is_sim:
            return super().dock_pose()
        self._sim_values()
        assert self._dock is not None
        return self._dock

    def sim_command_latency(self) -> dict[str, Any] | None:
        """The simulator's figures for this link's commands since the last ask: stamp (set in
        `send`) to arrival at the simulated base, on this computer's clock (`takeover sim serve
        --ros2` only; None elsewhere)."""
        if not self._is_sim or self._node is None:
            return None
        from std_srvs.srv import Trigger

        client = self._node.node.create_client(Trigger, "sim/command_latency")
        if not client.wait_for_service(timeout_sec=SIM_DISCOVERY_S):
            return None
        reply = self._call(client, Trigger.Request(), "sim/command_latency")
        try:
            return dict(json.loads(reply.message))
        except (ValueError, TypeError):
            return None

    def _sim_values(self) -> dict[str, Any]:
        from std_srvs.srv import Trigger

        reply = self._call(self._dock_client, Trigger.Request(), "sim/get_dock_pose")
        try:
            values = json.loads(reply.message)
            pose = values["dock_pose"]
            self._dock = Pose2D(float(pose["x"]), float(pose["y"]), float(pose["theta"]))
        except (ValueError, KeyError, TypeError):
            raise LinkError(f"{self.url}: the simulator's answer has no dock_pose") from None
        return dict(values)

    def _call(self, client: Any, request: Any, what: str) -> Any:
        """Call a service from this (non-executor) thread and wait for the answer."""
        if client is None or not self._running:
            raise LinkError(f"{self.url}: not connected; {what} not called")
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(SERVICE_TIMEOUT_S):
            with contextlib.suppress(Exception):
                client.remove_pending_request(future)
            raise LinkError(f"{self.url}: {what} did not answer within {SERVICE_TIMEOUT_S:g} s")
        result = future.result()
        if result is None:
            raise LinkError(f"{self.url}: {what} failed: {future.exception()}")
        return result

    def _set_base_estop(self, engage: bool) -> None:
        """Latch or release the base's own e-stop, where the graph offers its service (fire and
        forget: the caller must not wait on the network; asked only when it exists)."""
        client = self._estop_client
        if client is None or not self._running or not client.service_is_ready():
            return
        from std_srvs.srv import SetBool

        with contextlib.suppress(Exception):
            client.call_async(SetBool.Request(data=engage))

    # --- setup -------------------------------------------------------------------------------------

    def _create_entities(self, node: Any) -> None:
        from geometry_msgs.msg import Twist, TwistStamped
        from nav_msgs.msg import Odometry as OdometryMsg
        from rcl_interfaces.srv import SetParameters
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import BatteryState, CompressedImage, Image, LaserScan
        from std_msgs.msg import Bool
        from std_srvs.srv import SetBool, Trigger

        c = self.config
        cmd_type = TwistStamped if c.twist_stamped else Twist
        cmd_qos = qos_for(c.cmd_reliable)
        self._cmd_pub = node.create_publisher(
            cmd_type, c.cmd_vel_topic, cmd_qos,
            event_callbacks=self._publisher_events(node, c.cmd_vel_topic, cmd_qos, cmd_type))
        subscriptions: list[tuple[str, Any, Any, Callable[[Any], None]]] = [
            (c.odom_topic, OdometryMsg, qos_for(c.odom_reliable), self._on_odom),
            (c.scan_topic, LaserScan, qos_for(c.scan_reliable), self._on_scan),
            (c.battery_topic, BatteryState, sensor_qos(), self._on_battery),
            (c.estop_topic, Bool, sensor_qos(), self._flag("_estop")),
            (c.docked_topic, Bool, sensor_qos(), self._flag("_docked")),
            (c.bumper_topic, Bool, sensor_qos(), self._flag("_bumper")),
            (c.clock_topic, Clock, sensor_qos(), self._on_clock),
        ]
        if c.image_topic:
            image_type = CompressedImage if c.image_compressed else Image
            subscriptions.append((c.image_topic, image_type, qos_for(c.image_reliable),
                                  self._on_image_msg))
            self._images = _LatestWorker("ros2-link-images", self._convert_image)
        self._graph_types = {c.resolve(c.cmd_vel_topic): (self._type_name(cmd_type), True)}
        for topic, msg_type, qos, callback in subscriptions:
            if not topic:
                continue
            self._graph_types[c.resolve(topic)] = (self._type_name(msg_type), False)
            node.create_subscription(
                msg_type, topic, self._guarded(callback), qos,
                event_callbacks=self._subscription_events(node, topic, qos, msg_type))
        check = self._guarded(lambda _msg: self._check_graph(node))
        node.create_timer(GRAPH_CHECK_S, lambda: check(None))
        self._dock_client = node.create_client(Trigger, c.dock_service)
        self._params_client = node.create_client(SetParameters, f"{c.sim_node}/set_parameters")
        if c.estop_service:
            self._estop_client = node.create_client(SetBool, c.estop_service)

    def _type_name(self, msg_type: Any) -> str:
        module = msg_type.__module__.split(".")[0]
        return f"{module}/msg/{msg_type.__name__}"

    def _subscription_events(self, node: Any, topic: str, qos: Any, msg_type: Any) -> Any:
        from rclpy.event_handler import SubscriptionEventCallbacks

        full = self.config.resolve(topic)

        def incompatible_qos(event: Any) -> None:
            theirs = [i.qos_profile for i in node.get_publishers_info_by_topic(full)]
            self._problem(full, describe_mismatch(full, event.last_policy_kind, qos,
                                                  theirs, we_publish=False))

        def incompatible_type(event: Any) -> None:
            types = sorted({i.topic_type for i in node.get_publishers_info_by_topic(full)})
            self._problem(full, f"type mismatch on {full}: the robot publishes "
                                f"{', '.join(types) or 'another type'}; this link expects "
                                f"{self._type_name(msg_type)}")

        def matched(event: Any) -> None:
            key = full + "#publishers"
            if full == self.config.resolve(self.config.odom_topic) and event.current_count > 1:
                self._problem(key, f"{event.current_count} publishers on {full}: two robots in "
                                   "one namespace? (give each its own namespace or domain)")
            else:
                self.problems.pop(key, None)

        return SubscriptionEventCallbacks(incompatible_qos=incompatible_qos,
                                          incompatible_type=incompatible_type, matched=matched)

    def _publisher_events(self, node: Any, topic: str, qos: Any, msg_type: Any) -> Any:
        from rclpy.event_handler import PublisherEventCallbacks

        full = self.config.resolve(topic)

        def incompatible_qos(event: Any) -> None:
            theirs = [i.qos_profile for i in node.get_subscriptions_info_by_topic(full)]
            self._problem(full, describe_mismatch(full, event.last_policy_kind, qos,
                                                  theirs, we_publish=True))

        def incompatible_type(event: Any) -> None:
            types = sorted({i.topic_type for i in node.get_subscriptions_info_by_topic(full)})
            hint = "twist=plain" if self.config.twist_stamped else "twist=stamped"
            self._problem(full, f"type mismatch on {full}: the robot subscribes with "
                                f"{', '.join(types) or 'another type'}; this link publishes "
                                f"{self._type_name(msg_type)} (set {hint})")

        def matched(event: Any) -> None:
            self._cmd_subscribers = int(event.current_count)

        return PublisherEventCallbacks(incompatible_qos=incompatible_qos,
                                       incompatible_type=incompatible_type, matched=matched)

    def _check_graph(self, node: Any) -> None:
        """Name a topic whose other side uses another message type (DDS matches nothing then,
        and not every middleware raises the incompatible-type event)."""
        for topic, (ours, we_publish) in self._graph_types.items():
            infos = (node.get_subscriptions_info_by_topic(topic) if we_publish
                     else node.get_publishers_info_by_topic(topic))
            others = sorted({i.topic_type for i in infos} - {ours})
            key = topic + "#type"
            if not others:
                self.problems.pop(key, None)
                continue
            if we_publish:
                hint = " (set twist=plain)" if "geometry_msgs/msg/Twist" in others else (
                    " (set twist=stamped)" if "geometry_msgs/msg/TwistStamped" in others else "")
                text = (f"type mismatch on {topic}: the robot subscribes with "
                        f"{', '.join(others)}; this link publishes {ours}{hint}")
            else:
                text = (f"type mismatch on {topic}: the robot publishes {', '.join(others)}; "
                        f"this link expects {ours}")
            self._problem(key, text)

    def _problem(self, topic: str, text: str) -> None:
        if self.problems.get(topic) != text:
            self._counts["qos_mismatches"] += 1
        self.problems[topic] = text

    def _no_odometry_reason(self) -> str:
        c = self.config
        topic = c.resolve(c.odom_topic)
        if topic in self.problems:
            return self.problems[topic]
        node = self._node.node if self._node is not None else None
        seen: list[str] = []
        if node is not None:
            with contextlib.suppress(Exception):
                seen = [name for name, _ in node.get_topic_names_and_types()]
        domain = self._node.context.get_domain_id() if self._node is not None else "?"
        if not seen:
            return (f"no ROS 2 robot found in domain {domain} (no topics at all); check "
                    f"ROS_DOMAIN_ID (or ?domain=N) and ROS_AUTOMATIC_DISCOVERY_RANGE")
        shown = ", ".join(sorted(seen)[:12]) + (" ..." if len(seen) > 12 else "")
        return (f"no odometry on {topic} (nav_msgs/msg/Odometry); the graph has: {shown}; "
                f"set odom= or the namespace (`takeover probe {self.url}` tells more)")

    # --- incoming (spin thread) ------------------------------------------------------------------

    def _guarded(self, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        def run(msg: Any) -> None:
            try:
                callback(msg)
            except Exception:  # a message of an unusable shape: count it, keep going
                self._counts["bad_messages"] += 1
        return run

    def _stamp_ok(self, header: Any) -> bool:
        """Note the stamp's offset from our clock; False for a message of the world before the
        last simulator reset."""
        t = convert.stamp_ns(header.stamp)
        if t == 0:
            return True  # an unstamped message says nothing about clocks
        minimum = self._min_stamp_ns
        if minimum is not None and t < minimum:
            self._counts["old_world"] += 1
            return False
        offset = t - time.time_ns()
        if abs(offset) > STAMP_OFFSET_REPORT_S * 1e9:
            if self._stamp_offset_ns is None:
                why = (f"sim time: it publishes {self.config.resolve(self.config.clock_topic)}"
                       if self._sim_clock else "sim time, or clocks not synchronised")
                self._notice(
                    f"the robot's stamps are {abs(offset) / 1e9:.1f} s "
                    f"{'behind' if offset < 0 else 'ahead of'} this computer's clock ({why}); "
                    "freshness is judged on arrival time, and commands are stamped on the "
                    "robot's clock")
            self._stamp_offset_ns = offset
        elif self._stamp_offset_ns is not None:
            self._stamp_offset_ns = offset
        return True

    def _notice(self, text: str) -> None:
        self.notices.append(text)

    def _on_odom(self, msg: Any) -> None:
        if not self._stamp_ok(msg.header):
            return
        now = time.monotonic_ns()
        odom = convert.odometry_from_msg(msg)
        self._counts["odom"] += 1
        self._last_rx_ns = self._odom_t_ns = now
        self._odom = odom
        self._publish_observation(now, odom)

    def _on_scan(self, msg: Any) -> None:
        if not self._stamp_ok(msg.header):
            return
        now = time.monotonic_ns()
        self._scan = (now, convert.scan_from_msg(msg))
        self._counts["scans"] += 1
        self._last_rx_ns = now

    def _on_image_msg(self, msg: Any) -> None:
        if not self._stamp_ok(msg.header):
            return
        now = time.monotonic_ns()
        self._counts["image_frames"] += 1
        self._last_rx_ns = now
        if self._images is not None:
            self._images.submit(now, msg)

    def _convert_image(self, t_ns: int, msg: Any) -> None:
        width, height = self.options.camera_width, self.options.camera_height
        try:
            if self.config.image_compressed:
                image = convert.compressed_to_rgb(msg.data, width, height)
                self._image_info = (width, height, str(msg.format))
            else:
                image = convert.raw_image_to_rgb(msg.data, msg.encoding, msg.width, msg.height,
                                                 msg.step, width, height)
                self._image_info = (int(msg.width), int(msg.height), str(msg.encoding))
        except Exception as exc:  # a corrupt or unsupported frame must not end the camera
            self._counts["image_errors"] += 1
            self._problem(self.config.resolve(self.config.image_topic) + "#frames",
                          f"camera frames on {self.config.resolve(self.config.image_topic)} "
                          f"cannot be used: {exc}")
            return
        min_stamp = self._min_stamp_ns
        if min_stamp is not None and convert.stamp_ns(msg.header.stamp) < min_stamp:
            return
        self._image = (t_ns, image)
        self._counts["images"] += 1

    def _on_battery(self, msg: Any) -> None:
        now = time.monotonic_ns()
        if not self._stamp_ok(msg.header):
            return  # charging in the old world says nothing about this one
        percentage = float(msg.percentage)
        self._battery = BatteryReading(
            percentage=percentage if math.isfinite(percentage) else math.nan,
            current_a=float(msg.current), voltage_v=float(msg.voltage),
            power_supply_status=int(msg.power_supply_status), t_ns=now)
        self._counts["battery"] += 1
        self._last_rx_ns = now

    def _flag(self, attr: str) -> Callable[[Any], None]:
        def on_flag(msg: Any) -> None:
            setattr(self, attr, bool(msg.data))
            self._counts["flags"] += 1
            self._last_rx_ns = time.monotonic_ns()
        return on_flag

    def _on_clock(self, msg: Any) -> None:
        self._counts["clock"] += 1
        if not self._sim_clock:
            self._sim_clock = True
            self._notice(f"the robot publishes {self.config.resolve(self.config.clock_topic)}: "
                         "it runs on sim time")

    def _publish_observation(self, now: int, odom: Odometry) -> None:
        c = self.config
        image, scan = self._image, self._scan
        since = self._since_ns
        if self._hold_until_ns:
            # After connecting or a reset, no observation until every expected input is there
            # (a policy must never see a world without its camera), unless that takes longer
            # than the wait: then it goes out incomplete, and the missing input is named stale.
            complete = (scan is not None or not c.scan_topic) and (
                image is not None or not c.image_topic)
            if not complete and now < self._hold_until_ns:
                return
            self._hold_until_ns = 0
        inputs = {"odom": now}
        if c.scan_topic:
            inputs["scan"] = scan[0] if scan is not None else since
        if c.image_topic:
            inputs["image"] = image[0] if image is not None else since
        battery = self._battery
        frac = battery.percentage if battery is not None else math.nan
        current = battery.current_a if battery is not None else math.nan
        observation = Observation(
            t_ns=min(inputs.values()),  # its oldest part, so freshness checks see the real age
            odom=odom,
            image=None if image is None else image[1],
            scan_m=None if scan is None else scan[1],
            battery_frac=min(1.0, max(0.0, frac)) if math.isfinite(frac) else 1.0,
            docked=self._docked,
            estop=self._estop or self._estop_latched,
            bumper=self._bumper,
            battery_current_a=current if math.isfinite(current) else None,  # NaN: unknown
            power_supply_status=None if battery is None else battery.power_supply_status,
            input_t_ns=inputs,
        )
        with self._obs_cond:
            self._latest = observation
            self._obs_cond.notify_all()

    def _wait_complete_observation(self, deadline: float) -> None:
        c = self.config
        with self._obs_cond:
            while True:
                obs = self._latest
                if obs is not None and (obs.scan_m is not None or not c.scan_topic) and (
                    obs.image is not None or not c.image_topic
                ):
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._obs_cond.wait(min(left, 0.05))

    # --- outgoing --------------------------------------------------------------------------------

    def _twist(self, command: Command) -> Any:
        c = self.config
        if not c.twist_stamped:
            return convert.twist_msg(command, False)
        offset = self._stamp_offset_ns or 0
        return convert.twist_msg(command, True, time.time_ns() + offset, c.frame_id)

    def _shutdown(self) -> None:
        self._running = False
        node = self._node
        self._node = None
        if node is not None:
            node.stop()
        self._cmd_pub = None
        if self._images is not None:
            self._images.stop()
            self._images = None
