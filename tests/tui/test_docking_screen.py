"""The drive screen shows the docking lifecycle: the attempt counter, the detected outcome with
its evidence, and a reset's phase and progress ("n" on a base that does not teleport). The
robot is the simulator run as a real base, stepped tick by tick from the test so that the
screenshot (docs/img/docking.svg) catches the reset half way."""

from __future__ import annotations

import math
import os
from pathlib import Path

from dock_support import place_at_dock
from textual.widgets import Static
from tui_support import SCREEN_TEST_SAFETY, ConstantPolicy, wait_for

from takeover.config import Config, DockingConfig, ResetConfig, TuiConfig
from takeover.control.arbiter import OperatorEvent, OperatorInput
from takeover.hw.base import open_link
from takeover.session.operator import OperatorSession
from takeover.sim.link import SimLink
from takeover.sim.world import ROBOT_RADIUS_M, generate_world
from takeover.tui.app import TakeoverApp, make_app
from takeover.types import Command, Mode, Observation

SIZE = (140, 44)
SEED = 21
# TAKEOVER_SAVE_SVG=docs/img saves the screenshot for the docs; otherwise it goes to tmp.
SVG_DIR = os.environ.get("TAKEOVER_SAVE_SVG")


class Hand:
    """The operator's deadman, held (an OperatorSource; the sticks stay centred)."""

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        return OperatorInput(deadman=True)


def config() -> Config:
    dock = generate_world(SEED).dock
    reset = ResetConfig(x_m=dock.x_m + ROBOT_RADIUS_M * math.cos(dock.yaw_rad),
                        y_m=dock.y_m + ROBOT_RADIUS_M * math.sin(dock.yaw_rad),
                        yaw_rad=dock.yaw_rad + math.pi)
    return Config(safety=SCREEN_TEST_SAFETY, tui=TuiConfig(camera="halfblock"),
                  docking=DockingConfig(reset=reset))


def system_text(app: TakeoverApp) -> str:
    return str(app.screen.query_one("#system", Static).render())


async def test_drive_screen_shows_attempts_detected_outcome_and_reset_progress(
        workspace: Path, tmp_path: Path) -> None:
    link = open_link(f"sim://?fast=1&reset=drive&seed={SEED}")
    assert isinstance(link, SimLink)
    app = make_app(config(), link, ConstantPolicy(Command(0.08, 0.0)), workspace,
                   use_gamepad=False)
    session = app.session
    assert isinstance(session, OperatorSession)
    session.loop.operator = Hand()

    def step(n: int = 1) -> None:
        for _ in range(n):
            session.loop.tick()
            session.poll()  # the lifecycle is fed here, as by the TUI's refresh

    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connected, what="the link")
        step()
        await wait_for(pilot, lambda: "no attempt yet" in system_text(app), what="the dock line")
        assert "idle (n: reset)" in system_text(app) and "auto-reset off" in system_text(app)
        place_at_dock(link.sim)
        await pilot.press("r")
        await wait_for(pilot, lambda: session.episode.recording, what="recording")
        session.post(OperatorEvent.AUTO)
        for _ in range(400):
            step()
            if session.docking.status().outcome:
                break
        step(2)
        await wait_for(pilot, lambda: "attempt 1 · docked (" in system_text(app),
                       what="the detected outcome on screen")
        text = system_text(app)
        assert "1/1 docked" in text and " A held " in text and "ms)" in text
        assert session.mode is Mode.IDLE
        await pilot.press("n")
        await wait_for(pilot, lambda: "reset: undocking" in str(
            app.screen.query_one("#message", Static).render()), what="the reset requested")
        for _ in range(2000):
            step()
            if session.mode is Mode.RESET and session.docking.driver.progress >= 0.4:
                break
        await wait_for(pilot, lambda: "drive " in system_text(app) and "% to start" in system_text(app),
                       what="the reset's progress on screen")
        assert "R E S E T" in str(app.screen.query_one("#banner").render())
        directory = Path(SVG_DIR) if SVG_DIR else tmp_path
        directory.mkdir(parents=True, exist_ok=True)
        app.save_screenshot("docking.svg", path=str(directory))
        for _ in range(3000):
            step()
            if session.mode is not Mode.RESET:
                break
        await wait_for(pilot, lambda: "done" in system_text(app) and "100%" in system_text(app),
                       what="the reset done on screen")
