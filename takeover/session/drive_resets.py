"""`takeover drive --reset drive`: attempts back to back on a base that nothing teleports.

Each attempt runs the policy in AUTO until the docking outcome detector decides (charging
confirmed, a contact without charge, a stall, the timeout: control/docking_outcome.py); its
outcome is the detector's, since a real base has no ground-truth docked flag. Between attempts
the robot undocks and drives to a new start pose (or to the staging pose for a retry) in RESET
(control/reset_driver.py, control/reset_planner.py), under the Arbiter like any motion. Reset
motion is never recorded: with `--record` only the attempts become episodes.

The drivers: `policy` (AUTO, a scripted supervisor holds the deadman), `expert` (MANUAL, the
scripted docking expert at the gamepad) and `operator-sim` (AUTO, the simulated operator takes
over when the policy strays). The last two steer towards the dock face the lifecycle knows (the
docked pose of `[docking.reset]`, re-anchored at every dock), never by the simulator's
privileged state; during resets they keep their hands off (a deadman holder stands in).

On the simulator run as a real base (`sim://?reset=drive`, `takeover sim serve --reset drive`)
its truth log (`--truth-log`) gives each attempt's `outcome_truth` and counts the collisions
during resets; the host never reads it while driving.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from takeover.config import Config, DemonstrationConfig
from takeover.control.arbiter import OperatorEvent
from takeover.control.episodes import OUTCOME_SUCCESS, EpisodeResult, EpisodeRunner, ResetResult
from takeover.control.loop import ControlLoop, OperatorSource
from takeover.control.reset_driver import ResetDriver, scan_points
from takeover.control.reset_planner import MAX_FAILED_RESETS_IN_A_ROW, ResetPlanner
from takeover.errors import UsageError
from takeover.hw.base import RobotLink
from takeover.inputs.operator_sim import SimulatedOperator
from takeover.inputs.scripted import DeadmanHolder, ScriptedOperator
from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.writer import EpisodeWriter
from takeover.session.help_tally import EpisodeHelp, HelpCounter, HelpTally, help_totals
from takeover.session.stack import build_control_loop, simulated_operator, start_recorder
from takeover.sim.expert import DockingExpert
from takeover.sim.truth_log import contacts_between, read_truth_log, truth_at
from takeover.types import Outcome, Pose2D
from takeover.workspace.layout import round_for_model

if TYPE_CHECKING:
    from takeover.policy.runtime import ChunkPolicy
    from takeover.session.drive import DriveRequest

#: The simulator's truth outcomes that count as a collision during a reset.
COLLISION_OUTCOMES = ("collision", "misaligned")


def run_drive_resets(link: RobotLink, config: Config, request: DriveRequest, rate_hz: float,
                     progress: TextIO | None, policy: ChunkPolicy | None,
                     demonstration: DemonstrationConfig | None = None,
                     count_help: HelpCounter | None = None) -> dict[str, Any]:
    """Run the attempts and resets; the `--json` summary (drive's fields plus `reset`).
    demonstration: the DART noise in effect for the expert's MANUAL attempts; count_help: as
    run_drive's (the help figures per attempt and in total)."""
    def note(text: str) -> None:
        if progress is not None:
            print(text, file=progress, flush=True)

    hands_off = DeadmanHolder()
    loop = build_control_loop(config, link, hands_off, policy, rate_hz=rate_hz,
                              demonstration=demonstration)
    driver = ResetDriver(config.docking.reset)
    loop.set_reset_driver(driver)
    planner = ResetPlanner(config.docking)
    radius_m = config.safety.field.footprint_radius_m
    if request.driver != "policy" and planner.frame is None:
        raise UsageError(
            f"--driver {request.driver} with --reset drive steers to the dock the lifecycle "
            "knows: set the docked pose in [docking.reset] x_m, y_m, yaw_rad (docs/docking.md)")
    steer = _Steering(request.driver, loop, rate_hz, config)
    loop.operator = hands_off  # the steering drives only the attempts
    tally = None if count_help is None else HelpTally(count_help, rate_hz, steer.simulated)

    runner = EpisodeRunner(loop, max_steps=request.max_steps, on_event=note,
                           on_record=None if tally is None else tally.on_record,
                           docking=config.docking, end_on_detection=True)

    def anchor_corridor() -> None:
        # The field's docking corridor, the expert's dock and the detector's "at the dock"
        # follow the docked pose.
        if planner.frame is not None:
            face = planner.frame.face(radius_m)
            loop.anchor_dock(face)
            steer.aim(face)
            runner.docked_pose = planner.frame.pose

    anchor_corridor()
    writer = _writer(request, rate_hz, link.lockstep, note)
    if writer is not None:
        loop.sinks.append(writer)
    model_id = policy.runtime.model_id if policy is not None else ""
    period_s = 1.0 / rate_hz
    results: list[EpisodeResult] = []
    helped: list[EpisodeHelp] = []
    resets: list[ResetResult | None] = []
    retries: list[int] = []  # per reset: which retry of the same start it began (0: none)
    saved: list[str] = []
    failed_resets = 0
    if not link.lockstep:
        loop.start()
    try:
        for i in range(request.episodes):
            latest = link.latest()
            planner.attempt_started(latest.odom if latest is not None else None)

            def prepare(i: int = i) -> None:
                if tally is not None:
                    tally.start()
                if writer is not None:
                    writer.begin_episode(EpisodeMeta(
                        round=round_for_model(model_id), rate_hz=rate_hz, model_id=model_id,
                        operator=steer.name, robot_url=link.url,
                        config=dataclasses.asdict(config),
                        extra={"attempt": i, "retry": planner.retries}, origin="takeover drive"))

            loop.operator = steer.operator
            result = runner.run(request.seed + i, steer.engage, prepare=prepare)
            loop.operator = hands_off
            results.append(result)
            if tally is not None:
                helped.append(tally.finish(result.outcome))
            if writer is not None:
                path = save_episode(writer, result)
                if path is not None:
                    saved.append(str(path))
            note(f"attempt {i + 1}/{request.episodes}: {result.outcome} ({result.detail}) in "
                 f"{result.steps} steps")
            if i + 1 == request.episodes:
                resets.append(None)  # the last attempt leaves the robot where it is (charging)
                break
            seen = link.latest()
            obstacles = None if seen is None or seen.scan_m is None else scan_points(
                seen.odom, seen.scan_m)
            plan = planner.attempt_ended(Outcome(result.outcome), result.end_odom, obstacles)
            anchor_corridor()
            if plan is None:
                raise UsageError("no docked pose and no start pose known: set [docking.reset] "
                                 "x_m, y_m, yaw_rad (the docked pose in the odometry frame)")
            done = runner.reset(plan.target, undock=True, kind=plan.kind,
                                timeout_s=config.docking.reset.timeout_s)
            resets.append(done)
            retries.append(plan.retry)
            note(f"reset {len(resets)} ({plan.kind}): "
                 f"{'reached' if done.reached else 'not reached'} ({done.reason}) in "
                 f"{done.steps * period_s:.1f} s")
            failed_resets = 0 if done.reached else failed_resets + 1
            if failed_resets >= MAX_FAILED_RESETS_IN_A_ROW:
                note(f"{failed_resets} resets in a row failed: stopping, the robot needs a person")
                break
    finally:
        loop.stop()
        if writer is not None:
            writer.stop()
    truth = read_truth_log(request.truth_log) if request.truth_log is not None else None
    summary = _summary(link, request, policy, loop.timing().as_json(), results, resets, retries,
                       saved, period_s, truth)
    summary["supervision"] = config.supervision.mode
    if tally is not None:
        summary.update(help_totals(helped))
        for row, help_row in zip(summary["per_episode"], helped, strict=True):
            row.update(help_row.as_json())
    return summary


class _Steering:
    """Who drives the attempts: the operator source, the mode it engages and its name."""

    def __init__(self, driver: str, loop: ControlLoop, rate_hz: float, config: Config) -> None:
        self.expert: DockingExpert | None = None
        self.simulated: SimulatedOperator | None = None
        self.operator: OperatorSource = DeadmanHolder()
        self.engage, self.name = OperatorEvent.AUTO, "deadman-holder"
        if driver == "expert":
            self.expert = DockingExpert(Pose2D(0.0, 0.0, 0.0))  # aimed before the first attempt
            self.operator = ScriptedOperator(self.expert.command)
            self.engage, self.name = OperatorEvent.MANUAL, "expert"
        elif driver == "operator-sim":
            # Aimed before the first attempt; in the loop's sinks throughout (it sees the
            # records), its operator source only while an attempt runs.
            self.simulated = simulated_operator(Pose2D(0.0, 0.0, 0.0), loop, rate_hz,
                                                config.supervision)
            self.operator = self.simulated
            self.name = "operator-sim"

    def aim(self, face: Pose2D) -> None:
        if self.expert is not None:
            self.expert.reset(face)
        if self.simulated is not None:
            self.simulated.reset(face)


def save_episode(writer: EpisodeWriter, result: EpisodeResult) -> Path | None:
    """End the open episode with the attempt's outcome and the detector's verdict and
    evidence; the saved file, or None where nothing was saved."""
    detected = result.detected
    return writer.end_episode(
        result.outcome, end_reason=result.detail,
        detected_outcome=detected.outcome if detected is not None else "",
        outcome_evidence=detected.evidence if detected is not None else None,
    ).result()


def _writer(request: DriveRequest, rate_hz: float, lockstep: bool,
            note: Any) -> EpisodeWriter | None:
    if not request.record:
        return None
    assert request.workspace is not None
    return start_recorder(request.workspace, rate_hz, lockstep=lockstep,
                          on_alert=lambda a: note(f"recorder: {a.message}"))


def _summary(link: RobotLink, request: DriveRequest, policy: ChunkPolicy | None,
             loop_json: dict[str, Any], results: list[EpisodeResult],
             resets: list[ResetResult | None], retries: list[int], saved: list[str],
             period_s: float, truth: list[dict[str, Any]] | None) -> dict[str, Any]:
    per_episode = []
    for i, (result, reset) in enumerate(zip(results, resets, strict=False)):
        row: dict[str, Any] = result.as_json()
        if truth is not None:
            state = truth_at(truth, result.wall_end_ns)
            row["outcome_truth"] = OUTCOME_SUCCESS if state == "docked" else "failure"
        if reset is not None:
            row["reset"] = reset.as_json()
            # kind "staging" is also where a reset goes when no start pose is free: the retry
            # number tells a retry (`[docking] max_retries`) from that.
            row["reset"]["retry"] = retries[i]
            if truth is not None:
                # A collision or a misaligned touch; a good contact with the charger is not one.
                row["reset"]["collisions_truth"] = contacts_between(
                    truth, reset.wall_start_ns, reset.wall_end_ns, COLLISION_OUTCOMES)
        per_episode.append(row)
    done = [r for r in resets if r is not None]
    robot_s = sum(r.steps for r in results) * period_s + sum(r.steps for r in done) * period_s
    successes = sum(r.outcome == OUTCOME_SUCCESS for r in results)
    reset_json: dict[str, Any] = {
        "count": len(done),
        "reached": sum(r.reached for r in done),
        "collisions": sum(r.bumps for r in done),
        "mean_s": round(sum(r.steps for r in done) * period_s / len(done), 3) if done else None,
        "attempts_per_hour": round(len(results) / (robot_s / 3600.0), 1) if robot_s else None,
    }
    if truth is not None:
        reset_json["collisions_truth"] = sum(row["reset"]["collisions_truth"]
                                             for row in per_episode if "reset" in row)
    return {
        "episodes": len(results),
        "successes": successes,
        "success_rate": successes / len(results) if results else 0.0,
        "robot": link.url,
        "driver": request.driver,
        "fast": link.lockstep,
        "reset_mode": "drive",
        "loop": loop_json,
        **({} if policy is None else {"policy": {
            "model": str(policy.runtime.path), "model_id": policy.runtime.model_id,
            "inferences": policy.inferences, "slow_inferences": policy.slow_inferences,
            **policy.latency_summary()}}),
        "per_episode": per_episode,
        "reset": reset_json,
        "recorded": saved,
    }
