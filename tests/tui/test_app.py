"""Pilot tests of the operator's terminal on the real-time simulator: every binding and mode
transition, the episode flow, the episodes and rounds screens, and SVG screenshots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tui_support import SCREEN_TEST_SAFETY, ConstantPolicy, fake_train_command, wait_for

from takeover.config import Config
from takeover.hw.base import open_link
from takeover.recorder.edit import episode_notes
from takeover.recorder.reader import read_info
from takeover.recorder.store import EpisodeStore
from takeover.tui.app import TakeoverApp, make_app
from takeover.tui.dialogs import HelpScreen, OutcomeDialog
from takeover.tui.episodes import EpisodesScreen, ReplayScreen
from takeover.tui.rounds import RoundsScreen
from takeover.types import CommandSource, Mode

SIZE = (140, 44)
# TAKEOVER_SAVE_SVG=docs/img saves the screenshots for the docs; otherwise they go to tmp.
SVG_DIR = os.environ.get("TAKEOVER_SAVE_SVG")


def build(config: Config, workspace: Path | None, policy: ConstantPolicy | None = None,
          **kw: object) -> TakeoverApp:
    return make_app(config, open_link("sim://?seed=3"), policy, workspace, use_gamepad=False,
                    **kw)  # type: ignore[arg-type]


def mode(app: TakeoverApp) -> Mode | None:
    rec = app.session.loop.latest
    return rec.mode if rec is not None else None


async def connected(pilot: object, app: TakeoverApp) -> None:
    await wait_for(pilot, lambda: app.connected and app.session.loop.latest is not None,
                   what="the link")


def save_svg(app: TakeoverApp, name: str, tmp_path: Path) -> Path:
    directory = Path(SVG_DIR) if SVG_DIR else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    return Path(app.save_screenshot(name, path=str(directory)))


async def test_mode_bindings_and_transitions(config: Config, tmp_path: Path) -> None:
    app = build(config, None)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        assert mode(app) is Mode.IDLE
        await pilot.press("m")
        await wait_for(pilot, lambda: mode(app) is Mode.MANUAL, what="MANUAL")
        await pilot.press("t")  # takeover only from AUTO: stays MANUAL
        await pilot.press("x")
        await wait_for(pilot, lambda: mode(app) is Mode.IDLE, what="IDLE after stop")
        await pilot.press("p")  # no policy: refused, with the reason shown
        await wait_for(pilot, lambda: "no policy" in app.session.loop.arbiter.reason, what="refusal")
        assert mode(app) is Mode.IDLE
        await pilot.press("m")
        await wait_for(pilot, lambda: mode(app) is Mode.MANUAL, what="MANUAL")
        await pilot.press("space")
        await wait_for(pilot, lambda: mode(app) is Mode.ESTOP, what="E-STOP")
        await pilot.press("m")  # latched: refused
        step = app.session.loop.latest.step  # type: ignore[union-attr]
        await wait_for(pilot, lambda: app.session.loop.latest.step > step + 3,  # type: ignore[union-attr]
                       what="a few ticks")
        assert mode(app) is Mode.ESTOP
        await wait_for(pilot, lambda: "E - S T O P" in str(app.screen.query_one("#banner").render()),
                       what="the banner")
        save_svg(app, "estop.svg", tmp_path)
        await pilot.press("a")
        await wait_for(pilot, lambda: mode(app) is Mode.IDLE, what="IDLE after acknowledge")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("space")  # the e-stop works inside dialogs too
        await wait_for(pilot, lambda: mode(app) is Mode.ESTOP, what="E-STOP from the help")
        await pilot.press("escape")
        await pilot.press("a")
        await wait_for(pilot, lambda: mode(app) is Mode.IDLE, what="IDLE")


async def test_keyboard_driving_and_release(config: Config) -> None:
    app = build(config, None)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await pilot.press("up")  # IDLE: keys do not start motion
        assert app.session.loop.latest is not None and app.session.loop.latest.command.is_zero
        await pilot.press("m")
        await wait_for(pilot, lambda: mode(app) is Mode.MANUAL, what="MANUAL")
        rec = None

        def moving_forward() -> bool:
            nonlocal rec
            rec = app.session.loop.latest
            return rec is not None and rec.command.v_mps > 0 and rec.source is CommandSource.HUMAN

        for _ in range(100):
            await pilot.press("up")
            if moving_forward():
                break
        assert moving_forward()
        await pilot.press("left")
        await wait_for(pilot, lambda: (r := app.session.loop.latest) is not None
                       and r.command.w_radps > 0, what="turning left")
        # No more key repeats: the command decays to zero by itself.
        await wait_for(pilot, lambda: (r := app.session.loop.latest) is not None and r.command.is_zero,
                       what="the command to decay")
        await pilot.press("up")
        await pilot.press("space")
        await wait_for(pilot, lambda: mode(app) is Mode.ESTOP, what="E-STOP")
        assert not app.session.keyboard.active()  # e-stop forgets held keys


async def test_auto_takeover_and_hold_to_run(config: Config) -> None:
    policy = ConstantPolicy()
    app = build(config, None, policy)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await pilot.press("p")
        await wait_for(pilot, lambda: mode(app) is Mode.AUTO, what="AUTO")
        await pilot.press("enter")  # hold-to-run from the keyboard
        await wait_for(pilot, lambda: (r := app.session.loop.latest) is not None
                       and r.source is CommandSource.POLICY, what="the policy driving")
        await pilot.press("down")  # a driving key is a deflection: takeover
        await wait_for(pilot, lambda: mode(app) is Mode.TAKEOVER, what="TAKEOVER")
        assert policy.dropped >= 1  # the queued chunk was dropped
        await wait_for(pilot, lambda: not app.session.keyboard.active(), what="the key released")
        await pilot.press("p")
        await wait_for(pilot, lambda: mode(app) is Mode.AUTO, what="back to AUTO")
        await pilot.press("t")
        await wait_for(pilot, lambda: mode(app) is Mode.TAKEOVER, what="takeover button")
        await pilot.press("x")
        await wait_for(pilot, lambda: mode(app) is Mode.IDLE, what="IDLE")


async def test_episode_flow_records_labels_and_notes(config: Config, workspace: Path,
                                                     tmp_path: Path) -> None:
    app = build(config, workspace)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await pilot.press("m", "r")
        await wait_for(pilot, lambda: app.session.episode.recording, what="recording")
        for _ in range(20):
            await pilot.press("up")
        await wait_for(pilot, lambda: app.session.episode.steps > 10, what="steps")
        await pilot.press("o")
        await pilot.press(*"first_try", "enter")
        await wait_for(pilot, lambda: app.session.episode.notes == "first try", what="the note")
        save_svg(app, "drive.svg", tmp_path)
        await pilot.press("r")
        assert isinstance(app.screen, OutcomeDialog)
        await pilot.press("s")
        path = app.session.wait_saved()
        assert path is not None and path.parent.name == "r000"
        await wait_for(pilot, lambda: app.session.episode.message.startswith("saved"),
                       what="the note written")
        info = read_info(path)
        assert info.outcome == "success" and info.demo_steps > 0
        assert episode_notes(path) == "first try"
        await pilot.press("f")  # relabel the last episode
        assert read_info(path).outcome == "failure"
        # A second episode ended from the keys directly, as an abort.
        await pilot.press("r")
        await wait_for(pilot, lambda: app.session.episode.recording, what="recording")
        await wait_for(pilot, lambda: app.session.episode.steps > 2, what="steps")
        await pilot.press("b")
        second = app.session.wait_saved()
        assert second is not None and second != path
        infos = EpisodeStore(workspace).episodes()
        assert [i.outcome for i in infos] == ["failure", "aborted"]


async def test_episodes_screen_replay_relabel_trash(config: Config, workspace: Path,
                                                    tmp_path: Path) -> None:
    app = build(config, workspace)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        for outcome in ("s", "b"):
            await pilot.press("m", "r")
            await wait_for(pilot, lambda: app.session.episode.steps > 5, what="steps")
            await pilot.press(outcome)
            app.session.wait_saved()
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, EpisodesScreen)
        await wait_for(pilot, lambda: len(screen.infos) == 2, what="the episode list")
        save_svg(app, "episodes.svg", tmp_path)
        await pilot.press("f")  # relabel the selected (first) episode
        await wait_for(pilot, lambda: screen.infos and screen.infos[0].outcome == "failure",
                       what="relabel")
        await pilot.press("enter")
        assert isinstance(app.screen, ReplayScreen)
        replay = app.screen
        await pilot.press("right", "right", "pagedown")
        assert replay.index == min(22, replay.n - 1)
        await pilot.press("end")
        assert replay.index == replay.n - 1
        await pilot.press("home")
        save_svg(app, "replay.svg", tmp_path)
        await pilot.press("escape")
        assert app.screen is screen
        await pilot.press("down", "d", "y")  # trash the second episode
        await wait_for(pilot, lambda: len(screen.infos) == 1, what="trash")
        assert len(list((workspace / "trash" / "r000").iterdir())) == 1
        await pilot.press("1")
        assert app.screen is app.drive_screen


async def test_rounds_screen_trains_and_deploys(config: Config, workspace: Path,
                                                tmp_path: Path) -> None:
    loaded: list[Path] = []

    def loader(path: Path, config: Config) -> ConstantPolicy:
        loaded.append(path)
        return ConstantPolicy()

    app = build(config, workspace, policy_loader=loader,
                train_command=fake_train_command(workspace, "--epochs", "4"))
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await pilot.press("m", "r")
        await wait_for(pilot, lambda: app.session.episode.steps > 5, what="steps")
        await pilot.press("s")
        app.session.wait_saved()
        await pilot.press("x", "3")
        screen = app.screen
        assert isinstance(screen, RoundsScreen)
        await wait_for(pilot, lambda: len(screen.rows) == 1, what="round metrics")
        await pilot.press("t")
        job = app.session.training
        assert job is not None
        assert job.wait(60)
        await wait_for(pilot, lambda: screen.trained is not None, what="the trained model")
        state = job.state()
        assert state.status == "done" and len(state.curve) == 4 and state.result is not None
        save_svg(app, "rounds.svg", tmp_path)
        await pilot.press("d")
        await wait_for(pilot, lambda: app.session.model is not None, what="deploy")
        assert app.session.model is not None and app.session.model.model_id == "r001"
        assert loaded and app.session.round == 1
        assert (workspace / "models" / "current").resolve().name == "r001"  # promoted
        await pilot.press("1", "p")
        await wait_for(pilot, lambda: mode(app) is Mode.AUTO, what="AUTO with the new model")
        # Deploying while the robot moves is refused.
        await pilot.press("enter")
        await wait_for(pilot, lambda: (r := app.session.loop.latest) is not None
                       and not r.command.is_zero, what="moving")
        assert "stop the robot" in app.session.deploy(screen.trained)  # type: ignore[arg-type]


async def test_training_can_be_cancelled(config: Config, workspace: Path) -> None:
    app = build(config, workspace, train_command=fake_train_command(workspace, "--hang"))
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await pilot.press("3", "t")
        job = app.session.training
        assert job is not None
        await wait_for(pilot, lambda: job.state().epoch == 1, what="first epoch")
        await pilot.press("c")
        assert job.wait(30)
        assert job.state().status == "cancelled"
        assert not (workspace / "models" / "r001").exists()


@pytest.mark.parametrize("ws", [False])
async def test_without_workspace_recording_is_off(config: Config, ws: bool) -> None:
    app = build(config, None)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await pilot.press("r")
        assert "no workspace" in app.session.episode.message


async def test_demonstration_noise_is_shown_and_pushes_only_the_sent_command(
        workspace: Path) -> None:
    """With [demonstration] noise on, the drive screen says so, and in MANUAL the command sent
    differs from the operator's (which is what gets recorded as the label)."""
    from takeover.config import DemonstrationConfig, KeyboardConfig

    config = Config(keyboard=KeyboardConfig(initial_hold_ms=1500.0, repeat_hold_ms=1000.0),
                    demonstration=DemonstrationConfig(noise_w_radps=0.3),
                    safety=SCREEN_TEST_SAFETY)
    app = build(config, workspace)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await wait_for(pilot, lambda: "DART pushes" in str(app.screen.query_one("#system").render()),
                       what="the noise on the drive screen")
        await pilot.press("m", "up")
        await wait_for(pilot, lambda: (r := app.session.loop.latest) is not None
                       and r.mode is Mode.MANUAL and r.human_action is not None
                       and r.human_action.v_mps > 0
                       and abs(r.command.w_radps - r.human_action.w_radps) > 1e-3,
                       what="a pushed command in MANUAL")
        rec = app.session.loop.latest
        assert rec is not None and rec.human_action is not None
        assert rec.human_action.w_radps == 0.0, "the label is the key's own command"


