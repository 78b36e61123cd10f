"""The robot's gamepad: sensor_msgs/Joy from a joy node (scripted on a second Context, over real
DDS) as the operator's pad, with [gamepad]'s mapping; its loss stops the robot like a local
pad's. Orders and counts, bounded waits."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from ros2_support import isolate_dds, need_rclpy
from waiting import wait_for

from takeover.config import Config, GamepadConfig
from takeover.control.arbiter import OperatorEvent
from takeover.hw.base import open_link
from takeover.inputs.combined import CombinedOperator
from takeover.inputs.joy import AXES, BUTTONS, JoyInput
from takeover.session.stack import build_control_loop
from takeover.types import Mode

isolate_dds()


class JoyNode:
    """A joy node: publishes the pad's state at 20 Hz (its autorepeat) until stopped."""

    def __init__(self, namespace: str) -> None:
        from sensor_msgs.msg import Joy

        from takeover.hw.ros2.node import NodeThread
        from takeover.hw.ros2.qos import sensor_qos

        self.ros = NodeThread(NodeThread.unique_name("joy_node"), namespace)
        self.pub = self.ros.node.create_publisher(Joy, "joy", sensor_qos(5))
        self.Joy = Joy
        self.buttons = [0] * len(BUTTONS)
        self.axes = [0.0] * len(AXES)
        self._stop = threading.Event()
        self.ros.start("joy-node-spin")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def hold(self, **state: float) -> None:
        for name, value in state.items():
            if name in BUTTONS:
                self.buttons[BUTTONS.index(name)] = int(value)
            else:
                self.axes[AXES.index(name)] = float(value)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.pub.publish(self.Joy(axes=list(self.axes), buttons=list(self.buttons)))

    def unplug(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def close(self) -> None:
        self.unplug()
        self.ros.stop()


@pytest.fixture
def joy_pair(request: pytest.FixtureRequest) -> Iterator[tuple[JoyNode, JoyInput, list[str]]]:
    need_rclpy()
    namespace = f"joy_{request.node.name.split('[')[0][-20:]}"
    node = JoyNode(namespace)
    actions: list[str] = []
    joy = JoyInput(GamepadConfig(), "joy", "/" + namespace, on_action=actions.append)
    joy.start()
    yield node, joy, actions
    joy.stop()
    node.close()


def test_mapping_deadman_and_press_edges(joy_pair: tuple[JoyNode, JoyInput, list[str]]) -> None:
    node, joy, actions = joy_pair
    cfg = GamepadConfig()
    node.hold(lefty=1.0, rightx=-1.0)  # full forward, full right: no deadman yet
    wait_for(lambda: joy.connected and joy.operator_input().deflection == 1.0, 10, "the pad")
    idle = joy.read(None, 0)
    assert not idle.deadman and idle.command.is_zero and idle.connected
    node.hold(leftshoulder=1)  # the enable button (deadman)
    wait_for(lambda: joy.read(None, 0).deadman, 5, "the deadman")
    driving = joy.read(None, 0)
    assert driving.command.v_mps == pytest.approx(cfg.scale_linear)
    assert driving.command.w_radps == pytest.approx(-cfg.scale_angular)
    node.hold(rightshoulder=1)  # turbo
    wait_for(lambda: joy.read(None, 0).command.v_mps == pytest.approx(cfg.scale_linear_turbo),
             5, "turbo")
    node.hold(b=1)  # the e-stop button: zero at once, and one press
    wait_for(lambda: "estop" in actions, 5, "the e-stop press")
    assert joy.read(None, 0).command.is_zero
    node.hold(b=1)  # still held: no second press
    wait_for(lambda: joy.messages >= 10, 5, "more messages")
    assert actions.count("estop") == 1
    assert joy.status().name == "joy on joy" and joy.status().connected


def test_losing_the_robots_pad_stops_the_robot(
        joy_pair: tuple[JoyNode, JoyInput, list[str]]) -> None:
    node, joy, _ = joy_pair
    link = open_link("sim://?fast=1")
    link.connect()
    loop = build_control_loop(Config(), link, CombinedOperator(joy, None), None)
    node.hold(leftshoulder=1, lefty=0.5)
    wait_for(lambda: joy.read(None, 0).deadman, 10, "the deadman")
    loop.post(OperatorEvent.MANUAL)
    record = loop.tick()
    assert record.mode is Mode.MANUAL and record.command.v_mps > 0
    node.unplug()  # the pad, the joy node or the network goes away
    wait_for(lambda: not joy.connected, 5, "the pad to count as lost")
    record = loop.tick()
    assert record.mode is Mode.IDLE and record.command.is_zero
    assert record.reason == "input device lost: robot stopped"
    link.close()
