"""rosbridge v2 robot link over the `websockets` library (docs/rosbridge.md).

    ws://robot:9090?cmd_vel=/cmd_vel&twist=stamped&image=/camera/image_raw/compressed&image_hz=20

Options (all optional; an empty value turns an input off, e.g. `scan=`):

    cmd_vel=/cmd_vel        where velocity commands go
    twist=plain|stamped     geometry_msgs/msg/Twist (default) or TwistStamped; a stamped command
                            carries only frame_id: rosbridge stamps it on arrival with the
                            robot's clock, so clock skew between machines cannot get it dropped
    frame_id=base_link      frame of a stamped command
    odom=/odom              nav_msgs/msg/Odometry (required: it paces observations)
    scan=/scan              sensor_msgs/msg/LaserScan
    image=/camera/image_raw/compressed   sensor_msgs/msg/CompressedImage (JPEG or PNG)
    image_hz=30             cap on the image rate (server-side throttle_rate); keep it above
                            the camera's rate, or jitter makes the throttle drop frames
    battery=/battery_state  sensor_msgs/msg/BatteryState
    estop=/estop            std_msgs/msg/Bool, the base's e-stop state
    estop_service=/estop/set   std_srvs/srv/SetBool to latch (true) and release (false) it
    docked=/docked          std_msgs/msg/Bool, charging contacts
    bumper=/bumper          std_msgs/msg/Bool
    cbor=0|1                ask for CBOR-encoded messages (binary frames; needs cbor2)
    timeout_ms=500          no message this long and the link counts as down

Why not roslibpy: it runs its own Twisted/asyncio reactor and cannot take binary CBOR frames.
This client uses the websockets library's threaded (sync) client: a session thread receives and
reconnects, a writer thread sends what could not go out at once. `send` writes a command
straight from the caller's thread when the socket takes it without waiting, else leaves it in
a one-command slot; `latest` returns a reference. Neither waits on the network.

Against the real rosbridge_server (docs/rosbridge.md): a subscription takes its QoS when it is
made, from the publishers the server knows then, so one made before a best-effort LiDAR driver
is known (a cold start, a server restart) never delivers. The session thread therefore makes a
subscription again (unsubscribe, subscribe) whenever an input that paces observations (odom,
scan, image) has been silent for RESUBSCRIBE_AFTER_S since it was made or since its last
message, backing off to RESUBSCRIBE_MAX_S. Each observation stamps every input it expects
(`Observation.input_t_ns`), an input that never came with the time the link began waiting for
it, so the Arbiter's freshness check names what is missing or stale. The server's services are
probed once (rosapi), and a service the robot lacks is never called again.
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import math
import select
import socket
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from takeover.errors import LinkError, UsageError
from takeover.hw.base import LinkHealth, LinkOptions, RobotLink
from takeover.hw.outbox import CommandOutbox
from takeover.hw.url_options import UrlOptions
from takeover.types import ZERO_COMMAND, Command, Observation, Odometry, Pose2D

BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 0.5
SERVICE_TIMEOUT_S = 2.0
SERVICE_PROBE_TIMEOUT_S = 1.0  # no answer from rosapi in time: taken as a robot without it
ROSAPI_SERVICES = "/rosapi/services"
# An input that paces observations, silent this long since it was subscribed or since its last
# message, is subscribed again; the wait doubles up to RESUBSCRIBE_MAX_S while it stays silent
# (each time costs the server a subscription, and an INFO line in its log).
RESUBSCRIBE_AFTER_S = 1.0
RESUBSCRIBE_MAX_S = 4.0
WATCH_PERIOD_S = 0.1  # how often the session thread looks for silent inputs
MAX_TRACKED_CALLS = 64
LATENCY_SAMPLES = 20_000
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_FRAGMENT_SETS = 8


@dataclass(frozen=True)
class RosbridgeConfig:
    url: str  # ws://host:port[/path], without our options
    cmd_vel_topic: str = "/cmd_vel"
    twist_stamped: bool = False
    frame_id: str = "base_link"
    odom_topic: str = "/odom"
    scan_topic: str = "/scan"
    image_topic: str = "/camera/image_raw/compressed"
    image_hz: float = 30.0  # a cap: above the camera's rate, so that jitter costs no frame
    battery_topic: str = "/battery_state"
    estop_topic: str = "/estop"
    estop_service: str = "/estop/set"
    docked_topic: str = "/docked"
    bumper_topic: str = "/bumper"
    cbor: bool = False
    timeout_ms: float = 500.0
    reset_service: str = "/sim/reset"
    dock_service: str = "/sim/get_dock_pose"


_TOPIC_OPTIONS = {
    "cmd_vel": "cmd_vel_topic", "odom": "odom_topic", "scan": "scan_topic",
    "image": "image_topic", "battery": "battery_topic", "estop": "estop_topic",
    "estop_service": "estop_service", "docked": "docked_topic", "bumper": "bumper_topic",
    "frame_id": "frame_id",
}
_OPTIONS = sorted([*_TOPIC_OPTIONS, "twist", "image_hz", "cbor", "timeout_ms"])


def parse_rosbridge_url(url: str) -> RosbridgeConfig:
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise UsageError(f"robot URL {url!r} names no host; write it like ws://robot:9090")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise UsageError(f"robot URL {url!r}: the port is not a number in 0-65535") from None
    opts = UrlOptions(url, _OPTIONS, "ws://")
    opts.check_unknown()
    kwargs: dict[str, Any] = {}
    for key, attr in _TOPIC_OPTIONS.items():
        if opts.has(key):
            value = opts.text(key, "").strip()
            if value and key != "frame_id" and not value.startswith("/"):
                value = "/" + value
            kwargs[attr] = value
    if opts.has("twist"):
        kwargs["twist_stamped"] = opts.choice("twist", ("plain", "stamped"), "plain") == "stamped"
    for key in ("image_hz", "timeout_ms"):
        if opts.has(key):
            kwargs[key] = opts.number(key, 0.0)
    if opts.flag("cbor", False):
        kwargs["cbor"] = True
        try:
            import cbor2  # noqa: F401
        except ImportError:
            raise UsageError(
                "cbor=1 needs the cbor2 package: pip install 'takeover[cbor]'"
            ) from None
    if not kwargs.get("odom_topic", "/odom"):
        raise UsageError(f"robot URL {url!r}: odom= cannot be empty; odometry paces the link")
    base_url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return RosbridgeConfig(url=base_url, **kwargs)


@dataclass
class _Input:
    """One subscribed topic and how it flows on the current connection (session thread)."""

    name: str  # its key in Observation.input_t_ns where it paces observations, else ""
    topic: str
    msg_type: str
    throttle_ms: int = 0
    sid: str = ""  # the id of the current subscription
    made: int = 0  # subscriptions made, for a fresh id each time
    subscribed_ns: int = 0  # when the current subscription was made
    last_rx_ns: int = 0  # the last message on this connection (0: none yet)
    wait_s: float = RESUBSCRIBE_AFTER_S
    resubscribes: int = 0

    @property
    def watched(self) -> bool:
        return bool(self.name)


def open_rosbridge_link(url: str, options: LinkOptions) -> RosbridgeLink:
    return RosbridgeLink(url, parse_rosbridge_url(url), options)


def yaw_from_quaternion(q: dict[str, Any]) -> float:
    x, y, z, w = (float(q.get(k) or 0.0) for k in ("x", "y", "z", "w"))
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def _f(value: Any) -> float:
    """A ROS float field as JSON or CBOR delivers it: null (NaN/inf) becomes NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def scan_to_robot_frame(msg: dict[str, Any]) -> npt.NDArray[np.float32]:
    """A LaserScan as takeover's scan: N beams over 360 degrees CCW from the forward axis,
    beam i at 2*pi*i/N, NaN where nothing returned. Scans that cover less than a full turn
    leave NaN where they do not look."""
    raw = msg.get("ranges")
    if isinstance(raw, bytes | bytearray):  # CBOR typed array already decoded to bytes
        ranges = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    elif isinstance(raw, np.ndarray):
        ranges = raw.astype(np.float32)
    elif isinstance(raw, list):
        ranges = np.array([_f(r) for r in raw], dtype=np.float32)
    else:
        raise TypeError("ranges is not a list")
    increment = _f(msg.get("angle_increment"))
    angle_min = _f(msg.get("angle_min", 0.0))
    if not math.isfinite(increment) or abs(increment) < 1e-5 or not math.isfinite(angle_min):
        raise ValueError("angle_increment/angle_min are not usable")
    n = round(2 * math.pi / abs(increment))
    if not 0 < n <= 100_000 or len(ranges) > 100_000:
        raise ValueError("implausible scan size")
    range_min, range_max = _f(msg.get("range_min", 0.0)), _f(msg.get("range_max", math.inf))
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(ranges)
        if math.isfinite(range_min):
            valid &= ranges >= range_min
        if math.isfinite(range_max):
            valid &= ranges <= range_max
    angles = angle_min + increment * np.arange(len(ranges))
    index = np.rint(angles / abs(increment)).astype(np.int64) % n
    out = np.full(n, np.nan, dtype=np.float32)
    out[index[valid]] = ranges[valid]
    return out


