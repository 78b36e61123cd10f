"""The control core in a process of its own: what `takeover run` drives the robot with.

Why: a thread shares the interpreter lock with everything else in its process. In the TUI's
process, Textual's redraws leave tens of thousands of cyclic objects a second, and the garbage
collector that frees them holds the lock for 20-90 ms: a control loop thread there started its
ticks up to 85 ms late (docs/tui.md, "Timing"). In its own process the loop shares the lock only
with the recorder, the gamepad and this module's two small threads, none of which makes garbage
in bulk, so a tick is late by the scheduler's wake-up time, not by the UI's.

    parent (the TUI)                               child: python -m takeover.session.core_process
    RemoteSession(CoreSpec) ── socketpair ──────>  OperatorSession: link, ControlLoop + Arbiter,
      post / estop / key presses  (no answer)        EpisodeWriter, policy runtime, gamepad (SDL)
      begin/end episode, label, deploy, ... (calls)
      <── SessionSnapshot at tui.refresh_hz, LoopTiming once a second (pushed)

Messages are pickles on a `multiprocessing.connection.Connection` over a socketpair:

    parent -> child   ("cast", name, args)        post, key: handled at once by the receiving
                                                  thread, never queued behind a slow call
                      ("call", id, name, args)    everything else, in order, on one worker thread
    child -> parent   ("snapshot", SessionSnapshot) / ("timing", LoopTiming)
                      ("reply", id, ok, value or error line, EpisodeState, ModelRef | None)

Every reply carries the episode state and the model, so the parent's view is never older than
the answer it just got (e.g. `begin_episode()` then `episode.recording`). An error in the child
comes back as one line (`CoreError`); the traceback goes to the child's stderr, which the
parent keeps (the last line is shown if the child dies).

Safety. The child stops the robot, saves an open episode as aborted, closes the recorder and the
link, and exits when the parent closes the connection, when the parent dies (EOF on the socket,
and PR_SET_PDEATHSIG as a second signal on Linux), or on SIGTERM/SIGHUP. It runs in a session
of its own, so the terminal's signals reach only the TUI, which then closes it in order. If the
child dies, `RemoteSession.lost` says why and the UI shows it; nothing restarts motion (a real
base stops by its own watchdog; the simulator exits with the process that owns it).

Focus (several robots, session/fleet.py). One operator drives one robot at a time: a core that
is not focused reads no operator input (deadman released, sticks centred) and ignores its
gamepad's buttons but the e-stop, so nothing the operator does moves it; only its own policy, by
the supervision rules, does. A core that gains focus passes the operator's input on only once
the deadman has been released and the sticks centred (`FocusGate`): a hand still on the pad
from the robot focused before never jerks the new one into motion.

PR_SET_PDEATHSIG fires when the *thread* that started the child exits: create `RemoteSession`
on a thread that lives as long as it (the main thread; `make_app` does).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any

from takeover.config import Config
from takeover.control.arbiter import NO_INPUT, OperatorEvent, OperatorInput
from takeover.control.loop import LoopTiming, OperatorSource
from takeover.errors import TakeoverError
from takeover.hw.base import LinkHealth, LinkOptions, open_link
from takeover.inputs.keyboard import DRIVE_KEYS, HOLD_KEY
from takeover.session.operator import (
    EpisodeState,
    ModelRef,
    OpenResult,
    OperatorSession,
    PolicyLoader,
    SessionSnapshot,
    round_for_model,
    start_training_job,
)
from takeover.session.training import TrainingJob
from takeover.types import Mode, Observation, Pose2D, StepRecord

PR_SET_PDEATHSIG = 1
CALL_TIMEOUT_S = 5.0  # an ordinary request; the child answers in well under a millisecond
OPEN_TIMEOUT_S = 90.0  # connect the link and load the model (onnxruntime) on a busy machine
DEPLOY_TIMEOUT_S = 120.0
CLOSE_TIMEOUT_S = 40.0  # the recorder finishes the open episode's file
STDERR_LINES = 50


class CoreError(TakeoverError):
    """The control core refused or failed a request; the message is one line for the operator."""


class CoreLostError(CoreError):
    """The control core's process is gone."""


@dataclass(frozen=True)
class CoreSpec:
    """Everything the child needs to build the session. Picklable.

    policy_loader: a module-level function (pickled by name; the child gets the parent's
    `sys.path`), or None for the ONNX runtime. model: loaded (deployed) once the link is up; a
    model that does not load leaves the session without one and says so (`OpenResult.note`).
    """

    config: Config
    robot_url: str
    workspace: Path | None = None
    model: ModelRef | None = None
    use_gamepad: bool | None = None
    policy_loader: PolicyLoader | None = None
    # Several robots (session/fleet.py): the robot's name (its episode files carry it) and
    # whether it starts focused (the operator's inputs move it); one robot: "", focused.
    robot_name: str = ""
    focused: bool = True


