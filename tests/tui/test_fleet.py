"""The fleet screen over real control cores (one process per robot) on simulators: focus
decides which robot the driving keys move, space stops every robot by its next tick, `e` stops
one alone, a robot's help request rings and leads the table, and one robot's lost link (its
simulator, `takeover sim serve` in a process of its own, killed) leaves the others driving."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_hooks import install_tick_log, spin_loader, tick_log
from tui_support import SCREEN_TEST_SAFETY, tiny_onnx_model, wait_for

from takeover.config import Config, KeyboardConfig, SafetyConfig, SupervisionConfig
from takeover.control.arbiter import OperatorEvent
from takeover.session.core_process import CoreSpec, RemoteSession
from takeover.session.fleet import NEED_HELP, Fleet, FleetRobot
from takeover.session.operator import ModelRef
from takeover.tui.app import TakeoverApp, make_app
from takeover.tui.drive import DriveScreen
from takeover.tui.fleet import FleetScreen
from takeover.types import HelpReason, Mode

SIZE = (140, 36)
# TAKEOVER_SAVE_SVG=docs/img saves the screenshot for the docs (fleet_screen.svg).
SVG_DIR = os.environ.get("TAKEOVER_SAVE_SVG")
Ticks = list[tuple[int, float, float, str]]


def fleet_config(supervision: SupervisionConfig | None = None) -> Config:
    # AUTO without hold-to-run: a robot the operator has not focused drives by its policy.
    return Config(keyboard=KeyboardConfig(initial_hold_ms=1500.0, repeat_hold_ms=1000.0),
                  safety=SafetyConfig(obs_freshness_ms=SCREEN_TEST_SAFETY.obs_freshness_ms,
                                      deadman_in_auto=False),
                  supervision=supervision or SupervisionConfig())


def spinning(config: Config, url: str, tmp_path: Path) -> CoreSpec:
    """A core whose policy turns the robot in place (fleet_hooks.SpinPolicy)."""
    return CoreSpec(config, url, None, ModelRef("spin", tmp_path / "unused.onnx"),
                    use_gamepad=False, policy_loader=spin_loader)


@pytest.fixture
def served_robot() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A simulated robot behind its firmware protocol on TCP, in a process of its own."""
    proc = subprocess.Popen([sys.executable, "-m", "takeover.cli.sim", "serve", "--serial-tcp",
                             "127.0.0.1:0", "--seed", "7"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("socket://"), url
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def ticks(session: RemoteSession) -> tuple[int | None, Ticks]:
    answer: tuple[int | None, Ticks] = session.run_in_core(tick_log)
    return answer


def moving(rows: Ticks) -> bool:
    return any(v != 0.0 or w != 0.0 for _, v, w, _ in rows)


async def all_connected(pilot: object, app: TakeoverApp) -> None:
    await wait_for(pilot, lambda: all(v.connected for v in app.views.values())
                   and all(v.session.poll().record is not None for v in app.views.values()),
                   what="every robot's core and link")


def fleet_screen(app: TakeoverApp) -> FleetScreen:
    assert isinstance(app.screen, FleetScreen)
    return app.screen


async def test_focus_moves_one_robot_and_space_stops_every_robot(tmp_path: Path) -> None:
    config = fleet_config()
    fleet = Fleet([FleetRobot(n, spinning(config, f"sim://?seed={i}", tmp_path))
                   for i, n in enumerate(("robot1", "robot2", "robot3"), 1)])
    sessions = fleet.sessions
    app = make_app(config, fleet)
    async with app.run_test(size=SIZE) as pilot:
        await all_connected(pilot, app)
        screen = fleet_screen(app)
        await wait_for(pilot, lambda: screen.shown == ["robot1", "robot2", "robot3"],
                       what="a row per robot")
        for session in sessions.values():
            await asyncio.to_thread(session.run_in_core, install_tick_log)
            session.post(OperatorEvent.MANUAL)  # all three would drive, if a key reached them
        await wait_for(pilot, lambda: all(s.poll().mode is Mode.MANUAL for s in sessions.values()),
                       what="MANUAL everywhere")

        async def drive_until_moving(name: str) -> None:
            for _ in range(200):
                await pilot.press("up")
                if moving(ticks(sessions[name])[1][-3:]):
                    return
            raise AssertionError(f"{name} never moved")

        await pilot.press("down", "enter")  # focus robot2: its drive screen
        assert isinstance(app.screen, DriveScreen) and fleet.focused == "robot2"
        await drive_until_moving("robot2")
        assert not moving(ticks(sessions["robot1"])[1])
        assert not moving(ticks(sessions["robot3"])[1])

        await pilot.press("0")  # back to the fleet, focus robot3
        assert isinstance(app.screen, FleetScreen)
        await wait_for(pilot, lambda: fleet_screen(app).selected() == "robot2", what="cursor")
        await pilot.press("down", "enter")
        assert fleet.focused == "robot3"
        seen2 = len(ticks(sessions["robot2"])[1])
        await drive_until_moving("robot3")
        await wait_for(pilot, lambda: len(ticks(sessions["robot2"])[1]) > seen2 + 5,
                       what="robot2's ticks")
        assert not moving(ticks(sessions["robot2"])[1][seen2 + 2:]), "robot2 moved unfocused"
        assert not moving(ticks(sessions["robot1"])[1])

        # Space: every robot, each driving by its policy, is stopped by its next tick.
        for session in sessions.values():
            session.post(OperatorEvent.AUTO)
        await wait_for(pilot, lambda: all(moving(ticks(s)[1][-2:]) for s in sessions.values()),
                       what="every robot turning under its policy")
        await pilot.press("space")
        await wait_for(pilot, lambda: all(s.poll().mode is Mode.ESTOP for s in sessions.values()),
                       what="E-STOP on every robot")
        for name, session in sessions.items():
            await wait_for(pilot, lambda s=session: (t := ticks(s))[0] is not None
                           and t[1][-1][0] >= t[0] + 3, what=f"{name}'s ticks after the e-stop")
            at, rows = ticks(session)
            assert at is not None
            assert moving([r for r in rows if r[0] <= at][-1:]), f"{name} was not moving"
            after = [r for r in rows if r[0] >= at + 2]  # at + 1 may have read its input first
            assert after and not moving(after), f"{name} moved after the e-stop: {after[:3]}"
        await pilot.press("ctrl+q")
    for session in sessions.values():
        assert session.process.wait(timeout=30) == 0


async def test_help_request_leads_the_table_and_one_robot_stops_alone(tmp_path: Path) -> None:
    config = fleet_config()
    asking = fleet_config(SupervisionConfig(mode="robot", novelty_threshold=0.05))
    model = ModelRef("r001", tiny_onnx_model(tmp_path / "policy.onnx"))
    fleet = Fleet([
        FleetRobot("dock-a", spinning(config, "sim://?seed=1", tmp_path)),
        FleetRobot("dock-b", spinning(config, "sim://?seed=2", tmp_path)),
        # An untrained five-head policy: its novelty (about 0.1) is above 0.05, so it asks.
        FleetRobot("dock-c", CoreSpec(asking, "sim://?seed=3", None, model, use_gamepad=False)),
    ])
    app = make_app(config, fleet)
    async with app.run_test(size=SIZE) as pilot:
        await all_connected(pilot, app)
        screen = fleet_screen(app)
        for session in fleet.sessions.values():
            session.post(OperatorEvent.AUTO)
        await wait_for(pilot, lambda: app.help_alerts == 1, what="the help request announced")
        await wait_for(pilot, lambda: screen.shown[:1] == ["dock-c"], what="dock-c first")
        row = app.rows[0]
        assert row.name == "dock-c" and row.need == NEED_HELP
        assert row.help is not None and row.help.reason is HelpReason.NOVELTY
        banner = str(screen.query_one("#fleet-banner").render())
        assert "dock-c asks: novelty" in banner
        assert screen.query_one("#fleet-banner").has_class("asking")

        # e stops the selected robot alone: dock-b, latched; dock-a turns on.
        await pilot.press("down", "down")
        assert screen.selected() == "dock-b"
        await pilot.press("e")
        await wait_for(pilot, lambda: fleet.sessions["dock-b"].poll().mode is Mode.ESTOP,
                       what="dock-b stopped")
        session_a = fleet.sessions["dock-a"]
        step = session_a.poll().record.step  # type: ignore[union-attr]
        await wait_for(pilot, lambda: session_a.poll().record.step > step + 10,  # type: ignore[union-attr]
                       what="dock-a's ticks")
        rec = session_a.poll().record
        assert rec is not None and rec.mode is Mode.AUTO and not rec.command.is_zero
        await wait_for(pilot, lambda: screen.shown == ["dock-c", "dock-b", "dock-a"],
                       what="the stopped robot before the one driving")
        directory = Path(SVG_DIR) if SVG_DIR else tmp_path
        directory.mkdir(parents=True, exist_ok=True)
        assert Path(app.save_screenshot("fleet_screen.svg", path=str(directory))).exists()
        await pilot.press("ctrl+q")


async def test_a_lost_link_leaves_the_other_robots_driving(
        tmp_path: Path, served_robot: tuple[subprocess.Popen[str], str]) -> None:
    server, url = served_robot
    config = fleet_config()
    fleet = Fleet([FleetRobot("near", spinning(config, "sim://?seed=1", tmp_path)),
                   FleetRobot("far", spinning(config, url, tmp_path)),
                   FleetRobot("side", spinning(config, "sim://?seed=2", tmp_path))])
    sessions = fleet.sessions
    app = make_app(config, fleet)
    async with app.run_test(size=SIZE) as pilot:
        await all_connected(pilot, app)
        for session in sessions.values():
            await asyncio.to_thread(session.run_in_core, install_tick_log)
            session.post(OperatorEvent.AUTO)
        await wait_for(pilot, lambda: all(moving(ticks(s)[1][-2:]) for s in sessions.values()),
                       what="every robot turning under its policy")
        server.send_signal(signal.SIGKILL)  # the far robot's link is gone
        await wait_for(pilot, lambda: bool(fleet.lost("far")), what="far marked lost")
        screen = fleet_screen(app)
        await wait_for(pilot, lambda: screen.shown[:1] == ["far"], what="far's row first")
        table = str(screen.query_one("#fleet-table").render_line(1))
        assert "LOST" in table or "LINK" in table, table
        seen = {n: len(ticks(sessions[n])[1]) for n in ("near", "side")}
        for name in ("near", "side"):
            await wait_for(pilot, lambda n=name: len(ticks(sessions[n])[1]) > seen[n] + 20,
                           what=f"{name}'s ticks after the loss")
            rows = ticks(sessions[name])[1][seen[name]:]
            assert all(m == "AUTO" for *_, m in rows), f"{name} left AUTO"
            assert all(v != 0.0 or w != 0.0 for _, v, w, _ in rows), f"{name} stopped driving"
            assert not fleet.lost(name)
        assert sessions["far"].poll().mode is Mode.LINK_LOST
        await pilot.press("ctrl+q")
