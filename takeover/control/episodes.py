"""Running whole episodes through the control loop: reset, engage, watch, stop.

Used by `takeover drive` and the benchmarks. The loop and its Arbiter stay the same objects
across episodes; an episode ends when the base reports docked (success), its bumper (failure:
collision or misaligned contact), a latched e-stop or link loss (aborted), or after
`max_steps` ticks (failure: timeout). Works with a lockstep simulator (ticks are driven from
here) and with any real-time link (the loop's thread runs and records arrive on a queue).

Given a `[docking]` config, the runner also runs the docking outcome detector
(control/docking_outcome.py) beside those rules, on what a real base reports (charging, bumper,
odometry): the episode still ends as above, and the detector's decision and evidence go into
the result (`detected`). When the episode ended at a contact (or with a charge or contact still
being confirmed), the robot is stopped and the detector is given up to `charge_wait_s` of
further ticks to see the charge (a BatteryState at 1-2 Hz lags the contact), as opennav_docking
waits for charge after docking; those ticks are not steps of the episode.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from takeover.config import DockingConfig
from takeover.control.arbiter import OperatorEvent
from takeover.control.docking_outcome import DetectedOutcome, DockingOutcomeDetector
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
    # The docking outcome detector's decision and evidence (None without a [docking] config).
    detected: DetectedOutcome | None = None

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "seed": self.seed,
            "outcome": self.outcome,
            "detail": self.detail,
            "steps": self.steps,
            "human_steps": self.human_steps,
            "interventions": self.interventions,
            "protective_stops": self.protective_stops,
        }
        if self.detected is not None:
            out["outcome_detected"] = self.detected.outcome.value
            out["outcome_evidence"] = self.detected.evidence
        return out


class EpisodeRunner:
    """Runs episodes on one loop. `on_record` sees every record of the episode."""

    def __init__(self, loop: ControlLoop, max_steps: int = 1200,
                 on_record: Callable[[StepRecord], None] | None = None,
                 keep_records: bool = False, acknowledge_faults: bool = True,
                 on_event: Callable[[str], None] | None = None,
                 docking: DockingConfig | None = None) -> None:
        """acknowledge_faults: a latched e-stop or link loss left by the previous episode is
        acknowledged before the next one starts, as the operator running a batch would (the
        Arbiter refuses it while the cause persists, and the episode then aborts).
        docking: run the docking outcome detector beside the episode's own rules."""
        self.loop = loop
        self.docking = docking
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
        detector = DockingOutcomeDetector(self.docking) if self.docking is not None else None
        last_t_ns: int | None = None
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
            last_t_ns = rec.t_ns
            if detector is not None:
                detector.update(rec.observation, rec.t_ns)
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
        if detector is not None:
            result.detected = self._detect_end(detector, result, last_t_ns)
        return result

    def _detect_end(self, detector: DockingOutcomeDetector, result: EpisodeResult,
                    last_t_ns: int | None) -> DetectedOutcome:
        """The detector's verdict once the episode has ended and the robot is stopped: after a
        contact (or with one being confirmed) it watches up to `charge_wait_s` more ticks."""
        assert self.docking is not None
        contact = result.detail in ("docked", "bumper")
        if detector.decided is None and last_t_ns is not None and (contact or detector.pending):
            wait_ns = round(self.docking.charge_wait_s * 1e9)
            # Bounded in ticks too, in case the link's records stop advancing their clock.
            max_ticks = int(wait_ns / self.loop.period_ns) + 2
            start_ns = last_t_ns
            for n, rec in enumerate(self._records()):
                last_t_ns = rec.t_ns
                if detector.update(rec.observation, rec.t_ns) is not None:
                    break
                if rec.t_ns - start_ns >= wait_ns or n >= max_ticks:
                    break
        end_ns = last_t_ns if last_t_ns is not None else 0
        return detector.conclude(end_ns, result.detail, aborted=result.outcome == OUTCOME_ABORTED)

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