# --- the parent's side ---------------------------------------------------------------------


class RemoteSession:
    """A `Session` (takeover.session.operator) whose OperatorSession runs in a child process.

    Starts the child at once (so it imports while the UI builds); `open()` connects the link and
    starts the loop. Training runs from this process (`TrainingJob`, a child of its own): it has
    nothing to do with the control loop.
    """

    def __init__(self, spec: CoreSpec, *, train_command: list[str] | None = None) -> None:
        self.spec = spec
        self.config = spec.config
        self.workspace = spec.workspace
        self.train_command = train_command
        self.training: TrainingJob | None = None
        self._model = spec.model
        self._episode = EpisodeState(round=round_for_model(spec.model))
        self._snapshot: SessionSnapshot | None = None
        self._timing: LoopTiming | None = None
        self._lost = ""
        self._closed = False
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[Any]] = {}
        self._state_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._stderr: deque[str] = deque(maxlen=STDERR_LINES)
        parent_sock, child_sock = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "takeover.session.core_process",
                 "--ctl-fd", str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as err:
            parent_sock.close()
            raise CoreError(f"cannot start the control core: {err.strerror or err}") from None
        finally:
            child_sock.close()
        self._conn = Connection(parent_sock.detach())
        # The child applies sys.path before it unpickles the spec (a test's policy loader).
        self._conn.send((list(sys.path), os.getpid()))
        self._conn.send(spec)
        self._reader = threading.Thread(target=self._read, name="core-reader", daemon=True)
        self._reader.start()
        threading.Thread(target=self._read_stderr, name="core-stderr", daemon=True).start()

    # --- Session: state ----------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return self.spec.robot_url

    @property
    def model(self) -> ModelRef | None:
        return self._model

    @property
    def round(self) -> int:
        return round_for_model(self._model)

    @property
    def episode(self) -> EpisodeState:
        return self._episode

    @property
    def lost(self) -> str:
        return self._lost

    # --- Session: lifecycle ------------------------------------------------------------------

    def open(self, connect: bool = True) -> OpenResult:
        result: OpenResult = self._call("open", connect, timeout_s=OPEN_TIMEOUT_S)
        return result

    def close(self) -> None:
        """Stop the robot, save an open episode as aborted, end the child. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.training is not None:
            self.training.cancel()
        if not self._lost:
            with contextlib.suppress(CoreError):
                self._call("close", timeout_s=CLOSE_TIMEOUT_S)
        try:
            self.process.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5.0)
        with contextlib.suppress(OSError):
            self._conn.close()

    # --- Session: telemetry ------------------------------------------------------------------

    def poll(self) -> SessionSnapshot:
        snap = self._snapshot
        if snap is None:
            snap = SessionSnapshot(record=None, mode=Mode.IDLE, reason="", health=LinkHealth(False),
                                   episode=self._episode, writer=None, model=self._model,
                                   round=self.round)
        if self._lost:
            return replace(snap, mode=Mode.LINK_LOST, reason=self._lost,
                           health=replace(snap.health, connected=False))
        return snap

    def recent_timing(self) -> LoopTiming | None:
        return self._timing

    def loop_timing(self, since_tick: int = 0) -> LoopTiming:
        """The loop's timing after its first `since_tick` ticks (`LoopTiming.ticks` of an
        earlier answer), or since it started (benchmarks)."""
        timing: LoopTiming = self._call("loop_timing", since_tick)
        return timing

    # --- Session: operator requests ----------------------------------------------------------

    def post(self, event: OperatorEvent) -> None:
        self._cast("post", event)

    def estop(self) -> None:
        self._cast("post", OperatorEvent.ESTOP)

    def focus(self, focused: bool) -> None:
        """Give this robot the operator's inputs, or take them away (the module docstring)."""
        self._cast("focus", focused)

    def press_key(self, key: str, t_ns: int | None = None) -> bool:
        if key not in DRIVE_KEYS and key != HOLD_KEY:
            return False
        self._cast("key", key, time.monotonic_ns() if t_ns is None else t_ns)
        return True

    def begin_episode(self) -> str:
        return str(self._call("begin_episode"))

    def end_episode(self, outcome: str, reason: str = "operator") -> str:
        return str(self._call("end_episode", outcome, reason))

    def label(self, outcome: str) -> str:
        return str(self._call("label", outcome))

    def set_notes(self, notes: str) -> str:
        return str(self._call("set_notes", notes))

    def wait_saved(self, timeout_s: float = 10.0) -> Path | None:
        path: Path | None = self._call("wait_saved", timeout_s, timeout_s=timeout_s + CALL_TIMEOUT_S)
        return path

    def reset_world(self, seed: int) -> str:
        return str(self._call("reset_world", seed, timeout_s=15.0))

    def dock_pose(self) -> Pose2D | None:
        pose: Pose2D | None = self._call("dock_pose")
        return pose

    def deploy(self, model: ModelRef) -> str:
        return str(self._call("deploy", model, timeout_s=DEPLOY_TIMEOUT_S))

    def start_training(self) -> str:
        self.training, message = start_training_job(self.workspace, self.train_command,
                                                    self.training)
        return message

    def run_in_core(self, fn: Callable[..., Any], *args: Any, timeout_s: float = 60.0) -> Any:
        """For tests and benchmarks: `fn(session, *args)` in the child, with its
        OperatorSession; returns what it returns (both picklable; fn module-level)."""
        return self._call("run", fn, args, timeout_s=timeout_s)

    # --- the wire ----------------------------------------------------------------------------

    def _cast(self, name: str, *args: Any) -> None:
        if self._lost or self._closed:
            return  # nothing to tell: the core is gone (the base's watchdog has stopped it)
        try:
            with self._send_lock:
                self._conn.send(("cast", name, args))
        except (OSError, ValueError):
            self._set_lost()

    def _call(self, name: str, *args: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        if self._lost:
            raise CoreLostError(self._lost)
        future: Future[Any] = Future()
        request_id = next(self._ids)
        with self._state_lock:
            self._pending[request_id] = future
        try:
            with self._send_lock:
                self._conn.send(("call", request_id, name, args))
        except (OSError, ValueError):
            self._set_lost()
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            raise CoreError(f"the control core did not answer ({name}) within {timeout_s:.0f} s"
                            ) from None
        finally:
            with self._state_lock:
                self._pending.pop(request_id, None)

    def _read(self) -> None:
        conn = self._conn
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError, TypeError):
                # TypeError: close() on another thread closed the connection under this recv
                # (multiprocessing's Connection then reads from a None handle).
                break
            kind = message[0]
            if kind == "snapshot":
                snap: SessionSnapshot = message[1]
                self._snapshot = snap
                self._episode, self._model = snap.episode, snap.model
            elif kind == "timing":
                self._timing = message[1]
            elif kind == "reply":
                _, request_id, ok, value, episode, model = message
                self._episode, self._model = episode, model
                with self._state_lock:
                    future = self._pending.get(request_id)
                if future is not None and not future.done():
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(CoreError(value))
        self._set_lost()

    def _set_lost(self) -> None:
        if self._lost:
            return
        status = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            status = self.process.wait(timeout=2.0)
        if self._closed and status == 0:
            why = "the control core has stopped"
        else:
            last = self._stderr[-1] if self._stderr else ""
            why = (f"CONTROL CORE LOST (exit status {status})" if status is not None
                   else "CONTROL CORE LOST (it stopped answering)")
            if last:
                why += f": {last[:160]}"
        self._lost = why
        with self._state_lock:
            pending = list(self._pending.values())
        for future in pending:
            if not future.done():
                future.set_exception(CoreLostError(why))

    def _read_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._stderr.append(line)

    @property
    def stderr_lines(self) -> list[str]:
        return list(self._stderr)