async def test_episodes_and_rounds_cells_equal_the_episode_files(config: Config, workspace: Path
                                                                  ) -> None:
    """What the operator reads on the Episodes and Rounds screens is what the files hold: a
    demonstration of N steps is N human steps (it once showed 2N)."""
    from textual.widgets import DataTable

    from takeover.recorder.reader import read_info
    from takeover.session.drive import DriveRequest, run_drive

    run_drive(DriveRequest(robot_url="sim://", driver="expert", episodes=2, seed=11,
                           workspace=workspace, record=True, fast=True, max_steps=60))
    files = sorted((workspace / "rounds" / "r000").glob("ep_*.hdf5"))
    infos = {str(p): read_info(p) for p in files}
    assert len(infos) == 2 and all(0 < i.human_steps == i.demo_steps for i in infos.values())
    app = build(config, workspace)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, EpisodesScreen)
        await wait_for(pilot, lambda: len(screen.infos) == 2, what="the episode list")
        table = screen.query_one(DataTable)
        for row_key in table.rows:
            cells = [str(c) for c in table.get_row(row_key)]
            info = infos[str(row_key.value)]
            assert cells[2:5] == [str(info.num_steps), str(info.human_steps),
                                  str(info.interventions)], cells
        await pilot.press("3")
        rounds = app.screen
        assert isinstance(rounds, RoundsScreen)
        await wait_for(pilot, lambda: len(rounds.rows) == 1, what="round metrics")
        cells = [str(c) for c in rounds.query_one(DataTable).get_row_at(0)]
        assert cells[:5] == ["r000", "2", str(sum(i.num_steps for i in infos.values())),
                             str(sum(i.human_steps for i in infos.values())),
                             str(sum(i.interventions for i in infos.values()))], cells


