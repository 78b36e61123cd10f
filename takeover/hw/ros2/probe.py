"""`takeover probe ros2://...`: the ROS 2 graph read against the link's configuration.

It starts a node of its own (own Context, the URL's namespace and domain), waits for discovery,
lists what the graph offers (topics, types, publishers and their QoS, services), subscribes to
each input the configuration expects for a window (best effort: it matches every publisher) to
measure its rate and look inside (image size and encoding, scan beams and angles, battery,
stamps against this computer's clock), reads who subscribes to the command topic (type and
QoS), and measures a round trip to the node that publishes odometry (its get_parameters
service). Nothing is published: probing never moves the robot.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from takeover.errors import TakeoverError
from takeover.hw.base import LinkOptions
from takeover.hw.probe import Expectation, Offer, ProbeReport, latency_summary
from takeover.hw.ros2 import convert
from takeover.hw.ros2.config import Ros2Config, parse_ros2_url
from takeover.hw.ros2.node import NodeThread
from takeover.hw.ros2.qos import describe_qos, sensor_qos

DISCOVERY_S = 5.0  # how long to let discovery settle at most (it ends once the graph is still)
SETTLE_S = 0.5  # the graph unchanged this long: discovery is done
MIN_SCAN_HZ = 5.0  # slower than this and a 250 ms freshness limit trips between scans
MIN_ODOM_HZ = 10.0
STAMP_OFFSET_S = 1.0
RTT_CALLS = 10

TYPES = {
    "odom": "nav_msgs/msg/Odometry", "scan": "sensor_msgs/msg/LaserScan",
    "image": "sensor_msgs/msg/Image", "image_compressed": "sensor_msgs/msg/CompressedImage",
    "battery": "sensor_msgs/msg/BatteryState", "estop": "std_msgs/msg/Bool",
    "docked": "std_msgs/msg/Bool", "bumper": "std_msgs/msg/Bool",
    "clock": "rosgraph_msgs/msg/Clock",
}
REQUIRED = ("odom",)  # without it the link cannot run
EXPECTED = ("scan", "image")  # configured: missing means LINK_LOST (named) until set off
OPTIONAL = ("battery", "estop", "docked", "bumper", "clock")


class _Watch:
    """Counts one topic's messages and keeps the newest for a look inside."""

    def __init__(self) -> None:
        self.count = 0
        self.first_ns = 0
        self.last_ns = 0
        self.newest: Any = None
        self.offsets_ns: list[int] = []

    def __call__(self, msg: Any) -> None:
        now = time.monotonic_ns()
        if self.count == 0:
            self.first_ns = now
        self.count += 1
        self.last_ns = now
        self.newest = msg
        header = getattr(msg, "header", None)
        if header is not None:
            stamp = convert.stamp_ns(header.stamp)
            if stamp:
                self.offsets_ns.append(stamp - time.time_ns())
        elif hasattr(msg, "clock"):
            self.offsets_ns.append(convert.stamp_ns(msg.clock) - time.time_ns())

    def rate_hz(self, window_s: float) -> float:
        if self.count >= 2 and self.last_ns > self.first_ns:
            return (self.count - 1) / ((self.last_ns - self.first_ns) / 1e9)
        return self.count / window_s


def _message_class(type_name: str) -> Any:
    package, _, name = type_name.split("/")
    module = __import__(f"{package}.msg", fromlist=[name])
    return getattr(module, name)


def _topics(c: Ros2Config) -> dict[str, str]:
    """Input name -> resolved topic, for every input the configuration names."""
    named = {"odom": c.odom_topic, "scan": c.scan_topic, "image": c.image_topic,
             "battery": c.battery_topic, "estop": c.estop_topic, "docked": c.docked_topic,
             "bumper": c.bumper_topic, "clock": c.clock_topic}
    return {k: c.resolve(v) for k, v in named.items() if v}


def _expected_type(name: str, c: Ros2Config) -> str:
    if name == "image" and c.image_compressed:
        return TYPES["image_compressed"]
    return TYPES[name]


def _option(name: str) -> str:
    """The URL option that names an input's topic (they share the input's name)."""
    return name


