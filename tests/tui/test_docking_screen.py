"""The drive screen shows the docking lifecycle: the attempt counter, the detected outcome with
its evidence, and a reset's phase and progress ("n" on a base that does not teleport). The
robot is the simulator run as a real base, stepped tick by tick from the test so that the
screenshot (docs/img/docking.svg) catches the reset half way."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path

from dock_support import place_at_dock
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Static
from tui_support import SCREEN_TEST_SAFETY, ConstantPolicy, wait_for

from takeover.config import Config, DockingConfig, ResetConfig, TuiConfig
from takeover.control.arbiter import OperatorEvent, OperatorInput
from takeover.control.reset_planner import MAX_FAILED_RESETS_IN_A_ROW
from takeover.hw.base import open_link
from takeover.session.docking_lifecycle import DockingStatus
from takeover.session.operator import OperatorSession
from takeover.sim.link import SimLink
from takeover.sim.world import ROBOT_RADIUS_M, generate_world
from takeover.tui.app import TakeoverApp, make_app
from takeover.tui.drive import charge_lines, docking_lines
from takeover.types import POWER_SUPPLY_STATUS_DISCHARGING, Command, Mode, Observation

SIZE = (140, 44)
SEED = 21
# TAKEOVER_SAVE_SVG=docs/img saves the screenshot for the docs; otherwise it goes to tmp.
SVG_DIR = os.environ.get("TAKEOVER_SAVE_SVG")


class Hand:
    """The operator's deadman, held (an OperatorSource; the sticks stay centred)."""

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        return OperatorInput(deadman=True)


def config(auto_reset: bool = False) -> Config:
    dock = generate_world(SEED).dock
    reset = ResetConfig(x_m=dock.x_m + ROBOT_RADIUS_M * math.cos(dock.yaw_rad),
                        y_m=dock.y_m + ROBOT_RADIUS_M * math.sin(dock.yaw_rad),
                        yaw_rad=dock.yaw_rad + math.pi)
    return Config(safety=SCREEN_TEST_SAFETY, tui=TuiConfig(camera="halfblock"),
                  docking=DockingConfig(reset=reset, auto_reset=auto_reset))


def open_drive_screen(cfg: Config, workspace: Path) -> tuple[SimLink, TakeoverApp,
                                                              OperatorSession]:
    """The drive screen on the simulator run as a real base (resets driven), a policy that
    creeps forward, and the operator's deadman held."""
    link = open_link(f"sim://?fast=1&reset=drive&seed={SEED}")
    assert isinstance(link, SimLink)
    app = make_app(cfg, link, ConstantPolicy(Command(0.08, 0.0)), workspace, use_gamepad=False)
    session = app.session
    assert isinstance(session, OperatorSession)
    session.loop.operator = Hand()
    return link, app, session


def stepper(session: OperatorSession) -> Callable[[int], None]:
    """Tick the loop from the test, feeding the lifecycle as the TUI's refresh does."""
    def step(n: int = 1) -> None:
        for _ in range(n):
            session.loop.tick()
            session.poll()
    return step


async def dock_once(pilot: Pilot[None], link: SimLink, session: OperatorSession,
                    step: Callable[[int], None]) -> None:
    """One recorded attempt from just short of the dock, in AUTO, until its detected outcome."""
    place_at_dock(link.sim)
    await pilot.press("r")
    await wait_for(pilot, lambda: session.episode.recording, what="recording")
    session.post(OperatorEvent.AUTO)
    for _ in range(400):
        step(1)
        if session.docking.status().outcome:
            break
    assert session.docking.status().outcome == "success"


def system_text(app: TakeoverApp) -> str:
    return str(app.screen.query_one("#system", Static).render())


def telemetry_text(app: TakeoverApp) -> str:
    return str(app.screen.query_one("#telemetry", Static).render())


async def test_drive_screen_shows_attempts_detected_outcome_and_reset_progress(
        workspace: Path, tmp_path: Path) -> None:
    link, app, session = open_drive_screen(config(), workspace)
    step = stepper(session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connected, what="the link")
        step(1)
        await wait_for(pilot, lambda: "no attempt yet" in system_text(app), what="the dock line")
        assert "idle (n: reset)" in system_text(app) and "auto-reset off" in system_text(app)
        await dock_once(pilot, link, session, step)
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
            step(1)
            if session.mode is Mode.RESET and session.docking.driver.progress >= 0.4:
                break
        await wait_for(pilot, lambda: "drive " in system_text(app) and "% to start" in system_text(app),
                       what="the reset's progress on screen")
        assert "R E S E T" in str(app.screen.query_one("#banner").render())
        directory = Path(SVG_DIR) if SVG_DIR else tmp_path
        directory.mkdir(parents=True, exist_ok=True)
        app.save_screenshot("docking.svg", path=str(directory))
        for _ in range(3000):
            step(1)
            if session.mode is not Mode.RESET:
                break
        await wait_for(pilot, lambda: "done" in system_text(app) and "100%" in system_text(app),
                       what="the reset done on screen")