async def test_the_protective_field_is_shown_when_it_stops_the_robot(config: Config) -> None:
    """A field whose protective distance reaches the dock from the start: engaging AUTO gives a
    protective stop at once, shown in the banner and drawn on the mini-map."""
    from dataclasses import replace

    from takeover.tui.widgets import MiniMap, ModeBanner
    from takeover.types import FieldState

    wide = replace(config.safety.field, protective_m=4.0, warning_m=4.0)
    config = replace(config, safety=replace(config.safety, field=wide))
    app = build(config, None, ConstantPolicy())
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await pilot.press("p")
        await wait_for(pilot, lambda: mode(app) is Mode.AUTO, what="AUTO")
        await pilot.press("enter")
        await wait_for(pilot, lambda: (r := app.session.loop.latest) is not None
                       and r.field is not None and r.field.state is FieldState.STOPPED,
                       what="a protective stop")
        rec = app.session.loop.latest
        assert rec is not None and rec.command.v_mps == 0.0 and rec.mode is Mode.AUTO
        banner = app.screen.query_one(ModeBanner)
        await wait_for(pilot, lambda: "PROTECTIVE STOP" in str(banner.content),
                       what="the banner")
        minimap = app.screen.query_one(MiniMap)
        await wait_for(pilot, lambda: minimap._data is not None and isinstance(
            minimap._data[5], type(rec.field)), what="the field on the mini-map")
