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

Several robots (`takeover run` with [[robots]] or --robot repeated): the app is given a `Fleet`
(session/fleet.py), a control core per robot, and opens on the fleet screen (tui/fleet.py). The
drive, episodes and rounds screens show the focused robot; the gamepad and the driving keys move
it alone (the cores enforce it). Space stops every robot; `e` on the fleet screen stops the
selected one alone.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

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
from takeover.session.fleet import Fleet, RobotRow
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
from takeover.tui.fleet import FleetScreen, ask_line
from takeover.tui.rounds import RoundsScreen
from takeover.types import Pose2D

if TYPE_CHECKING:  # imported only where a robot is a network core (session/core_url.py)
    from takeover.session.core_net import NetworkSession


@dataclass
class RobotView:
    """The app's state of one robot's session (one, or each of a fleet's)."""

    name: str
    session: Session
    connected: bool = False
    connect_error: str = ""
    core_lost: str = ""  # the control core's process died: why (shown, never cleared)
    dock: Pose2D | None = None
    saved_seen: int = -1
    asking: bool = False  # the robot asked for help on the last refresh (fleet alerts)


class TakeoverApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "takeover"
    ENABLE_COMMAND_PALETTE = False
    MODES: ClassVar[dict[str, type]] = {  # type: ignore[assignment]
        "drive": DriveScreen, "episodes": EpisodesScreen, "rounds": RoundsScreen,
        "fleet": FleetScreen}
    DEFAULT_MODE = "drive"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "estop", "E-STOP", priority=True, key_display="space"),
        Binding("1", "switch_mode('drive')", "Drive"),
        Binding("2", "switch_mode('episodes')", "Episodes"),
        Binding("3", "switch_mode('rounds')", "Rounds"),
        Binding("0", "fleet", "Fleet"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, session: Session, *, connect: bool = True,
                 graphics: TerminalGraphics | None = None, fleet: Fleet | None = None) -> None:
        """fleet: several robots (2 or more); `session` is then its focused robot's."""
        super().__init__()
        self.fleet = fleet if fleet is not None and len(fleet.names) > 1 else None
        if self.fleet is not None:
            self.views = {n: RobotView(n, s) for n, s in self.fleet.sessions.items()}
            self.focused_robot = self.fleet.focused
        else:
            self.views = {"": RobotView("", session)}
            self.focused_robot = ""
        self.rows: list[RobotRow] = []  # the fleet's rows, ordered by need (fleet screen)
        self.help_alerts = 0  # fleet: requests of robots announced by the app (bell, banner)
        self.fleet_alert = ""  # fleet: the newest "robotN asks: why" line
        self.config = session.config
        # How camera frames are drawn, on every screen (tui.camera and what the terminal said).
        self.camera: CameraChoice = choose_camera(self.config.tui.camera, graphics)
        self.workspace = session.workspace
        self.connect_link = connect
        self.timing: LoopTiming | None = None
        self.snapshot: SessionSnapshot | None = None
        self.first_screen_s: float | None = None
        self.drive_screen: DriveScreen | None = None
        self.startup_note = ""  # shown once connected (e.g. a model that did not load)
        self.t_command: float | None = None  # perf_counter when the command started
        self._t_created = time.perf_counter()

    # --- the focused robot (the only one without a fleet) -----------------------------------

    @property
    def view(self) -> RobotView:
        return self.views[self.focused_robot]

    @property
    def session(self) -> Session:
        return self.view.session

    @property
    def connected(self) -> bool:
        return self.view.connected

    @property
    def connect_error(self) -> str:
        return self.view.connect_error

    @property
    def core_lost(self) -> str:
        return self.view.core_lost

    @property
    def dock(self) -> Pose2D | None:
        return self.view.dock

    @property
    def robot_name(self) -> str:
        """The focused robot's name with a fleet, else ""."""
        return self.focused_robot

    # --- lifecycle --------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.call_after_refresh(self._first_paint)
        self.set_interval(1.0 / self.config.tui.refresh_hz, self._refresh)
        self.set_interval(1.0, self._slow_refresh)
        if self.fleet is not None:
            self.switch_mode("fleet")  # several robots: the operator starts from the overview
            self._start_fleet(self.fleet)
        else:
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

    @work(thread=True, exclusive=True, group="connect")
    def _start_fleet(self, fleet: Fleet) -> None:
        """Every robot connects at once; each is shown as it answers."""
        def answered(name: str, result: OpenResult | None, error: str) -> None:
            self.call_from_thread(self._robot_answered, name, result, error)

        fleet.open_all(answered, connect=self.connect_link)
        self.call_from_thread(self._fleet_open)

    def _robot_answered(self, name: str, result: OpenResult | None, error: str) -> None:
        view = self.views[name]
        if result is None:
            view.connect_error = f"cannot connect: {error}"
            self.say(f"{name}: {view.connect_error}")
            return
        view.connected = True
        view.dock = result.dock
        self.say(f"{name}: connected to {view.session.url}"
                 + (f" · {result.note}" if result.note else ""))

    def _fleet_open(self) -> None:
        gc.collect()
        gc.freeze()
        up = [v.name for v in self.views.values() if v.connected]
        down = [v.name for v in self.views.values() if not v.connected]
        first = "" if self.first_screen_s is None else f" · first screen {self.first_screen_s:.2f} s"
        self.say(f"{len(up)} of {len(self.views)} robots connected{first}"
                 + (f" · not connected: {', '.join(down)}" if down else "")
                 + ("" if self.workspace else " · no workspace: recording is off"))

    def _connected(self, result: OpenResult) -> None:
        view = self.view
        view.connected = True
        view.dock = result.dock
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
        self.view.connect_error = f"cannot connect: {message}"
        self.say(self.connect_error + " · ctrl+q to quit")

    def _close(self) -> None:
        if self.fleet is not None:
            self.fleet.close()
        else:
            self.session.close()

    async def action_quit(self) -> None:
        self.say("stopping the robot and saving..." if self.fleet is None
                 else "stopping every robot and saving...")
        await asyncio.to_thread(self._close)
        self.exit()

    def on_unmount(self) -> None:
        self._close()

    # --- telemetry --------------------------------------------------------------------------

    def _refresh(self) -> None:
        if self.fleet is not None:
            self._refresh_fleet(self.fleet)
        if not self.connected:
            return
        view = self.view
        if self.fleet is None and self.session.lost and not view.core_lost:
            view.core_lost = self.session.lost
            self.say(f"{view.core_lost} · the robot is not driven; its base stops by its own "
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
        if snap.writer is not None and snap.writer.episodes_saved != view.saved_seen:
            view.saved_seen = snap.writer.episodes_saved
            self._round_summary()

    def _refresh_fleet(self, fleet: Fleet) -> None:
        """Every robot's row, ordered by need; a lost core or a new help request announced."""
        rows = fleet.rows()
        self.rows = rows
        for row in rows:
            view = self.views[row.name]
            session = view.session
            if session.lost and not view.core_lost:
                view.core_lost = session.lost
                self.say(f"{row.name}: {view.core_lost} · it is not driven; its base stops by "
                         "its own watchdog · the other robots drive on")
            asking = row.help is not None
            if asking and not view.asking:
                # The focused robot's drive screen rings for it itself (drive.py).
                if not (row.name == self.focused_robot and isinstance(self.screen, DriveScreen)):
                    self.help_alerts += 1
                    self.bell()
                if not isinstance(self.screen, FleetScreen):
                    self.say(f"{ask_line(row)} · 0: fleet")
            view.asking = asking
        # The banner names the robot to serve first (rows are in C.U.R. order), its wait now.
        first = next((r for r in rows if r.help is not None), None)
        self.fleet_alert = ask_line(first) if first is not None else ""
        if not self.screen_stack:
            return
        screen = self.screen
        if isinstance(screen, FleetScreen) and screen.ready:
            try:
                screen.show(rows, self.fleet_alert)
            except NoMatches:
                return

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
        if self.fleet is not None:
            self.fleet.estop_all()  # every core first; nothing else before it
            self.say("E-STOP: every robot stopped and latched. Acknowledge each on its drive "
                     "screen (a), or on the fleet screen (a on its row)")
            return
        self.session.estop()
        if not self.core_lost:
            self.say("E-STOP: robot stopped and latched. Acknowledge on the drive screen (a)")

    def action_fleet(self) -> None:
        """0: the fleet screen (several robots), or back from it to the focused robot's drive
        screen."""
        if self.fleet is None:
            return
        self.switch_mode("drive" if isinstance(self.screen, FleetScreen) else "fleet")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "fleet":
            return self.fleet is not None  # no fleet: not in the footer, not bound
        return True

    def focus_robot(self, name: str) -> None:
        """Give `name` the operator's gamepad and driving keys and open its drive screen."""
        if self.fleet is None:
            return
        self.fleet.focus(name)
        self.focused_robot = name
        if self.drive_screen is not None:
            self.drive_screen.robot_changed()
        self.switch_mode("drive")
        self._round_summary()
        self.say(f"{name} focused: the gamepad and the keys drive it alone · 0: fleet")

    def ask(self, request: Callable[[], str]) -> None:
        """Say the answer of a session request, or why it failed (one line)."""
        try:
            self.say(request())
        except TakeoverError as err:
            self.say(str(err))

    def action_help(self) -> None:
        self.push_screen(HelpScreen(help_text(self.config, fleet=self.fleet is not None)))

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
        view = self.view  # the robot asked for, whatever is focused when it answers
        try:
            message = view.session.reset_world(seed)
            dock = view.session.dock_pose()
        except TakeoverError as err:
            self.call_from_thread(self.say, f"reset failed: {err}")
            return
        view.dock = dock
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


def help_text(config: Config, fleet: bool = False) -> Text:
    """The keys and the pad; `fleet`: with the keys of several robots."""
    t = Text()
    t.append("Keys\n", style="bold underline")
    fleet_rows = [
        ("space", "E-STOP of EVERY robot (each latched; acknowledge each: a)"),
        ("0", "fleet screen: a row per robot, those asking for help first · back to drive"),
        ("enter (fleet)", "focus the selected robot: the gamepad and keys drive it alone"),
        ("e (fleet)", "E-STOP the selected robot alone; the others drive on"),
        ("a (fleet)", "acknowledge the selected robot's e-stop (it stays stopped, IDLE)"),
    ] if fleet else []
    rows = [
        *fleet_rows,
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


def make_app(config: Config, link: RobotLink | str | RemoteSession | NetworkSession | Fleet,
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

    `link` a NetworkSession: a core on the robot's own computer (`takeover core serve`,
    docs/remote_cores.md), reached at a core+wss:// URL.

    `link` a RemoteSession: that core, already started (`takeover run` starts it before it
    imports Textual, so that both start up at once).

    `link` a Fleet: several robots, a core each, already started (`takeover run` with
    [[robots]] or --robot repeated); the app opens on the fleet screen.

    `link` a RobotLink: the core runs in this process (`OperatorSession`), on a link that
    `connect` connects in the background; `policy`: a loaded driver for AUTO, or None.

    `graphics`: what `camera.probe_terminal_graphics()` found before the app started (None: not
    asked; `tui.camera = auto` then draws half-block cells).
    """
    if isinstance(link, Fleet):
        return TakeoverApp(link.focused_session, graphics=graphics, fleet=link)
    # A NetworkSession exists only once its module is loaded: no need to load it to check.
    core_net = sys.modules.get("takeover.session.core_net")
    if isinstance(link, RemoteSession) or (
            core_net is not None and isinstance(link, core_net.NetworkSession)):
        return TakeoverApp(link, graphics=graphics)
    if isinstance(link, str):
        if policy is not None or gamepad is not None:
            raise ValueError("a loaded policy or gamepad cannot cross into the core's process: "
                             "pass model (and policy_loader), use_gamepad")
        remote = RemoteSession(CoreSpec(config, link, workspace, model, use_gamepad, policy_loader),
                               train_command=train_command)
        return TakeoverApp(remote, graphics=graphics)
    robot = cast("RobotLink", link)  # every session kind has returned above
    session = OperatorSession(config, robot, policy, workspace, gamepad=gamepad,
                              use_gamepad=use_gamepad, policy_loader=policy_loader, model=model,
                              train_command=train_command, pace_gc=True)
    return TakeoverApp(session, connect=connect, graphics=graphics)


__all__ = ["OperatorEvent", "TakeoverApp", "make_app"]
