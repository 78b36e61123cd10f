"""Functions run inside the control core's process by `RemoteSession.run_in_core` (tests and
benchmarks): they get the child's OperatorSession. Module-level, so they pickle by name."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from takeover.session.operator import OperatorSession
from takeover.types import Command

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


def gamepad_to_wire_ms(session: OperatorSession, presses: int = 6) -> list[float]:
    """In the core's process: plug a virtual SDL pad, take MANUAL, and time deadman press and
    release (with the stick up) to the first matching command on the wire, in ms."""
    from _sdlpad import VirtualPad

    gamepad = session.gamepad
    assert gamepad is not None, "the core was started without a gamepad"
    _wait(lambda: gamepad.available, "SDL")
    pad = VirtualPad()
    tap = _state.get("tap") or WireTap(session)
    try:
        _wait(lambda: gamepad.status().connected, "the pad")
        pad.button("a", True)  # manual
        _wait(lambda: session.mode.value == "MANUAL", "MANUAL")
        pad.button("a", False)
        pad.axis("lefty", -1.0)
        latencies = []
        period_s = 1.0 / session.config.loop.rate_hz
        for i in range(presses):
            pad.button("leftshoulder", True)
            t0 = time.perf_counter_ns()
            _wait(lambda t0=t0: tap.first_after(t0, lambda c: c.v_mps > 0) is not None, "motion")
            latencies.append((tap.first_after(t0, lambda c: c.v_mps > 0) - t0) / 1e6)  # type: ignore[operator]
            pad.button("leftshoulder", False)
            t1 = time.perf_counter_ns()
            _wait(lambda t1=t1: tap.first_after(t1, lambda c: c.is_zero) is not None, "stop")
            latencies.append((tap.first_after(t1, lambda c: c.is_zero) - t1) / 1e6)  # type: ignore[operator]
            time.sleep(((i * 7) % 10) / 10 * period_s)  # vary the phase against the ticks
        pad.axis("lefty", 0.0)
        return latencies
    finally:
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
