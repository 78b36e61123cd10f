"""The gamepad path through SDL itself: a virtual game controller (SDL_JoystickAttachVirtual)
moves real axes and presses real buttons; the robot's response is checked at the wire."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from _sdlpad import VirtualPad
from core_hooks import StepLog, ticks_to_wire
from tui_support import ConstantPolicy

from takeover.config import Config, GamepadConfig
from takeover.hw.base import open_link
from takeover.inputs.gamepad import shape_axis
from takeover.session.operator import OperatorSession
from takeover.types import CommandSource, Mode


def wait(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def session() -> OperatorSession:
    link = open_link("sim://?seed=5")
    link.connect()
    s = OperatorSession(Config(gamepad=GamepadConfig(expo=0.0)), link, ConstantPolicy())
    s.start()
    yield s
    s.close()


def test_shaping() -> None:
    assert shape_axis(0.05, 0.08, 0.3) == 0.0
    assert shape_axis(1.0, 0.08, 0.3) == pytest.approx(1.0)
    assert shape_axis(-1.0, 0.08, 0.0) == pytest.approx(-1.0)
    assert 0 < shape_axis(0.5, 0.08, 0.5) < shape_axis(0.5, 0.08, 0.0)


def test_virtual_pad_drives_takes_over_and_stops_when_unplugged(session: OperatorSession) -> None:
    gamepad = session.gamepad
    assert gamepad is not None
    wait(lambda: gamepad.available, "SDL")
    pad = VirtualPad()
    try:
        wait(lambda: gamepad.status().connected, "the pad")
        pad.button("a", True)  # manual
        wait(lambda: session.mode is Mode.MANUAL, "MANUAL")
        pad.button("a", False)
        pad.axis("lefty", -1.0)  # stick up, but no deadman: nothing moves
        wait(lambda: session.loop.latest is not None and session.loop.latest.step > 3, "ticks")
        step = session.loop.latest.step  # type: ignore[union-attr]
        wait(lambda: session.loop.latest.step > step + 2, "ticks")  # type: ignore[union-attr]
        assert session.loop.latest.command.is_zero  # type: ignore[union-attr]
        # Deadman + stick: the SDL state change is on the wire by the next tick.
        log = StepLog()
        session.loop.sinks.append(log)
        ticks = []
        for i in range(6):
            ticks.append(ticks_to_wire(session, log, lambda: pad.button("leftshoulder", True),
                                       lambda c: c.v_mps > 0))
            ticks.append(ticks_to_wire(session, log, lambda: pad.button("leftshoulder", False),
                                       lambda c: c.is_zero))
            time.sleep(((i * 7) % 10) / 1000.0)  # vary the phase against the loop's ticks
        assert len(ticks) == 12 and max(ticks) <= 2, ticks
        # Turbo uses the turbo scale.
        pad.button("rightshoulder", True)
        wait(lambda: session.loop.latest.command.v_mps > 0.35, "turbo")  # type: ignore[union-attr]
        pad.button("rightshoulder", False)
        pad.axis("lefty", 0.0)
        # AUTO by button, hold-to-run with the deadman, takeover by stick.
        pad.button("y", True)
        wait(lambda: session.mode is Mode.AUTO, "AUTO")
        pad.button("y", False)
        pad.button("leftshoulder", True)
        wait(lambda: session.loop.latest.source is CommandSource.POLICY, "policy driving")  # type: ignore[union-attr]
        pad.axis("rightx", -0.8)
        wait(lambda: session.mode is Mode.TAKEOVER, "TAKEOVER by stick")
        wait(lambda: session.loop.latest.command.w_radps > 0, "turning left")  # type: ignore[union-attr]
        # Unplugged while driving: stopped at once, and the status says so.
        before = session.loop.latest.step  # type: ignore[union-attr]
        pad.unplug()
        wait(lambda: session.mode is Mode.IDLE, "IDLE after the pad is lost")
        assert log.first_step_after(before, lambda c: c.is_zero) is not None
        assert "input device lost" in session.loop.latest.reason  # type: ignore[union-attr]
        assert gamepad.status().lost
        # Plugged in again: nothing moves until the operator engages.
        pad = VirtualPad()
        wait(lambda: gamepad.status().connected, "the pad again")
        assert not gamepad.status().lost and session.mode is Mode.IDLE
        # E-stop and acknowledge from the pad; episode button without a workspace is refused.
        pad.button("b", True)
        wait(lambda: session.mode is Mode.ESTOP, "E-STOP")
        pad.button("b", False)
        pad.button("back", True)
        wait(lambda: session.mode is Mode.IDLE, "acknowledged")
        pad.button("back", False)
        pad.button("start", True)
        wait(lambda: "no workspace" in session.episode.message, "episode refused")
        pad.button("start", False)
    finally:
        pad.unplug()
