"""The fixed-rate control loop: one thread, absolute deadlines, never blocked by anyone else.

Each tick: read the newest observation, read the operator's input, ask the policy for a
proposal, let the Arbiter decide, send the command, and offer the StepRecord to every sink
(recorder, UI, metrics) without waiting for any of them. Deadlines are absolute
(`perf_counter_ns`), so lateness does not accumulate; a tick that starts more than a period late
counts as an overrun and the schedule skips ahead rather than bursting.

In lockstep (a simulator stepped by the caller, `link.lockstep`), `tick()` is called directly
and advances the world by one period after sending the command.

In RESET (undocking and driving back to a start pose, control/reset_driver.py) the reset
driver proposes instead of the policy; `request_reset` gives it a target from any thread.

In AUTO the policy's novelty for its proposal (`novelty`, `novelty_threshold`, where the
policy has them) goes to the Arbiter's help monitor (control/help.py); a help request shows in
the StepRecord's `help` and reason.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from takeover.control.arbiter import NO_INPUT, Arbiter, OperatorEvent, OperatorInput
from takeover.control.help import novelty_of
from takeover.control.perturbation import CommandPerturbation
from takeover.control.reset_driver import ResetDriver
from takeover.errors import LinkError, UsageError
from takeover.hw.base import RobotLink
from takeover.types import Command, Mode, Observation, Pose2D, StepRecord, StepSink

# Python hands the GIL between threads every 5 ms by default: a busy UI or renderer thread
# could then delay the loop's wake-up by up to 5 ms. A shorter interval bounds that wait.
LOOP_SWITCH_INTERVAL_S = 0.0005


class OperatorSource(Protocol):
    """The operator's continuous input: a gamepad, the keyboard, or a simulated operator."""

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput: ...


class PolicyDriver(Protocol):
    """A learned policy (or any automatic driver) that proposes commands in AUTO.

    `propose` is called every tick, also while the human drives (the proposal is recorded).
    """

    def propose(self, obs: Observation) -> Command | None: ...

    def drop_queued_actions(self) -> None: ...

    def reset(self) -> None: ...


class NullOperator:
    """No operator input at all: the robot only moves if something else holds the deadman."""

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        return NO_INPUT


class SinkQueue:
    """A StepSink backed by a bounded queue: `offer` never blocks; drops are counted."""

    def __init__(self, maxsize: int = 1024) -> None:
        self.queue: queue.Queue[StepRecord] = queue.Queue(maxsize=maxsize)
        self.dropped = 0

    def offer(self, record: StepRecord) -> bool:
        try:
            self.queue.put_nowait(record)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def get(self, timeout_s: float | None = None) -> StepRecord | None:
        try:
            return self.queue.get(timeout=timeout_s)
        except queue.Empty:
            return None


