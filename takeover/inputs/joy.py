"""The gamepad on the robot: `sensor_msgs/Joy` from the standard `joy` node, as an OperatorSource.

For a pad plugged into the robot's computer (`ros2 run joy game_controller_node`, or `joy_node`
with SDL's GameController layout) while takeover runs elsewhere. Enable it with the robot URL's
`joy` option: `ros2://robot1?joy=joy`. The mapping is [gamepad]'s, the same teleop_twist_joy
names as a local pad: the joy node publishes SDL GameController's layout, buttons in the order
a b x y back guide start leftstick rightstick leftshoulder rightshoulder dpup dpdown dpleft
dpright, axes leftx lefty rightx righty lefttrigger righttrigger, with stick up and stick left
positive (as this module's tables say); deadzone, expo, scales and turbo as on a local pad.

Loss: the joy node republishes at its autorepeat rate (20 Hz by default), so no message for
`JOY_TIMEOUT_MS` means the pad, the joy node or the network is gone: `read()` then answers
`connected=False` and the Arbiter stops the robot if the operator was driving, exactly as when
a local pad is unplugged. Button presses are acted on at their press edge, from this source's
own thread (never the control loop's), like GamepadInput's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from takeover.config import GamepadConfig
from takeover.control.arbiter import OperatorInput
from takeover.inputs.gamepad import (
    GamepadInput,
    GamepadStatus,
    past_deadzone,
    shape_axis,
)
from takeover.types import ZERO_COMMAND, Command, Observation

JOY_TIMEOUT_MS = 300.0  # 6 periods of the joy node's default 20 Hz autorepeat
ACTION_POLL_S = 0.01
BUTTONS = ("a", "b", "x", "y", "back", "guide", "start", "leftstick", "rightstick",
           "leftshoulder", "rightshoulder", "dpup", "dpdown", "dpleft", "dpright")
AXES = ("leftx", "lefty", "rightx", "righty", "lefttrigger", "righttrigger")


class JoyInput(GamepadInput):
    """sensor_msgs/Joy on `topic` (resolved in `namespace`) as an OperatorSource: a gamepad
    whose states come from the robot's joy node instead of SDL (GamepadInput's surface: start,
    stop, status, read, on_action; none of its SDL polling)."""

    def __init__(self, config: GamepadConfig | None, topic: str, namespace: str = "",
                 domain_id: int | None = None,
                 on_action: Callable[[str], None] | None = None) -> None:
        super().__init__(config, on_action)
        self.topic = topic
        self.namespace = namespace
        self.domain_id = domain_id
        self._ros: Any = None
        self._last_ns = 0
        self._msg: Any = None
        self._joy_pressed: dict[str, bool] | None = None
        self._ever = False
        self.messages = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, wait_s: float = 0.0) -> None:
        if self._ros is not None:
            return
        from sensor_msgs.msg import Joy

        from takeover.hw.ros2.node import NodeThread
        from takeover.hw.ros2.qos import sensor_qos

        self._ros = NodeThread(NodeThread.unique_name("takeover_joy"), self.namespace,
                               self.domain_id)
        self._ros.node.create_subscription(Joy, self.topic, self._on_joy, sensor_qos(5))
        self._ros.start("ros2-joy-spin")
        self._stop.clear()
        self._thread = threading.Thread(target=self._dispatch_loop, name="joy-actions",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        if self._ros is not None:
            self._ros.stop()
            self._ros = None

    @property
    def available(self) -> bool:
        return self._ros is not None

    @property
    def connected(self) -> bool:
        return self._last_ns != 0 and \
            (time.monotonic_ns() - self._last_ns) / 1e6 < JOY_TIMEOUT_MS

    def status(self) -> GamepadStatus:
        snap = self.operator_input()
        return GamepadStatus(
            available=self.available, connected=self.connected,
            name=f"joy on {self.topic}", lost=self._ever and not self.connected,
            deadman=snap.deadman, turbo=self._held(self.config.enable_turbo_button),
            error=self._error)

    # --- OperatorSource ----------------------------------------------------------------------

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        return self.operator_input()

    def operator_input(self) -> OperatorInput:
        if not self.connected:
            return OperatorInput(deadman=False, connected=False)
        cfg = self.config
        lin, ang = self._axis(cfg.axis_linear), self._axis(cfg.axis_angular)
        deflection = max(past_deadzone(lin, cfg.deadzone), past_deadzone(ang, cfg.deadzone))
        turbo = self._held(cfg.enable_turbo_button)
        deadman = turbo or self._held(cfg.enable_button)
        estop = self._held(self._button_of_action.get("estop", ""))
        if estop or not deadman:
            return OperatorInput(deadman=False, command=ZERO_COMMAND, deflection=deflection)
        v_scale = cfg.scale_linear_turbo if turbo else cfg.scale_linear
        w_scale = cfg.scale_angular_turbo if turbo else cfg.scale_angular
        return OperatorInput(deadman=True, command=Command(
            shape_axis(lin, cfg.deadzone, cfg.expo) * v_scale,
            shape_axis(ang, cfg.deadzone, cfg.expo) * w_scale), deflection=deflection)

    # --- the messages ---------------------------------------------------------------------------

    def _held(self, button: str) -> bool:
        msg = self._msg
        if msg is None or not button or button not in BUTTONS:
            return False
        index = BUTTONS.index(button)
        return index < len(msg.buttons) and bool(msg.buttons[index])

    def _axis(self, name: str) -> float:
        msg = self._msg
        if msg is None or name not in AXES:
            return 0.0
        index = AXES.index(name)
        value = float(msg.axes[index]) if index < len(msg.axes) else 0.0
        return max(-1.0, min(1.0, value))

    def _on_joy(self, msg: Any) -> None:
        """On the spin thread: keep the newest, queue the press edges."""
        self._msg = msg
        self._last_ns = time.monotonic_ns()
        self._ever = True
        self.messages += 1
        pressed = {a: self._held(b) for a, b in self._button_of_action.items()}
        if self._joy_pressed is not None:  # buttons down in the first message: no press
            for action, down in pressed.items():
                if down and not self._joy_pressed.get(action, False):
                    self._actions.put(action)
        self._joy_pressed = pressed

    def _dispatch_loop(self) -> None:
        """Hand press edges to on_action from this thread (GamepadInput's `_dispatch`), never
        from the spin thread or the control loop's."""
        while not self._stop.wait(ACTION_POLL_S):
            self._dispatch()
        self._dispatch()
