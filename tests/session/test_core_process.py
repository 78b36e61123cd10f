"""The operator's terminal against the real control core process (what `takeover run` uses):
drive and record through the child, the child's safety when the terminal dies, the terminal's
when the child dies, and errors in the child as one line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from core_hooks import gamepad_to_wire_ticks, policy_settings, unfocused_pad_moves_nothing
from tui_support import HERE, tiny_onnx_model, wait_for

from takeover.config import Config, GamepadConfig, PolicyConfig
from takeover.recorder.edit import episode_notes
from takeover.recorder.reader import read_info
from takeover.recorder.store import EpisodeStore
from takeover.session.core_process import CoreError, CoreSpec, RemoteSession
from takeover.session.operator import ModelRef
from takeover.tui.app import TakeoverApp, make_app
from takeover.tui.dialogs import OutcomeDialog
from takeover.types import CommandSource, Mode

SIZE = (140, 44)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Poll with a deadline, outside an app (a bound on the wait, never a figure under test)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def remote(app: TakeoverApp) -> RemoteSession:
    assert isinstance(app.session, RemoteSession)
    return app.session


def mode(app: TakeoverApp) -> Mode | None:
    rec = app.session.poll().record
    return rec.mode if rec is not None else None


async def connected(pilot: object, app: TakeoverApp) -> None:
    await wait_for(pilot, lambda: app.connected and app.session.poll().record is not None,
                   what="the core and the link")


def exited(pid: int) -> bool:
    """Gone or a zombie (an orphan's reaper may be slow, or absent in a container)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


async def test_drive_and_record_through_the_core_process(config: Config, workspace: Path) -> None:
    app = make_app(config, "sim://?seed=3", workspace=workspace, use_gamepad=False)
    core = remote(app)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        assert core.pid != os.getpid() and "textual" not in core.url
        await pilot.press("m", "r")
        await wait_for(pilot, lambda: app.session.episode.recording, what="recording")
        for _ in range(100):
            await pilot.press("up")
            rec = app.session.poll().record
            if rec is not None and rec.command.v_mps > 0 and app.session.episode.steps > 10:
                break
        rec = app.session.poll().record
        assert rec is not None and rec.command.v_mps > 0 and rec.source is CommandSource.HUMAN
        await pilot.press("o")
        await pilot.press(*"via_core", "enter")
        await wait_for(pilot, lambda: app.session.episode.notes == "via core", what="the note")
        await pilot.press("r")
        assert isinstance(app.screen, OutcomeDialog)
        await pilot.press("s")
        path = app.session.wait_saved()
        assert path is not None and path.parent.name == "r000"
        await wait_for(pilot, lambda: app.session.episode.message.startswith("saved"),
                       what="the note written")
        info = read_info(path)
        assert info.outcome == "success" and info.demo_steps > 0
        assert episode_notes(path) == "via core"
        await pilot.press("f")  # relabel, in the core's process
        await wait_for(pilot, lambda: read_info(path).outcome == "failure", what="relabel")
        await pilot.press("space")
        await wait_for(pilot, lambda: mode(app) is Mode.ESTOP, what="E-STOP")
        timing = app.session.recent_timing()
        assert timing is not None and timing.rate_hz > 0
        await pilot.press("ctrl+q")
    assert core.process.wait(timeout=30) == 0


async def test_quitting_saves_an_open_episode_as_aborted(config: Config, workspace: Path) -> None:
    app = make_app(config, "sim://?seed=3", workspace=workspace, use_gamepad=False)
    core = remote(app)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await pilot.press("m", "r")
        await wait_for(pilot, lambda: app.session.episode.steps > 3, what="steps")
        await pilot.press("ctrl+q")
    assert core.process.wait(timeout=30) == 0
    infos = EpisodeStore(workspace).episodes()
    assert [(i.outcome, i.partial) for i in infos] == [("aborted", False)]


def test_killed_terminal_stops_the_robot_and_saves_the_episode(workspace: Path,
                                                               tmp_path: Path) -> None:
    wire_log = tmp_path / "wire.log"
    host = subprocess.Popen([sys.executable, str(HERE / "core_host.py"), str(workspace),
                             str(wire_log)], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None
        line = host.stdout.readline()
        assert line, "the host exited before the robot moved"
        core_pid = json.loads(line)["core_pid"]
        host.send_signal(signal.SIGKILL)  # the terminal dies: no close, no goodbye
        host.wait(timeout=10)
        deadline = time.monotonic() + 30
        while not exited(core_pid):
            assert time.monotonic() < deadline, "the core outlived its terminal"
            time.sleep(0.05)
    finally:
        if host.poll() is None:
            host.kill()
    commands = [tuple(map(float, ln.split()[1:])) for ln in wire_log.read_text().splitlines()]
    assert any(v > 0 for v, _ in commands), "the robot never moved"
    assert commands[-1] == (0.0, 0.0), "the last command to the robot was not a stop"
    infos = EpisodeStore(workspace).episodes()
    assert len(infos) == 1 and not infos[0].partial
    assert infos[0].outcome == "aborted" and "terminal" in infos[0].end_reason
    assert infos[0].demo_steps > 0


async def test_killed_core_is_shown_and_the_terminal_stays_up(config: Config,
                                                               workspace: Path) -> None:
    app = make_app(config, "sim://?seed=3", workspace=workspace, use_gamepad=False)
    core = remote(app)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await pilot.press("m")
        await wait_for(pilot, lambda: mode(app) is Mode.MANUAL, what="MANUAL")
        os.kill(core.pid, signal.SIGKILL)
        await wait_for(pilot, lambda: bool(app.core_lost), what="the core's loss noticed")
        assert "CONTROL CORE LOST" in app.core_lost and "-9" in app.core_lost
        banner = str(app.screen.query_one("#banner").render())
        await wait_for(pilot, lambda: "CONTROL CORE LOST" in str(app.screen.query_one("#banner").render()),
                       what="the banner")
        banner = str(app.screen.query_one("#banner").render())
        assert "L I N K" in banner  # LINK LOST, not a mode that looks alive
        assert app.session.poll().mode is Mode.LINK_LOST
        # Keys still answer, with one line and no traceback.
        await pilot.press("space", "up", "r")
        message = str(app.screen.query_one("#message").render())
        assert "CONTROL CORE LOST" in message and "Traceback" not in message
        await pilot.press("ctrl+q")
    assert app.return_code in (0, None)


async def test_gamepad_in_the_core_reaches_the_wire_within_a_tick(workspace: Path) -> None:
    """The pad drives the robot from the core's process: each press and release is on the wire
    by the tick after the one running when it happened (an order; the latency in milliseconds is
    benchmarks/gamepad_to_wire.py's figure), even with the terminal's thread stalled."""
    config = Config(gamepad=GamepadConfig(expo=0.0))
    app = make_app(config, "sim://?seed=5", workspace=workspace, use_gamepad=True)
    core = remote(app)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        # The TUI keeps refreshing while the pad is worked in the core's process.
        ticks = await asyncio.to_thread(core.run_in_core, gamepad_to_wire_ticks)
        assert len(ticks) == 12 and max(ticks) <= 2, ticks
        await wait_for(pilot, lambda: (g := app.session.poll().gamepad) is not None
                       and not g.connected, what="the pad unplugged, as the screen shows it")
        # With the UI thread blocked (a stalled terminal) the pad still drives and stops.
        stalled = core.run_in_core(gamepad_to_wire_ticks, 2)
        assert len(stalled) == 4 and max(stalled) <= 2, stalled


def test_errors_in_the_core_come_back_as_one_line(config: Config, workspace: Path,
                                                  tmp_path: Path) -> None:
    bad_url = RemoteSession(CoreSpec(config, "sim://?bogus=1", workspace, use_gamepad=False))
    try:
        with pytest.raises(CoreError) as err:
            bad_url.open()
        assert "bogus" in str(err.value) and "\n" not in str(err.value)
    finally:
        bad_url.close()
    no_robot = RemoteSession(CoreSpec(config, "socket://127.0.0.1:1", workspace, use_gamepad=False))
    try:
        with pytest.raises(CoreError) as err:
            no_robot.open()
        assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    finally:
        no_robot.close()
    bad_model = tmp_path / "policy.onnx"
    bad_model.write_bytes(b"not a model")
    session = RemoteSession(CoreSpec(config, "sim://?seed=3", workspace, use_gamepad=False,
                                     model=ModelRef("r001", bad_model)))
    try:
        result = session.open()  # driving by hand needs no model: it opens, and says so
        assert result.note.startswith("model r001 not loaded:") and "\n" not in result.note
        assert session.model is None
        with pytest.raises(CoreError) as err:
            session.deploy(ModelRef("r001", bad_model))
        assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
        # The core still drives its loop: its ticks keep arriving (a bounded wait, not a time).
        first = session.poll().record
        wait_until(lambda: (r := session.poll().record) is not None
                   and (first is None or r.step > first.step), "ticks from the core")
    finally:
        session.close()
    assert session.process.returncode == 0


def test_the_core_runs_the_policy_table_of_takeover_toml(workspace: Path, tmp_path: Path) -> None:
    """`takeover run`'s core loads its model as `drive`, `dagger eval` and `bench dagger` do:
    with [policy]'s executor and threads, not the runtime's own defaults."""
    model = ModelRef("r001", tiny_onnx_model(tmp_path / "r001" / "policy.onnx"))
    for table in (PolicyConfig(execution="receding", n_action_steps=3, threads=2),
                  PolicyConfig(execution="ensemble", ensemble_k=0.25, threads=1)):
        session = RemoteSession(CoreSpec(Config(policy=table), "sim://?seed=3", workspace,
                                         use_gamepad=False, model=model))
        try:
            assert session.open().note == ""
            settings = session.run_in_core(policy_settings)
        finally:
            session.close()
        assert settings == {"mode": table.execution, "n_action_steps": table.n_action_steps,
                            "ensemble_k": table.ensemble_k, "threads": table.threads}


def test_a_model_for_another_camera_is_refused_in_one_line(workspace: Path, tmp_path: Path
                                                           ) -> None:
    """A 48x48 model on a 96x96 robot: refused when deployed, before the loop runs it (it used
    to be accepted and then stop the control loop on its first tick)."""
    other = ModelRef("r001", tiny_onnx_model(tmp_path / "r001" / "policy.onnx", camera_hw=48))
    session = RemoteSession(CoreSpec(Config(), "sim://?seed=3", workspace, use_gamepad=False,
                                     model=other))
    try:
        note = session.open().note
        assert note.startswith("model r001 not loaded:") and "48" in note and "\n" not in note
        assert session.model is None
        with pytest.raises(CoreError) as err:
            session.deploy(other)
        assert "48" in str(err.value) and "\n" not in str(err.value)
        assert session.run_in_core(policy_settings) is None  # nothing was swapped in
        first = session.poll().record  # the core still drives its loop: ticks keep arriving
        wait_until(lambda: (r := session.poll().record) is not None
                   and (first is None or r.step > first.step), "ticks from the core")
    finally:
        session.close()


def test_an_unfocused_core_ignores_the_gamepad_but_its_estop(workspace: Path) -> None:
    """A fleet's robot the operator has not focused: the pad held with the stick up moves it
    not at all; focusing it while the pad is held still moves nothing until the deadman is let
    go and pressed again; the pad's e-stop latches it whether focused or not."""
    session = RemoteSession(CoreSpec(Config(gamepad=GamepadConfig(expo=0.0)), "sim://?seed=5",
                                     workspace, use_gamepad=True, focused=False))
    try:
        session.open()
        seen = session.run_in_core(unfocused_pad_moves_nothing)
    finally:
        session.close()
    assert seen == {"unfocused": False, "held_through_focus": False, "pressed_again": True,
                    "estop": "ESTOP"}, seen
