"""Running whole episodes through the control loop: reset, engage, watch, stop.

Used by `takeover drive` and the benchmarks. The loop and its Arbiter stay the same objects
across episodes; an episode ends when the base reports docked (success), its bumper (failure:
collision or misaligned contact), a latched e-stop or link loss (aborted), or after
`max_steps` ticks (failure: timeout). Works with a lockstep simulator (ticks are driven from
here) and with any real-time link (the loop's thread runs and records arrive on a queue).

Given a `[docking]` config, the runner also runs the docking outcome detector
(control/docking_outcome.py) beside those rules, on what a real base reports (charging, bumper,
odometry): the episode still ends as above, and the detector's decision and evidence go into
the result (`detected`). When the episode ended at a contact or at its step limit (or with
a charge or contact still being confirmed), the robot is stopped and the detector is given up
to `charge_wait_s` of further ticks to see the charge (a BatteryState at 1-2 Hz lags the
contact), as opennav_docking waits for charge after docking; those ticks are not steps of the
episode.

With `end_on_detection` (a real base, or the simulator as one: `sim://?reset=drive`) the
detector alone ends the attempt: no ground-truth docked flag is trusted, and a bumper contact
is judged by the detector (charging within `charge_confirm_ms` is a dock). `reset` then drives
the robot back out to a start pose between attempts (RESET mode, control/reset_driver.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from takeover.config import DockingConfig
from takeover.control.arbiter import OperatorEvent
from takeover.control.docking_outcome import DetectedOutcome, DockingOutcomeDetector
from takeover.control.loop import ControlLoop, SinkQueue
from takeover.types import CommandSource, FieldState, Mode, Odometry, Outcome, Pose2D, StepRecord

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
    end_odom: Odometry | None = None  # where the attempt ended (end_on_detection): the anchor
    wall_start_ns: int = 0  # time.time_ns() at the start and the end: joins a truth log
    wall_end_ns: int = 0

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


@dataclass
class ResetResult:
    """How a reset between attempts went (`takeover drive --reset drive`)."""

    reached: bool
    reason: str  # "reset done: ..." or why it stopped
    duration_s: float  # wall clock
    steps: int
    target: Pose2D
    kind: str  # start | staging (a retry)
    bumps: int = 0  # bumper contacts the base reported during the reset
    wall_start_ns: int = 0  # time.time_ns() at its start and end, to join a simulator's truth log
    wall_end_ns: int = 0

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind, "reached": self.reached, "reason": self.reason,
                "duration_s": round(self.duration_s, 3), "steps": self.steps,
                "bumps": self.bumps,
                "target": [round(self.target.x_m, 3), round(self.target.y_m, 3),
                           round(self.target.yaw_rad, 3)]}


class EpisodeRunner:
    """Runs episodes on one loop. `on_record` sees every record of the episode."""

    def __init__(self, loop: ControlLoop, max_steps: int = 1200,
                 on_record: Callable[[StepRecord], None] | None = None,
                 keep_records: bool = False, acknowledge_faults: bool = True,
                 on_event: Callable[[str], None] | None = None,
                 docking: DockingConfig | None = None, end_on_detection: bool = False,
                 tick: Callable[[], StepRecord] | None = None) -> None:
        """acknowledge_faults: a latched e-stop or link loss left by the previous episode is
        acknowledged before the next one starts, as the operator running a batch would (the
        Arbiter refuses it while the cause persists, and the episode then aborts).
        docking: run the docking outcome detector beside the episode's own rules.
        end_on_detection: the detector's decision ends the attempt and is its outcome (needs
        `docking`); the base's docked flag and bumper are left to the detector.
        tick: in lockstep, how one tick is taken (default `loop.tick`): the headless fleet
        (session/fleet_drive.py) passes one that first waits for this robot's turn on the
        fleet's clock, so that N robots advance one tick each per fleet tick."""
        if end_on_detection and docking is None:
            raise ValueError("end_on_detection needs a [docking] config")
        self.loop = loop
        self.docking = docking
        self.end_on_detection = end_on_detection
        # Where the robot stands when docked, if the docking lifecycle knows: the detector's
        # "at the dock" (control/docking_outcome.py).
        self.docked_pose: Pose2D | None = None
        self.acknowledge_faults = acknowledge_faults
        self.on_event = on_event
        self.max_steps = max_steps
        self.on_record = on_record
        self.keep_records = keep_records
        self._tick = tick or loop.tick
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
        result.wall_start_ns = time.time_ns()
        detector = (DockingOutcomeDetector(self.docking, self.docked_pose)
                    if self.docking is not None else None)
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
            decided = detector.update(rec.observation, rec.t_ns) if detector is not None else None
            obs = rec.observation
            if self.end_on_detection:
                if obs is not None:
                    result.end_odom = obs.odom
                if decided is not None:
                    result.outcome, result.detail = decided.outcome.value, decided.signal
                    break
                if detector is not None and detector.pending:
                    # A contact or a charge starts being confirmed: stop driving and let the
                    # detector watch the stopped robot (as opennav_docking stops at the dock
                    # and waits for charge): a policy that never saw what comes after contact
                    # must not back off the charger while the charge is confirmed.
                    result.detail = "timeout" if detector.overtime else "contact"
                    break
            elif obs is not None and obs.docked:
                result.outcome, result.detail = OUTCOME_SUCCESS, "docked"
                break
            elif obs is not None and obs.bumper:
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
            if self.end_on_detection and result.outcome != OUTCOME_ABORTED:
                # The host's step limit ran out before the detector's own timeout.
                result.outcome = result.detected.outcome.value
                result.detail = result.detected.signal
        # When the outcome was decided (after any wait for the charge): the moment a truth log
        # is read at. A robot that touched the charger and left it before the charge showed
        # has not docked.
        result.wall_end_ns = time.time_ns()
        return result

    def reset(self, target: Pose2D, undock: bool = True, kind: str = "start",
              timeout_s: float = 60.0) -> ResetResult:
        """Drive to `target` in RESET (backing out straight first if `undock`) and wait until
        the reset is done, stopped (the Arbiter left RESET: a fault, the deadman, an obstacle)
        or `timeout_s` of ticks ran out (then stopped here)."""
        loop = self.loop
        if loop.reset_driver is None:
            raise RuntimeError("EpisodeRunner.reset needs loop.set_reset_driver(...)")
        self._stop_and_wait()
        if self.acknowledge_faults and loop.arbiter.mode.latched:
            loop.post(OperatorEvent.ACKNOWLEDGE)
        self._drain()
        loop.request_reset(target, undock)
        out = ResetResult(reached=False, reason="timeout", duration_s=0.0, steps=0,
                          target=target, kind=kind, wall_start_ns=time.time_ns())
        max_ticks = int(timeout_s * 1e9 / loop.period_ns) + 1
        started, bumped = False, False
        t0 = time.perf_counter()
        ticks = 0
        for rec in self._records():
            ticks += 1
            if not started:
                if rec.mode is Mode.RESET:
                    started = True
                elif rec.mode.latched or ticks > 5 * 20:
                    out.reason = rec.reason or f"reset refused ({rec.mode.value})"
                    break
                else:
                    continue
            if rec.mode is not Mode.RESET:
                out.reached = loop.reset_driver.done
                out.reason = rec.reason or rec.mode.value
                break
            out.steps += 1
            bump = rec.observation is not None and rec.observation.bumper
            if bump and not bumped and out.steps > 1:
                out.bumps += 1  # a new contact: the one the attempt ended on is not the reset's
            bumped = bump
            if out.steps >= max_ticks:
                out.reason = f"reset timed out after {timeout_s:g} s"
                break
        out.duration_s = time.perf_counter() - t0
        out.wall_end_ns = time.time_ns()
        self._stop_and_wait()
        return out

    def _detect_end(self, detector: DockingOutcomeDetector, result: EpisodeResult,
                    last_t_ns: int | None) -> DetectedOutcome:
        """The detector's verdict once the episode has ended and the robot is stopped: after a
        contact (or with one being confirmed) it watches up to `charge_wait_s` more ticks."""
        assert self.docking is not None
        # A timeout too: a robot that reached the charger at the deadline may be charging
        # already, and the battery report lags the contact by up to a second.
        contact = result.detail in ("docked", "bumper", "contact", "timeout")
        if detector.decided is None and last_t_ns is not None and (contact or detector.pending):
            wait_ns = round(self.docking.charge_wait_s * 1e9)
            if result.detail == "timeout":
                # The detector's own grace: charge_wait_s, plus a confirm window for a charge
                # that began at its end (DockingOutcomeDetector.update).
                wait_ns += round(self.docking.charge_confirm_ms * 1e6)
            # Bounded in ticks too, in case the link's records stop advancing their clock.
            max_ticks = int(wait_ns / self.loop.period_ns) + 2
            start_ns = last_t_ns
            for n, rec in enumerate(self._records()):
                last_t_ns = rec.t_ns
                if rec.observation is not None:
                    result.end_odom = rec.observation.odom
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
                yield self._tick()
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
            self._tick()
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
