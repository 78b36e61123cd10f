"""The rosbridge link over a real WebSocket against the simulated rosbridge server, a hostile
server, and roslibpy (a third-party client) against our server."""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from _budget import FAST, count
from hypothesis import given, settings
from hypothesis import strategies as st

from takeover.bench.links import run_expert_episode
from takeover.errors import UsageError
from takeover.hw.base import LinkOptions, open_link
from takeover.hw.rosbridge.link import (
    RosbridgeLink,
    parse_rosbridge_url,
    scan_to_robot_frame,
)
from takeover.sim.rosbridge_server import SimRosbridgeServer
from takeover.types import Command


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.002)
    return time.monotonic() - start


@pytest.fixture
def server() -> Iterator[SimRosbridgeServer]:
    server = SimRosbridgeServer(port=0, seed=4)
    yield server
    server.close()


@pytest.fixture
def link(server: SimRosbridgeServer) -> Iterator[RosbridgeLink]:
    link = open_link(server.url)
    assert isinstance(link, RosbridgeLink)
    link.connect()
    yield link
    link.close()


@pytest.mark.slow
def test_expert_docks_over_ws(link: RosbridgeLink) -> None:
    assert link.supports_sim_control
    result = run_expert_episode(link, seed=4)
    assert result.outcome == "docked", result
    health = link.health()
    assert health.connected and health.frames_bad == 0 and health.extra["images"] > 50


def test_cbor_stamped_twist_and_png_images() -> None:
    with SimRosbridgeServer(port=0, seed=1, image_format="png") as server:
        link = open_link(f"{server.url}?cbor=1&twist=stamped&frame_id=base_footprint")
        link.connect()
        try:
            obs = link.latest()
            assert obs is not None and obs.image is not None and obs.scan_m is not None
            assert obs.image.shape == (96, 96, 3) and obs.scan_m.shape == (180,)
            assert link.health().extra["cbor_messages"] > 0

            def turning() -> bool:
                link.send(Command(0.0, 0.4))
                time.sleep(0.02)
                return server.base.snapshot().target_w_radps == pytest.approx(0.4)

            wait_for(turning, 3.0, "a stamped twist at the base")
        finally:
            link.close()
        wait_for(lambda: server.base.snapshot().target_w_radps == 0.0, 1.0,
                 "the zero twist sent before closing")


def test_unplug_reconnect_and_estop_stays_latched(server: SimRosbridgeServer,
                                                  link: RosbridgeLink) -> None:
    link.estop()
    wait_for(lambda: server.base.estop, 2.0, "the base's e-stop (service)")
    wait_for(lambda: (obs := link.latest()) is not None and obs.estop, 1.0, "/estop true")
    server.unplug()
    wait_for(lambda: not link.health().connected, 10.0, "disconnection")
    server.replug()
    wait_for(lambda: link.health().connected, 10.0, "reconnection")
    assert server.base.estop
    received = server.commands_received
    assert link.send(Command(0.3, 0.0)) == Command()  # the link itself sends zero while latched
    wait_for(lambda: server.commands_received > received, 10.0, "the command at the server")
    t_ns = server.base.snapshot().t_ns
    wait_for(lambda: server.base.snapshot().t_ns > t_ns + 20_000_000, 10.0, "two physics ticks")
    assert server.base.snapshot().target_v_mps == 0.0
    link.clear_estop()
    wait_for(lambda: not server.base.estop, 2.0, "release")

    def moving() -> bool:
        link.send(Command(0.2, 0.0))
        time.sleep(0.02)
        return server.base.snapshot().target_v_mps > 0.1

    wait_for(moving, 3.0, "motion after release")
    assert link.health().extra["reconnects"] >= 1


