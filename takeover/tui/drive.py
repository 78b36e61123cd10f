"""The drive screen: camera, mini-map, mode banner, telemetry, episode and round status, and
the docking lifecycle (attempts, the detected outcome and its evidence, the reset)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

from takeover.config import DockingConfig
from takeover.control.arbiter import OperatorEvent
from takeover.control.docking_outcome import SIGNAL_CURRENT, DockingOutcomeDetector
from takeover.inputs.keyboard import DRIVE_KEYS, HOLD_KEY
from takeover.session.docking_lifecycle import RESET_DONE, RESET_IDLE, RESET_STOPPED, DockingStatus
from takeover.session.operator import SessionSnapshot
from takeover.tui.camera import CameraView
from takeover.tui.widgets import MiniMap, ModeBanner, bar, field_path, rollout
from takeover.types import POWER_SUPPLY_STATUS_NAMES, Command, Mode, Observation, Pose2D

if TYPE_CHECKING:
    from takeover.tui.app import TakeoverApp


def _f(value: float | None, spec: str = ".2f", unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"

IMAGE_HZ = 10.0  # camera and mini-map redraws per second (telemetry follows tui.refresh_hz)


class DriveScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("m", "mode('manual')", "Manual"),
        Binding("p", "mode('auto')", "Auto (policy)"),
        Binding("t", "mode('takeover')", "Takeover"),
        Binding("x", "mode('stop')", "Stop"),
        Binding("a", "mode('acknowledge')", "Ack e-stop"),
        # Answer a help request without correcting (OperatorEvent.HAND_BACK; from TAKEOVER it
        # hands back like p).
        Binding("h", "mode('hand_back')", "Hand back"),
        Binding("up,down,left,right", "noop", "Drive", key_display="←↑↓→"),
        Binding("enter", "noop", "Hold: run AUTO", key_display="⏎", show=False),
        Binding("r", "record", "Record/End"),
        Binding("s", "label('success')", "Success"),
        Binding("f", "label('failure')", "Failure"),
        Binding("b", "label('aborted')", "Abort"),
        Binding("o", "note", "Note"),
        # A teleporting simulator jumps to a new start pose; any other robot drives there.
        Binding("n", "new_world", "New start / reset"),
    ]

    def __init__(self) -> None:
        self.ready = False  # children composed: telemetry may be shown
        super().__init__(id="drive")
        self._seed = int(time.time()) % 100_000
        self._last_record_step = -1
        self._last_image_t = 0.0
        self._asking = False  # the robot asked for help on the last record shown
        self.help_alerts = 0  # help requests announced (bell and banner) since the screen opened
        # The attempt whose detected outcome the message line announced last; None: take the
        # next snapshot's silently (a fresh screen, another robot focused).
        self._outcome_said: int | None = None

    @property
    def tapp(self) -> TakeoverApp:
        from takeover.tui.app import TakeoverApp

        assert isinstance(self.app, TakeoverApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield ModeBanner(id="banner")
        with Horizontal(id="views"):
            with Vertical(id="camera-box", classes="panel") as v:
                v.border_title = f"camera ({self.tapp.camera.label})"
                yield CameraView(id="camera", renderer=self.tapp.camera.renderer)
            with Vertical(id="map-box", classes="panel") as v:
                v.border_title = "map (5 m)"
                yield MiniMap(id="minimap")
            yield Static(id="telemetry", classes="panel")
        with Horizontal(id="status"):
            yield Static(id="episode", classes="panel")
            yield Static(id="system", classes="panel")
            yield Static(id="round", classes="panel")
        yield Static(id="message")
        yield Footer()

    def on_mount(self) -> None:
        self.tapp.drive_screen = self
        self.ready = True
        self.query_one("#telemetry", Static).border_title = "telemetry"
        self.query_one("#episode", Static).border_title = "episode"
        self.query_one("#system", Static).border_title = "link · loop · inputs"
        self.query_one("#round", Static).border_title = "round"
        self.query_one(ModeBanner).show(None, "connecting to the robot...")

    # --- keys ---------------------------------------------------------------------------

    def on_key(self, event: events.Key) -> None:
        if event.key in DRIVE_KEYS or event.key == HOLD_KEY:
            # Stamped here: the hold is judged from when the press arrived, not from when the
            # control core (another process) received it.
            self.tapp.session.press_key(event.key, time.monotonic_ns())
            event.stop()
            event.prevent_default()

    def action_noop(self) -> None:
        """Driving keys are handled in on_key; the binding only puts them in the footer."""

    def action_mode(self, name: str) -> None:
        self.tapp.session.post(OperatorEvent(name))

    def action_record(self) -> None:
        session = self.tapp.session
        if session.episode.recording:
            self.tapp.ask_outcome()
        else:
            self.tapp.ask(session.begin_episode)

    def action_label(self, outcome: str) -> None:
        self.tapp.ask(lambda: self.tapp.session.label(outcome))

    def action_note(self) -> None:
        self.tapp.ask_note()

    def action_new_world(self) -> None:
        self._seed += 1
        self.tapp.reset_world(self._seed)

    # --- telemetry -----------------------------------------------------------------------

    def show(self, snap: SessionSnapshot) -> None:
        app = self.tapp
        rec = snap.record
        gp = snap.gamepad
        alarm = ""
        if gp is not None and gp.lost:
            alarm = "GAMEPAD LOST: robot stopped. Plug it in (or use the keyboard) and engage again"
        if app.connect_error:
            alarm = app.connect_error
        if app.core_lost:
            alarm = app.core_lost
        idle = "m: drive by hand · p: run the policy"
        if snap.docking.auto_reset_paused:
            idle = f"{snap.docking.paused_line()} · {idle}"
        elif snap.docking.drives_resets:
            idle += " · n: reset (drive to a start pose)"
        hint = {Mode.IDLE: idle,
                Mode.ESTOP: "a: acknowledge (robot stays stopped)",
                Mode.LINK_LOST: "a: acknowledge once the link is back",
                Mode.MANUAL: "hold the deadman (LB) or an arrow key to move",
                Mode.AUTO: "hold the deadman (LB or Enter) to let it drive · move a stick to take over",
                Mode.TAKEOVER: "you drive · p: hand back to the policy",
                Mode.RESET: "hold the deadman (LB or Enter) while it drives back · "
                            "release it, a stick or x stops the reset (n resumes it)",
                }.get(snap.mode, "")
        mode = snap.mode if rec is not None or not app.connect_error else Mode.LINK_LOST
        field = rec.field if rec is not None and app.connected else None
        help_status = rec.help if rec is not None and app.connected else None
        asking = help_status is not None and help_status.requested
        if asking and not self._asking:
            # A new request: the operator may be looking away (that is the point of robot-gated
            # supervision), so the terminal rings; the pad rumbles in the core.
            self.help_alerts += 1
            app.bell()
        self._asking = asking
        if asking:
            hint = "move a stick (or t) to take over and correct · h: hand back, let it drive on"
        self.query_one(ModeBanner).show(mode if app.connected else None, snap.reason, hint, alarm,
                                        field, help_status, robot=app.robot_name)
        self._announce_outcome(snap.docking)
        if rec is None or rec.step == self._last_record_step:
            return
        self._last_record_step = rec.step
        obs = rec.observation
        self._telemetry(snap)
        self._episode(snap)
        self._system(snap)
        # Pictures at most IMAGE_HZ: every redraw makes thousands of Textual Strip objects that
        # form reference cycles (their own caches), and the garbage collector that frees them
        # holds the interpreter lock the control loop needs (docs/tui.md, "Timing").
        now = time.monotonic()
        if now - self._last_image_t < 1.0 / IMAGE_HZ:
            return
        self._last_image_t = now
        self.query_one(CameraView).show(obs.image if obs is not None else None)
        plan: list[tuple[float, float]] = []
        free: list[tuple[float, float]] = []
        pose = None
        if obs is not None:
            pose = Pose2D(obs.odom.x_m, obs.odom.y_m, obs.odom.yaw_rad)
            plan = rollout(pose, self._plan_commands(snap.plan, rec.policy_action),
                           1.0 / app.config.loop.rate_hz)
            if rec.field is not None:
                free = field_path(pose, rec.command, rec.field.clearance_m)
        fcfg = app.config.safety.field
        self.query_one(MiniMap).show(pose, snap.trail, obs.scan_m if obs is not None else None,
                                     plan, app.dock, rec.field,
                                     fcfg.footprint_radius_m + fcfg.protective_m, free)

    def _announce_outcome(self, d: DockingStatus) -> None:
        """A new detected outcome on the message line: the session decided it on its own (no
        key was pressed, so no reply of a request says it), and so may auto-reset have paused."""
        if self._outcome_said is None or not d.outcome:
            self._outcome_said = d.outcome_attempt
            return
        if d.outcome_attempt != self._outcome_said:
            self._outcome_said = d.outcome_attempt
            self.say(f"{d.outcome_line()} · robot stopped"
                     + (f" · {d.paused_line()}" if d.auto_reset_paused else ""))

    def _plan_commands(self, planned: list[Command], proposal: Command | None) -> list[Command]:
        """The policy's queued chunk where the runtime exposes it (`planned_actions()`), else
        its current proposal held for half a second."""
        if planned:
            return planned
        if proposal is None or not proposal.is_finite:
            return []
        return [proposal] * max(1, round(self.tapp.config.loop.rate_hz / 2))

    def _telemetry(self, snap: SessionSnapshot) -> None:
        rec = snap.record
        assert rec is not None
        limits = self.tapp.config.safety.manual
        obs = rec.observation
        t = Text()
        t.append("        commanded   measured\n", style="dim")
        mv = obs.odom.v_mps if obs else float("nan")
        mw = obs.odom.w_radps if obs else float("nan")
        t.append(f"v m/s   {rec.command.v_mps:+6.2f}     {mv:+6.2f}\n")
        t.append(f"  {bar(rec.command.v_mps, limits.max_v_mps)} cmd\n", style="cyan")
        t.append(f"  {bar(mv, limits.max_v_mps)} odom\n", style="green")
        t.append(f"w rad/s {rec.command.w_radps:+6.2f}     {mw:+6.2f}\n")
        t.append(f"  {bar(rec.command.w_radps, limits.max_w_radps)} cmd\n", style="cyan")
        t.append(f"  {bar(mw, limits.max_w_radps)} odom\n", style="green")
        pa = rec.policy_action
        t.append("policy  " + (f"{pa.v_mps:+.2f} m/s {pa.w_radps:+.2f} rad/s" if pa else "-") + "\n")
        t.append(f"source  {rec.source.value}\n")
        if obs is not None:
            charge_lines(t, obs, self.tapp.config.docking, snap.docking.confirming)
        self.query_one("#telemetry", Static).update(t)

    def _episode(self, snap: SessionSnapshot) -> None:
        ep = snap.episode
        t = Text()
        if ep.recording:
            t.append("● REC ", style="bold red")
            t.append(f"{ep.key or 'starting...'}\n")
            dur = time.monotonic() - ep.started_mono
            t.append(f"steps {ep.steps}  ({dur:.1f} s)\n")
            t.append(f"human {ep.human_steps}  interventions {ep.interventions}\n")
            if ep.notes:
                t.append(f"note: {ep.notes}\n", style="italic")
            t.append("r: end · s/f/b: end as success/failure/abort", style="dim")
        else:
            t.append("not recording", style="dim")
            t.append("  (r: record)\n" if snap.recording_enabled else "  (no --workspace)\n")
            if ep.last_saved is not None:
                t.append(f"last: {ep.last_saved.parent.name}/{ep.last_saved.name}\n")
                t.append(f"outcome {ep.last_outcome}  (s/f/b: relabel)\n")
        if snap.writer is not None and snap.writer.dropped_steps:
            t.append(f"recorder dropped {snap.writer.dropped_steps} steps\n", style="bold red")
        for alert in snap.alerts[-2:]:
            t.append(alert + "\n", style="yellow")
        self.query_one("#episode", Static).update(t)

    def _system(self, snap: SessionSnapshot) -> None:
        app = self.tapp
        h = snap.health
        t = Text()
        t.append("link    ")
        t.append("up" if h.connected else "DOWN", style="green" if h.connected else "bold red")
        t.append(f"  rx {_f(h.last_rx_age_ms, '.0f', ' ms')} ago  frames {h.frames_ok}")
        if h.rtt_ms is not None:
            t.append(f"  rtt {h.rtt_ms:.1f} ms")
        t.append("\n")
        timing = app.timing
        if timing is not None:
            t.append(f"loop    {timing.rate_hz:5.1f} Hz  late p99 {_f(timing.late_ms_p99, '.2f', ' ms')}"
                     f"  max {_f(timing.late_ms_max, '.1f', ' ms')}  overruns {timing.overruns}\n")
        rec = snap.record
        lat = rec.policy_latency_ns / 1e6 if rec is not None and snap.policy_loaded else None
        t.append(f"policy  {snap.model.model_id if snap.model else 'none'}"
                 f"  latency {_f(lat, '.2f', ' ms')}\n")
        status = snap.gamepad
        if status is None:
            t.append("gamepad off\n", style="dim")
        elif status.connected:
            t.append(f"gamepad {status.name[:22]}")
            if status.deadman:
                t.append("  DEADMAN", style="bold green")
            if status.turbo:
                t.append(" TURBO", style="bold yellow")
            t.append("\n")
        elif status.lost:
            t.append("gamepad LOST\n", style="bold red")
        else:
            t.append(f"gamepad none ({status.error or 'keyboard only'})\n", style="dim")
        t.append(f"input   {snap.input_device or '-'}")
        demo = app.config.demonstration
        if demo.active:  # the operator must know the robot is being pushed while they demonstrate
            t.append(f"  DART pushes: sd {demo.noise_w_radps:.2f} rad/s, {demo.noise_v_mps:.2f} m/s",
                     style="bold yellow")
        t.append("\n")
        w = snap.writer
        if w is not None:
            t.append(f"record  {w.state}  queue {w.queue_depth}/{w.queue_capacity}"
                     f"  saved {w.episodes_saved}\n")
        docking_lines(t, snap.docking)
        self.query_one("#system", Static).update(t)

    def robot_changed(self) -> None:
        """Another robot of the fleet was focused: what was shown of the last one goes (its
        record step, its help request), so the next snapshot is drawn in full."""
        self._last_record_step = -1
        self._last_image_t = 0.0
        self._asking = False
        self._outcome_said = None
        if self.ready:
            self.query_one(ModeBanner).show(None, f"{self.tapp.robot_name}: waiting for its "
                                            "telemetry...", robot=self.tapp.robot_name)

    def show_round(self, text: Text) -> None:
        self.query_one("#round", Static).update(text)

    def say(self, message: str) -> None:
        self.query_one("#message", Static).update(message)


OUTCOME_STYLE = {"success": "bold green", "failure": "bold red", "aborted": "yellow"}


def charge_lines(t: Text, obs: Observation, docking: DockingConfig, confirming: bool) -> None:
    """The battery as the docking outcome detector reads it: the current with charging positive
    ([docking] current_sign), whether it charges now and by which signal, a contact being
    confirmed; the base's own docked flag only where one is used ([docking] use_docked_topic):
    a real base has none, and "docked" is what the detector decides from the charge."""
    detector = DockingOutcomeDetector(docking)  # for its signals only: it decides nothing here
    current = detector.normalised_current_a(obs)
    t.append(f"battery {obs.battery_frac * 100:5.1f} %")
    if current is not None:
        t.append(f"  {current:+.2f} A")
    t.append("\ncharge  ")
    signal = detector.charging_signal(obs)
    if signal is not None:
        t.append("CHARGING", style="bold green")
        t.append(" (current)" if signal == SIGNAL_CURRENT else " (status)")
    elif current is None and obs.power_supply_status is None:
        t.append("not reported", style="dim")  # success cannot be detected on this base
    else:
        status = obs.power_supply_status
        t.append("no")
        if status is not None:
            t.append(f" ({POWER_SUPPLY_STATUS_NAMES.get(status, str(status))})")
    if confirming:
        t.append("  confirming", style="bold yellow")
    if obs.bumper:
        t.append("  BUMPER", style="bold red")
    if obs.estop:
        t.append("  BASE E-STOP", style="bold red")
    if docking.use_docked_topic:
        t.append("\ndocked  ")
        t.append("YES" if obs.docked else "no", style="bold green" if obs.docked else "")
        t.append(" (the base's flag)", style="dim")


def docking_lines(t: Text, d: DockingStatus) -> None:
    """Two lines: the attempt counter with the last detected outcome and its evidence, then the
    reset (its phase and progress) and whether auto-reset is on."""
    t.append("dock    ")
    if d.attempt == 0:
        t.append("no attempt yet (r records one)", style="dim")
    else:
        t.append(f"{d.successes}/{d.attempt} docked  ")
        if d.attempting:
            t.append(f"attempt {d.attempt} ")
            t.append("confirming contact..." if d.confirming else "running",
                     style="bold yellow" if d.confirming else "")
        elif d.outcome:
            t.append(d.outcome_line(), style=OUTCOME_STYLE.get(d.outcome, ""))
    t.append("\n")
    t.append("reset   ")
    if not d.drives_resets:
        t.append("teleports (n: new start pose)", style="dim")
    elif d.reset == RESET_IDLE:
        t.append("idle (n: reset)", style="dim")
    elif d.reset == RESET_STOPPED:
        again = "n: resume" if d.reset_resumable else "n: a new reset"
        t.append(f"stopped {d.reset_progress * 100:3.0f}%  {d.reset_reason}  ({again})",
                 style="bold yellow")
    else:
        cells = 10
        filled = round(max(0.0, min(1.0, d.reset_progress)) * cells)
        t.append(f"{d.reset:<6} ")
        t.append("█" * filled + "·" * (cells - filled),
                 style="green" if d.reset == RESET_DONE else "cyan")
        t.append(f" {d.reset_progress * 100:3.0f}%")
        if d.reset_kind:
            t.append(f" to {d.reset_kind}")
    if d.auto_reset_paused:
        t.append(f"  auto-reset PAUSED ({d.failed_resets} failed in a row)", style="bold red")
    elif d.drives_resets:
        t.append("  auto-reset " + ("on" if d.auto_reset else "off"),
                 style="bold" if d.auto_reset else "dim")
