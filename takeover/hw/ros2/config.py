"""`ros2://[namespace]?options`: the ROS 2 link's configuration and its one URL parser.

    ros2://                       the robot's topics at the root (/cmd_vel, /odom, ...)
    ros2://robot1                 namespace /robot1 (relative topics become /robot1/cmd_vel, ...)
    ros2:///fleet/robot1          a nested namespace
    ros2://robot1?twist=plain&image=camera/color/image_raw/compressed&scan=/front/scan

Topics are ROS names: relative ones (the defaults) take the namespace, absolute ones (`/scan`)
do not. An empty value turns an input off (`scan=`). Options:

    cmd_vel=cmd_vel          velocity commands (reliable, depth 1)
    twist=stamped|plain      geometry_msgs/msg/TwistStamped (default: diff_drive_controller on
                             Jazzy and later takes only stamped commands) or Twist
    frame_id=base_link       frame of a stamped command
    odom=odom                nav_msgs/msg/Odometry (required: it paces observations)
    scan=scan                sensor_msgs/msg/LaserScan
    image=camera/image_raw   sensor_msgs/msg/Image (rgb8, bgr8, mono8, rgba8, bgra8), or a
                             CompressedImage when the topic ends in /compressed
    image_type=raw|compressed   overrides the guess from the topic's name
    battery=battery_state    sensor_msgs/msg/BatteryState
    estop=estop              std_msgs/msg/Bool, the base's e-stop state
    estop_service=estop/set  std_srvs/srv/SetBool to latch (true) and release (false) it
    docked=docked  bumper=bumper   std_msgs/msg/Bool
    clock=/clock             rosgraph_msgs/msg/Clock: a robot on sim time says so here
    joy=                     sensor_msgs/msg/Joy of a pad on the robot (the `joy` node), used
                             as the operator's gamepad with [gamepad]'s mapping (off by
                             default; `joy=joy` for the joy node's usual topic)
    odom_qos, scan_qos, image_qos = sensor|reliable   what the subscription asks for; sensor
                             (best effort, depth 1, the default) matches every publisher
    cmd_qos=reliable|best_effort   the command publisher's reliability
    zeros=release|always     release (default): after the robot is let go, zeros for 250 ms,
                             then nothing until the next motion (teleop_twist_joy's habit, so a
                             twist_mux gives the base back to navigation); always: zeros at the
                             loop rate whenever takeover is not driving (a base of its own).
                             A latched e-stop sends zeros at the loop rate either way.
    domain=N                 ROS_DOMAIN_ID (0-232); default: the environment's, else 0
    timeout_ms=500           no message this long and the link counts as down
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from takeover.errors import UsageError
from takeover.hw.url_options import UrlOptions

SCHEME = "ros2://"
_NAME = re.compile(r"^/?[A-Za-z_~{][A-Za-z0-9_/{}~]*$")


@dataclass(frozen=True)
class Ros2Config:
    namespace: str = ""  # "" or "/robot1"
    cmd_vel_topic: str = "cmd_vel"
    twist_stamped: bool = True
    frame_id: str = "base_link"
    odom_topic: str = "odom"
    scan_topic: str = "scan"
    image_topic: str = "camera/image_raw"
    image_compressed: bool = False
    battery_topic: str = "battery_state"
    estop_topic: str = "estop"
    estop_service: str = "estop/set"
    docked_topic: str = "docked"
    bumper_topic: str = "bumper"
    clock_topic: str = "/clock"
    joy_topic: str = ""  # the operator's pad on the robot (takeover.inputs.joy); off by default
    odom_reliable: bool = False
    scan_reliable: bool = False
    image_reliable: bool = False
    cmd_reliable: bool = True
    zeros_always: bool = False
    domain_id: int | None = None
    timeout_ms: float = 500.0
    # the simulator's control (takeover sim serve --ros2); probed through the graph, never called
    # on a robot that does not offer it
    sim_node: str = "takeover_sim"
    dock_service: str = "sim/get_dock_pose"

    def resolve(self, name: str) -> str:
        """The full ROS name of a topic or service as the link's node resolves it."""
        if not name or name.startswith("/"):
            return name
        return f"{self.namespace}/{name}" if self.namespace else f"/{name}"

    @property
    def expected_inputs(self) -> dict[str, str]:
        """Input name (Observation.input_t_ns's keys) -> topic, for the inputs configured."""
        named = {"odom": self.odom_topic, "scan": self.scan_topic, "image": self.image_topic}
        return {k: v for k, v in named.items() if v}


_TOPIC_OPTIONS = {
    "cmd_vel": "cmd_vel_topic", "odom": "odom_topic", "scan": "scan_topic",
    "image": "image_topic", "battery": "battery_topic", "estop": "estop_topic",
    "estop_service": "estop_service", "docked": "docked_topic", "bumper": "bumper_topic",
    "clock": "clock_topic", "joy": "joy_topic",
}
_QOS_OPTIONS = {"odom_qos": "odom_reliable", "scan_qos": "scan_reliable",
                "image_qos": "image_reliable"}
OPTIONS = sorted([*_TOPIC_OPTIONS, *_QOS_OPTIONS, "twist", "frame_id", "image_type", "cmd_qos",
                  "zeros", "domain", "timeout_ms"])


def _namespace(url: str, parts: urllib.parse.SplitResult) -> str:
    text = "/".join(p for p in (parts.netloc, parts.path) if p).strip("/")
    if not text:
        return ""
    if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", seg) for seg in text.split("/")):
        raise UsageError(f"robot URL {url!r}: namespace {text!r} is not a ROS name (letters, "
                         "digits and _, each part starting with a letter)")
    return "/" + text


def parse_ros2_url(url: str) -> Ros2Config:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "ros2":
        raise UsageError(f"robot URL {url!r} is not a ros2:// URL")
    namespace = _namespace(url, parts)
    opts = UrlOptions(url, OPTIONS, SCHEME)
    opts.check_unknown()
    kwargs: dict[str, Any] = {"namespace": namespace}
    for key, attr in _TOPIC_OPTIONS.items():
        if opts.has(key):
            value = opts.text(key, "").strip()
            if value and not _NAME.match(value):
                raise UsageError(f"robot URL {url!r}: {key}={value!r} is not a ROS topic name")
            kwargs[attr] = value.rstrip("/")
    if opts.has("frame_id"):
        kwargs["frame_id"] = opts.text("frame_id", "base_link").strip()
    kwargs["twist_stamped"] = opts.choice("twist", ("stamped", "plain"), "stamped") == "stamped"
    for key, attr in _QOS_OPTIONS.items():
        kwargs[attr] = opts.choice(key, ("sensor", "reliable"), "sensor") == "reliable"
    kwargs["cmd_reliable"] = opts.choice("cmd_qos", ("reliable", "best_effort"),
                                         "reliable") == "reliable"
    kwargs["zeros_always"] = opts.choice("zeros", ("release", "always"), "release") == "always"
    image_topic = kwargs.get("image_topic", Ros2Config.image_topic)
    guess = "compressed" if image_topic.endswith("/compressed") else "raw"
    kwargs["image_compressed"] = opts.choice("image_type", ("raw", "compressed"),
                                             guess) == "compressed"
    if opts.has("domain"):
        kwargs["domain_id"] = opts.integer("domain", 0, low=0, high=232)
    if opts.has("timeout_ms"):
        kwargs["timeout_ms"] = opts.number("timeout_ms", 500.0)
    if not kwargs.get("odom_topic", Ros2Config.odom_topic):
        raise UsageError(f"robot URL {url!r}: odom= cannot be empty; odometry paces the link")
    return Ros2Config(**kwargs)
