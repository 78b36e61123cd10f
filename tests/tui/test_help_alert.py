"""Pilot tests of the help-request alert on the real-time simulator, with a real (untrained,
five-head) ONNX policy in onnxruntime whose novelty (about 0.1) is above the [supervision]
threshold set here: in robot mode the robot asks for help, the terminal rings and the banner
says why; `h` hands back (the policy drives on, and asks again); a takeover ends the request."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tui_support import SCREEN_TEST_SAFETY, tiny_onnx_model, wait_for

from takeover.config import Config, KeyboardConfig, SupervisionConfig
from takeover.hw.base import open_link
from takeover.session.stack import load_robot_policy
from takeover.tui.app import TakeoverApp, help_text, make_app
from takeover.tui.drive import DriveScreen
from takeover.tui.widgets import ModeBanner
from takeover.types import HelpReason, Mode

SIZE = (140, 44)
# TAKEOVER_SAVE_SVG=docs/img saves the screenshot for the docs (help_request.svg).
SVG_DIR = os.environ.get("TAKEOVER_SAVE_SVG")


def robot_gated_config() -> Config:
    return Config(keyboard=KeyboardConfig(initial_hold_ms=1500.0, repeat_hold_ms=1000.0),
                  safety=SCREEN_TEST_SAFETY,
                  supervision=SupervisionConfig(mode="robot", novelty_threshold=0.05))


def build(config: Config, tmp_path: Path) -> TakeoverApp:
    policy = load_robot_policy(tiny_onnx_model(tmp_path / "policy.onnx"), config)
    return make_app(config, open_link("sim://?seed=3"), policy, None, use_gamepad=False)


def mode(app: TakeoverApp) -> Mode | None:
    rec = app.session.loop.latest
    return rec.mode if rec is not None else None


def banner(app: TakeoverApp) -> ModeBanner:
    return app.screen.query_one(ModeBanner)


def drive_screen(app: TakeoverApp) -> DriveScreen:
    assert isinstance(app.screen, DriveScreen)
    return app.screen


async def test_a_help_request_rings_shows_why_and_h_hands_back(tmp_path: Path) -> None:
    app = build(robot_gated_config(), tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connected and app.session.loop.latest is not None,
                       what="the link")
        screen = drive_screen(app)
        assert screen.help_alerts == 0
        await pilot.press("p")
        await pilot.press("enter")  # hold-to-run from the keyboard
        await wait_for(pilot, lambda: screen.help_alerts == 1, what="the help request")
        rec = app.session.loop.latest
        assert rec is not None and rec.mode is Mode.AUTO
        assert rec.help is not None and rec.help.requested
        assert rec.help.reason is HelpReason.NOVELTY and rec.help.threshold == 0.05
        await wait_for(pilot, lambda: banner(app).has_class("asking"), what="the asking banner")
        text = str(banner(app).render())
        assert re.search(r"robot asks for help: novelty 0\.\d+ > 0\.05", text), text
        assert "hand back (h)" in text
        directory = Path(SVG_DIR) if SVG_DIR else tmp_path
        directory.mkdir(parents=True, exist_ok=True)
        assert Path(app.save_screenshot("help_request.svg", path=str(directory))).exists()

        # h: the policy drives on; its novelty is still above the threshold, so once the
        # signal has held for help_confirm_ms again, it asks again (a new rising edge).
        await pilot.press("h")
        await wait_for(pilot, lambda: screen.help_alerts == 2, what="the request after h")
        assert mode(app) is Mode.AUTO

        # A takeover answers with a correction: the request ends, the banner stops asking.
        await pilot.press("t")
        await wait_for(pilot, lambda: mode(app) is Mode.TAKEOVER, what="TAKEOVER")
        await wait_for(pilot, lambda: not banner(app).has_class("asking"),
                       what="the banner to stop asking")
        assert screen.help_alerts == 2


async def test_human_mode_never_asks(tmp_path: Path) -> None:
    config = robot_gated_config()
    config = Config(keyboard=config.keyboard, safety=config.safety,
                    supervision=SupervisionConfig(mode="human", novelty_threshold=0.05))
    app = build(config, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connected and app.session.loop.latest is not None,
                       what="the link")
        await pilot.press("p")
        await pilot.press("enter")
        # The signal is raised (recorded as the pending reason) but never a request.
        await wait_for(pilot, lambda: (rec := app.session.loop.latest) is not None
                       and rec.help is not None and rec.help.reason is HelpReason.NOVELTY,
                       what="the novelty signal")
        start = app.session.loop.latest.step  # type: ignore[union-attr]
        await wait_for(pilot, lambda: app.session.loop.latest.step > start + 20,  # type: ignore[union-attr]
                       what="a second of ticks")
        assert drive_screen(app).help_alerts == 0
        assert not banner(app).has_class("asking")


def test_the_help_screen_names_the_hand_back_key() -> None:
    text = help_text(Config()).plain
    assert "hand back" in text and "hand back while the robot asks for help" in text