def probe_ros2(url: str, options: LinkOptions, window_s: float = 2.0) -> ProbeReport:
    c = parse_ros2_url(url)
    report = ProbeReport(url, "ros2")
    try:
        ros = NodeThread(NodeThread.unique_name("takeover_probe"), c.namespace, c.domain_id)
    except TakeoverError as exc:
        report.problems.append(str(exc))
        return report
    report.notes.append(f"domain {ros.context.get_domain_id()}, namespace "
                        f"{c.namespace or '/'}")
    ros.start("ros2-probe-spin")
    try:
        _run(ros, c, options, report, window_s)
    finally:
        ros.stop()
    return report


def _discover(node: Any, wanted: set[str]) -> dict[str, list[str]]:
    """The graph's topics once discovery has settled (or DISCOVERY_S has passed)."""
    start = time.monotonic()
    graph: dict[str, list[str]] = {}
    changed = start
    while time.monotonic() - start < DISCOVERY_S:
        now_graph = {name: list(types) for name, types in node.get_topic_names_and_types()}
        if now_graph != graph:
            graph, changed = now_graph, time.monotonic()
        elif wanted <= set(graph) and time.monotonic() - changed >= SETTLE_S:
            break
        time.sleep(0.05)  # polling the graph cache
    return graph


def _run(ros: NodeThread, c: Ros2Config, options: LinkOptions, report: ProbeReport,
         window_s: float) -> None:
    node = ros.node
    topics = _topics(c)
    started = time.monotonic()
    graph = _discover(node, {topics["odom"]})
    report.connect_s = time.monotonic() - started
    if not graph or set(graph) <= {"/parameter_events", "/rosout"}:
        report.problems.append(
            f"no ROS 2 robot found in domain {ros.context.get_domain_id()} (no topics); check "
            "ROS_DOMAIN_ID (or ?domain=N) and ROS_AUTOMATIC_DISCOVERY_RANGE")
        return
    report.connected = True
    with contextlib.suppress(Exception):
        report.services = sorted(name for name, _ in node.get_service_names_and_types()
                                 if not name.endswith(("/describe_parameters", "/get_parameters",
                                                       "/get_parameter_types",
                                                       "/list_parameters", "/set_parameters",
                                                       "/set_parameters_atomically",
                                                       "/get_type_description")))
    # What the graph offers (its publishers and their QoS).
    for name in sorted(graph):
        if name in ("/parameter_events", "/rosout", c.resolve(c.cmd_vel_topic)):
            continue  # (the command topic has a row of its own: who takes commands)
        infos = node.get_publishers_info_by_topic(name)
        qos = describe_qos(infos[0].qos_profile) if infos else ""
        report.offers.append(Offer(name, ", ".join(graph[name]), None, qos, len(infos)))
    # Subscribe to what the configuration expects, with a QoS that matches any publisher.
    watches: dict[str, _Watch] = {}
    for name, topic in topics.items():
        want = _expected_type(name, c)
        have = graph.get(topic, [])
        if want not in have:
            continue
        watch = _Watch()
        watches[name] = watch
        node.create_subscription(_message_class(want), topic, watch, sensor_qos(5))
    time.sleep(window_s)  # the measuring window: messages arrive on the spin thread meanwhile
    _judge_inputs(node, c, options, report, graph, topics, watches, window_s)
    _judge_commands(node, c, report, graph)
    _clock(c, report, watches)
    _round_trip(ros, c, report, topics["odom"])


