"""The operator's terminal: a Textual app over an `OperatorSession`.

    app = make_app(config, link, policy, workspace)   # the one factory, for the CLI and tests
    app.run()

The app never runs the control loop: the loop has its own thread inside the session. A timer
(`tui.refresh_hz`, default 20 Hz) polls the session for a snapshot and hands it to the screen on
show; blocking work (connecting, resetting the simulator, loading a model, listing episodes)
runs in thread workers that only call back into the UI.

Space is the e-stop on every screen and in every dialog (a priority binding).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches

from takeover.config import Config
from takeover.dagger.metrics import round_metrics
from takeover.errors import TakeoverError
from takeover.hw.base import RobotLink
from takeover.recorder.store import EpisodeStore
from takeover.teleop.arbiter import OperatorEvent
from takeover.teleop.gamepad import GamepadInput, button_help
from takeover.teleop.loop import PolicyDriver
from takeover.teleop.session import (
    ModelRef,
    OperatorSession,
    PolicyLoader,
    RecentTiming,
    SessionSnapshot,
)
from takeover.teleop.tui.dialogs import HelpScreen, NoteDialog, OutcomeDialog
from takeover.teleop.tui.drive import DriveScreen
from takeover.teleop.tui.episodes import EpisodesScreen
from takeover.teleop.tui.rounds import RoundsScreen
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

    def __init__(self, session: OperatorSession, *, connect: bool = True) -> None:
        super().__init__()
        self.session = session
        self.config = session.config
        self.workspace = session.workspace
        self.connect_link = connect
        self.connected = False
        self.connect_error = ""
        self.dock: Pose2D | None = None
        self.timing: RecentTiming | None = None
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
        link = self.session.link
        try:
            if self.connect_link:
                link.connect()
            self.session.start()
            dock = link.dock_pose() if link.supports_sim_control else None
        except TakeoverError as err:
            self.call_from_thread(self._connect_failed, str(err))
            return
        self.call_from_thread(self._connected, dock)

    def _connected(self, dock: Pose2D | None) -> None:
        self.connected = True
        self.dock = dock
        if self.session.gc_pacer is not None:
            # Everything built so far (Textual, the screens) is long-lived: never scan it again.
            self.session.gc_pacer.freeze()
        first = "" if self.first_screen_s is None else f" · first screen {self.first_screen_s:.2f} s"
        self.say(f"connected to {self.session.link.url}{first}"
                 + ("" if self.workspace else " · no workspace: recording is off")
                 + (f" · {self.startup_note}" if self.startup_note else ""))

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
        self.say("E-STOP: robot stopped and latched. Acknowledge on the drive screen (a)")

    def action_help(self) -> None:
        self.push_screen(HelpScreen(help_text(self.config)))

    def ask_outcome(self) -> None:
        def done(outcome: str | None) -> None:
            if outcome is not None:
                self.say(self.session.end_episode(outcome))

        self.push_screen(OutcomeDialog(), done)

    def ask_note(self) -> None:
        def done(text: str | None) -> None:
            if text is not None:
                self.say(self.session.set_notes(text))

        self.push_screen(NoteDialog(self.session.episode.notes), done)

    @work(thread=True, exclusive=True, group="world")
    def reset_world(self, seed: int) -> None:
        try:
            message = self.session.reset_world(seed)
            link = self.session.link
            dock = link.dock_pose() if link.supports_sim_control else None
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
        ("arrows, q / e", "drive while held (arcs forward-left / right); release stops within "
                          f"{config.keyboard.repeat_hold_ms:.0f} ms"),
        ("enter (held)", "deadman for AUTO from the keyboard (hold-to-run)"),
        ("r", "record an episode / end it (asks the outcome)"),
        ("s / f / b", "end as success / failure / abort, or relabel the last episode"),
        ("o", "note for the episode"),
        ("n", "new start pose (simulator, robot stopped)"),
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


def make_app(config: Config, link: RobotLink, policy: PolicyDriver | None = None,
             workspace: Path | None = None, *, model: ModelRef | None = None,
             gamepad: GamepadInput | None = None, use_gamepad: bool | None = None,
             policy_loader: PolicyLoader | None = None, train_command: list[str] | None = None,
             connect: bool = True) -> TakeoverApp:
    """Build the app (and its session) for a link that `connect` will connect in the
    background. `policy`: a loaded policy driver for AUTO, or None."""
    session = OperatorSession(config, link, policy, workspace, gamepad=gamepad,
                              use_gamepad=use_gamepad, policy_loader=policy_loader, model=model,
                              train_command=train_command, pace_gc=True)
    return TakeoverApp(session, connect=connect)


__all__ = ["OperatorEvent", "TakeoverApp", "make_app"]
