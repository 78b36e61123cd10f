"""The operator's session: everything `takeover run` does, without any UI.

`OperatorSession` owns the control loop (its own thread), the recorder (its own thread), the
inputs (gamepad thread, keyboard fed by the UI) and the episode flow. The TUI is a view over
`Session`, the part of it a UI uses: `OperatorSession` in the UI's process (tests, tools), or
`takeover.session.core_process.RemoteSession`, which runs an `OperatorSession` in a child process
of its own (`takeover run`), so the UI's garbage collector never stalls the control loop.

Episodes land in the workspace's current round: `rounds/r000` while no model is deployed, else
the round of the deployed model (`round_for_model`). An episode ends with an outcome chosen by
the operator, or by itself when the docking outcome detector decides from what the base reports
(charging, a contact, a stall, a timeout: session/docking_lifecycle.py); the robot is then
stopped, and the detected outcome and its evidence are stored in the episode. Between attempts a
base that does not teleport drives back to a start pose in RESET ("n", or by itself with
`[docking] auto_reset`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from takeover.config import Config
from takeover.control.arbiter import OperatorEvent
from takeover.control.docking_outcome import DetectedOutcome
from takeover.control.gc_pacing import GcPacer
from takeover.control.loop import LoopTiming, PolicyDriver, SinkQueue
from takeover.errors import TakeoverError
from takeover.hw.base import LinkHealth, RobotLink
from takeover.inputs.combined import CombinedOperator
from takeover.inputs.gamepad import GamepadInput, GamepadStatus
from takeover.inputs.keyboard import KeyboardInput
from takeover.recorder.edit import annotate_episode
from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.writer import EpisodeWriter, RecorderAlert, WriterStats
from takeover.session.docking_lifecycle import DockingLifecycle, DockingStatus
from takeover.session.stack import build_control_loop, load_robot_policy, start_recorder
from takeover.session.training import TrainingJob, default_train_command
from takeover.types import Command, CommandSource, Mode, Pose2D, StepRecord
from takeover.workspace.deploy import promote
from takeover.workspace.layout import round_for_model as workspace_round_for_model
from takeover.workspace.registry import ONNX_NAME, deployed_onnx, model_path

# (model file, the session's config) -> a policy for the loop; `takeover.policy.runtime.load_policy`.
PolicyLoader = Callable[[Path, Config], PolicyDriver]

TRAIL_POINTS = 600  # odometry trail kept for the mini-map (30 s at 20 Hz)


@dataclass(frozen=True)
class ModelRef:
    model_id: str  # "r001"
    onnx: Path

    @property
    def number(self) -> int | None:
        text = self.model_id.lstrip("r")
        return int(text) if text.isdigit() else None


def current_model(workspace: Path | None) -> ModelRef | None:
    """The deployed model of a workspace (`takeover.workspace.registry`), or None."""
    deployed = None if workspace is None else deployed_onnx(workspace)
    return None if deployed is None else ModelRef(*deployed)


def round_for_model(model: ModelRef | None) -> int:
    """Round directory for episodes run with `model` (see takeover.workspace.layout)."""
    return workspace_round_for_model(None if model is None else model.model_id)


@dataclass
class EpisodeState:
    recording: bool = False
    key: str = ""  # "r000/ep_0003" once the file exists
    round: int = 0
    started_mono: float = 0.0
    steps: int = 0
    human_steps: int = 0
    interventions: int = 0
    notes: str = ""
    last_saved: Path | None = None
    last_outcome: str = ""
    message: str = ""


# The loop figures the operator sees: the last minute at 20 Hz.
RECENT_TIMING_TICKS = 1200


@dataclass(frozen=True)
class SessionSnapshot:
    """Everything the drive screen shows, taken at once. Picklable: the process-separated core
    sends one to the UI at `tui.refresh_hz` (one 96x96 frame and scan, a few kB of the rest)."""

    record: StepRecord | None
    mode: Mode
    reason: str
    health: LinkHealth
    episode: EpisodeState
    writer: WriterStats | None
    model: ModelRef | None
    round: int
    trail: list[tuple[float, float]] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    gamepad: GamepadStatus | None = None  # None: gamepad off
    input_device: str = ""  # "gamepad" | "keyboard" | "": the device the operator used last
    policy_loaded: bool = False
    plan: list[Command] = field(default_factory=list)  # the policy's queued chunk, if exposed
    recording_enabled: bool = False  # a workspace (and so a recorder) is open
    keyboard_active: bool = False  # a driving or hold key is held
    # Attempts, the last detected outcome and its evidence, the reset (docking_lifecycle.py).
    docking: DockingStatus = field(default_factory=DockingStatus)


@dataclass(frozen=True)
class OpenResult:
    """What `Session.open` found: the dock (simulators only) and a note for the operator (a
    model that did not load, ...)."""

    dock: Pose2D | None
    note: str = ""


class Session(Protocol):
    """What a UI uses of an operator session (`OperatorSession`, or `RemoteSession` over a child
    process). Methods answering `str` return one line for the operator."""

    config: Config
    workspace: Path | None
    training: TrainingJob | None

    @property
    def url(self) -> str: ...
    @property
    def model(self) -> ModelRef | None: ...
    @property
    def round(self) -> int: ...
    @property
    def episode(self) -> EpisodeState: ...
    @property
    def lost(self) -> str:
        """Why the session can no longer drive the robot (its process died), or ""."""
        ...

    def open(self, connect: bool = True) -> OpenResult:
        """Connect the link (unless the caller did), start everything (blocks: a worker)."""
        ...

    def close(self) -> None: ...
    def poll(self) -> SessionSnapshot: ...
    def recent_timing(self) -> LoopTiming | None: ...
    def post(self, event: OperatorEvent) -> None: ...
    def estop(self) -> None: ...
    def press_key(self, key: str, t_ns: int | None = None) -> bool: ...
    def begin_episode(self) -> str: ...
    def end_episode(self, outcome: str, reason: str = "operator") -> str: ...
    def label(self, outcome: str) -> str: ...
    def set_notes(self, notes: str) -> str: ...
    def wait_saved(self, timeout_s: float = 10.0) -> Path | None: ...
    def reset_world(self, seed: int) -> str: ...
    def dock_pose(self) -> Pose2D | None: ...
    def deploy(self, model: ModelRef) -> str: ...
    def start_training(self) -> str: ...


def start_training_job(workspace: Path | None, command: list[str] | None,
                       job: TrainingJob | None) -> tuple[TrainingJob | None, str]:
    """Start the trainer unless one runs; (the job now current, a line for the operator)."""
    if workspace is None:
        return job, "no workspace: training needs --workspace DIR"
    if job is not None and not job.state().finished:
        return job, "training is already running"
    job = TrainingJob(command or default_train_command(workspace), cwd=workspace)
    job.start()
    return job, "training started in the background"


def _operator_pad(config: Config, link: RobotLink, want_pad: bool) -> GamepadInput | None:
    """The operator's pad: the robot's own (its joy node's sensor_msgs/Joy, where a ros2://
    URL names a `joy` topic), else a pad on this computer (SDL) when [gamepad] enables it."""
    from takeover.hw.ros2.link import Ros2Link  # no rclpy until a ROS 2 link connects

    if isinstance(link, Ros2Link) and link.config.joy_topic:
        from takeover.inputs.joy import JoyInput

        c = link.config
        return JoyInput(config.gamepad, c.joy_topic, c.namespace, c.domain_id)
    return GamepadInput(config.gamepad) if want_pad else None


class OperatorSession:
    """Loop + recorder + inputs + episode flow. Methods are for the UI's thread unless noted."""

    def __init__(self, config: Config, link: RobotLink, policy: PolicyDriver | None = None,
                 workspace: Path | None = None, *, gamepad: GamepadInput | None = None,
                 use_gamepad: bool | None = None, policy_loader: PolicyLoader | None = None,
                 model: ModelRef | None = None, train_command: list[str] | None = None,
                 close_link: bool = True, pace_gc: bool = False, robot_name: str = "") -> None:
        """pace_gc: run full garbage collections between ticks (see gc_pacing.py); for a
        process with a UI. robot_name: the robot's name when several record into the workspace
        (its episode files carry it), "" for one robot."""
        self.config = config
        self.robot_name = robot_name
        self.link = link
        self.workspace = workspace
        self.close_link = close_link
        self.policy_loader = policy_loader or load_robot_policy
        self.model = model if model is not None else current_model(workspace)
        self.train_command = train_command
        self.keyboard = KeyboardInput(config.keyboard)
        want_pad = config.gamepad.enabled if use_gamepad is None else use_gamepad
        self.gamepad = gamepad if gamepad is not None else _operator_pad(config, link, want_pad)
        if self.gamepad is not None:
            self.gamepad.on_action = self.gamepad_action
        self.operator = CombinedOperator(self.gamepad, self.keyboard)
        self.ui_queue = SinkQueue(maxsize=4096)
        self.loop = build_control_loop(config, link, self.operator, policy,
                                       noise_seed=time.monotonic_ns())
        self.loop.sinks.append(self.ui_queue)
        self.docking = DockingLifecycle(config, self.loop)
        self.gc_pacer = GcPacer() if pace_gc else None
        if self.gc_pacer is not None:
            self.loop.sinks.append(self.gc_pacer)
        self.writer: EpisodeWriter | None = None
        self.episode = EpisodeState(round=self.round)
        self.training: TrainingJob | None = None
        self._lock = threading.RLock()  # episode flow: UI thread and gamepad thread
        self._trail: deque[tuple[float, float]] = deque(maxlen=TRAIL_POINTS)
        self._alerts: deque[str] = deque(maxlen=20)
        self._start_step: int | None = None
        self._prev_mode: Mode | None = None
        self._asking = False  # the last record drained asked for help
        self._pending: list[Future[Path | None]] = []
        self._started = False

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def round(self) -> int:
        return round_for_model(self.model)

    @property
    def url(self) -> str:
        return self.link.url

    @property
    def lost(self) -> str:
        return ""  # in the UI's own process: it cannot outlive it

    def open(self, connect: bool = True) -> OpenResult:
        """Connect the link (unless `connect` is False: the caller did), start the session;
        the dock pose on a simulator. Blocks: call it from a worker thread."""
        if connect:
            self.link.connect()
        self.start()
        return OpenResult(self.dock_pose())

    def dock_pose(self) -> Pose2D | None:
        return self.link.dock_pose() if self.link.supports_sim_control else None

    def start(self) -> None:
        """Connect nothing (the caller connected the link); start recorder, gamepad, loop.
        A lockstep link (`sim://?fast=1`) is stepped by the caller instead: `loop.tick()`, then
        `poll()` (tests and tools; `takeover run` refuses one)."""
        if self._started:
            return
        self._started = True
        self.loop.refresh_dock_pose()  # the protective field's docking corridor
        if self.workspace is not None:
            self.writer = start_recorder(self.workspace, self.config.loop.rate_hz,
                                         lockstep=self.link.lockstep, on_alert=self._on_alert,
                                         robot_name=self.robot_name)
            self.loop.sinks.append(self.writer)
        if not self.link.lockstep:
            self.loop.start()
        if self.gc_pacer is not None:
            self.gc_pacer.start()
        if self.gamepad is not None:
            # SDL starts in the gamepad thread; the loop does not wait for it.
            threading.Thread(target=self.gamepad.start, name="gamepad-start", daemon=True).start()

    def close(self, reason: str = "the operator quit") -> None:
        """Stop the robot, save an open episode as aborted (`reason`), stop every thread.
        Idempotent."""
        if not self._started:
            return
        self._started = False
        if self.training is not None:
            self.training.cancel()
        with self._lock:
            if self.episode.recording:
                self.end_episode("aborted", reason=reason)
        self.loop.stop()
        if self.writer is not None:
            self.writer.stop()
        for future in self._pending:
            if not future.done():
                future.cancel()
        if self.gamepad is not None:
            self.gamepad.stop()
        if self.gc_pacer is not None:
            self.gc_pacer.stop()
        if self.close_link:
            self.link.close()

    # --- operator requests (any thread) ----------------------------------------------------

    def post(self, event: OperatorEvent) -> None:
        if event is OperatorEvent.ESTOP:
            self.keyboard.release_all()
        self.loop.post(event)

    def press_key(self, key: str, t_ns: int | None = None) -> bool:
        """A key press or auto-repeat from the terminal (`t_ns`: when it arrived, on
        `time.monotonic_ns`). True if it is a driving or hold key."""
        return self.keyboard.press(key, t_ns)

    def estop(self) -> None:
        self.post(OperatorEvent.ESTOP)

    def gamepad_action(self, action: str) -> None:
        """A gamepad button press (called on the gamepad thread)."""
        events = {"manual": OperatorEvent.MANUAL, "auto": OperatorEvent.AUTO,
                  "takeover": OperatorEvent.TAKEOVER, "estop": OperatorEvent.ESTOP,
                  "acknowledge": OperatorEvent.ACKNOWLEDGE, "stop": OperatorEvent.STOP}
        if action in events:
            self.post(events[action])
        elif action == "episode":
            with self._lock:
                if self.episode.recording:
                    self.end_episode("aborted", reason="episode button")
                else:
                    self.begin_episode()
        elif action in ("success", "failure", "abort"):
            self.label(action if action != "abort" else "aborted")

    @property
    def mode(self) -> Mode:
        rec = self.loop.latest
        return rec.mode if rec is not None else self.loop.arbiter.mode

    @property
    def stopped(self) -> bool:
        """The robot is not being driven: IDLE or latched, and the last command was zero."""
        rec = self.loop.latest
        mode = self.mode
        return mode in (Mode.IDLE, Mode.ESTOP, Mode.LINK_LOST) and (rec is None or rec.command.is_zero)

    # --- episodes -----------------------------------------------------------------------------

    def begin_episode(self) -> str:
        """Start recording an episode into the current round. Returns a message for the UI."""
        with self._lock:
            if self.writer is None:
                return self._say("no workspace: start with --workspace DIR to record episodes")
            if self.episode.recording:
                return self._say("an episode is already recording")
            meta = EpisodeMeta(
                round=self.round, rate_hz=self.config.loop.rate_hz,
                model_id=self.model.model_id if self.model else "", operator="human",
                robot_url=self.link.url, config=dataclasses.asdict(self.config),
                origin="takeover run")
            self.writer.begin_episode(meta)
            self.docking.arm()
            latest = self.loop.latest
            self._start_step = latest.step + 1 if latest is not None else 0
            self.episode = EpisodeState(recording=True, round=self.round,
                                        started_mono=time.monotonic(),
                                        last_saved=self.episode.last_saved,
                                        last_outcome=self.episode.last_outcome)
            return self._say(f"recording an episode in round r{self.round:03d}")

    def end_episode(self, outcome: str, reason: str = "operator",
                    detected: DetectedOutcome | None = None) -> str:
        """End the recording episode with an outcome (success, failure, aborted). `detected`:
        the docking outcome detector's verdict; without one, an attempt still being watched is
        concluded as ended by the operator. Both are stored beside `outcome`."""
        with self._lock:
            if self.writer is None or not self.episode.recording:
                return self._say("no episode is recording")
            if detected is None:
                detected = self.docking.disarm(f"operator: {reason}")
            future = self.writer.end_episode(
                outcome, end_reason=reason,
                detected_outcome=detected.outcome if detected is not None else "",
                outcome_evidence=detected.evidence if detected is not None else None)
            notes = self.episode.notes
            self.episode.recording = False
            self.episode.last_outcome = outcome
            self._pending.append(future)
            future.add_done_callback(lambda f: self._saved(f, notes))
            return self._say(f"episode ended: {outcome} ({reason})")

    def label(self, outcome: str) -> str:
        """End the recording episode with `outcome`, or relabel the one just saved."""
        with self._lock:
            if self.episode.recording:
                return self.end_episode(outcome)
            path = self.episode.last_saved
            if path is None or not path.exists():
                return self._say("no episode to label")
            annotate_episode(path, outcome=outcome)
            self.episode.last_outcome = outcome
            return self._say(f"{path.parent.name}/{path.stem}: relabelled {outcome}")

    def set_notes(self, notes: str) -> str:
        with self._lock:
            if self.episode.recording:
                self.episode.notes = notes
                return self._say("note kept; it is saved with the episode")
            path = self.episode.last_saved
            if path is None or not path.exists():
                return self._say("no episode to annotate")
            annotate_episode(path, notes=notes)
            return self._say(f"note saved in {path.parent.name}/{path.stem}")

    def _saved(self, future: Future[Path | None], notes: str) -> None:
        # On the writer thread.
        if future.cancelled():
            return
        path = future.result()
        with self._lock:
            self.episode.last_saved = path
            if path is None:
                self.episode.message = "episode not saved (nothing recorded, or recording failed)"
                return
            if notes:
                try:
                    annotate_episode(path, notes=notes)
                except OSError as err:
                    self.episode.message = f"saved, but the note could not be written: {err}"
                    return
            self.episode.message = f"saved {path.parent.name}/{path.name}"

    def wait_saved(self, timeout_s: float = 10.0) -> Path | None:
        """For tests and tools: wait for the last ended episode's file."""
        with self._lock:
            pending = list(self._pending)
        for f in pending:
            f.result(timeout=timeout_s)
        return self.episode.last_saved

    # --- world, policy --------------------------------------------------------------------

    def reset_world(self, seed: int) -> str:
        """A new start pose, robot stopped, no episode open ("n"). A simulator that teleports
        is reset to `seed` (blocks on its RPC: call it from a worker thread); any other robot
        drives there in RESET (undock, drive, align: session/docking_lifecycle.py), or resumes a
        reset that was stopped half way."""
        if not self.stopped:
            return self._say("stop the robot before resetting")
        with self._lock:
            if self.episode.recording:
                return self._say("end the episode before resetting")
            if not self.link.supports_sim_control:
                return self._say(self.docking.start_reset())
        self.link.reset(seed)
        self.loop.refresh_dock_pose()
        if self.loop.policy is not None:
            self.loop.policy.reset()
        self._trail.clear()
        return self._say(f"world reset (seed {seed})")

    def deploy(self, model: ModelRef) -> str:
        """Load `model` and hot-swap it into the running loop; only while the robot is stopped.
        Blocks while the model loads: call it from a worker thread."""
        if not self.stopped:
            return self._say("stop the robot before deploying a model")
        driver = self.policy_loader(model.onnx, self.config)
        if not self.stopped:  # the operator engaged while it loaded
            return self._say("the robot started moving: deploy refused, try again when stopped")
        if self.workspace is not None and self._in_registry(model):
            # The human gate: deploying here is `takeover dagger promote` (sha256 checked,
            # models/current moved atomically, the history appended), so the next retrain
            # warm-starts from the model that drives.
            try:
                promote(self.workspace, model.model_id)
            except TakeoverError as err:  # a changed file, a card without its sha256
                return self._say(f"deploy refused: {err}")
        self.loop.set_policy(driver)
        self.model = model
        with self._lock:
            if not self.episode.recording:
                self.episode.round = self.round
        return self._say(f"deployed {model.model_id}; episodes now go to round r{self.round:03d}")

    def _in_registry(self, model: ModelRef) -> bool:
        """Whether `model` is one of the workspace's registered models (models/rNNN/)."""
        if self.workspace is None:
            return False
        registered = model_path(self.workspace, model.model_id) / ONNX_NAME
        return registered.is_file() and registered.resolve() == Path(model.onnx).resolve()

    def start_training(self) -> str:
        self.training, message = start_training_job(self.workspace, self.train_command,
                                                     self.training)
        return self._say(message)

    # --- telemetry (UI thread, polled) ------------------------------------------------------

    def poll(self) -> SessionSnapshot:
        """Drain the loop's records (episode counters, trail, the docking lifecycle) and return
        what the screen shows."""
        while True:
            rec = self.ui_queue.get(timeout_s=0)
            if rec is None:
                break
            obs = rec.observation
            if obs is not None:
                self._trail.append((obs.odom.x_m, obs.odom.y_m))
            with self._lock:
                ep = self.episode
                if ep.recording and self._start_step is not None and rec.step >= self._start_step:
                    ep.steps += 1
                    if rec.source is CommandSource.HUMAN:
                        ep.human_steps += 1
                    if rec.mode is Mode.TAKEOVER and self._prev_mode is not Mode.TAKEOVER:
                        ep.interventions += 1
                decided = self.docking.feed(rec)
                if decided is not None:
                    self._detected(decided)
            self._prev_mode = rec.mode
            asking = rec.help is not None and rec.help.requested
            if asking and not self._asking:
                self._help_requested()
            self._asking = asking
        with self._lock:
            if self.writer is not None:
                stats = self.writer.stats()
                if self.episode.recording and stats.episode:
                    self.episode.key = stats.episode
            else:
                stats = None
            episode = dataclasses.replace(self.episode)
        rec = self.loop.latest
        return SessionSnapshot(
            record=rec, mode=self.mode,
            reason=rec.reason if rec is not None else self.loop.arbiter.reason,
            health=self.link.health(), episode=episode,
            writer=stats, model=self.model, round=self.round, trail=list(self._trail),
            alerts=list(self._alerts),
            gamepad=self.gamepad.status() if self.gamepad is not None else None,
            input_device=self.operator.last_device, policy_loaded=self.loop.policy is not None,
            plan=self._plan(), recording_enabled=self.writer is not None,
            keyboard_active=self.keyboard.active(), docking=self.docking.status())

    def _help_requested(self) -> None:
        """The robot started asking for help ([supervision] robot or both): the pad rumbles
        where it can (the screen rings the bell and shows why). The operator may be looking
        away: the hands on the pad feel it."""
        rumble = getattr(self.gamepad, "rumble", None)
        if callable(rumble):
            rumble()

    def _detected(self, decided: DetectedOutcome) -> None:
        """The detector decided the attempt (the lifecycle has stopped the robot): end the
        episode with its verdict and evidence, then reset by itself if so configured."""
        if self.episode.recording:
            self.end_episode(decided.outcome.value, reason=decided.signal, detected=decided)
        line = self.docking.status().outcome_line()
        after = self.docking.maybe_auto_reset()
        self._say(f"{line} · robot stopped" + (f" · {after}" if after else ""))

    def _plan(self) -> list[Command]:
        """The policy's queued chunk where the runtime exposes it (`planned_actions()`)."""
        planned = getattr(self.loop.policy, "planned_actions", None)
        if not callable(planned):
            return []
        try:
            return list(planned())
        except Exception:  # a view must never break on the runtime's state
            return []

    def recent_timing(self, window: int = RECENT_TIMING_TICKS) -> LoopTiming | None:
        """Loop timing over the last `window` ticks (`ControlLoop.timing`)."""
        return self.loop.timing(last_ticks=window)

    def _say(self, message: str) -> str:
        self.episode.message = message
        return message

    def _on_alert(self, alert: RecorderAlert) -> None:
        if alert.level != "info":
            self._alerts.append(f"recorder {alert.level}: {alert.message}")