# --- the child's side ------------------------------------------------------------------------


class FocusGate:
    """The operator's input as the loop of a robot sees it: passed on while the robot is
    focused, else no input at all (deadman released, sticks centred: `NO_INPUT`). On gaining
    focus it passes nothing from the gamepad on until its deadman is released and its sticks
    are centred once."""

    def __init__(self, inner: OperatorSource, focused: bool) -> None:
        self.inner = inner
        self.focused = focused
        self._armed = focused

    def set_focused(self, focused: bool) -> None:
        # Armed last: the loop's thread must never see focused with a stale arm.
        self._armed = False
        self.focused = focused

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        operator = self.inner.read(obs, now_ns)  # read anyway: device status stays current
        if not self.focused:
            return NO_INPUT
        if not self._armed:
            # Keys reach only the focused core, and those held before were released when the
            # focus moved: a key now is a fresh press for this robot. The pad is read by every
            # core: it must be let go once. (The pad wins over the keys while it is held, so
            # input from the keys also means the pad is let go.)
            held = operator.deadman or operator.deflection > 0.0
            if held and getattr(self.inner, "last_device", "gamepad") != "keyboard":
                return replace(NO_INPUT, connected=operator.connected)
            self._armed = True
        return operator


class _ParentGone(BaseException):
    """Raised in the child's main thread by SIGTERM (PR_SET_PDEATHSIG) or SIGHUP."""


