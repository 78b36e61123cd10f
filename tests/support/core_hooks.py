"""Functions run inside the control core's process by `RemoteSession.run_in_core` (tests and
benchmarks): they get the child's OperatorSession. Module-level, so they pickle by name."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from takeover.session.operator import OperatorSession
from takeover.types import Command, StepRecord

_state: dict[str, Any] = {}


class WireTap:
    """Wraps the link's send: when each command went out, optionally appended to a file
    (line-buffered, so a file outlives the process that wrote it)."""

    def __init__(self, session: OperatorSession, path: Path | None = None) -> None:
        self.link = session.link
        self.sent: list[tuple[int, Command]] = []
        self.lock = threading.Lock()
        self.file = open(path, "a", buffering=1) if path is not None else None  # noqa: SIM115
        self._send = self.link.send
        self.link.send = self.send  # type: ignore[method-assign]

    def send(self, command: Command) -> Command:
        t = time.perf_counter_ns()
        with self.lock:
            self.sent.append((t, command))
        if self.file is not None:
            self.file.write(f"{t} {command.v_mps!r} {command.w_radps!r}\n")
        return self._send(command)

    def first_after(self, t_ns: int, pred: Callable[[Command], bool]) -> int | None:
        with self.lock:
            for t, c in self.sent:
                if t >= t_ns and pred(c):
                    return t
        return None


def install_wire_log(session: OperatorSession, path: str) -> int:
    """Log every command sent to the robot to `path`; returns this process's id."""
    import os

    _state["tap"] = WireTap(session, Path(path))
    return os.getpid()


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


class StepLog:
    """A loop sink: the step and the command sent of every tick (what reached the link)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, Command]] = []
        self.lock = threading.Lock()

    def offer(self, record: StepRecord) -> bool:
        with self.lock:
            self.rows.append((record.step, record.command))
        return True

    def first_step_after(self, step: int, pred: Callable[[Command], bool]) -> int | None:
        with self.lock:
            return next((s for s, c in self.rows if s > step and pred(c)), None)


def ticks_to_wire(session: OperatorSession, log: StepLog, act: Callable[[], None],
                  pred: Callable[[Command], bool]) -> int:
    """How many ticks after `act` the first command matching `pred` was sent. The tick that
    was running when `act` happened may have read the inputs before it: 2 means "the next tick
    after that", the loop's promise; an order, not a time."""
    latest = session.loop.latest
    before = latest.step if latest is not None else -1
    act()
    _wait(lambda: log.first_step_after(before, pred) is not None, "the command on the wire")
    return log.first_step_after(before, pred) - before  # type: ignore[operator]


def gamepad_to_wire_ticks(session: OperatorSession, presses: int = 6) -> list[int]:
    """In the core's process: plug a virtual SDL pad, take MANUAL, and count the ticks from
    deadman press and release (with the stick up) to the first matching command sent."""
    from _sdlpad import VirtualPad

    gamepad = session.gamepad
    assert gamepad is not None, "the core was started without a gamepad"
    _wait(lambda: gamepad.available, "SDL")
    pad = VirtualPad()
    log = StepLog()
    session.loop.sinks.append(log)
    try:
        _wait(lambda: gamepad.status().connected, "the pad")
        pad.button("a", True)  # manual
        _wait(lambda: session.mode.value == "MANUAL", "MANUAL")
        pad.button("a", False)
        pad.axis("lefty", -1.0)
        ticks = []
        period_s = 1.0 / session.config.loop.rate_hz
        for i in range(presses):
            ticks.append(ticks_to_wire(session, log, lambda: pad.button("leftshoulder", True),
                                       lambda c: c.v_mps > 0))
            ticks.append(ticks_to_wire(session, log, lambda: pad.button("leftshoulder", False),
                                       lambda c: c.is_zero))
            time.sleep(((i * 7) % 10) / 10 * period_s)  # vary the phase against the ticks
        pad.axis("lefty", 0.0)
        return ticks
    finally:
        session.loop.sinks.remove(log)
        pad.unplug()


def policy_settings(session: OperatorSession) -> dict[str, Any] | None:
    """How the core runs its policy: the executor's settings and onnxruntime's threads."""
    policy = session.loop.policy
    if policy is None:
        return None
    executor = policy.executor.config  # type: ignore[attr-defined]
    return {"mode": executor.mode, "n_action_steps": executor.n_action_steps,
            "ensemble_k": executor.ensemble_k,
            "threads": policy.runtime.intra_op_threads}  # type: ignore[attr-defined]


def unfocused_pad_moves_nothing(session: OperatorSession) -> dict[str, Any]:
    """In the core's process of a robot the operator has NOT focused (a fleet): plug a virtual
    SDL pad, take MANUAL by the session (as the terminal would), hold the deadman with the stick
    up; then focus the robot with the pad still held, then let go and press again. Returns what
    went out at each stage, and whether the pad's e-stop still latched the unfocused robot."""
    from _sdlpad import VirtualPad

    from takeover.control.arbiter import OperatorEvent

    gamepad = session.gamepad
    assert gamepad is not None, "the core was started without a gamepad"
    # The core's FocusGate (not isinstance: the core runs core_process.py as __main__).
    gate: Any = session.loop.operator
    assert type(gate).__name__ == "FocusGate" and not gate.focused, gate
    _wait(lambda: gamepad.available, "SDL")
    pad = VirtualPad()
    log = StepLog()
    session.loop.sinks.append(log)
    period_s = 1.0 / session.config.loop.rate_hz

    def ticks_after(n: int) -> None:
        latest = session.loop.latest
        start = latest.step if latest is not None else -1
        _wait(lambda: (s := session.loop.latest) is not None and s.step > start + n, "ticks")

    def moved_during(seconds: float) -> bool:
        """Whether anything but zero went out in a window of `seconds` (absence needs one)."""
        latest = session.loop.latest
        start = latest.step if latest is not None else -1
        time.sleep(seconds)
        _wait(lambda: (s := session.loop.latest) is not None and s.step > start + 3, "ticks")
        return log.first_step_after(start, lambda c: not c.is_zero) is not None

    try:
        _wait(lambda: gamepad.status().connected, "the pad")
        session.post(OperatorEvent.MANUAL)
        _wait(lambda: session.mode.value == "MANUAL", "MANUAL")
        pad.axis("lefty", -1.0)
        pad.button("leftshoulder", True)
        unfocused = moved_during(20 * period_s)
        gate.set_focused(True)  # the operator focuses it with the pad still held
        held_through_focus = moved_during(20 * period_s)
        pad.button("leftshoulder", False)
        pad.axis("lefty", 0.0)
        ticks_after(3)  # the loop has read the pad let go
        pad.axis("lefty", -1.0)
        pad.button("leftshoulder", True)
        pressed_again = moved_during(20 * period_s)
        pad.button("leftshoulder", False)
        pad.axis("lefty", 0.0)
        gate.set_focused(False)
        pad.button("b", True)  # the pad's e-stop acts on every robot, focused or not
        _wait(lambda: session.mode.value == "ESTOP", "the pad's e-stop")
        pad.button("b", False)
        return {"unfocused": unfocused, "held_through_focus": held_through_focus,
                "pressed_again": pressed_again, "estop": session.mode.value}
    finally:
        session.loop.sinks.remove(log)
        pad.unplug()
