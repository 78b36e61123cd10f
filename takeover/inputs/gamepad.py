"""Gamepad input through SDL's GameController API (pygame), as an OperatorSource.

SDL's GameController layer maps every known pad (Xbox, PlayStation, Switch Pro, ...) onto one
layout, so the mapping in `takeover.toml` ([gamepad], teleop_twist_joy names) names buttons and
axes by their SDL names (`leftshoulder`, `lefty`, ...) and works alike on all of them.

Sticks: stick up and stick left are positive (SDL reports them negative), so forward and
counter-clockwise. Each axis gets a deadzone (rescaled so motion starts smoothly at its edge)
and an expo curve `(1 - expo) * x + expo * x**3`. The deadman is the enable button or the turbo
button; the turbo button also switches to the turbo scales.

Polling: a thread polls SDL at `poll_rate_hz` for buttons and hot-plug, and `read()` (the control
loop's thread, every tick) polls once more before it answers, so a stick movement reaches the
wire on the very next tick (latency below one period). SDL is only ever called under one lock;
`read()` never waits for it: if the thread is polling right then, `read()` uses the snapshot the
thread is about to replace (at most one poll period old).

Buttons act on their press edge and are handed to `on_action` from the gamepad thread, never from
the loop's thread (an e-stop request may do I/O). The e-stop button also zeroes the command on
the tick it is seen, before its action is dispatched.

Hot-plug: the first game controller that appears is opened; if it disappears, `read()` answers
`connected=False` (the Arbiter stops the robot if the operator was in control) and `status()`
says the gamepad was lost until one is plugged in again.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from takeover.config import GamepadConfig
from takeover.control.arbiter import OperatorInput
from takeover.types import ZERO_COMMAND, Command, Observation

AXIS_MAX = 32767.0
# Button actions, in the order of GamepadConfig's button_* keys.
ACTIONS = ("manual", "auto", "takeover", "estop", "acknowledge", "stop", "episode",
           "success", "failure", "abort")


def shape_axis(x: float, deadzone: float, expo: float) -> float:
    """Deadzone (rescaled: output starts at 0 at the deadzone's edge) then expo, on [-1, 1]."""
    a = min(1.0, abs(x))
    if a <= deadzone:
        return 0.0
    a = (a - deadzone) / (1.0 - deadzone)
    a = (1.0 - expo) * a + expo * a * a * a
    return math.copysign(a, x)


def past_deadzone(x: float, deadzone: float) -> float:
    """Deflection in [0, 1] past the deadzone, without expo (for takeover detection)."""
    a = min(1.0, abs(x))
    return 0.0 if a <= deadzone else (a - deadzone) / (1.0 - deadzone)


@dataclass(frozen=True)
class GamepadStatus:
    """What the UI shows about the gamepad."""

    available: bool  # SDL could be initialised
    connected: bool
    name: str = ""
    lost: bool = False  # a gamepad disappeared and none came back yet
    deadman: bool = False
    turbo: bool = False
    linear: float = 0.0  # shaped stick values in [-1, 1]
    angular: float = 0.0
    poll_us_p50: float | None = None
    error: str = ""


@dataclass(frozen=True)
class _Snapshot:
    connected: bool
    deadman: bool = False
    turbo: bool = False
    estop_held: bool = False
    linear: float = 0.0
    angular: float = 0.0
    deflection: float = 0.0


_DISCONNECTED = _Snapshot(connected=False)


def _sdl_hints() -> None:
    # No window ever has focus in a terminal app: without this SDL may drop pad input.
    os.environ.setdefault("SDL_JOYSTICK_ALLOW_BACKGROUND_EVENTS", "1")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


class GamepadInput:
    """The gamepad as an OperatorSource, with hot-plug, deadzone, expo and turbo."""

    def __init__(self, config: GamepadConfig | None = None,
                 on_action: Callable[[str], None] | None = None) -> None:
        self.config = config or GamepadConfig()
        self.on_action = on_action
        self._sdl_lock = threading.Lock()
        self._snapshot = _DISCONNECTED
        self._controller: Any = None
        self._sdl: Any = None  # pygame._sdl2.controller, imported in start()
        self._name = ""
        self._lost = False
        self._error = ""
        self._pressed: dict[str, bool] = {}
        self._actions: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._rumbles: queue.SimpleQueue[tuple[float, int]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._poll_ns: list[int] = []
        cfg = self.config
        self._button_of_action = {a: getattr(cfg, f"button_{a}") for a in ACTIONS
                                  if getattr(cfg, f"button_{a}")}

    # --- lifecycle --------------------------------------------------------------------------

    def start(self, wait_s: float = 5.0) -> None:
        """Start the polling thread (it initialises SDL) and wait until it has polled once."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gamepad", daemon=True)
        self._thread.start()
        self._ready.wait(wait_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    @property
    def available(self) -> bool:
        return self._sdl is not None

    def status(self) -> GamepadStatus:
        snap = self._snapshot
        samples = sorted(self._poll_ns[-200:])
        p50 = samples[len(samples) // 2] / 1e3 if samples else None
        return GamepadStatus(
            available=self._sdl is not None, connected=snap.connected, name=self._name,
            lost=self._lost, deadman=snap.deadman, turbo=snap.turbo, linear=snap.linear,
            angular=snap.angular, poll_us_p50=p50, error=self._error)

    # --- OperatorSource ----------------------------------------------------------------------

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        if self._sdl_lock.acquire(blocking=False):
            try:
                self._poll_locked()
            finally:
                self._sdl_lock.release()
        return self.operator_input()

    def operator_input(self) -> OperatorInput:
        snap = self._snapshot
        if not snap.connected:
            return OperatorInput(deadman=False, connected=False)
        if snap.estop_held or not snap.deadman:
            return OperatorInput(deadman=False, command=ZERO_COMMAND, deflection=snap.deflection)
        cfg = self.config
        v_scale = cfg.scale_linear_turbo if snap.turbo else cfg.scale_linear
        w_scale = cfg.scale_angular_turbo if snap.turbo else cfg.scale_angular
        return OperatorInput(deadman=True, command=Command(snap.linear * v_scale, snap.angular * w_scale),
                             deflection=snap.deflection)

    # --- polling ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            _sdl_hints()
            import pygame._sdl2.controller as sdl_controller

            sdl_controller.init()
            self._sdl = sdl_controller
        except Exception as err:  # no SDL, no joystick subsystem: keyboard only
            self._error = f"gamepad support unavailable: {type(err).__name__}: {err}"
            self._ready.set()
            return
        period = 1.0 / self.config.poll_rate_hz
        try:
            while not self._stop.is_set():
                with self._sdl_lock:
                    self._poll_locked()
                    self._rumble_locked()
                self._ready.set()
                self._dispatch()
                self._stop.wait(period)
        finally:
            with self._sdl_lock:
                self._close_controller()
                with contextlib.suppress(Exception):  # shutting down anyway
                    sdl_controller.quit()
                self._sdl = None

    def rumble(self, strength: float = 0.8, duration_ms: int = 400) -> None:
        """Shake the pad (the robot asks for help): done on the gamepad thread at its next poll,
        through SDL_GameControllerRumble. A pad, a driver or an SDL without rumble ignores it
        silently; so does no pad."""
        self._rumbles.put((min(1.0, max(0.0, strength)), max(0, int(duration_ms))))

    def _rumble_locked(self) -> None:
        while True:
            try:
                strength, duration_ms = self._rumbles.get_nowait()
            except queue.Empty:
                return
            ctl = self._controller
            if ctl is not None:
                with contextlib.suppress(Exception):  # no rumble here: nothing to do
                    ctl.rumble(strength, strength, duration_ms)

    def _dispatch(self) -> None:
        while True:
            try:
                action = self._actions.get_nowait()
            except queue.Empty:
                return
            if self.on_action is not None:
                try:
                    self.on_action(action)
                except Exception as err:  # a broken handler must not stop the pad
                    self._error = f"gamepad action {action!r} failed: {err}"

    def _poll_locked(self) -> None:
        sdl = self._sdl
        if sdl is None:
            return
        t0 = time.perf_counter_ns()
        sdl.update()  # SDL_GameControllerUpdate: new states, and hot-plug detection
        ctl = self._controller
        if ctl is not None and not ctl.attached():
            self._close_controller()
            self._lost = True
            self._snapshot = _DISCONNECTED
            ctl = None
        if ctl is None:
            ctl = self._open_first(sdl)
            if ctl is None:
                return
        cfg = self.config
        def button(name: str) -> bool:
            return bool(ctl.get_button(_BUTTON_IDS[name]))

        def axis(name: str) -> float:
            raw = ctl.get_axis(_AXIS_IDS[name]) / AXIS_MAX
            return raw if name.endswith("trigger") else -raw  # stick up / left positive

        turbo = button(cfg.enable_turbo_button)
        deadman = turbo or button(cfg.enable_button)
        lin_raw, ang_raw = axis(cfg.axis_linear), axis(cfg.axis_angular)
        pressed = {a: button(b) for a, b in self._button_of_action.items()}
        for action, down in pressed.items():
            if down and not self._pressed.get(action, False):
                self._actions.put(action)
        self._pressed = pressed
        self._snapshot = _Snapshot(
            connected=True, deadman=deadman, turbo=turbo,
            estop_held=pressed.get("estop", False),
            linear=shape_axis(lin_raw, cfg.deadzone, cfg.expo),
            angular=shape_axis(ang_raw, cfg.deadzone, cfg.expo),
            deflection=max(past_deadzone(lin_raw, cfg.deadzone), past_deadzone(ang_raw, cfg.deadzone)),
        )
        self._poll_ns.append(time.perf_counter_ns() - t0)
        if len(self._poll_ns) > 1000:
            del self._poll_ns[:500]

    def _open_first(self, sdl: Any) -> Any:
        for index in range(sdl.get_count()):
            if not sdl.is_controller(index):
                continue
            try:
                ctl = sdl.Controller(index)
            except Exception as err:
                self._error = f"could not open gamepad {index}: {err}"
                continue
            self._controller = ctl
            self._name = str(ctl.name)
            self._lost = False
            self._error = ""
            # Buttons already down when the pad appears are not presses.
            self._pressed = {a: bool(ctl.get_button(_BUTTON_IDS[b]))
                             for a, b in self._button_of_action.items()}
            return ctl
        return None

    def _close_controller(self) -> None:
        ctl, self._controller = self._controller, None
        if ctl is not None:
            with contextlib.suppress(Exception):  # already gone
                ctl.quit()


# SDL_GameControllerButton / SDL_GameControllerAxis values (stable across SDL 2 releases).
_BUTTON_IDS = {name: i for i, name in enumerate(
    ("a", "b", "x", "y", "back", "guide", "start", "leftstick", "rightstick", "leftshoulder",
     "rightshoulder", "dpup", "dpdown", "dpleft", "dpright"))}
_AXIS_IDS = {name: i for i, name in enumerate(
    ("leftx", "lefty", "rightx", "righty", "lefttrigger", "righttrigger"))}


def button_help(config: GamepadConfig) -> list[tuple[str, str]]:
    """(button, what it does) for the help screen and docs."""
    rows = [(config.enable_button, "hold: deadman (enable motion)"),
            (config.enable_turbo_button, "hold: deadman with turbo speeds"),
            (config.axis_linear, f"linear speed (±{config.scale_linear:g} m/s, "
                                 f"turbo ±{config.scale_linear_turbo:g})"),
            (config.axis_angular, f"turn rate (±{config.scale_angular:g} rad/s, "
                                  f"turbo ±{config.scale_angular_turbo:g})")]
    for f in fields(config):
        if f.name.startswith("button_") and getattr(config, f.name):
            rows.append((getattr(config, f.name), _BUTTON_HELP.get(f.name,
                                                                   f.name.removeprefix("button_"))))
    return rows


# Where a button does more than its name says.
_BUTTON_HELP = {
    # The Arbiter takes AUTO while the robot asks for help as a hand-back (OperatorEvent
    # HAND_BACK): the policy drives on without a correction. One button for "let it drive".
    "button_auto": "auto (policy); hand back while the robot asks for help",
}