def test_reset_gives_a_fresh_observation_of_the_new_world(server: SimRosbridgeServer,
                                                          link: RosbridgeLink) -> None:
    link.reset(11)
    dock = link.dock_pose()
    assert (dock.x_m, dock.y_m) == pytest.approx((server.base.dock_pose().x_m,
                                                  server.base.dock_pose().y_m))
    obs = link.latest()
    start = server.base.sim.world.start
    assert obs is not None and obs.image is not None
    assert (obs.odom.x_m, obs.odom.y_m) == pytest.approx((start.x_m, start.y_m), abs=0.02)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("ws://", "names no host"),
        ("ws://robot:99999", "port"),
        ("ws://robot:9090?colour=red", "unknown option"),
        ("ws://robot:9090?twist=fancy", "plain or stamped"),
        ("ws://robot:9090?image_hz=0", "positive"),
        ("ws://robot:9090?odom=", "cannot be empty"),
    ],
)
def test_bad_urls_are_usage_errors(url: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        open_link(url)


def test_topics_are_configurable_and_empty_turns_an_input_off() -> None:
    config = parse_rosbridge_url("ws://r:9090?cmd_vel=base/cmd_vel&scan=&image_hz=5")
    assert config.cmd_vel_topic == "/base/cmd_vel" and config.scan_topic == ""
    assert config.image_hz == 5.0 and config.url == "ws://r:9090"


def test_laser_scans_are_turned_into_the_robot_convention() -> None:
    n = 360
    inc = 2 * math.pi / n
    ranges: list[float | None] = [float(i) / 100 + 0.1 for i in range(n)]
    ranges[10] = None  # NaN/inf arrive as null
    scan = {"angle_min": -math.pi, "angle_increment": inc, "range_min": 0.05,
            "range_max": 100.0, "ranges": ranges}
    out = scan_to_robot_frame(scan)
    assert out.shape == (n,)
    # the beam at angle 0 (forward) is index 180 of the message
    assert out[0] == pytest.approx(ranges[180])
    assert math.isnan(out[(10 + 180) % n])
    # a 270-degree scanner leaves the back NaN
    partial = {"angle_min": -3 * math.pi / 4, "angle_increment": inc,
               "ranges": [1.0] * 270, "range_min": 0.0, "range_max": 10.0}
    out = scan_to_robot_frame(partial)
    assert np.isnan(out[180]) and out[0] == 1.0 and np.isfinite(out).sum() == 270


ROSLIBPY_CLIENT = """
import json, sys, time, roslibpy
ros = roslibpy.Ros(host="127.0.0.1", port=int(sys.argv[1])); ros.run(timeout=10)
odom, images = [], []
roslibpy.Topic(ros, "/odom", "nav_msgs/msg/Odometry", queue_length=1).subscribe(odom.append)
roslibpy.Topic(ros, "/camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
               queue_length=1).subscribe(images.append)
reset = roslibpy.Service(ros, "/sim/reset", "takeover_sim/srv/Reset").call(
    roslibpy.ServiceRequest({"seed": 3}), timeout=5)
cmd = roslibpy.Topic(ros, "/cmd_vel", "geometry_msgs/msg/Twist")
end = time.monotonic() + 1.5
while time.monotonic() < end:
    cmd.publish(roslibpy.Message({"linear": {"x": 0.0, "y": 0.0, "z": 0.0},
                                  "angular": {"x": 0.0, "y": 0.0, "z": 0.5}}))
    time.sleep(0.05)
print(json.dumps({"odom": len(odom), "images": len(images), "dock": reset["dock_pose"],
                  "w": odom[-1]["twist"]["twist"]["angular"]["z"],
                  "format": images[-1]["format"] if images else ""}))
ros.close()
"""


def test_roslibpy_subscribes_publishes_and_calls_services_on_our_server(
        server: SimRosbridgeServer) -> None:
    importlib.import_module("roslibpy")  # a dev dependency: never skipped
    # roslibpy runs a Twisted reactor, which cannot restart: it gets a process of its own.
    result = subprocess.run([sys.executable, "-c", ROSLIBPY_CLIENT, str(server.port)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["odom"] > 20 and report["images"] > 5 and "jpeg" in report["format"]
    assert report["dock"]["x"] == pytest.approx(server.base.dock_pose().x_m)
    assert server.base.seed == 3
    assert report["w"] == pytest.approx(0.5, abs=0.1)  # the base turned as commanded


# --- hostile server and random input ---------------------------------------------------------


def _junk_messages(rng: random.Random) -> Iterator[str | bytes]:
    odom = {"pose": {"pose": {"position": {"x": 1.0, "y": 2.0, "z": 0.0},
                              "orientation": {"x": 0, "y": 0, "z": 0, "w": 1}}},
            "twist": {"twist": {"linear": {"x": 0.1}, "angular": {"z": 0.0}}}}
    good = json.dumps({"op": "publish", "topic": "/odom", "msg": odom})
    junk: list[str | bytes] = [
        "not json", "{", "[]", "null", "42", '"op"', '{"op": 7}', '{"op": "dance"}',
        '{"op": "publish"}', '{"op": "publish", "topic": "/odom", "msg": []}',
        '{"op": "publish", "topic": "/odom", "msg": {"pose": "x"}}',
        '{"op": "publish", "topic": "/scan", "msg": {"ranges": "abc"}}',
        '{"op": "publish", "topic": "/scan", "msg": {"ranges": [1, 2], "angle_increment": 0}}',
        '{"op": "publish", "topic": "/camera/image_raw/compressed", "msg": {"data": "%%%"}}',
        '{"op": "publish", "topic": "/camera/image_raw/compressed", "msg": {"data": "AAAA"}}',
        '{"op": "publish", "topic": "/estop", "msg": {"data": "yes"}}',
        '{"op": "fragment", "id": "f", "num": 5, "total": 2, "data": "x"}',
        '{"op": "fragment", "id": "g", "num": 0, "total": 2, "data": "{\\"op\\": "}',
        '{"op": "service_response", "id": 5}', '{"op": "status", "level": "error", "msg": 1}',
        b"\xff\x00binary", "[" * 5000 + "]" * 5000,
    ]
    for _ in range(400):
        yield rng.choice(junk) if rng.random() < 0.7 else good


def test_hostile_server_over_a_real_websocket_is_counted_and_survived() -> None:
    from websockets.asyncio.server import serve

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def handler(ws: Any) -> None:
        for message in _junk_messages(random.Random(3)):
            await ws.send(message)
            await asyncio.sleep(0.001)
        await state["stop"].wait()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as srv:
            state["port"] = srv.sockets[0].getsockname()[1]
            state["stop"] = asyncio.Event()
            ready.set()
            await state["stop"].wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(5)
    link = open_link(f"ws://127.0.0.1:{state['port']}?scan=&image=")
    try:
        link.connect(timeout_s=3.0)
        wait_for(lambda: link.health().frames_bad > 100, 10.0, "junk to be counted")
        wait_for(lambda: link.latest() is not None, 5.0, "a good odometry message")
        health = link.health()
        assert health.extra["bad_json"] > 0 and health.extra["bad_messages"] > 0
        assert not link.supports_sim_control
        with pytest.raises(UsageError, match="only available on a simulator"):
            link.reset(1)
    finally:
        link.close()
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(5)


KEYS = ["x", "y", "z", "w", "data", "msg", "pose", "twist", "position", "orientation",
        "linear", "angular", "ranges", "angle_min", "angle_increment", "percentage", ""]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, width=32) | st.text("abc/%{}[]\"", max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS), children, max_size=4),
    max_leaves=10,
)
TOPICS = ["/odom", "/scan", "/camera/image_raw/compressed", "/battery_state", "/estop",
          "/docked", "/bumper", "/other"]