async def test_auto_reset_starts_by_itself_after_a_detected_outcome_and_shows_its_phase(
        workspace: Path) -> None:
    """`[docking] auto_reset = true` on a base that drives its resets: after the attempt's
    detected outcome the reset starts with no key pressed, and the screen shows its phase. The
    telemetry shows the charge as the detector reads it (this base has no docked flag)."""
    link, app, session = open_drive_screen(config(auto_reset=True), workspace)
    step = stepper(session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connected, what="the link")
        step(1)
        await wait_for(pilot, lambda: "auto-reset on" in system_text(app), what="auto-reset on")
        assert "charge  no" in telemetry_text(app) and "docked" not in telemetry_text(app)
        await dock_once(pilot, link, session, step)
        step(1)  # the tick that takes the RESET the outcome posted
        await wait_for(pilot, lambda: "attempt 1 · docked (" in system_text(app),
                       what="the detected outcome on screen")
        await wait_for(pilot, lambda: "CHARGING (current)" in telemetry_text(app),
                       what="the charge in the telemetry")
        await wait_for(pilot, lambda: "attempt 1 · docked (" in str(
            app.screen.query_one("#message", Static).render()), what="the outcome announced")
        assert "docked" not in telemetry_text(app)  # no flag on this base: not shown
        for _ in range(400):  # no key pressed: the reset drives by itself
            step(1)
            if session.mode is Mode.RESET and session.docking.driver.phase.value == "drive":
                break
        assert session.mode is Mode.RESET
        await wait_for(pilot, lambda: "drive " in system_text(app) and "% to start" in system_text(app),
                       what="the reset's phase on screen")
        assert "R E S E T" in str(app.screen.query_one("#banner").render())
        assert "auto-reset on" in system_text(app)


def test_the_docked_flag_is_shown_only_where_the_base_has_one() -> None:
    obs = Observation(t_ns=0, docked=True, battery_current_a=-1.5,
                      power_supply_status=POWER_SUPPLY_STATUS_DISCHARGING)
    plain, flagged = Text(), Text()
    charge_lines(plain, obs, DockingConfig(current_sign="negative"), confirming=True)
    charge_lines(flagged, obs, DockingConfig(use_docked_topic=True), confirming=False)
    # Sign-normalised: this base reports charging as negative.
    assert "+1.50 A" in plain.plain and "CHARGING (current)" in plain.plain
    assert "confirming" in plain.plain and "docked" not in plain.plain
    assert "-1.50 A" in flagged.plain and "charge  no (discharging)" in flagged.plain
    assert "docked  YES (the base's flag)" in flagged.plain


def test_a_paused_auto_reset_says_so() -> None:
    on = DockingStatus(auto_reset=True, drives_resets=True)
    paused = dataclasses.replace(on, failed_resets=MAX_FAILED_RESETS_IN_A_ROW)
    t_on, t_paused = Text(), Text()
    docking_lines(t_on, on)
    docking_lines(t_paused, paused)
    assert "auto-reset on" in t_on.plain and not on.auto_reset_paused
    assert f"auto-reset PAUSED ({MAX_FAILED_RESETS_IN_A_ROW} failed in a row)" in t_paused.plain
    assert "needs a person (n: reset by hand)" in paused.paused_line()


async def test_a_reset_out_of_time_stops_the_robot_counts_as_failed_and_is_not_resumed(
        workspace: Path) -> None:
    """`[docking.reset] timeout_s` holds in `takeover run` as in `drive --reset drive`: a reset
    still short of its target after that long in RESET stops the robot, says it timed out,
    counts as a failed reset, and the next "n" plans a new reset instead of resuming it."""
    base = config()
    cfg = dataclasses.replace(base, docking=dataclasses.replace(
        base.docking, reset=dataclasses.replace(base.docking.reset, timeout_s=1.0)))
    link, app, session = open_drive_screen(cfg, workspace)
    step = stepper(session)

    def message() -> str:
        return str(app.screen.query_one("#message", Static).render())

    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connected, what="the link")
        step(1)
        await dock_once(pilot, link, session, step)
        step(2)
        await pilot.press("n")
        await wait_for(pilot, lambda: "reset: undocking" in message(), what="the reset requested")
        ticks_in_reset = 0
        for _ in range(400):  # the reset needs far more than 1 s: undock, turn, drive
            step(1)
            if session.mode is Mode.RESET:
                ticks_in_reset += 1
            elif ticks_in_reset:
                break
        status = session.docking.status()
        assert status.reset == "stopped" and status.reset_reason == "reset timed out after 1 s"
        assert 20 <= ticks_in_reset <= 22  # 1 s at 20 Hz, and the tick that takes the stop
        assert status.failed_resets == 1 and not status.reset_resumable
        assert session.mode is Mode.IDLE
        assert session.loop.latest is not None and session.loop.latest.command.is_zero
        await wait_for(pilot, lambda: "reset timed out after 1 s" in system_text(app)
                       and "(n: a new reset)" in system_text(app), what="the timeout on screen")
        await pilot.press("n")
        await wait_for(pilot, lambda: "driving to a new start pose" in message(),
                       what="a new reset, not a resumed one")
        step(5)
        assert session.mode is Mode.RESET  # it drives again, under the operator's deadman