@dataclass(frozen=True)
class LoopTiming:
    """Loop timing figures (`--json` field `loop`). None where not measured (lockstep)."""

    rate_hz: float
    period_ms_p50: float | None
    late_ms_p50: float | None
    late_ms_p99: float | None
    late_ms_max: float | None
    overruns: int
    ticks: int
    scheduling: str = ""

    def as_json(self) -> dict[str, float | int | str | None]:
        return {
            "rate_hz": round(self.rate_hz, 3),
            "period_ms_p50": _r(self.period_ms_p50),
            "late_ms_p50": _r(self.late_ms_p50),
            "late_ms_p99": _r(self.late_ms_p99),
            "late_ms_max": _r(self.late_ms_max),
            "overruns": self.overruns,
            "ticks": self.ticks,
            "scheduling": self.scheduling,
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


class LoopStats:
    """Lateness and period samples of the most recent ticks (bounded memory)."""

    def __init__(self, keep: int = 200_000) -> None:
        self.late_ns: deque[int] = deque(maxlen=keep)
        self.period_ns: deque[int] = deque(maxlen=keep)
        self.overruns = 0
        self.ticks = 0
        self._first_ns: int | None = None
        self._last_ns: int | None = None

    def add(self, start_ns: int, late_ns: int, prev_start_ns: int | None) -> None:
        self.ticks += 1
        self.late_ns.append(late_ns)
        if prev_start_ns is not None:
            self.period_ns.append(start_ns - prev_start_ns)
        if self._first_ns is None:
            self._first_ns = start_ns
        self._last_ns = start_ns

    def add_lockstep(self, end_ns: int) -> None:
        """A tick stepped by the caller: only the count and the wall-clock rate are measured."""
        self.ticks += 1
        if self._first_ns is None:
            self._first_ns = end_ns
        self._last_ns = end_ns

    def merge(self, other: LoopStats) -> None:
        self.late_ns.extend(other.late_ns)
        self.period_ns.extend(other.period_ns)
        self.overruns += other.overruns
        self.ticks += other.ticks

    def summary(self, nominal_rate_hz: float, measured: bool = True, scheduling: str = ""
                ) -> LoopTiming:
        if not measured or not self.late_ns:
            # Lockstep: no deadlines, so no lateness; the rate is ticks per wall-clock second.
            span = (self._last_ns or 0) - (self._first_ns or 0)
            rate = (self.ticks - 1) / (span / 1e9) if self.ticks > 1 and span > 0 else 0.0
            return LoopTiming(rate, None, None, None, None, self.overruns, self.ticks, "lockstep")
        late = np.asarray(self.late_ns, dtype=np.float64) / 1e6
        period = np.asarray(self.period_ns, dtype=np.float64) / 1e6
        p50_period = float(np.median(period)) if period.size else None
        rate = 1000.0 / p50_period if p50_period else nominal_rate_hz
        return LoopTiming(
            rate_hz=rate,
            period_ms_p50=p50_period,
            late_ms_p50=float(np.percentile(late, 50)),
            late_ms_p99=float(np.percentile(late, 99)),
            late_ms_max=float(late.max()),
            overruns=self.overruns,
            ticks=self.ticks,
            scheduling=scheduling,
        )


class ControlLoop:
    """Runs the tick at `rate_hz` on its own thread (`start`/`stop`) or on demand (`tick`)."""

    def __init__(
        self,
        link: RobotLink,
        arbiter: Arbiter,
        operator: OperatorSource | None = None,
        policy: PolicyDriver | None = None,
        rate_hz: float = 20.0,
        sinks: Iterable[StepSink] = (),
        realtime_priority: int = 10,
        perturbation: CommandPerturbation | None = None,
    ) -> None:
        """perturbation: demonstration noise (DART, control/perturbation.py) added to the
        operator's command in MANUAL; the record keeps the operator's own command."""
        self.link = link
        self.arbiter = arbiter
        self.operator: OperatorSource = operator or NullOperator()
        self.policy = policy
        self.rate_hz = rate_hz
        self.period_ns = round(1e9 / rate_hz)
        self.sinks: list[StepSink] = list(sinks)
        self.realtime_priority = realtime_priority
        self.perturbation = perturbation
        self.scheduling = "not started"  # what the loop thread got: SCHED_FIFO or normal
        self.stats = LoopStats()
        self.latest: StepRecord | None = None  # for UIs that poll
        self._events: queue.SimpleQueue[OperatorEvent] = queue.SimpleQueue()
        self._step = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prev_start_ns: int | None = None
        self.loop_error: Exception | None = None  # set if a tick raised; the robot is stopped
        # Between attempts: undock and drive to a start pose (set_reset_driver, request_reset).
        self.reset_driver: ResetDriver | None = None
        self._reset_request: tuple[Pose2D, bool] | None = None

    # --- from any thread ----------------------------------------------------------------------

    def post(self, event: OperatorEvent) -> None:
        """Queue an operator request for the next tick. The e-stop also acts at once."""
        if event is OperatorEvent.ESTOP:
            self.link.estop()
        elif event is OperatorEvent.ACKNOWLEDGE:
            self.link.clear_estop()
        self._events.put(event)

    def refresh_dock_pose(self) -> None:
        """Tell the Arbiter where the dock is, for the protective field's docking corridor:
        the link's dock pose where it offers one (a simulator), else none. Call it after
        connecting and after every world reset, from the caller's thread: asking the link may
        wait for it. [safety.field.dock] decides whether this pose is used. A link that tells
        none (a real base) keeps the pose the docking lifecycle anchored (`anchor_dock`)."""
        if not self.link.supports_sim_control:
            return
        try:
            pose = self.link.dock_pose()
        except (LinkError, UsageError):
            pose = None
        self.arbiter.link_dock = pose  # one reference, read by the loop thread

    def anchor_dock(self, face: Pose2D | None) -> None:
        """The dock face as the docking lifecycle knows it (anchored at a confirmed dock, or
        configured: control/reset_planner.py), for the field's corridor on a base whose link
        tells no dock pose. [safety.field.dock] source = "link" uses it."""
        if not self.link.supports_sim_control:
            self.arbiter.link_dock = face

    def set_reset_driver(self, driver: ResetDriver | None) -> None:
        """Give the loop its reset driver (before start, or with the robot stopped)."""
        self.reset_driver = driver

    def request_reset(self, target: Pose2D, undock: bool = True) -> None:
        """From any thread: drive to `target` (backing out straight first if `undock`) in
        RESET, from the next tick. The target is handed over as one reference, which the loop
        thread takes before it handles the RESET event posted here."""
        if self.reset_driver is None:
            raise RuntimeError("request_reset needs a reset driver (set_reset_driver)")
        self._reset_request = (target, undock)
        self.post(OperatorEvent.RESET)

    def set_policy(self, policy: PolicyDriver | None) -> None:
        """Swap the policy (deploy). The caller makes sure the robot is stopped."""
        self.policy = policy
        self.arbiter.policy_available = policy is not None

    # --- the tick -------------------------------------------------------------------------------

    def tick(self, late_ns: int = 0) -> StepRecord:
        """One control cycle. Returns the record that went to the sinks."""
        link, arbiter = self.link, self.arbiter
        reset = self.reset_driver
        request, self._reset_request = self._reset_request, None
        if reset is not None and request is not None:
            reset.start(request[0], undock=request[1])
        arbiter.reset_available = reset is not None and reset.active
        while True:
            try:
                arbiter.handle(self._events.get_nowait())
            except queue.Empty:
                break
        now_ns = link.now_ns()
        obs = link.latest()
        operator = self.operator.read(obs, now_ns)
        proposal: Command | None = None
        policy_latency_ns = 0
        novelty: float | None = None
        novelty_threshold: float | None = None
        if arbiter.mode is Mode.RESET and reset is not None:
            if obs is not None:
                proposal = reset.propose(obs)
                if reset.done:
                    arbiter.reset_finished("reset done: at the start pose")
        elif self.policy is not None and obs is not None:
            t0 = time.perf_counter_ns()
            proposal = self.policy.propose(obs)
            policy_latency_ns = time.perf_counter_ns() - t0
            # The ensemble's disagreement for this proposal, where the policy has one
            # (control/help.py); any other PolicyDriver has none.
            novelty, novelty_threshold = novelty_of(self.policy)
        health_ok = link.health().connected
        asked = operator
        if self.perturbation is not None:
            if arbiter.mode is Mode.MANUAL and operator.deadman:
                asked = dataclasses.replace(operator,
                                            command=self.perturbation.apply(operator.command))
            else:
                self.perturbation.rest()
        # The help monitor's no-approach signal measures the distance to the dock the loop
        # knows: the link's (a simulator) or anchored (a real base), else [safety.field.dock]'s.
        arbiter.help_monitor.dock = (arbiter.link_dock if arbiter.link_dock is not None
                                     else arbiter.dock_pose)
        decision = arbiter.decide(now_ns, obs, health_ok, asked, proposal, 1.0 / self.rate_hz,
                                  novelty=novelty, novelty_threshold=novelty_threshold)
        if decision.drop_policy_queue and self.policy is not None:
            self.policy.drop_queued_actions()
        sent = link.send(decision.command)
        record = StepRecord(
            step=self._step,
            t_ns=now_ns,
            observation=obs,
            command=sent,
            source=decision.source,
            mode=decision.mode,
            policy_action=proposal,
            human_action=operator.command if operator.deadman else None,
            action_mode=decision.action_mode,
            loop_late_ns=late_ns,
            policy_latency_ns=policy_latency_ns,
            reason=decision.reason,
            field=decision.field,
            help=decision.help,
        )
        self._step += 1
        self.latest = record
        for sink in self.sinks:
            sink.offer(record)
        if link.lockstep:
            link.advance(1.0 / self.rate_hz)
            self.stats.add_lockstep(time.perf_counter_ns())
        return record

    # --- the thread -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        if self.link.lockstep:
            raise RuntimeError("a lockstep link is stepped by tick(), not by the loop thread")
        sys.setswitchinterval(LOOP_SWITCH_INTERVAL_S)
        # Everything alive now (modules, classes, config) lives as long as the process: keep it
        # out of the garbage collector's full passes, which hold the GIL for as long as they scan.
        gc.freeze()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="control-loop", daemon=True)
        self._thread.start()

    def stop(self, send_zero: bool = True) -> None:
        """Stop the thread (joins it) and leave the robot with a zero command."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if send_zero:
            self.link.send(Command())

    def timing(self, since_tick: int = 0, last_ticks: int | None = None) -> LoopTiming:
        """Timing of the ticks after the first `since_tick` (a `stats.ticks` count taken
        earlier: benchmarks measure a window) and at most the `last_ticks` most recent ones (the
        operator's terminal asks every second for the last minute: a percentile over hours of
        samples would hold the interpreter lock for milliseconds), or of all of them. The one
        timing window of the project: `drive --json`, `bench loop` and the TUI all read it."""
        stats = self.stats
        n = stats.ticks - since_tick if since_tick > 0 else stats.ticks
        if last_ticks is not None:
            n = min(n, last_ticks)
        if n < stats.ticks:
            window = LoopStats()
            # islice over reversed() copies without running Python code between items: the
            # loop thread cannot append halfway through.
            late = list(itertools.islice(reversed(stats.late_ns), max(0, n)))
            period = list(itertools.islice(reversed(stats.period_ns), max(0, n - 1)))
            window.late_ns.extend(reversed(late))
            window.period_ns.extend(reversed(period))
            window.ticks = max(0, n)
            window.overruns = stats.overruns  # not windowed: a total
            stats = window
        return stats.summary(self.rate_hz, measured=not self.link.lockstep,
                             scheduling=self.scheduling)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _raise_priority(self) -> None:
        """Ask for SCHED_FIFO for this thread (Linux; needs root or CAP_SYS_NICE), as robot
        control loops do: on a loaded 2-core machine an ordinary thread can wait milliseconds
        for a CPU. Without the permission the loop runs at normal priority and says so."""
        self.scheduling = "normal"
        if self.realtime_priority <= 0 or not hasattr(os, "sched_setscheduler"):
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.realtime_priority))
            self.scheduling = f"SCHED_FIFO {self.realtime_priority}"
        except (PermissionError, OSError):
            self.scheduling = "normal (no permission for SCHED_FIFO)"

    def _run(self) -> None:
        self._raise_priority()
        period = self.period_ns
        deadline = time.perf_counter_ns()
        stats = self.stats
        while not self._stop.is_set():
            now = time.perf_counter_ns()
            if deadline > now:
                time.sleep((deadline - now) / 1e9)
                now = time.perf_counter_ns()
            late = now - deadline
            stats.add(now, late, self._prev_start_ns)
            self._prev_start_ns = now
            try:
                self.tick(late_ns=late)
            except Exception as e:  # never leave the robot moving on an unexpected fault
                self._fault(e)
                return
            deadline += period
            after = time.perf_counter_ns()
            if after > deadline:  # missed the next deadline entirely: skip ahead
                stats.overruns += 1
                deadline = after + (period - (after - deadline) % period)

    def _fault(self, error: Exception) -> None:
        try:
            self.link.send(Command())
        finally:
            self.arbiter.handle(OperatorEvent.ESTOP)
            self.arbiter.reason = f"control loop fault: {type(error).__name__}: {error}"
            self.loop_error = error