messages = st.one_of(
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200),
    st.builds(lambda topic, msg: json.dumps({"op": "publish", "topic": topic, "msg": msg}),
              st.sampled_from(TOPICS), json_values),
    st.builds(lambda op, rest: json.dumps({"op": op, **rest}),
              st.sampled_from(["publish", "service_response", "status", "fragment"]),
              st.dictionaries(st.sampled_from(["id", "topic", "msg", "num", "total", "data",
                                               "values", "result", "level"]), json_values,
                              max_size=6)),
)


@pytest.mark.slow
@settings(FAST, max_examples=1_200)
@given(st.lists(messages, min_size=1, max_size=8))
def test_random_messages_never_raise_out_of_the_link(raw_messages: list[str | bytes]) -> None:
    count("rosbridge_messages", len(raw_messages))
    link = RosbridgeLink("ws://x:1", parse_rosbridge_url("ws://x:1?image="), LinkOptions())
    for raw in raw_messages:
        link._on_raw(raw)
    health = link.health()
    assert health.frames_ok + health.frames_bad <= len(raw_messages) + 8
    link._on_raw(json.dumps({"op": "publish", "topic": "/odom", "msg": {
        "pose": {"pose": {"position": {"x": 3.0, "y": 0.0, "z": 0.0},
                          "orientation": {"x": 0, "y": 0, "z": 0, "w": 1}}},
        "twist": {"twist": {"linear": {"x": 0.0}, "angular": {"z": 0.0}}}}}))
    obs = link.latest()
    assert obs is not None and obs.odom.x_m == 3.0


def test_battery_current_and_status_are_read_and_a_nan_current_is_unknown() -> None:
    """BatteryState's current and power_supply_status reach the observation as the base sent
    them; rosbridge writes a NaN current (not measured) as null: unknown, not zero."""
    link = RosbridgeLink("ws://x:1", parse_rosbridge_url("ws://x:1?image=&scan="), LinkOptions())
    odom = json.dumps({"op": "publish", "topic": "/odom", "msg": {
        "pose": {"pose": {"position": {"x": 0.0, "y": 0.0, "z": 0.0},
                          "orientation": {"x": 0, "y": 0, "z": 0, "w": 1}}},
        "twist": {"twist": {"linear": {"x": 0.0}, "angular": {"z": 0.0}}}}})
    seen = []
    for current in (-1.7, None):
        link._on_raw(json.dumps({"op": "publish", "topic": "/battery_state", "msg": {
            "percentage": 0.5, "current": current, "power_supply_status": 1}}))
        link._on_raw(odom)
        obs = link.latest()
        assert obs is not None
        seen.append((obs.battery_current_a, obs.power_supply_status, obs.battery_frac))
    assert seen == [(-1.7, 1, 0.5), (None, 1, 0.5)]


def test_a_good_dock_contact_reports_a_charging_current_over_ws(
        server: SimRosbridgeServer, link: RosbridgeLink) -> None:
    from dock_support import creep_until_docked, place_at_dock

    link.reset(4)
    obs = link.latest()
    assert obs is not None
    wait_for(lambda: link.latest().battery_current_a is not None,  # type: ignore[union-attr]
             5, "a BatteryState with a current")
    assert link.latest().battery_current_a < 0  # type: ignore[union-attr,operator]
    with server.base._lock:
        place_at_dock(server.base.sim)

    creep_until_docked(link)
    wait_for(lambda: link.latest().power_supply_status == 1,  # type: ignore[union-attr]
             5, "power_supply_status CHARGING")
    current = link.latest().battery_current_a  # type: ignore[union-attr]
    assert current is not None and current > 1.0