def _one_line(err: BaseException) -> str:
    text = str(err) if isinstance(err, TakeoverError) else f"{type(err).__name__}: {err}"
    return " ".join(text.split())


class CoreServer:
    """Serves one OperatorSession to the parent over `conn` (see the module docstring)."""

    def __init__(self, conn: Connection, spec: CoreSpec) -> None:
        self.conn = conn
        self.spec = spec
        config = spec.config
        link = open_link(spec.robot_url, LinkOptions(camera_width=config.robot.camera_width,
                                                     camera_height=config.robot.camera_height))
        self.session = OperatorSession(config, link, None, spec.workspace,
                                       use_gamepad=spec.use_gamepad,
                                       policy_loader=spec.policy_loader, pace_gc=True,
                                       robot_name=spec.robot_name)
        # The operator's inputs move this robot only while it is focused (several robots).
        self.gate = FocusGate(self.session.loop.operator, spec.focused)
        self.session.loop.operator = self.gate
        if self.session.gamepad is not None:
            self.session.gamepad.on_action = self._gamepad_action
        # No model until open() deploys spec.model (not the workspace's current one by itself).
        self.session.model = None
        self.session.episode = EpisodeState(round=self.session.round)
        self._send_lock = threading.Lock()
        self._calls = ThreadPoolExecutor(max_workers=1, thread_name_prefix="core-calls")
        self._telemetry: threading.Thread | None = None
        self._stop = threading.Event()
        self._ticked = threading.Event()
        self._shutdown_lock = threading.Lock()
        self._closed = False

    def send(self, message: tuple[Any, ...]) -> bool:
        try:
            with self._send_lock:
                self.conn.send(message)
            return True
        except (OSError, ValueError):
            return False

    # --- requests ----------------------------------------------------------------------------

    def serve(self) -> None:
        """Receive requests until the parent closes, dies or asks to close; then shut down."""
        reason = "the operator's terminal closed"
        try:
            while not self._stop.is_set():
                try:
                    message = self.conn.recv()
                except (EOFError, OSError):
                    break
                if message[0] == "cast":
                    self._cast(message[1], message[2])
                    continue
                _, request_id, name, args = message
                done = self._calls.submit(self._call, request_id, name, args)
                if name == "close":
                    done.result()
                    break
        except _ParentGone:
            reason = "the operator's terminal died"
        finally:
            for sig in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)  # shut down in order, once
            self.shutdown(reason)
            self._calls.shutdown(wait=False, cancel_futures=True)

    def _cast(self, name: str, args: tuple[Any, ...]) -> None:
        session = self.session
        if name == "post":
            session.post(args[0])
        elif name == "key":
            if self.gate.focused:
                session.press_key(args[0], args[1])
        elif name == "focus":
            self.gate.set_focused(bool(args[0]))
            session.keyboard.release_all()  # a key held for the robot focused before

    def _gamepad_action(self, action: str) -> None:
        """A gamepad button (gamepad thread): the e-stop always acts, the rest only while
        focused (every core reads the one pad; its e-stop stops every robot, like space)."""
        if action == "estop" or self.gate.focused:
            self.session.gamepad_action(action)

    def _call(self, request_id: int, name: str, args: tuple[Any, ...]) -> None:
        try:
            value = self._dispatch(name, args)
            ok = True
        except Exception as err:
            traceback.print_exc()
            value, ok = _one_line(err), False
        session = self.session
        self.send(("reply", request_id, ok, value, replace(session.episode), session.model))

    def _dispatch(self, name: str, args: tuple[Any, ...]) -> Any:
        session = self.session
        if name == "open":
            return self._open(*args)
        if name == "close":
            self.shutdown("the operator quit")
            return None
        if name == "loop_timing":
            return session.loop.timing(*args)
        if name == "run":
            fn, fn_args = args
            return fn(session, *fn_args)
        methods: dict[str, Callable[..., Any]] = {
            "begin_episode": session.begin_episode, "end_episode": session.end_episode,
            "label": session.label, "set_notes": session.set_notes,
            "wait_saved": session.wait_saved, "reset_world": session.reset_world,
            "dock_pose": session.dock_pose, "deploy": session.deploy}
        method = methods.get(name)
        if method is None:
            raise CoreError(f"unknown request {name!r}")
        return method(*args)

    def _open(self, connect: bool) -> OpenResult:
        session = self.session
        if session.link.lockstep:
            raise CoreError(f"{session.url}: the operator's terminal drives a robot in real time; "
                            "a lockstep simulator (fast=1) is for `takeover drive --fast`")
        result = session.open(connect)
        note = ""
        model = self.spec.model
        if model is not None:
            try:
                session.deploy(model)
            except Exception as err:  # drive by hand anyway: that needs no model
                note = f"model {model.model_id} not loaded: {_one_line(err)}"
        session.episode.message = ""
        if session.gc_pacer is not None:
            # Everything built so far lives as long as the process: never scan it again.
            session.gc_pacer.freeze()
        self.send(("snapshot", session.poll()))
        session.loop.sinks.append(self)  # offer(): the pump runs right after each tick
        self._telemetry = threading.Thread(target=self._pump, name="core-telemetry", daemon=True)
        self._telemetry.start()
        return replace(result, note=note)

    # --- telemetry ---------------------------------------------------------------------------

    def offer(self, record: StepRecord) -> bool:
        """StepSink, on the loop's thread: a tick went out."""
        self._ticked.set()
        return True

    def _pump(self) -> None:
        """Push a snapshot at about tui.refresh_hz and the loop timing once a second.

        Paced by the loop's ticks, not by a clock of its own: the work (draining the records,
        pickling a frame) then starts right after a tick went out, with nearly a whole period
        before the next deadline. On a timer of its own at the loop's rate, its phase drifts
        slowly against the ticks, and for as long as it sits on a deadline it holds the
        interpreter lock just when the loop wakes (measured: p99 lateness 2 ms instead of 0.2).
        """
        session = self.session
        every = max(1, round(session.loop.rate_hz / self.spec.config.tui.refresh_hz))
        ticks = 0
        next_timing = time.monotonic()
        while not self._stop.is_set():
            if not self._ticked.wait(1.0):
                continue  # no tick (the loop stopped on a fault): the last snapshot stands
            self._ticked.clear()
            ticks += 1
            if ticks % every:
                continue
            if not self.send(("snapshot", session.poll())):
                return
            if time.monotonic() >= next_timing:
                next_timing += 1.0
                if not self.send(("timing", session.recent_timing())):
                    return

    # --- shutdown ----------------------------------------------------------------------------

    def shutdown(self, reason: str) -> None:
        """Stop the robot, save an open episode as aborted, close recorder and link. Once; a
        second caller waits for the first to finish."""
        with self._shutdown_lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            if self._telemetry is not None:
                self._telemetry.join(timeout=2.0)
            self.session.close(reason=reason)


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM when the parent dies (Linux), even if it could not close the socket."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
            prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent_pid:  # it died before the request above
        os.kill(os.getpid(), signal.SIGTERM)