def _judge_inputs(node: Any, c: Ros2Config, options: LinkOptions, report: ProbeReport,
                  graph: dict[str, list[str]], topics: dict[str, str],
                  watches: dict[str, _Watch], window_s: float) -> None:
    offers = {o.name: o for o in report.offers}
    for name, topic in topics.items():
        want = _expected_type(name, c)
        have = graph.get(topic, [])
        watch = watches.get(name)
        if not have:
            why = "no such topic in the graph"
            similar = sorted(t for t, types in graph.items() if want in types)
            if similar:
                why += f"; {want} is on {', '.join(similar[:4])} (set {_option(name)}=)"
            found = False
        elif want not in have:
            why = f"it carries {', '.join(have)}, not {want}"
            found = False
        else:
            why, found = "", watch is not None and watch.count > 0
            if not found:
                why = f"no message in {window_s:g} s"
        need = "required" if name in REQUIRED else "expected" if name in EXPECTED else "optional"
        report.expects.append(Expectation(name, topic, want, found, why, need))
        if not found:
            if name in REQUIRED:
                report.problems.append(f"no odometry on {topic}: {why}")
            elif name in EXPECTED:
                report.problems.append(
                    f"no {name} on {topic}: {why} (or turn it off with {_option(name)}=)")
            elif name in ("estop", "docked"):
                report.warnings.append(f"no {name} state on {topic}: {why}")
            continue
        assert watch is not None
        offer = offers.get(topic)
        if offer is None:
            continue
        offer.rate_hz = watch.rate_hz(window_s)
        offer.detail = _detail(name, watch.newest, c, options, report)
        _judge_qos(node, c, name, topic, report)
        if name == "scan" and offer.rate_hz < MIN_SCAN_HZ:
            report.warnings.append(f"scan at {offer.rate_hz:.1f} Hz: below {MIN_SCAN_HZ:.0f} Hz "
                                   "the 250 ms freshness limit trips between scans")
        if name == "odom" and offer.rate_hz < MIN_ODOM_HZ:
            report.warnings.append(f"odometry at {offer.rate_hz:.1f} Hz paces observations; "
                                   f"the loop runs at 20 Hz")


def _detail(name: str, msg: Any, c: Ros2Config, options: LinkOptions,
            report: ProbeReport) -> str:
    camera = f"{options.camera_width}x{options.camera_height}"
    if name == "image" and not c.image_compressed:
        size = f"{msg.width}x{msg.height} {msg.encoding}"
        if msg.encoding.lower() not in convert.RAW_ENCODINGS:
            report.problems.append(f"camera encoding {msg.encoding!r} is not one of "
                                   f"{', '.join(convert.RAW_ENCODINGS)}")
        elif f"{msg.width}x{msg.height}" != camera:
            report.notes.append(f"camera frames of {msg.width}x{msg.height} are resized to "
                                f"the policy's {camera}")
        return size
    if name == "image":
        try:
            from PIL import Image

            with Image.open(__import__("io").BytesIO(bytes(msg.data))) as img:
                size = f"{img.width}x{img.height} {img.format}"
        except Exception as exc:
            report.problems.append(f"compressed camera frames cannot be decoded: {exc}")
            return f"format {msg.format!r}"
        return f"{size} ({msg.format})"
    if name == "scan":
        n = len(msg.ranges)
        inc = float(msg.angle_increment)
        turn = abs(inc) * n
        valid = sum(1 for r in msg.ranges if math.isfinite(r) and msg.range_min <= r
                    <= msg.range_max)
        text = (f"{n} beams from {math.degrees(msg.angle_min):.0f} deg, "
                f"{math.degrees(inc):+.2f} deg each ({math.degrees(turn):.0f} deg), "
                f"{valid} returns, frame {msg.header.frame_id!r}")
        if turn < 2 * math.pi * 0.99:
            report.notes.append("the scan covers less than a full turn: the rest reads as "
                                "no return")
        return text
    if name == "battery":
        status = convert.POWER_SUPPLY_STATUS.get(int(msg.power_supply_status), "unknown")
        return (f"{float(msg.percentage) * 100:.0f} %, {float(msg.current):+.2f} A, {status}")
    if name == "odom":
        return f"frame {msg.header.frame_id!r} -> {msg.child_frame_id!r}"
    if name in ("estop", "docked", "bumper"):
        return f"data={bool(msg.data)}"
    return ""


def _judge_qos(node: Any, c: Ros2Config, name: str, topic: str, report: ProbeReport) -> None:
    """Would the link's own subscription match these publishers? (It is best effort unless
    the URL asks for reliable, which a best-effort publisher cannot satisfy.)"""
    wants_reliable = {"odom": c.odom_reliable, "scan": c.scan_reliable,
                      "image": c.image_reliable}.get(name, False)
    if not wants_reliable:
        return
    for info in node.get_publishers_info_by_topic(topic):
        if getattr(info.qos_profile.reliability, "name", "") == "BEST_EFFORT":
            report.problems.append(
                f"QoS mismatch on {topic} (reliability): the robot publishes best effort; "
                f"{name}_qos=reliable receives nothing (use {name}_qos=sensor)")
            return


