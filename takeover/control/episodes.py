"""Running whole episodes through the control loop: reset, engage, watch, stop.

Used by `takeover drive` and the benchmarks. The loop and its Arbiter stay the same objects
across episodes; an episode ends when the base reports docked (success), its bumper (failure:
collision or misaligned contact), a latched e-stop or link loss (aborted), or after
`max_steps` ticks (failure: timeout). Works with a lockstep simulator (ticks are driven from
here) and with any real-time link (the loop's thread runs and records arrive on a queue).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from takeover.control.arbiter import OperatorEvent
from takeover.control.loop import ControlLoop, SinkQueue
from takeover.types import CommandSource, FieldState, Mode, Outcome, StepRecord

# The outcome vocabulary is takeover.types.Outcome; these are its values as an EpisodeResult
# stores them (a str, as in the JSON of `takeover drive`).
OUTCOME_SUCCESS = Outcome.SUCCESS.value
OUTCOME_FAILURE = Outcome.FAILURE.value
OUTCOME_ABORTED = Outcome.ABORTED.value


@dataclass
class EpisodeResult:
    seed: int
    outcome: str  # success | failure | aborted
    detail: str  # docked | bumper | timeout | estop | link lost | ...
    steps: int = 0
    human_steps: int = 0
    interventions: int = 0  # takeover starts
    protective_stops: int = 0  # the protective field stopped the robot (runs of STOPPED)
    duration_s: float = 0.0
    records: list[StepRecord] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "outcome": self.outcome,
            "detail": self.detail,
            "steps": self.steps,
            "human_steps": self.human_steps,
            "interventions": self.interventions,
            "protective_stops": self.protective_stops,
        }


class EpisodeRunner:
    """Runs episodes on one loop. `on_record` sees every record of the episode."""

    def __init__(self, loop: ControlLoop, max_steps: int = 1200,
                 on_record: Callable[[StepRecord], None] | None = None,
                 keep_records: bool = False, acknowledge_faults: bool = True,
                 on_event: Callable[[str], None] | None = None) -> None:
        """acknowledge_faults: a latched e-stop or link loss left by the previous episode is
        acknowledged before the next one starts, as the operator running a batch would (the
        Arbiter refuses it while the cause persists, and the episode then aborts)."""
        self.loop = loop
        self.acknowledge_faults = acknowledge_faults
        self.on_event = on_event
        self.max_steps = max_steps
        self.on_record = on_record
        self.keep_records = keep_records
        self._queue: SinkQueue | None = None
        if not loop.link.lockstep:
            # Sized for a whole episode, so the reader can fall behind without losing steps.
            self._queue = SinkQueue(maxsize=max(4 * max_steps, 4096))
            loop.sinks.append(self._queue)

    def run(self, seed: int, engage: OperatorEvent,
            prepare: Callable[[], None] | None = None) -> EpisodeResult:
        """Reset the world to `seed`, call `prepare` (e.g. tell the expert the new dock),
        engage with `engage` (MANUAL or AUTO) and run to the end of the episode. A robot that
        is not a simulator is not reset: its episode starts where it stands."""
        loop, link = self.loop, self.loop.link
        self._stop_and_wait()
        if link.supports_sim_control:
            link.reset(seed)
        loop.refresh_dock_pose()  # the dock moves with the seed: the field's docking corridor
        if self.acknowledge_faults and loop.arbiter.mode.latched:
            if self.on_event is not None:
                self.on_event(f"acknowledging {loop.arbiter.mode.value} ({loop.arbiter.reason})")
            loop.post(OperatorEvent.ACKNOWLEDGE)
        if loop.policy is not None:
            loop.policy.reset()
        if prepare is not None:
            prepare()
        self._drain()
        loop.post(engage)
        want = Mode.MANUAL if engage is OperatorEvent.MANUAL else Mode.AUTO
        result = EpisodeResult(seed=seed, outcome=OUTCOME_FAILURE, detail="timeout")
        started = False
        prev_mode: Mode | None = None
        prev_stopped = False
        t0 = time.perf_counter()
        for rec in self._records():
            if not started:
                if rec.mode is want:
                    started = True
                elif rec.mode.latched:
                    result.outcome, result.detail = OUTCOME_ABORTED, rec.reason
                    break
                else:
                    continue
            result.steps += 1
            if rec.source is CommandSource.HUMAN:
                result.human_steps += 1
            if rec.mode is Mode.TAKEOVER and prev_mode is not Mode.TAKEOVER:
                result.interventions += 1
            prev_mode = rec.mode
            stopped = rec.field is not None and rec.field.state is FieldState.STOPPED
            if stopped and not prev_stopped:
                result.protective_stops += 1
            prev_stopped = stopped
            if self.on_record is not None:
                self.on_record(rec)
            if self.keep_records:
                result.records.append(rec)
            obs = rec.observation
            if obs is not None and obs.docked:
                result.outcome, result.detail = OUTCOME_SUCCESS, "docked"
                break
            if obs is not None and obs.bumper:
                result.outcome, result.detail = OUTCOME_FAILURE, "bumper"
                break
            if rec.mode.latched:
                result.outcome, result.detail = OUTCOME_ABORTED, rec.reason or rec.mode.value
                break
            if rec.mode is Mode.IDLE:
                result.outcome, result.detail = OUTCOME_ABORTED, rec.reason or "stopped"
                break
            if result.steps >= self.max_steps:
                break
        result.duration_s = time.perf_counter() - t0
        self._stop_and_wait()
        return result

    def _records(self) -> Iterator[StepRecord]:
        loop = self.loop
        if loop.link.lockstep:
            while True:
                yield loop.tick()
        assert self._queue is not None
        while True:
            rec = self._queue.get(timeout_s=2.0)
            if rec is None:
                if loop.loop_error is not None or not loop.running:
                    return
                continue
            yield rec

    def _stop_and_wait(self) -> None:
        """Bring the Arbiter back to IDLE (unless latched) and make sure it took effect."""
        loop = self.loop
        if loop.arbiter.mode.latched:
            return
        loop.post(OperatorEvent.STOP)
        if loop.link.lockstep:
            loop.tick()
            return
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            rec = loop.latest
            if rec is not None and rec.mode is Mode.IDLE:
                return
            time.sleep(loop.period_ns / 1e9)

    def _drain(self) -> None:
        if self._queue is None:
            return
        while self._queue.get(timeout_s=0) is not None:
            pass