def _raise_parent_gone(signum: int, frame: FrameType | None) -> None:
    raise _ParentGone(signal.Signals(signum).name)


def main() -> None:
    ap = argparse.ArgumentParser(description="the control core process (internal)")
    ap.add_argument("--ctl-fd", type=int, required=True)
    args = ap.parse_args()
    conn = Connection(socket.socket(fileno=args.ctl_fd).detach())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the TUI owns the terminal
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_parent_gone)
    try:
        sys_path, parent_pid = conn.recv()
        _die_with_parent(parent_pid)
        sys.path[:] = sys_path
        spec: CoreSpec = conn.recv()
        server = CoreServer(conn, spec)
    except (_ParentGone, EOFError, OSError):
        return
    except Exception as err:  # a bad URL or config: answer every request with it
        _refuse(conn, _one_line(err))
        return
    try:
        server.serve()
    except _ParentGone:
        # The terminal killed outright closes the socket (EOF) and sends SIGTERM at about the
        # same moment: a SIGTERM landing after the EOF but before serve()'s finally ignores
        # further ones raises there and skips its shutdown (seen once in a test run: the last
        # command on the wire was not a stop). Shut down here instead, once.
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        server.shutdown("the operator's terminal died")
    sys.stderr.flush()
    os._exit(0)  # a worker may still be inside a slow call (a model loading): do not wait for it


def _refuse(conn: Connection, message: str) -> None:
    """The session could not be built: answer each call with `message` until the parent goes."""
    episode = EpisodeState()
    with contextlib.suppress(EOFError, OSError, _ParentGone):
        while True:
            request = conn.recv()
            if request[0] == "call":
                conn.send(("reply", request[1], request[2] == "close", message, episode, None))
                if request[2] == "close":
                    return


if __name__ == "__main__":
    main()