def _judge_commands(node: Any, c: Ros2Config, report: ProbeReport,
                    graph: dict[str, list[str]]) -> None:
    topic = c.resolve(c.cmd_vel_topic)
    ours = "geometry_msgs/msg/TwistStamped" if c.twist_stamped else "geometry_msgs/msg/Twist"
    infos = node.get_subscriptions_info_by_topic(topic)
    types = sorted({i.topic_type for i in infos})
    report.expects.append(Expectation("cmd_vel", topic, ours, ours in types,
                                      "" if ours in types else
                                      ("nobody subscribes" if not types else
                                       f"the robot takes {', '.join(types)}"), "required"))
    qos = "; ".join(sorted({describe_qos(i.qos_profile) for i in infos}))
    report.offers.append(Offer(topic, ", ".join(types) or "(no subscriber)", None,
                               qos, None, f"{len(infos)} subscriber(s) take commands here"))
    if not infos:
        report.problems.append(f"nobody subscribes to {topic}: commands would go nowhere "
                               "(set cmd_vel=, or check the namespace)")
        return
    if ours not in types:
        hint = "twist=plain" if c.twist_stamped else "twist=stamped"
        report.problems.append(f"{topic} takes {', '.join(types)}; this link would publish "
                               f"{ours} (set {hint})")
    for info in infos:
        q = info.qos_profile
        if getattr(q.durability, "name", "") == "TRANSIENT_LOCAL":
            report.problems.append(f"QoS mismatch on {topic} (durability): the robot's "
                                   "subscriber asks for transient local; the link offers "
                                   "volatile")
            break
        if getattr(q.reliability, "name", "") == "RELIABLE" and not c.cmd_reliable:
            report.problems.append(f"QoS mismatch on {topic} (reliability): the robot's "
                                   "subscriber asks for reliable; cmd_qos=best_effort")
            break


def _clock(c: Ros2Config, report: ProbeReport, watches: dict[str, _Watch]) -> None:
    offsets = [o for w in (watches.get("odom"), watches.get("scan")) if w is not None
               for o in w.offsets_ns]
    offset_s = statistics.median(offsets) / 1e9 if offsets else None
    sim_time = watches.get("clock") is not None and watches["clock"].count > 0
    report.clock = {"stamp_offset_s": offset_s, "sim_time": sim_time}
    if offset_s is not None and abs(offset_s) > STAMP_OFFSET_S:
        report.warnings.append(
            f"the robot's stamps are {abs(offset_s):.1f} s "
            f"{'behind' if offset_s < 0 else 'ahead of'} this computer's clock"
            f"{' (it runs on sim time)' if sim_time else ' (synchronise the clocks: chrony)'}; "
            "the link judges freshness on arrival and stamps commands on the robot's clock")


def _round_trip(ros: NodeThread, c: Ros2Config, report: ProbeReport, odom_topic: str) -> None:
    """Calls to the get_parameters service of the node that publishes odometry."""
    from rcl_interfaces.srv import GetParameters

    node = ros.node
    infos = node.get_publishers_info_by_topic(odom_topic)
    if not infos:
        return
    owner = infos[0]
    namespace = owner.node_namespace.rstrip("/")
    service = f"{namespace}/{owner.node_name}/get_parameters"
    client = node.create_client(GetParameters, service)
    if not client.wait_for_service(timeout_sec=1.0):
        report.notes.append(f"no round trip measured: {owner.node_name} offers no parameter "
                            "services")
        return
    samples: list[float] = []
    for _ in range(RTT_CALLS):
        done = threading.Event()
        t0 = time.perf_counter()
        future = client.call_async(GetParameters.Request(names=["use_sim_time"]))
        future.add_done_callback(_setter(done))
        if not done.wait(2.0):
            client.remove_pending_request(future)
            break
        samples.append((time.perf_counter() - t0) * 1000)
    report.round_trip_ms = latency_summary(samples, f"service {service}")


def _setter(event: threading.Event) -> Callable[[Any], None]:
    return lambda _future: event.set()
