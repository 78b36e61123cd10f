"""The operator's terminal: a Textual app over a `Session` (takeover.session.operator).

    app = make_app(config, "sim://", workspace=ws)    # the control core in a child process
    app = make_app(config, link, policy, workspace)   # the core in this process (tests, tools)
    app.run()

The app never runs the control loop. `takeover run` gives it a `RemoteSession`: the loop, the
recorder, the policy and the gamepad run in a process of their own (core_process.py), so this
process's garbage collector cannot stall them. A timer (`tui.refresh_hz`, default 20 Hz) takes
the session's newest snapshot and hands it to the screen on show; blocking work (connecting,
resetting the simulator, loading a model, listing episodes) runs in thread workers that only
call back into the UI.

Space is the e-stop on every screen and in every dialog (a priority binding).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches

from takeover.config import Config
from takeover.control.arbiter import OperatorEvent
from takeover.control.loop import LoopTiming, PolicyDriver
from takeover.dagger.metrics import round_metrics
from takeover.errors import TakeoverError
from takeover.hw.base import RobotLink
from takeover.inputs.gamepad import GamepadInput, button_help
from takeover.recorder.store import EpisodeStore
from takeover.session.core_process import CoreSpec, RemoteSession
from takeover.session.operator import (
    ModelRef,
    OpenResult,
    OperatorSession,
    PolicyLoader,
    Session,
    SessionSnapshot,
)
from takeover.tui.camera import CameraChoice, TerminalGraphics, choose_camera
from takeover.tui.dialogs import HelpScreen, NoteDialog, OutcomeDialog
from takeover.tui.drive import DriveScreen
from takeover.tui.episodes import EpisodesScreen
from takeover.tui.rounds import RoundsScreen
from takeover.types import Pose2D


class TakeoverApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "takeover"
    ENABLE_COMMAND_PALETTE = False
    MODES: ClassVar[dict[str, type]] = {  # type: ignore[assignment]
        "drive": DriveScreen, "episodes": EpisodesScreen, "rounds": RoundsScreen}
    DEFAULT_MODE = "drive"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "estop", "E-STOP", priority=True, key_display="space"),
        Binding("1", "switch_mode('drive')", "Drive"),
        Binding("2", "switch_mode('episodes')", "Episodes"),
        Binding("3", "switch_mode('rounds')", "Rounds"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, session: Session, *, connect: bool = True,
                 graphics: TerminalGraphics | None = None) -> None:
        super().__init__()
        self.session = session
        self.config = session.config
        # How camera frames are drawn, on every screen (tui.camera and what the terminal said).
        self.camera: CameraChoice = choose_camera(self.config.tui.camera, graphics)
        self.workspace = session.workspace
        self.connect_link = connect
        self.connected = False
        self.connect_error = ""
        self.core_lost = ""  # the control core's process died: why (shown, never cleared)
        self.dock: Pose2D | None = None
        self.timing: LoopTiming | None = None
        self.snapshot: SessionSnapshot | None = None
        self.first_screen_s: float | None = None
        self.drive_screen: DriveScreen | None = None
        self.startup_note = ""  # shown once connected (e.g. a model that did not load)
        self.t_command: float | None = None  # perf_counter when the command started
        self._saved_seen = -1
        self._t_created = time.perf_counter()

    # --- lifecycle --------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.call_after_refresh(self._first_paint)
        self.set_interval(1.0 / self.config.tui.refresh_hz, self._refresh)
        self.set_interval(1.0, self._slow_refresh)
        self._start_session()

    def _first_paint(self) -> None:
        self.first_screen_s = time.perf_counter() - (self.t_command or self._t_created)

    @work(thread=True, exclusive=True, group="connect")
    def _start_session(self) -> None:
        try:
            result = self.session.open(self.connect_link)
        except TakeoverError as err:
            self.call_from_thread(self._connect_failed, str(err))
            return
        self.call_from_thread(self._connected, result)

    def _connected(self, result: OpenResult) -> None:
        self.connected = True
        self.dock = result.dock
        # Everything built so far (Textual, the screens) is long-lived: never scan it again.
        pacer = self.session.gc_pacer if isinstance(self.session, OperatorSession) else None
        if pacer is not None:
            pacer.freeze()
        else:
            gc.collect()
            gc.freeze()
        first = "" if self.first_screen_s is None else f" · first screen {self.first_screen_s:.2f} s"
        notes = [n for n in (self.startup_note, result.note) if n]
        if self.camera.renderer != self.config.tui.camera != "auto":  # a forced protocol fell back
            notes.append(f"camera: {self.camera.label}, {self.camera.reason}")
        self.say(f"connected to {self.session.url}{first}"
                 + ("" if self.workspace else " · no workspace: recording is off")
                 + "".join(f" · {n}" for n in notes))

    def _connect_failed(self, message: str) -> None:
        self.connect_error = f"cannot connect: {message}"
        self.say(self.connect_error + " · ctrl+q to quit")

    async def action_quit(self) -> None:
        self.say("stopping the robot and saving...")
        await asyncio.to_thread(self.session.close)
        self.exit()

    def on_unmount(self) -> None:
        self.session.close()

    # --- telemetry --------------------------------------------------------------------------

    def _refresh(self) -> None:
        if not self.connected:
            return
        if self.session.lost and not self.core_lost:
            self.core_lost = self.session.lost
            self.say(f"{self.core_lost} · the robot is not driven; its base stops by its own "
                     "watchdog · ctrl+q, then start takeover run again")
        snap = self.session.poll()
        self.snapshot = snap
        if not self.screen_stack:  # starting up or shutting down: nothing to draw on
            return
        screen = self.screen
        try:
            if isinstance(screen, DriveScreen) and screen.ready:
                screen.show(snap)
            elif isinstance(screen, EpisodesScreen | RoundsScreen) and screen.ready:
                screen.show(snap.mode, snap.reason)
        except NoMatches:  # the screen is being torn down (quitting)
            return
        if snap.writer is not None and snap.writer.episodes_saved != self._saved_seen:
            self._saved_seen = snap.writer.episodes_saved
            self._round_summary()

    def _slow_refresh(self) -> None:
        if self.connected:
            self.timing = self.session.recent_timing()

    @work(thread=True, exclusive=True, group="round-summary")
    def _round_summary(self) -> None:
        ws = self.workspace
        if ws is None:
            return
        r = self.session.round
        infos = [i for i in EpisodeStore(ws).episodes(round=r) if not i.partial]
        m = round_metrics(r, infos)
        t = Text()
        t.append(f"round r{r:03d}", style="bold")
        model = self.session.model
        t.append(f"  model {model.model_id if model else 'none (demonstrations)'}\n")
        t.append(f"episodes {m.episodes}  success {m.successes}/{m.decided}\n")
        t.append(f"human steps {m.human_steps}  robot steps {m.robot_steps}\n")
        t.append(f"interventions {m.interventions}")
        if m.interventions_per_min is not None:
            t.append(f"  ({m.interventions_per_min:.2f}/min)")
        if m.autonomy is not None:
            t.append(f"\nautonomy {100 * m.autonomy:.0f}%")
        self.call_from_thread(self._show_round, t)

    def _show_round(self, text: Text) -> None:
        if self.drive_screen is not None:
            self.drive_screen.show_round(text)

    def say(self, message: str) -> None:
        if not self.screen_stack:
            return
        screen = self.screen
        if hasattr(screen, "say"):
            screen.say(message)

    # --- actions ------------------------------------------------------------------------------

    def action_estop(self) -> None:
        self.session.estop()
        if not self.core_lost:
            self.say("E-STOP: robot stopped and latched. Acknowledge on the drive screen (a)")

    def ask(self, request: Callable[[], str]) -> None:
        """Say the answer of a session request, or why it failed (one line)."""
        try:
            self.say(request())
        except TakeoverError as err:
            self.say(str(err))

    def action_help(self) -> None:
        self.push_screen(HelpScreen(help_text(self.config)))

    def ask_outcome(self) -> None:
        def done(outcome: str | None) -> None:
            if outcome is not None:
                self.ask(lambda: self.session.end_episode(outcome))

        self.push_screen(OutcomeDialog(), done)

    def ask_note(self) -> None:
        def done(text: str | None) -> None:
            if text is not None:
                self.ask(lambda: self.session.set_notes(text))

        self.push_screen(NoteDialog(self.session.episode.notes), done)

    @work(thread=True, exclusive=True, group="world")
    def reset_world(self, seed: int) -> None:
        try:
            message = self.session.reset_world(seed)
            dock = self.session.dock_pose()
        except TakeoverError as err:
            self.call_from_thread(self.say, f"reset failed: {err}")
            return
        self.dock = dock
        self.call_from_thread(self.say, message)

    @work(thread=True, exclusive=True, group="deploy")
    def deploy(self, model: ModelRef) -> None:
        self.call_from_thread(self.say, f"loading {model.model_id}...")
        try:
            message = self.session.deploy(model)
        except TakeoverError as err:
            message = f"deploy failed: {err}"
        except Exception as err:  # a broken model file must not take the terminal down
            message = f"deploy failed: {type(err).__name__}: {err}"
        self.call_from_thread(self.say, message)


def help_text(config: Config) -> Text:
    t = Text()
    t.append("Keys\n", style="bold underline")
    rows = [
        ("space", "E-STOP (every screen, every dialog)"),
        ("m / p / t / x", "manual · auto (policy) · takeover · stop (drive screen)"),
        ("a", "acknowledge a latched e-stop or link loss (lands in IDLE)"),
        ("h", "hand back: the robot asked for help and may drive on (no correction); "
              "to correct, take over (a stick, or t)"),
        ("arrows, q / e", "drive while held (arcs forward-left / right); release stops within "
                          f"{config.keyboard.repeat_hold_ms:.0f} ms"),
        ("enter (held)", "deadman for AUTO from the keyboard (hold-to-run)"),
        ("r", "record an episode / end it (asks the outcome)"),
        ("s / f / b", "end as success / failure / abort, or relabel the last episode"),
        ("o", "note for the episode"),
        ("n", "new start pose, robot stopped: a simulator teleports; a real base (or "
              "sim://?reset=drive) drives back in RESET while the deadman is held, or resumes "
              "a reset that stopped"),
        ("1 / 2 / 3", "drive · episodes · rounds"),
        ("ctrl+q", "quit (stops the robot, saves an open episode as aborted)"),
    ]
    for k, v in rows:
        t.append(f"  {k:<15}", style="bold cyan")
        t.append(v + "\n")
    t.append("\nGamepad (SDL names; PlayStation: a=cross b=circle x=square y=triangle)\n",
             style="bold underline")
    for k, v in button_help(config.gamepad):
        t.append(f"  {k:<15}", style="bold cyan")
        t.append(v + "\n")
    t.append("\nescape closes this help", style="dim")
    return t


def make_app(config: Config, link: RobotLink | str | RemoteSession,
             policy: PolicyDriver | None = None,
             workspace: Path | None = None, *, model: ModelRef | None = None,
             gamepad: GamepadInput | None = None, use_gamepad: bool | None = None,
             policy_loader: PolicyLoader | None = None, train_command: list[str] | None = None,
             connect: bool = True, graphics: TerminalGraphics | None = None) -> TakeoverApp:
    """Build the app and its session.

    `link` a robot URL: the control core runs in a child process (`RemoteSession`; what
    `takeover run` does), which opens the link, and loads `model` with `policy_loader` (a
    module-level function, or None for the ONNX runtime). Call it on the main thread (the
    child is told to die with the thread that starts it).

    `link` a RemoteSession: that core, already started (`takeover run` starts it before it
    imports Textual, so that both start up at once).

    `link` a RobotLink: the core runs in this process (`OperatorSession`), on a link that
    `connect` connects in the background; `policy`: a loaded driver for AUTO, or None.

    `graphics`: what `camera.probe_terminal_graphics()` found before the app started (None: not
    asked; `tui.camera = auto` then draws half-block cells).
    """
    if isinstance(link, RemoteSession):
        return TakeoverApp(link, graphics=graphics)
    if isinstance(link, str):
        if policy is not None or gamepad is not None:
            raise ValueError("a loaded policy or gamepad cannot cross into the core's process: "
                             "pass model (and policy_loader), use_gamepad")
        remote = RemoteSession(CoreSpec(config, link, workspace, model, use_gamepad, policy_loader),
                               train_command=train_command)
        return TakeoverApp(remote, graphics=graphics)
    session = OperatorSession(config, link, policy, workspace, gamepad=gamepad,
                              use_gamepad=use_gamepad, policy_loader=policy_loader, model=model,
                              train_command=train_command, pace_gc=True)
    return TakeoverApp(session, connect=connect, graphics=graphics)


__all__ = ["OperatorEvent", "TakeoverApp", "make_app"]
