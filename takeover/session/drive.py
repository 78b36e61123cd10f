"""`takeover drive`: headless episodes through the full control loop and Arbiter.

Each episode resets the (simulated) world with its seed, engages the driver and runs until the
base docks, bumps, faults or times out. On a robot that is not a simulator (`ws://` to a real
base) only `--driver policy` works: it needs nothing but the robot's observations, and its one
episode starts where the robot stands. The expert and the simulated operator steer by the
simulator's privileged state (the dock pose, a world reset per seed) and say so.

The expert demonstrates in MANUAL through a scripted operator that holds the deadman, exactly as
a person at the gamepad would. The policy drives in AUTO (onnxruntime only, no torch): with
`--driver policy` a scripted supervisor holds the deadman and never takes over (the policy's own
performance); with `--driver operator-sim` the simulated operator (takeover.inputs.operator_sim)
takes over when the robot strays, and its corrections are recorded as a person's would be.

Supervision ([supervision] mode, or `--supervision`): in `robot` and `both` the robot asks for
help when unsure (control/help.py) and holds still until answered; the simulated operator then
looks only when asked (`robot`) or watches and answers (`both`). With a help counter (the CLI
passes dagger.metrics.episode_help_counts) each episode and the totals carry the requests, how
they were answered, the failures no request warned of, and the operator's attention and driving
time (session/help_tally.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from takeover.config import (
    SUPERVISION_MODES,
    Config,
    DemonstrationConfig,
    load_config,
    workspace_config,
)
from takeover.control.arbiter import OperatorEvent
from takeover.control.episodes import OUTCOME_SUCCESS, EpisodeResult, EpisodeRunner
from takeover.control.loop import OperatorSource
from takeover.errors import ConfigError, UsageError
from takeover.hw.base import LinkOptions, RobotLink, open_link
from takeover.inputs.operator_sim import SimulatedOperator
from takeover.inputs.scripted import DeadmanHolder, ScriptedOperator
from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.writer import EpisodeWriter, RecorderAlert
from takeover.session.drive_resets import run_drive_resets, save_episode
from takeover.session.episode_meter import EpisodeMeter
from takeover.session.help_tally import EpisodeHelp, HelpCounter, HelpTally, help_totals
from takeover.session.stack import (
    build_control_loop,
    load_robot_policy,
    simulated_operator,
    start_recorder,
)
from takeover.sim.expert import DockingExpert
from takeover.types import StepRecord
from takeover.workspace.layout import round_for_model
from takeover.workspace.registry import resolve_policy_path

if TYPE_CHECKING:
    from takeover.policy.runtime import ChunkPolicy


@dataclass(frozen=True)
class DriveRequest:
    robot_url: str | None
    driver: str
    episodes: int = 1
    seed: int = 0
    workspace: Path | None = None
    policy: Path | None = None
    record: bool = False
    fast: bool = False
    max_steps: int = 1200
    rate_hz: float | None = None
    config_path: Path | None = None
    demo_noise_w_radps: float | None = None  # overrides [demonstration] noise_w_radps
    # Add time to dock, path, jerk and clearance to each episode (session/episode_meter.py).
    measure: bool = False
    # Between episodes: "teleport" (the simulator's world reset per seed) or "drive" (undock
    # and drive to a new start pose, as on a real base; outcomes from the docking detector).
    reset: str = "teleport"
    # The simulator's truth log (`sim://?reset=drive&truth_log=..`, `sim serve --truth-log`):
    # each attempt's `outcome_truth`, and the collisions during resets.
    truth_log: Path | None = None
    # Overrides [supervision] mode: human (the operator watches), robot (the robot asks for
    # help and holds still until answered) or both.
    supervision: str | None = None


def demonstration_noise(request: DriveRequest, config: Config) -> DemonstrationConfig:
    demo = config.demonstration
    if request.demo_noise_w_radps is not None:
        demo = dataclasses.replace(demo, noise_w_radps=request.demo_noise_w_radps)
        try:
            demo.check()  # the same bounds as [demonstration] in takeover.toml
        except ConfigError as e:
            raise UsageError(f"--demo-noise {request.demo_noise_w_radps}: {e}") from None
    return demo


def drive_config(request: DriveRequest) -> Config:
    if request.config_path is not None:
        config = load_config(request.config_path)
    elif request.workspace is not None:
        config = workspace_config(request.workspace)
    else:
        config = Config()
    if request.supervision is not None:
        if request.supervision not in SUPERVISION_MODES:
            raise UsageError(f"--supervision {request.supervision}: use "
                             f"{', '.join(SUPERVISION_MODES)}")
        config = dataclasses.replace(config, supervision=dataclasses.replace(
            config.supervision, mode=request.supervision))
    return config


#: How the robot gets back to a start between episodes (`takeover drive --reset`).
RESET_MODES = ("teleport", "drive")

# The drivers that steer by the simulator's privileged state, and what they need of it.
SIM_ONLY_DRIVERS = {
    "expert": "the dock pose and a world reset per seed",
    "operator-sim": "the dock pose and a world reset per seed",
}


def run_drive(request: DriveRequest, progress: TextIO | None = None,
              count_help: HelpCounter | None = None) -> dict[str, Any]:
    """Run the episodes and return the `--json` summary (DESIGN.md's `drive` fields).
    count_help: dagger.metrics.episode_help_counts, to add the help figures (HELP_FIELDS of
    session/help_tally.py) to each episode and to the totals."""
    config = drive_config(request)
    if request.driver not in ("expert", "policy", "operator-sim"):
        raise UsageError(f"unknown --driver {request.driver}; use expert, policy or operator-sim")
    if request.reset not in RESET_MODES:
        raise UsageError(f"unknown --reset {request.reset}; use {' or '.join(RESET_MODES)}")
    if request.truth_log is not None and request.reset != "drive":
        raise UsageError("--truth-log goes with --reset drive (a simulator run as a real base "
                         "keeps its truth there); with teleport resets the truth is in the JSON")
    policy = load_drive_policy(request, config) if request.driver != "expert" else None
    if request.record and request.workspace is None:
        raise UsageError("--record needs --workspace DIR (episodes go to DIR/rounds/rNNN/)")
    url = request.robot_url or config.robot.url
    options = LinkOptions(
        fast=request.fast, seed=request.seed,
        camera_width=config.robot.camera_width, camera_height=config.robot.camera_height,
    )
    link = open_link(url, options)
    if request.fast and not link.lockstep:
        raise UsageError(f"--fast works only with the simulator (sim://), not {url}")
    rate_hz = request.rate_hz or config.loop.rate_hz
    if not 1.0 <= rate_hz <= 50.0:
        raise UsageError(f"--rate-hz {rate_hz}: must be between 1 and 50")
    link.connect()  # a link knows whether it reaches a simulator once it is connected
    try:
        _check_robot_for(request, link, url)
        if request.reset == "drive":
            return run_drive_resets(link, config, request, rate_hz, progress, policy,
                                    demonstration_noise(request, config), count_help)
        return _run_episodes(link, config, request, rate_hz, progress, policy, count_help)
    finally:
        link.close()


def _check_robot_for(request: DriveRequest, link: RobotLink, url: str) -> None:
    """Refuse, in one line, what this robot cannot do: a driver that needs the simulator's
    privileged state, or several episodes on a robot that nothing puts back between them."""
    if request.reset == "drive":
        if link.supports_sim_control:
            raise UsageError(
                f"--reset drive needs a robot that stays where its attempt left it, and {url} "
                "is a simulator that teleports: run it as a real base (sim://?reset=drive, "
                "`takeover sim serve --reset drive`), or leave out --reset drive")
        return
    if link.supports_sim_control:
        return
    needs = SIM_ONLY_DRIVERS.get(request.driver)
    if needs is not None:
        raise UsageError(
            f"--driver {request.driver} steers by the simulator's privileged state ({needs}), "
            f"which {url} does not offer: it is not a simulator (sim://, `takeover sim serve`); "
            "on this robot use --driver policy"
        )
    if request.episodes > 1:
        raise UsageError(
            f"--episodes {request.episodes}: {url} is not a simulator, so nothing resets it "
            "between episodes; run one episode at a time, with the robot placed at its start"
        )


def load_drive_policy(request: DriveRequest, config: Config) -> ChunkPolicy:
    """The ONNX policy (--policy PATH, else the workspace's models/current), checked against
    the configured camera before anything moves."""
    path = resolve_policy_path(request.policy, request.workspace,
                               needed_by=f"--driver {request.driver}")
    return load_robot_policy(path, config)


def _run_episodes(link: RobotLink, config: Config, request: DriveRequest, rate_hz: float,
                  progress: TextIO | None, policy: ChunkPolicy | None = None,
                  count_help: HelpCounter | None = None) -> dict[str, Any]:
    # Only the expert and the simulated operator know the dock (the simulator tells them).
    expert = DockingExpert(link.dock_pose()) if request.driver == "expert" else None
    simulated: SimulatedOperator | None = None
    if expert is not None:
        operator: OperatorSource = ScriptedOperator(expert.command)
        engage, operator_name, model_id = OperatorEvent.MANUAL, "expert", ""
    else:
        assert policy is not None  # run_drive loads it for every driver but the expert
        operator = DeadmanHolder()  # replaced below by the simulated operator, if asked for
        engage, model_id = OperatorEvent.AUTO, policy.runtime.model_id
        operator_name = "operator-sim" if request.driver == "operator-sim" else "deadman-holder"
    demo_noise = demonstration_noise(request, config)
    recorded_config = dataclasses.replace(config, demonstration=demo_noise)  # what was in effect
    loop = build_control_loop(config, link, operator, policy, rate_hz=rate_hz,
                              demonstration=demo_noise)
    # Reseeded with each episode's seed in prepare(), so an episode's pushes are reproducible.
    perturbation = loop.perturbation
    if request.driver == "operator-sim":
        simulated = simulated_operator(link.dock_pose(), loop, rate_hz, config.supervision)
    tally = None if count_help is None else HelpTally(count_help, rate_hz, simulated)
    writer = start_drive_writer(request, rate_hz, lockstep=link.lockstep, progress=progress)
    if writer is not None:
        loop.sinks.append(writer)
    def note(text: str) -> None:
        if progress is not None:
            print(text, file=progress, flush=True)

    if not link.supports_sim_control:
        note(f"{link.url} is not a simulator: no world reset, the episode starts where the "
             "robot stands")
    meter = EpisodeMeter(link, rate_hz) if request.measure else None
    # The docking outcome detector runs beside the episode's own rules ([docking]): its verdict
    # and evidence go into the episode file and the JSON.
    runner = EpisodeRunner(loop, max_steps=request.max_steps, on_event=note,
                           on_record=_on_record(meter, tally), docking=config.docking)
    measured: list[dict[str, Any]] = []
    helped: list[EpisodeHelp] = []
    if not link.lockstep:
        loop.start()
    results: list[EpisodeResult] = []
    saved: list[str] = []
    try:
        for i in range(request.episodes):
            seed = request.seed + i

            def prepare(seed: int = seed) -> None:
                # The dock moves with the seed: after the reset, ask the simulator for it.
                if expert is not None:
                    expert.reset(link.dock_pose())
                if perturbation is not None:
                    perturbation.reseed(seed)
                if simulated is not None:
                    simulated.reset(link.dock_pose())
                if tally is not None:
                    tally.start()
                if meter is not None:
                    meter.start()
                if writer is not None:
                    writer.begin_episode(EpisodeMeta(
                        round=round_for_model(model_id), rate_hz=rate_hz,
                        model_id=model_id, operator=operator_name, robot_url=link.url,
                        config=dataclasses.asdict(recorded_config),
                        extra={"seed": seed} if link.supports_sim_control else {},
                        origin="takeover drive"))

            result = runner.run(seed, engage, prepare=prepare)
            results.append(result)
            if meter is not None:
                measured.append(meter.summary(result.outcome == OUTCOME_SUCCESS, result.steps))
            if tally is not None:
                helped.append(tally.finish(result.outcome))
            path_note = ""
            if writer is not None:
                path = save_episode(writer, result)
                if path is not None:
                    saved.append(str(path))
                    path_note = f" -> {path}"
            if progress is not None:
                n_ok = sum(r.outcome == OUTCOME_SUCCESS for r in results)
                seen = "" if result.detected is None else (
                    f", detected {result.detected.outcome.value} by {result.detected.signal}")
                print(f"episode {i + 1}/{request.episodes} seed {seed}: {result.outcome} "
                      f"({result.detail}{seen}) in {result.steps} steps; {n_ok}/{len(results)} "
                      f"docked{path_note}", file=progress, flush=True)
    finally:
        loop.stop()
        if writer is not None:
            writer.stop()
    successes = sum(r.outcome == OUTCOME_SUCCESS for r in results)
    timing = loop.timing()
    return {
        "episodes": len(results),
        "successes": successes,
        "success_rate": successes / len(results),
        "robot": link.url,
        "driver": request.driver,
        "fast": link.lockstep,
        "loop": timing.as_json(),
        **({} if policy is None else {"policy": {
            "model": str(policy.runtime.path), "model_id": model_id,
            "inferences": policy.inferences, "slow_inferences": policy.slow_inferences,
            **policy.latency_summary()}}),
        "supervision": config.supervision.mode,
        **(help_totals(helped) if tally is not None else {}),
        "per_episode": [{**r.as_json(), **(measured[i] if measured else {}),
                         **(helped[i].as_json() if helped else {}),
                         **_truth(r, link)} for i, r in enumerate(results)],
        "recorded": saved,
    }


def _on_record(meter: EpisodeMeter | None, tally: HelpTally | None
               ) -> Callable[[StepRecord], None] | None:
    """The runner's per-record hook: the meter's and the tally's, where there are."""
    hooks = [h.on_record for h in (meter, tally) if h is not None]
    if not hooks:
        return None

    def on_record(rec: StepRecord) -> None:
        for hook in hooks:
            hook(rec)

    return on_record


def _truth(result: EpisodeResult, link: RobotLink) -> dict[str, str]:
    """On a simulator, `outcome_truth`: the simulator's own verdict. Its docked flag is its
    ground truth (a contact within the docking tolerance) and its bumper a collision or a
    misaligned contact, which is what an episode ends on (`outcome`); the detector
    (`outcome_detected`) reads only what a real base has: charging, bumper, odometry."""
    return {"outcome_truth": result.outcome} if link.supports_sim_control else {}


def start_drive_writer(request: DriveRequest, rate_hz: float, lockstep: bool,
                       progress: TextIO | None, robot_name: str = "", label: str = ""
                       ) -> EpisodeWriter | None:
    """The recorder of `--record` (None without it), its alerts on `progress` as
    "recorder[ label]: ...". robot_name: the name its episode files carry (a fleet's)."""
    if not request.record:
        return None
    assert request.workspace is not None
    prefix = f"recorder {label}" if label else "recorder"

    def alert(a: RecorderAlert) -> None:
        if progress is not None:
            print(f"{prefix}: {a.message}", file=progress, flush=True)

    return start_recorder(request.workspace, rate_hz, lockstep=lockstep, on_alert=alert,
                          robot_name=robot_name)
