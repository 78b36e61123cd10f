"""The simulator exposed as a ROS 2 robot behind a rosbridge v2 server (WebSocket).

What a client sees (docs/rosbridge.md has the details):

    publishes  /odom                          nav_msgs/msg/Odometry           50 Hz
               /scan                          sensor_msgs/msg/LaserScan       10 Hz (NaN -> null)
               /camera/image_raw/compressed   sensor_msgs/msg/CompressedImage 20 Hz (JPEG, base64)
               /battery_state                 sensor_msgs/msg/BatteryState    2 Hz
               /estop, /docked, /bumper       std_msgs/msg/Bool               10 Hz and on change
               /dock_pose                     geometry_msgs/msg/PoseStamped   1 Hz (sim only)
    subscribes /cmd_vel                       geometry_msgs/msg/Twist or TwistStamped
    services   /estop/set                     std_srvs/srv/SetBool (true latches, false releases)
               /sim/reset                     takeover_sim/srv/Reset {seed} -> {dock_pose, ...}
               /sim/get_dock_pose             takeover_sim/srv/GetDockPose
               /rosapi/topics, /rosapi/services   (the subset of rosapi that tools ask first)

The protocol is rosbridge v2's: ops advertise, unadvertise, publish, subscribe (throttle_rate,
queue_length, compression "none" or "cbor"), unsubscribe, call_service, set_level, fragment;
replies publish, service_response and status. Each subscription has a bounded queue
(queue_length, at least 1 and at most 100), so a slow client loses old messages instead of
growing the server's memory.

It also behaves as the real rosbridge_server (2.x) does where that bites a client, as fault modes
a test turns on (docs/rosbridge.md):
- QoS at subscribe time. A subscription takes its QoS from the publishers the server knows when
  it is made; one made before a best-effort publisher (the LiDAR's, `best_effort`) is known is
  reliable, and when the publisher appears the server logs "offering incompatible QoS" and the
  subscription delivers nothing until the client makes it again (unsubscribe, subscribe).
- A driver that starts late (`absent`, then `appear(topic)`): nothing on that topic until then.
- A server restart on the same port (`restart`): every client dropped, every subscription
  forgotten, and the robot's publishers unknown until discovered (`discover`).
- A real robot (`real_robot=True`): no /sim services, no e-stop topic and no e-stop service;
  `rosapi=False`: no rosapi either. A call to a service that does not exist is answered as
  rosbridge does (status error, `result: false`) and logged as an ERROR (`errors_logged`).
- A simulator playing a real base (`base.real_base`, `takeover sim serve --reset drive`): no
  /sim services and no /dock_pose (a client's probe sees a real robot); /docked is published
  and always false (the battery's current and power_supply_status tell a dock).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from takeover.sim.realtime import BaseState, RealTimeBase
from takeover.types import Command

ODOM_TOPIC = "/odom"
SCAN_TOPIC = "/scan"
IMAGE_TOPIC = "/camera/image_raw/compressed"
BATTERY_TOPIC = "/battery_state"
ESTOP_TOPIC = "/estop"
DOCKED_TOPIC = "/docked"
BUMPER_TOPIC = "/bumper"
DOCK_POSE_TOPIC = "/dock_pose"
CMD_VEL_TOPIC = "/cmd_vel"

TOPIC_TYPES = {
    ODOM_TOPIC: "nav_msgs/msg/Odometry",
    SCAN_TOPIC: "sensor_msgs/msg/LaserScan",
    IMAGE_TOPIC: "sensor_msgs/msg/CompressedImage",
    BATTERY_TOPIC: "sensor_msgs/msg/BatteryState",
    ESTOP_TOPIC: "std_msgs/msg/Bool",
    DOCKED_TOPIC: "std_msgs/msg/Bool",
    BUMPER_TOPIC: "std_msgs/msg/Bool",
    DOCK_POSE_TOPIC: "geometry_msgs/msg/PoseStamped",
    CMD_VEL_TOPIC: "geometry_msgs/msg/Twist",
}
ROBOT_TOPICS = (ODOM_TOPIC, SCAN_TOPIC, IMAGE_TOPIC, BATTERY_TOPIC, DOCKED_TOPIC, BUMPER_TOPIC,
                CMD_VEL_TOPIC)  # what a real base offers (real_robot=True)
SERVICE_TYPES = {
    "/estop/set": "std_srvs/srv/SetBool",
    "/sim/reset": "takeover_sim/srv/Reset",
    "/sim/get_dock_pose": "takeover_sim/srv/GetDockPose",
    "/rosapi/topics": "rosapi_msgs/srv/Topics",
    "/rosapi/services": "rosapi_msgs/srv/Services",
}
ROSAPI_SERVICES = ("/rosapi/topics", "/rosapi/services")
MAX_QUEUE_LENGTH = 100
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
BATTERY_PERIOD_NS = 500_000_000
FLAGS_PERIOD_NS = 100_000_000
DOCK_POSE_PERIOD_NS = 1_000_000_000
PUBLISHER_TIMEOUT_S = 0.5  # the base stops if the client that was driving it goes away


def stamp(t_ns: int) -> dict[str, int]:
    return {"sec": t_ns // 1_000_000_000, "nanosec": t_ns % 1_000_000_000}


def header(t_ns: int, frame_id: str) -> dict[str, Any]:
    return {"stamp": stamp(t_ns), "frame_id": frame_id}


def quaternion_from_yaw(yaw: float) -> dict[str, float]:
    return {"x": 0.0, "y": 0.0, "z": math.sin(yaw / 2), "w": math.cos(yaw / 2)}


def json_float(x: float) -> float | None:
    """rosbridge sends NaN and infinities as JSON null (JSON has no NaN)."""
    return x if math.isfinite(x) else None


def encode_image(image: npt.NDArray[np.uint8], fmt: str = "jpeg", quality: int = 90) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    if fmt == "png":
        Image.fromarray(image, "RGB").save(out, format="PNG")
    else:
        Image.fromarray(image, "RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


@dataclass(eq=False)
class _Subscription:
    topic: str
    ids: set[str] = field(default_factory=set)
    throttle_ns: int = 0
    queue: deque[Any] = field(default_factory=lambda: deque(maxlen=1))
    cbor: bool = False
    last_sent_ns: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    # Made before the topic's best-effort publisher was known: a reliable subscription that
    # the publisher cannot serve (rosbridge 2.x picks QoS once, at subscribe time).
    deaf: bool = False


@dataclass(eq=False)  # identity: clients live in a set
class _Client:
    ws: Any
    subscriptions: dict[str, _Subscription] = field(default_factory=dict)
    advertised: dict[str, str] = field(default_factory=dict)
    fragments: dict[str, dict[int, str]] = field(default_factory=dict)
    drives: bool = False  # has published a velocity command


class _Outgoing:
    """One published message, encoded at most once per encoding for all clients."""

    __slots__ = ("_cbor", "_json", "msg", "topic")

    def __init__(self, topic: str, msg: dict[str, Any]) -> None:
        self.topic = topic
        self.msg = msg
        self._json: str | None = None
        self._cbor: bytes | None = None

    def as_json(self) -> str:
        if self._json is None:
            msg = self.msg
            if isinstance(msg.get("data"), bytes | bytearray):
                msg = {**msg, "data": base64.b64encode(msg["data"]).decode("ascii")}
            self._json = json.dumps({"op": "publish", "topic": self.topic, "msg": msg},
                                    allow_nan=False, separators=(",", ":"))
        return self._json

    def as_cbor(self) -> bytes:
        if self._cbor is None:
            import cbor2

            msg = self.msg
            if "ranges" in msg:  # float32 typed array (RFC 8746 tag 85), as rosbridge sends
                ranges = np.array([np.nan if r is None else r for r in msg["ranges"]],
                                  dtype="<f4")
                msg = {**msg, "ranges": cbor2.CBORTag(85, ranges.tobytes())}
            self._cbor = cbor2.dumps({"op": "publish", "topic": self.topic, "msg": msg})
        return self._cbor


class SimRosbridgeServer:
    """A rosbridge v2 server in front of a simulated base; runs its own event-loop thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9090, seed: int = 0,
                 image_format: str = "jpeg", base: RealTimeBase | None = None, *,
                 real_robot: bool = False, rosapi: bool = True,
                 best_effort: Iterable[str] = (SCAN_TOPIC,), absent: Iterable[str] = ()) -> None:
        """real_robot: offer only what a real base does (no /sim services, no e-stop topic or
        service). rosapi: offer /rosapi/topics and /rosapi/services. best_effort: topics whose
        publisher is best effort (LiDAR drivers). absent: topics whose publisher has not started
        yet (`appear` starts it)."""
        self.host = host
        self.image_format = image_format
        self.commands_received = 0  # /cmd_vel messages (tests wait on the count)
        self.base = base or RealTimeBase(seed)
        self.real_robot = real_robot
        self.rosapi = rosapi
        self.best_effort = frozenset(best_effort)
        self._absent = set(absent)
        self._known = self._published_topics() - self._absent  # publishers the server knows
        self.generation = 1  # the server process: restart() makes a new one
        self.incompatible_qos = 0  # "New publisher discovered ..., offering incompatible QoS"
        self.errors_logged = 0  # ERROR lines in the server's own log
        self.log: deque[str] = deque(maxlen=200)
        self.service_calls: deque[tuple[int, str, Any]] = deque(maxlen=1000)  # (generation, ...)
        self.moving_commands: Counter[int] = Counter()  # non-zero twists, by generation
        self._subscribes: Counter[tuple[int, str]] = Counter()
        self._clients: set[_Client] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rosbridge-server",
                                        daemon=True)
        self._thread.start()
        self._server: Any = None
        self._last_flags: tuple[bool, bool, bool] | None = None
        self._next_battery_ns = 0
        self._next_flags_ns = 0
        self._next_dock_ns = 0
        self.messages_in = 0
        self.errors_sent = 0
        try:
            self.port = self._run(self._start(port))
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(2.0)
            raise
        self.base.set_sink(self)
        self.base.start()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def _run(self, coro: Any, timeout_s: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    async def _start(self, port: int) -> int:
        from websockets.asyncio.server import serve

        self._server = await serve(
            self._handler, self.host, port, max_size=MAX_MESSAGE_BYTES, compression=None,
            ping_interval=None,
        )
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    # --- lifecycle ---------------------------------------------------------------------------

    def unplug(self) -> None:
        """Drop every client and stop listening (the robot's network goes away)."""
        self._run(self._stop_serving())

    def replug(self) -> None:
        self._run(self._start(self.port))

    def restart(self, discovered: bool = True) -> None:
        """A new server process on the same port: every client and subscription is dropped;
        with discovered=False it does not know the robot's publishers yet (DDS discovery takes
        a moment on a real robot) until `discover()`."""
        self._run(self._stop_serving())
        self.generation += 1
        self._known = self._published_topics() - self._absent if discovered else set()
        self._run(self._start(self.port))

    def discover(self) -> None:
        """The server discovers the robot's publishers (after a restart)."""
        self._run(self._became_known(self._published_topics() - self._absent))

    def appear(self, topic: str) -> None:
        """The publisher of `topic` starts (a driver that came up late)."""
        self._absent.discard(topic)
        self._run(self._became_known({topic}))

    def subscriptions_made(self, topic: str, generation: int | None = None) -> int:
        """How many subscribe requests for `topic` this server process (or `generation`) got."""
        return self._subscribes[(generation or self.generation, topic)]

    def _published_topics(self) -> set[str]:
        topics = set(TOPIC_TYPES) - {CMD_VEL_TOPIC}
        if self.base.real_base:  # the simulator plays a real base: no privileged dock pose
            topics.discard(DOCK_POSE_TOPIC)
        return topics & set(ROBOT_TOPICS) if self.real_robot else topics

    async def _became_known(self, topics: set[str]) -> None:
        for topic in sorted(topics - self._known):
            self._known.add(topic)
            deaf = sum(1 for c in self._clients for sub in c.subscriptions.values()
                       if sub.topic == topic and sub.deaf)
            if deaf:
                self.incompatible_qos += 1
                self.log.append(f"WARN New publisher discovered on topic '{topic}', offering "
                                "incompatible QoS. No messages will be received from it. Last "
                                "incompatible policy: RELIABILITY")

    def _log_error(self, text: str) -> None:
        self.errors_logged += 1
        self.log.append(f"ERROR {text}")

    async def _stop_serving(self) -> None:
        if self._server is not None:
            self._server.close()
            for client in list(self._clients):
                with contextlib.suppress(Exception):
                    await client.ws.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def close(self) -> None:
        self.base.set_sink(None)
        self.base.stop()
        with contextlib.suppress(Exception):
            self._run(self._stop_serving())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(2.0)

    def __enter__(self) -> SimRosbridgeServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- connections -------------------------------------------------------------------------

    async def _handler(self, ws: Any) -> None:
        client = _Client(ws)
        self._clients.add(client)
        try:
            async for raw in ws:
                self.messages_in += 1
                await self._on_raw(client, raw)
        except Exception:  # a broken connection ends like a closed one
            pass
        finally:
            self._clients.discard(client)
            for sub in client.subscriptions.values():
                if sub.task is not None:
                    sub.task.cancel()
            if client.drives:
                self.base.host_gone()

    async def _status(self, client: _Client, level: str, msg: str, op_id: str | None) -> None:
        self.errors_sent += 1
        reply: dict[str, Any] = {"op": "status", "level": level, "msg": msg}
        if op_id:
            reply["id"] = op_id
        with contextlib.suppress(Exception):
            await client.ws.send(json.dumps(reply))

    async def _on_raw(self, client: _Client, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            await self._status(client, "error", "binary frames are not accepted (send JSON)", None)
            return
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError):
            await self._status(client, "error", "message is not valid JSON", None)
            return
        if not isinstance(message, dict) or not isinstance(message.get("op"), str):
            await self._status(client, "error", "message has no 'op'", None)
            return
        try:
            await self._on_op(client, message)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            op_id = message.get("id") if isinstance(message.get("id"), str) else None
            await self._status(client, "error", f"{message['op']}: bad message ({exc})", op_id)

    async def _on_op(self, client: _Client, m: dict[str, Any]) -> None:
        op = m["op"]
        op_id = m.get("id") if isinstance(m.get("id"), str) else None
        if op == "publish":
            self._on_publish(client, str(m["topic"]), m.get("msg", {}))
        elif op == "subscribe":
            self._subscribe(client, m)
        elif op == "unsubscribe":
            self._unsubscribe(client, str(m["topic"]), op_id)
        elif op == "advertise":
            client.advertised[str(m["topic"])] = str(m.get("type", ""))
        elif op == "unadvertise":
            client.advertised.pop(str(m["topic"]), None)
        elif op == "call_service":
            await self._call_service(client, m)
        elif op == "fragment":
            await self._on_fragment(client, m)
        elif op in ("set_level", "auth"):
            pass
        else:
            await self._status(client, "error", f"operation {op!r} is not supported", op_id)

    async def _on_fragment(self, client: _Client, m: dict[str, Any]) -> None:
        frag_id, num, total = str(m["id"]), int(m["num"]), int(m["total"])
        if not 0 < total <= 10_000 or not 0 <= num < total:
            raise ValueError("fragment numbering")
        parts = client.fragments.setdefault(frag_id, {})
        parts[num] = str(m["data"])
        if len(client.fragments) > 16:  # abandoned fragment sets do not pile up
            client.fragments.pop(next(iter(client.fragments)))
        if len(parts) == total:
            del client.fragments[frag_id]
            await self._on_raw(client, "".join(parts[k] for k in range(total)))

    def _on_publish(self, client: _Client, topic: str, msg: Any) -> None:
        if topic != CMD_VEL_TOPIC:
            return  # publishing on other topics is allowed and goes nowhere, as in ROS
        if not isinstance(msg, dict):
            raise TypeError("msg is not an object")
        twist = msg.get("twist", msg)  # TwistStamped or Twist; a stamp is not needed here
        v = float(twist.get("linear", {}).get("x", 0.0) or 0.0)
        w = float(twist.get("angular", {}).get("z", 0.0) or 0.0)
        client.drives = True
        self.commands_received += 1
        if v != 0.0 or w != 0.0:
            self.moving_commands[self.generation] += 1
        self.base.command(Command(v, w))

    def _subscribe(self, client: _Client, m: dict[str, Any]) -> None:
        topic = str(m["topic"])
        self._subscribes[(self.generation, topic)] += 1
        sub = client.subscriptions.get(topic)
        if sub is None:
            # QoS is chosen now, from the publishers known now: reliable when none is.
            sub = _Subscription(topic, deaf=topic in self.best_effort and topic not in self._known)
            client.subscriptions[topic] = sub
            sub.task = asyncio.get_running_loop().create_task(self._sender(client, sub))
        sub.ids.add(str(m.get("id", "")))
        sub.throttle_ns = max(0, int(m.get("throttle_rate", 0) or 0)) * 1_000_000
        queue_length = int(m.get("queue_length", 0) or 0)
        length = min(MAX_QUEUE_LENGTH, max(1, queue_length))
        if sub.queue.maxlen != length:
            sub.queue = deque(sub.queue, maxlen=length)
        sub.cbor = m.get("compression") == "cbor"

    def _unsubscribe(self, client: _Client, topic: str, op_id: str | None) -> None:
        sub = client.subscriptions.get(topic)
        if sub is None:
            return
        if op_id:
            sub.ids.discard(op_id)
        if not op_id or not sub.ids:
            if sub.task is not None:
                sub.task.cancel()
            del client.subscriptions[topic]

    async def _sender(self, client: _Client, sub: _Subscription) -> None:
        """Send a subscription's queue to its client, no faster than its throttle_rate."""
        while True:
            await sub.wake.wait()
            sub.wake.clear()
            while sub.queue:
                if sub.throttle_ns:
                    wait_ns = sub.last_sent_ns + sub.throttle_ns - time.monotonic_ns()
                    if wait_ns > 0:
                        await asyncio.sleep(wait_ns / 1e9)
                        if not sub.queue:
                            break
                out: _Outgoing = sub.queue.popleft()
                sub.last_sent_ns = time.monotonic_ns()
                try:
                    await client.ws.send(out.as_cbor() if sub.cbor else out.as_json())
                except Exception:
                    return  # the connection is gone; its handler cleans up

    def _publish(self, topic: str, msg: dict[str, Any]) -> None:
        """On the loop thread: queue a message for every subscriber of topic."""
        if topic not in self._known:
            return  # its publisher has not started, or the server has not discovered it
        out = _Outgoing(topic, msg)
        for client in self._clients:
            sub = client.subscriptions.get(topic)
            if sub is not None and not sub.deaf:
                sub.queue.append(out)
                sub.wake.set()

    def _has_subscribers(self, topic: str) -> bool:
        try:  # called from the physics thread while the loop may add or drop a client
            return any(topic in c.subscriptions for c in list(self._clients))
        except RuntimeError:
            return True

    def _publish_threadsafe(self, topic: str, msg: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self._loop.call_soon_threadsafe(self._publish, topic, msg)

    # --- services ----------------------------------------------------------------------------

    async def _call_service(self, client: _Client, m: dict[str, Any]) -> None:
        service = str(m["service"])
        args = m.get("args") or {}
        if not isinstance(args, dict):
            raise TypeError("args is not an object")
        reply: dict[str, Any] = {"op": "service_response", "service": service}
        op_id = m["id"] if isinstance(m.get("id"), str) else None
        if op_id:
            reply["id"] = op_id
        self.service_calls.append((self.generation, service, args))
        try:
            reply["values"] = self._service(service, args)
            reply["result"] = True
        except LookupError:
            # rosbridge logs an ERROR on the robot and tells the client, then answers false
            text = f"Service {service} does not exist"
            self._log_error(f"call_service InvalidServiceException: {text}")
            await self._status(client, "error", f"call_service InvalidServiceException: {text}",
                               op_id)
            reply["values"] = text
            reply["result"] = False
        except (TypeError, ValueError) as exc:
            reply["values"] = f"{service}: bad request ({exc})"
            reply["result"] = False
        with contextlib.suppress(Exception):
            await client.ws.send(json.dumps(reply, allow_nan=False))

    def _dock_values(self) -> dict[str, Any]:
        dock = self.base.dock_pose()
        return {"seed": self.base.seed,
                "dock_pose": {"x": dock.x_m, "y": dock.y_m, "theta": dock.yaw_rad}}

    def _services(self) -> list[str]:
        services = [s for s in SERVICE_TYPES if self.rosapi or s not in ROSAPI_SERVICES]
        if self.real_robot:
            services = [s for s in services if s in ROSAPI_SERVICES]
        if self.base.real_base:  # the simulator plays a real base: no simulator control
            services = [s for s in services if not s.startswith("/sim/")]
        return services

    def _service(self, service: str, args: dict[str, Any]) -> Any:
        if service not in self._services():
            raise LookupError(service)
        if service == "/sim/reset":
            seed = int(args.get("seed", 0))
            self.base.reset(seed)
            for client in self._clients:  # nothing from the old world reaches a client now
                for sub in client.subscriptions.values():
                    sub.queue.clear()
            return {"success": True, "message": "", **self._dock_values()}
        if service == "/sim/get_dock_pose":
            return self._dock_values()
        if service == "/estop/set":
            engage = bool(args.get("data", True))
            self.base.set_estop(engage)
            return {"success": True, "message": "e-stop latched" if engage else "released"}
        if service == "/rosapi/topics":
            topics = [t for t in TOPIC_TYPES if t in self._known or t == CMD_VEL_TOPIC]
            return {"topics": topics, "types": [TOPIC_TYPES[t] for t in topics]}
        if service == "/rosapi/services":
            return {"services": self._services()}
        raise LookupError(service)

    # --- telemetry (physics thread) ------------------------------------------------------------

    def on_state(self, state: BaseState) -> None:
        t, odom = state.t_ns, state.odom
        self._publish_threadsafe(ODOM_TOPIC, {
            "header": header(t, "odom"),
            "child_frame_id": "base_link",
            "pose": {"pose": {"position": {"x": odom.x_m, "y": odom.y_m, "z": 0.0},
                              "orientation": quaternion_from_yaw(odom.yaw_rad)},
                     "covariance": [0.0] * 36},
            "twist": {"twist": {"linear": {"x": odom.v_mps, "y": 0.0, "z": 0.0},
                                "angular": {"x": 0.0, "y": 0.0, "z": odom.w_radps}},
                      "covariance": [0.0] * 36},
        })
        flags = (state.estop, state.docked, state.bumper)
        if flags != self._last_flags or t >= self._next_flags_ns:
            self._last_flags = flags
            self._next_flags_ns = t + FLAGS_PERIOD_NS
            self._publish_threadsafe(ESTOP_TOPIC, {"data": state.estop})
            self._publish_threadsafe(DOCKED_TOPIC, {"data": state.docked})
            self._publish_threadsafe(BUMPER_TOPIC, {"data": state.bumper})
        if t >= self._next_battery_ns or t < self._next_battery_ns - BATTERY_PERIOD_NS:
            self._next_battery_ns = t + BATTERY_PERIOD_NS
            self._publish_threadsafe(BATTERY_TOPIC, {
                "header": header(t, "base_link"), "voltage": 24.0 * (0.85 + 0.15 * state.battery_frac),
                "temperature": None, "current": state.battery_current_a,  # + = charging
                "charge": None, "capacity": None,
                "design_capacity": None, "percentage": state.battery_frac,
                "power_supply_status": state.power_supply_status,
                "power_supply_health": 1, "power_supply_technology": 2, "present": True,
                "cell_voltage": [], "cell_temperature": [], "location": "base",
                "serial_number": "",
            })
        if t >= self._next_dock_ns or t < self._next_dock_ns - DOCK_POSE_PERIOD_NS:
            self._next_dock_ns = t + DOCK_POSE_PERIOD_NS
            dock = self.base.sim.dock_pose
            self._publish_threadsafe(DOCK_POSE_TOPIC, {
                "header": header(t, "odom"),
                "pose": {"position": {"x": dock.x_m, "y": dock.y_m, "z": 0.0},
                         "orientation": quaternion_from_yaw(dock.yaw_rad)},
            })

    def on_scan(self, t_ns: int, ranges_m: npt.NDArray[np.float32]) -> None:
        n = len(ranges_m)
        increment = 2 * math.pi / n
        self._publish_threadsafe(SCAN_TOPIC, {
            "header": header(t_ns, "laser"),
            "angle_min": 0.0, "angle_max": increment * (n - 1), "angle_increment": increment,
            "time_increment": 0.0, "scan_time": 0.1, "range_min": 0.05, "range_max": 8.0,
            "ranges": [json_float(float(r)) for r in ranges_m], "intensities": [],
        })

    def on_image(self, t_ns: int, image: npt.NDArray[np.uint8]) -> None:
        if not self._has_subscribers(IMAGE_TOPIC):
            return  # encoding costs; nobody is looking
        fmt = "png" if self.image_format == "png" else "jpeg"
        self._publish_threadsafe(IMAGE_TOPIC, {
            "header": header(t_ns, "camera"),
            "format": f"rgb8; {fmt} compressed bgr8",  # what image_transport writes
            "data": encode_image(image, fmt),
        })
