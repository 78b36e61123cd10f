"""The composition root of the robot stack: the one place that assembles link + Arbiter +
control loop + demonstration noise + recorder, and loads the policy for them.

The operator's session (`takeover run`, in its core process) and headless `takeover drive`
(and through it `dagger eval`, `bench dagger` and `bench supervision`) both build their stack
here, so what an operator supervises is what was measured: the same [safety] Arbiter with the
same [supervision] help requests, the same [loop] rate and priority, the same [demonstration]
noise, the same [policy] executor (`load_robot_policy`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from takeover.config import Config, DemonstrationConfig, SupervisionConfig
from takeover.control.arbiter import Arbiter
from takeover.control.loop import ControlLoop, OperatorSource, PolicyDriver
from takeover.control.perturbation import CommandPerturbation
from takeover.hw.base import RobotLink
from takeover.inputs.operator_sim import SimulatedOperator
from takeover.recorder.writer import EpisodeWriter, RecorderAlert
from takeover.types import Pose2D

if TYPE_CHECKING:
    from takeover.policy.runtime import ChunkPolicy


def build_control_loop(config: Config, link: RobotLink, operator: OperatorSource,
                       policy: PolicyDriver | None, *, rate_hz: float | None = None,
                       demonstration: DemonstrationConfig | None = None,
                       supervision: SupervisionConfig | None = None,
                       noise_seed: int = 0) -> ControlLoop:
    """The loop over `link` with the Arbiter of `config.safety` and `config.supervision` (who
    decides when the operator looks: in robot or both mode the robot asks for help and holds
    still until answered, control/help.py). rate_hz: an override of [loop] rate_hz
    (`drive --rate-hz`); demonstration: of [demonstration] (`drive --demo-noise`); supervision:
    of [supervision] (`drive --supervision`). The noise, when on, pushes MANUAL demonstrations
    only (control/perturbation.py)."""
    rate = rate_hz or config.loop.rate_hz
    demo = demonstration or config.demonstration
    perturbation = CommandPerturbation(demo, rate, seed=noise_seed) if demo.active else None
    arbiter = Arbiter(config.safety, policy_available=policy is not None,
                      supervision=supervision or config.supervision)
    return ControlLoop(link, arbiter, operator, policy, rate_hz=rate,
                       realtime_priority=config.loop.realtime_priority, perturbation=perturbation)


def simulated_operator(dock: Pose2D, loop: ControlLoop, rate_hz: float,
                       supervision: SupervisionConfig) -> SimulatedOperator:
    """The simulated operator on `loop` (its operator source, and a sink of its records to see
    the policy's proposals and help requests) under [supervision]: in robot mode it looks only
    when the robot asks. `takeover drive --driver operator-sim` and `bench supervision`."""
    operator = SimulatedOperator(dock, loop.post, rate_hz=rate_hz, supervision=supervision)
    loop.operator = operator
    loop.sinks.append(operator)
    return operator


def start_recorder(workspace: Path, rate_hz: float, *, lockstep: bool = False,
                   on_alert: Callable[[RecorderAlert], None] | None = None,
                   robot_name: str = "") -> EpisodeWriter:
    """The episode writer of a workspace, started. In lockstep nothing is real time, so the
    simulation waits for the disk (backpressure) rather than drop a step. robot_name: the
    robot's name when several record into the workspace ("" for one unnamed robot): its lock,
    its files' names and its episodes' `robot_name` (recorder/writer.py)."""
    writer = EpisodeWriter(workspace, rate_hz=rate_hz, backpressure=lockstep, on_alert=on_alert,
                           robot_name=robot_name)
    writer.start()
    return writer


def load_robot_policy(path: Path, config: Config) -> ChunkPolicy:
    """The ONNX policy as the robot runs it ([policy] executor, checked against [robot]'s
    camera): `takeover.policy.runtime.load_policy`, imported when first needed so that a
    session without a model never loads onnxruntime."""
    from takeover.policy.runtime import load_policy

    return load_policy(path, config)