def decode_compressed_image(data: bytes, width: int, height: int) -> npt.NDArray[np.uint8]:
    """JPEG or PNG bytes -> RGB uint8 (height, width, 3), resized when the size differs."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (width, height))  # JPEG: decode at a reduced scale when it can
        rgb = img.convert("RGB")
        if rgb.size != (width, height):
            rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


class _ImageDecoder:
    """Decodes camera frames on its own thread, newest only, so the socket loop never waits
    for a large JPEG (Pillow releases the GIL while it decodes)."""

    def __init__(self, width: int, height: int,
                 on_image: Callable[[int, npt.NDArray[np.uint8]], None],
                 on_error: Callable[[str], None]) -> None:
        self._size = (width, height)
        self._on_image = on_image
        self._on_error = on_error
        self._cond = threading.Condition()
        self._pending: tuple[int, bytes] | None = None
        self._stop = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="rosbridge-images", daemon=True)
        self._thread.start()

    def submit(self, t_ns: int, data: bytes) -> None:
        with self._cond:
            if self._pending is not None:
                self.dropped += 1
            self._pending = (t_ns, data)
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
                t_ns, data = self._pending
                self._pending = None
            try:
                image = decode_compressed_image(data, *self._size)
            except Exception as exc:  # a corrupt frame must not end the camera
                self._on_error(f"{type(exc).__name__}: {exc}")
                continue
            self._on_image(t_ns, image)


class RosbridgeLink(RobotLink):
    """A ROS 2 robot reached through rosbridge v2. Thread-safe."""

    def __init__(self, url: str, config: RosbridgeConfig,
                 options: LinkOptions | None = None) -> None:
        super().__init__(url)
        self.config = config
        self.options = options or LinkOptions()
        self._thread: threading.Thread | None = None
        self._tx_thread: threading.Thread | None = None
        self._ws: Any = None
        self._stop = threading.Event()
        self._connected = False
        self._ever_connected = threading.Event()
        self._first_error = ""
        self._detail = "not connected"
        self._ids = itertools.count(1)
        self._pending_calls: dict[str, Future[Any]] = {}
        self._fragments: dict[str, dict[int, str]] = {}
        # outgoing: commands go straight out from the caller's thread when the socket can take
        # them at once; otherwise the newest waits in a slot (and other messages in a bounded
        # queue) for the writer thread
        self._outbox: CommandOutbox[tuple[str, int]] = CommandOutbox(control_limit=64)
        self._estop_latched = False
        # incoming state
        self._odom: Odometry | None = None
        self._scan: tuple[int, npt.NDArray[np.float32]] | None = None
        self._image: tuple[int, npt.NDArray[np.uint8]] | None = None
        self._battery = 1.0
        # BatteryState's current (A, as the base reports it) and power_supply_status; None
        # until a message has them (NaN current = unknown, as the message says).
        self._battery_current: float | None = None
        self._power_supply_status: int | None = None
        self._estop = False
        self._docked = False
        self._bumper = False
        self._latest: Observation | None = None
        self._obs_cond = threading.Condition()
        self._last_rx_ns = 0
        self._images: _ImageDecoder | None = None
        self._is_sim = False
        self._probed = False
        self._dock: Pose2D | None = None
        c = config
        self._inputs: dict[str, _Input] = {}
        for name, topic, msg_type, throttle_ms in (
            ("odom", c.odom_topic, "nav_msgs/msg/Odometry", 0),
            ("scan", c.scan_topic, "sensor_msgs/msg/LaserScan", 0),
            ("image", c.image_topic, "sensor_msgs/msg/CompressedImage",
             int(1000 / c.image_hz)),
            ("", c.battery_topic, "sensor_msgs/msg/BatteryState", 0),
            ("", c.estop_topic, "std_msgs/msg/Bool", 0),
            ("", c.docked_topic, "std_msgs/msg/Bool", 0),
            ("", c.bumper_topic, "std_msgs/msg/Bool", 0),
        ):
            if topic and topic not in self._inputs:
                self._inputs[topic] = _Input(name, topic, msg_type, throttle_ms)
        # Since when the link waits for the inputs it has not had yet (connect, reset): their
        # stamp in an observation, so that one that never comes makes it stale, by name.
        self._awaited_since_ns = time.monotonic_ns()
        self._connected_ns = 0
        # Services: what rosapi said the robot has (None: not known), the ones it lacks, and
        # the fire-and-forget calls still waiting for an answer (id -> service).
        self._services: frozenset[str] | None = None
        self._missing_services: set[str] = set()
        self._async_calls: dict[str, str] = {}
        self._counts: dict[str, int] = {
            "messages_ok": 0, "bad_json": 0, "bad_messages": 0, "unknown_ops": 0,
            "status_errors": 0, "reconnects": 0, "images": 0, "image_errors": 0, "scans": 0,
            "tx_messages": 0, "tx_direct": 0, "tx_dropped": 0, "cbor_messages": 0,
            "resubscribes": 0,
        }
        self._last_status = ""
        self._tx_latency_ns: deque[int] = deque(maxlen=LATENCY_SAMPLES)

    # --- capabilities ----------------------------------------------------------------------------

    @property
    def supports_sim_control(self) -> bool:
        """Before connecting: True, rosbridge can carry the simulator's services (so a caller
        may plan for it). After: whether the server offers /sim/reset and /sim/get_dock_pose
        (rosapi says so); reset() and dock_pose() on a real robot raise UsageError."""
        if not self._probed:
            return True
        return self._is_sim

    # --- RobotLink ---------------------------------------------------------------------------------

    def connect(self, timeout_s: float = 5.0) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._awaited_since_ns = time.monotonic_ns()
        if self.config.image_topic:
            self._images = _ImageDecoder(
                self.options.camera_width, self.options.camera_height, self._on_image,
                self._on_image_error,
            )
        self._thread = threading.Thread(target=self._session_loop, name="rosbridge-rx",
                                        daemon=True)
        self._tx_thread = threading.Thread(target=self._writer, name="rosbridge-tx", daemon=True)
        self._thread.start()
        self._tx_thread.start()
        deadline = time.monotonic() + timeout_s
        if not self._ever_connected.wait(timeout_s):
            reason = self._first_error or "no answer"
            self._shutdown()
            raise LinkError(
                f"{self.url}: cannot reach rosbridge ({reason}); is rosbridge_server running "
                "there and the port right?"
            )
        self._probe_services()
        self._probed = True
        self._wait_complete_observation(deadline)

    def _probe_services(self) -> None:
        """Once, at the first connect: which services the server has, from rosapi (the
        standard rosbridge launch runs it), so that the link never calls one the robot lacks:
        each such call is an ERROR in the robot's log. Without rosapi the server is not the
        simulator (which always offers it), and whether the e-stop service exists is learnt
        from the answer to its first call."""
        c = self.config
        try:
            values = self._call(ROSAPI_SERVICES, {}, SERVICE_PROBE_TIMEOUT_S)
            listed = values["services"]
            if not isinstance(listed, list):
                raise TypeError("services is not a list")
        except (LinkError, KeyError, TypeError):
            self._is_sim = False
            return
        services = frozenset(str(name) for name in listed)
        self._services = services
        self._is_sim = c.reset_service in services and c.dock_service in services
        if c.estop_service and c.estop_service not in services:
            self._missing_services.add(c.estop_service)

    def send(self, command: Command) -> Command:
        t_call_ns = time.monotonic_ns()
        if self._estop_latched or not command.is_finite:
            command = ZERO_COMMAND
        if not self._connected:
            return ZERO_COMMAND
        text = self._twist_json(command)
        if not self._send_now(text, t_call_ns) and self._outbox.put_command((text, t_call_ns)):
            self._counts["tx_dropped"] += 1
        return command

    def latest(self) -> Observation | None:
        return self._latest

    def health(self) -> LinkHealth:
        age_ms = (float("inf") if self._last_rx_ns == 0
                  else (time.monotonic_ns() - self._last_rx_ns) / 1e6)
        bad = self._counts["bad_json"] + self._counts["bad_messages"] + self._counts["unknown_ops"]
        detail = self._detail
        if self._last_status:
            detail += f"; server said: {self._last_status}"
        if self._connected:
            detail += self._waiting_detail()
        if self.config.estop_service in self._missing_services:
            detail += (f"; no {self.config.estop_service} on this robot: the e-stop is the "
                       "link's own (zero commands)")
        decoder = self._images
        extra = {k: float(v) for k, v in self._counts.items()}
        extra["images_dropped"] = float(decoder.dropped if decoder else 0)
        return LinkHealth(
            connected=self._connected and age_ms < self.config.timeout_ms,
            frames_ok=self._counts["messages_ok"],
            frames_bad=bad,
            lost=0,  # rosbridge has no sequence numbers; drops by queue_length are by design
            last_rx_age_ms=age_ms,
            rtt_ms=None,
            detail=detail,
            extra=extra,
        )

    def _waiting_detail(self) -> str:
        """The inputs that are silent now, and since when: what the operator waits for."""
        now = time.monotonic_ns()
        waiting = []
        for inp in list(self._inputs.values()):
            quiet_since = inp.last_rx_ns or self._connected_ns
            if inp.watched and quiet_since and now - quiet_since >= RESUBSCRIBE_AFTER_S * 1e9:
                again = f", subscribed again {inp.resubscribes}x" if inp.resubscribes else ""
                waiting.append(f"{inp.topic} (nothing for {(now - quiet_since) / 1e9:.1f} s"
                               f"{again})")
        return f"; waiting for {', '.join(waiting)}" if waiting else ""

    def close(self) -> None:
        if self._thread is None:
            return
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):  # stop the base before letting go
                ws.send(self._twist_json(ZERO_COMMAND))
                ws.send(json.dumps({"op": "unadvertise", "topic": self.config.cmd_vel_topic}))
        self._shutdown()

    def estop(self) -> None:
        self._estop_latched = True
        self.send(ZERO_COMMAND)
        self._call_async(self.config.estop_service, {"data": True})

    def clear_estop(self) -> None:
        self._call_async(self.config.estop_service, {"data": False})
        self._estop_latched = False

    # --- simulator control ---------------------------------------------------------------------

    def reset(self, seed: int) -> None:
        if not self._is_sim:
            raise UsageError(
                f"{self.url}: reset is only available on a simulator (the server has no "
                f"{self.config.reset_service} service)"
            )
        values = self._call(self.config.reset_service, {"seed": int(seed)}, SERVICE_TIMEOUT_S)
        self._dock = self._pose_from(values)
        with self._obs_cond:
            self._latest = None
            self._scan = self._image = None
            self._odom = None
            # The old world's charge is no evidence about the new one: unknown until the
            # next BatteryState.
            self._battery_current = self._power_supply_status = None
            self._awaited_since_ns = time.monotonic_ns()
        self._wait_complete_observation(time.monotonic() + SERVICE_TIMEOUT_S)

    def dock_pose(self) -> Pose2D:
        if self._dock is not None:
            return self._dock
        if not self._is_sim:
            raise UsageError(
                f"{self.url}: the dock pose is the simulator's privileged state, and this robot "
                f"is not a simulator (the server has no {self.config.dock_service} service)"
            )
        self._dock = self._pose_from(self._call(self.config.dock_service, {}, SERVICE_TIMEOUT_S))
        return self._dock

    def _pose_from(self, values: Any) -> Pose2D:
        try:
            pose = values["dock_pose"]
            return Pose2D(float(pose["x"]), float(pose["y"]), float(pose["theta"]))
        except (KeyError, TypeError, ValueError):
            raise LinkError(f"{self.url}: the simulator's answer has no dock_pose") from None

    def tx_latency_samples_ns(self) -> list[int]:
        """Command-to-wire latencies (send() call to the frame handed to the socket)."""
        return list(self._tx_latency_ns)

    # --- services ----------------------------------------------------------------------------

    def _call(self, service: str, args: dict[str, Any], timeout_s: float) -> Any:
        """Call a service and wait for its values; LinkError when it fails or times out."""
        call_id = f"call_service:{service}:{next(self._ids)}"
        future: Future[Any] = Future()
        self._pending_calls[call_id] = future
        try:
            ws = self._ws
            if ws is None:
                raise LinkError(f"{self.url}: not connected; {service} not called")
            try:
                ws.send(json.dumps({"op": "call_service", "id": call_id, "service": service,
                                    "args": args}))
            except Exception as exc:
                raise LinkError(f"{self.url}: {service}: {_one_line(exc)}") from None
            try:
                return future.result(timeout_s)
            except (FutureTimeout, TimeoutError):
                raise LinkError(
                    f"{self.url}: {service} did not answer within {timeout_s:g} s"
                ) from None
        finally:
            self._pending_calls.pop(call_id, None)

    def _call_async(self, service: str, args: dict[str, Any]) -> None:
        """Fire and forget (e-stop): the caller must not wait on the network."""
        text = self._async_request(service, args)
        if text is not None and self._outbox.put_control((text, 0)):
            self._counts["tx_dropped"] += 1

    def _async_request(self, service: str, args: dict[str, Any]) -> str | None:
        """The call_service message of a fire-and-forget call, or None where there is nothing
        to call: no service configured, or one the robot is known to lack. Its answer is
        matched by id, so that a robot without the service is called once, not every time."""
        if not service or service in self._missing_services:
            return None
        call_id = f"call_service:{service}:{next(self._ids)}"
        self._async_calls[call_id] = service
        while len(self._async_calls) > MAX_TRACKED_CALLS:  # answers that never came
            self._async_calls.pop(next(iter(self._async_calls)))
        return json.dumps({"op": "call_service", "id": call_id, "service": service,
                           "args": args})

    def _on_async_answer(self, service: str, m: dict[str, Any]) -> None:
        if m.get("result") is False and "does not exist" in str(m.get("values")):
            self._missing_services.add(service)

    # --- the connection ------------------------------------------------------------------------

    def _twist_json(self, command: Command) -> str:
        twist = {"linear": {"x": command.v_mps, "y": 0.0, "z": 0.0},
                 "angular": {"x": 0.0, "y": 0.0, "z": command.w_radps}}
        msg: dict[str, Any] = twist
        if self.config.twist_stamped:
            msg = {"header": {"frame_id": self.config.frame_id}, "twist": twist}
        return json.dumps({"op": "publish", "topic": self.config.cmd_vel_topic, "msg": msg})

    def _send_now(self, text: str, t_call_ns: int) -> bool:
        """Fast path for `send`: write from the caller's thread when nothing is queued, no
        other thread holds the connection and the socket takes the frame at once; False
        leaves it to the writer thread. A hand-over to another thread can cost a whole GIL
        switch interval (5 ms) under CPU load; this costs one send() system call."""
        ws = self._ws
        if ws is None or not self._outbox.empty:
            return False
        try:
            # The reader holds the connection's lock while it parses what arrived (tens of
            # microseconds); waiting that out beats handing over to another thread.
            if not ws.protocol_mutex.acquire(timeout=0.001):
                return False
            ws.protocol_mutex.release()
            _, writable, _ = select.select([], [ws.socket], [], 0)
            if not writable:
                return False
            ws.send(text)
        except Exception:  # closed under us: the session thread reconnects
            return False
        self._tx_latency_ns.append(time.monotonic_ns() - t_call_ns)
        self._counts["tx_messages"] += 1
        self._counts["tx_direct"] += 1
        return True

    def _writer(self) -> None:
        while not self._stop.is_set():
            control, command = self._outbox.take(0.1)
            ws = self._ws
            if ws is None:
                continue
            try:
                for text, _ in control:
                    ws.send(text)
                if command is not None:
                    ws.send(command[0])
                    self._tx_latency_ns.append(time.monotonic_ns() - command[1])
                    self._counts["tx_messages"] += 1
            except Exception:  # the session thread sees the closed connection and reconnects
                self._counts["tx_dropped"] += 1

    def _session_loop(self) -> None:
        from websockets.sync.client import connect

        backoff = BACKOFF_MIN_S
        while not self._stop.is_set():
            try:
                with connect(self.config.url, open_timeout=2.0, max_size=MAX_MESSAGE_BYTES,
                             compression=None, ping_interval=1.0, ping_timeout=2.0,
                             close_timeout=0.5) as ws:
                    ws.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self._setup(ws)
                    backoff = BACKOFF_MIN_S
                    self._receive(ws)
            except Exception as exc:  # refused, dropped, timed out: reconnect
                if not self._first_error:
                    self._first_error = _one_line(exc)
                self._detail = f"link lost ({_one_line(exc)}); reconnecting"
            finally:
                if self._connected:
                    self._counts["reconnects"] += 1
                self._connected = False
                self._ws = None
                for future in list(self._pending_calls.values()):
                    if not future.done():
                        future.set_exception(LinkError(f"{self.url}: connection lost"))
            if not self._stop.is_set():
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _receive(self, ws: Any) -> None:
        """Handle what arrives until the connection closes (it raises then), and look for
        silent inputs every WATCH_PERIOD_S, between messages or instead of one."""
        next_watch_ns = 0
        while True:
            try:
                raw = ws.recv(timeout=WATCH_PERIOD_S)
            except TimeoutError:
                raw = None
            if raw is not None:
                self._on_raw(raw)
            now = time.monotonic_ns()
            if now >= next_watch_ns:
                next_watch_ns = now + int(WATCH_PERIOD_S * 1e9)
                self._resubscribe_silent(ws, now)

    def _subscribe(self, ws: Any, inp: _Input, now_ns: int) -> None:
        inp.made += 1
        inp.sid = f"subscribe:{inp.topic}:{inp.made}"
        request: dict[str, Any] = {
            "op": "subscribe", "id": inp.sid, "topic": inp.topic, "type": inp.msg_type,
            "queue_length": 1, "throttle_rate": inp.throttle_ms,
        }
        if self.config.cbor:
            request["compression"] = "cbor"
        ws.send(json.dumps(request))
        inp.subscribed_ns = now_ns

    def _resubscribe_silent(self, ws: Any, now_ns: int) -> None:
        """Make the subscription of each silent input again. On the real server this drops
        its ROS subscription (when no other client shares it) and makes a new one whose QoS
        matches the publishers known now: the cure for one made before they were known."""
        for inp in self._inputs.values():
            quiet_since = max(inp.subscribed_ns, inp.last_rx_ns)
            if not inp.watched or now_ns - quiet_since < inp.wait_s * 1e9:
                continue
            ws.send(json.dumps({"op": "unsubscribe", "id": inp.sid, "topic": inp.topic}))
            self._subscribe(ws, inp, now_ns)
            inp.resubscribes += 1
            inp.wait_s = min(inp.wait_s * 2, RESUBSCRIBE_MAX_S)
            self._counts["resubscribes"] += 1

    def _setup(self, ws: Any) -> None:
        """Advertise, subscribe, and stop the base (a fresh session starts from rest)."""
        c = self.config
        msg_type = "geometry_msgs/msg/TwistStamped" if c.twist_stamped \
            else "geometry_msgs/msg/Twist"
        ws.send(json.dumps({"op": "advertise", "id": f"advertise:{c.cmd_vel_topic}",
                            "topic": c.cmd_vel_topic, "type": msg_type, "queue_size": 1}))
        now = time.monotonic_ns()
        for inp in self._inputs.values():
            inp.last_rx_ns, inp.wait_s = 0, RESUBSCRIBE_AFTER_S
            self._subscribe(ws, inp, now)
        ws.send(self._twist_json(ZERO_COMMAND))
        relatch = self._async_request(c.estop_service, {"data": True}) \
            if self._estop_latched else None
        if relatch is not None:
            ws.send(relatch)
        self._connected_ns = now
        self._last_rx_ns = time.monotonic_ns()
        self._detail = f"rosbridge at {c.url}"
        self._ws = ws
        self._connected = True
        self._ever_connected.set()

    def _shutdown(self) -> None:
        self._stop.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
        self._outbox.wake()
        for thread in (self._thread, self._tx_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(2.0)
        self._thread = self._tx_thread = None
        self._connected = False
        if self._images is not None:
            self._images.stop()
            self._images = None

    # --- incoming --------------------------------------------------------------------------

    def _on_raw(self, raw: str | bytes) -> None:
        """Handle one WebSocket message. Never raises: anything malformed is counted."""
        try:
            if isinstance(raw, bytes | bytearray):
                message = self._decode_cbor(bytes(raw))
                self._counts["cbor_messages"] += 1
            else:
                message = json.loads(raw)
        except Exception:
            self._counts["bad_json"] += 1
            return
        try:
            self._on_message(message)
        except Exception:  # a message of the wrong shape: count it, keep going
            self._counts["bad_messages"] += 1

    @staticmethod
    def _decode_cbor(raw: bytes) -> Any:
        import cbor2

        def tag_hook(*args: Any) -> Any:
            # cbor2 < 6 calls tag_hook(decoder, tag); cbor2 6 calls tag_hook(tag, immutable).
            tag = next(a for a in args if isinstance(a, cbor2.CBORTag))
            if tag.tag == 85 and isinstance(tag.value, bytes):  # float32 LE array (RFC 8746)
                return np.frombuffer(tag.value, dtype="<f4")
            return tag

        return cbor2.loads(raw, tag_hook=tag_hook)

    def _on_message(self, m: Any) -> None:
        if not isinstance(m, dict):
            raise TypeError("not an object")
        op = m.get("op")
        if op == "publish":
            self._on_publish(m["topic"], m["msg"])
        elif op == "service_response":
            call_id = str(m.get("id"))
            future = self._pending_calls.get(call_id)
            service = self._async_calls.pop(call_id, None)
            if service is not None:
                self._on_async_answer(service, m)
            if future is not None and not future.done():
                with contextlib.suppress(InvalidStateError):  # the caller gave up meanwhile
                    if m.get("result") is False:
                        future.set_exception(LinkError(
                            f"{self.url}: {m.get('service')} failed: {m.get('values')}"))
                    else:
                        future.set_result(m.get("values"))
            self._counts["messages_ok"] += 1
        elif op == "status":
            if m.get("level") in ("error", "warning"):
                self._counts["status_errors"] += 1
                self._last_status = str(m.get("msg"))[:200]
            self._counts["messages_ok"] += 1
        elif op == "fragment":
            self._on_fragment(m)
        else:
            self._counts["unknown_ops"] += 1

    def _on_fragment(self, m: dict[str, Any]) -> None:
        frag_id, num, total, data = str(m["id"]), int(m["num"]), int(m["total"]), m["data"]
        if not isinstance(data, str) or not 0 <= num < total <= 100_000:
            raise ValueError("bad fragment")
        parts = self._fragments.setdefault(frag_id, {})
        parts[num] = data
        while len(self._fragments) > MAX_FRAGMENT_SETS:
            self._fragments.pop(next(iter(self._fragments)))
        if len(parts) == total:
            self._fragments.pop(frag_id, None)
            self._on_raw("".join(parts[k] for k in range(total)))

    def _on_publish(self, topic: Any, msg: Any) -> None:
        if not isinstance(msg, dict):
            raise TypeError("msg is not an object")
        c = self.config
        now = time.monotonic_ns()
        inp = self._inputs.get(topic) if isinstance(topic, str) else None
        if inp is not None:
            inp.last_rx_ns, inp.wait_s = now, RESUBSCRIBE_AFTER_S
        if topic == c.odom_topic:
            pose = msg["pose"]["pose"]
            twist = msg["twist"]["twist"]
            odom = Odometry(
                _f(pose["position"]["x"]), _f(pose["position"]["y"]),
                yaw_from_quaternion(pose["orientation"]),
                _f(twist["linear"]["x"]), _f(twist["angular"]["z"]),
            )
            self._odom = odom
            self._publish_observation(now)
        elif topic == c.scan_topic:
            self._scan = (now, scan_to_robot_frame(msg))
            self._counts["scans"] += 1
        elif topic == c.image_topic:
            data = msg["data"]
            if isinstance(data, str):
                data = base64.b64decode(data, validate=True)
            elif isinstance(data, list):
                data = bytes(data)
            if not isinstance(data, bytes | bytearray) or not data:
                raise TypeError("image data is not bytes")
            if self._images is not None:
                self._images.submit(now, bytes(data))
        elif topic == c.battery_topic:
            percentage = msg.get("percentage")
            if isinstance(percentage, int | float) and math.isfinite(percentage):
                self._battery = min(1.0, max(0.0, float(percentage)))
            current = msg.get("current")
            # rosbridge writes a NaN float as null: both mean the base does not measure it.
            self._battery_current = float(current) if isinstance(current, int | float) \
                and not isinstance(current, bool) and math.isfinite(current) else None
            status = msg.get("power_supply_status")
            self._power_supply_status = status if isinstance(status, int) \
                and not isinstance(status, bool) else None
        elif topic == c.estop_topic:
            self._estop = _bool(msg)
        elif topic == c.docked_topic:
            self._docked = _bool(msg)
        elif topic == c.bumper_topic:
            self._bumper = _bool(msg)
        else:
            self._counts["unknown_ops"] += 1
            return
        self._last_rx_ns = now
        self._counts["messages_ok"] += 1

    def _on_image(self, t_ns: int, image: npt.NDArray[np.uint8]) -> None:
        self._image = (t_ns, image)
        self._counts["images"] += 1

    def _on_image_error(self, reason: str) -> None:
        self._counts["image_errors"] += 1

    def _publish_observation(self, now: int) -> None:
        odom = self._odom
        if odom is None:
            return
        image, scan = self._image, self._scan
        # Every input the link expects, by when it last arrived; one that has not arrived yet
        # by since when it is awaited, so that it too makes the observation stale, by name.
        stamps = {"odom": now}
        if self.config.scan_topic:
            stamps["scan"] = scan[0] if scan is not None else self._awaited_since_ns
        if self.config.image_topic:
            stamps["image"] = image[0] if image is not None else self._awaited_since_ns
        observation = Observation(
            t_ns=min(stamps.values()),  # its oldest part, so freshness checks see the real age
            odom=odom,
            image=None if image is None else image[1],
            scan_m=None if scan is None else scan[1],
            battery_frac=self._battery,
            docked=self._docked,
            estop=self._estop or self._estop_latched,
            bumper=self._bumper,
            battery_current_a=self._battery_current,
            power_supply_status=self._power_supply_status,
            input_t_ns=stamps,
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


def _bool(msg: dict[str, Any]) -> bool:
    data = msg["data"]
    if not isinstance(data, bool | int):
        raise TypeError("data is not a bool")
    return bool(data)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
