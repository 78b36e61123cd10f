"""The composition root of the robot stack: the one place that assembles link + Arbiter +
control loop + demonstration noise + recorder, and loads the policy for them.

The operator's session (`takeover run`, in its core process) and headless `takeover drive`
(and through it `dagger eval` and `bench dagger`) both build their stack here, so what an
operator supervises is what was measured: the same [safety] Arbiter, the same [loop] rate and
priority, the same [demonstration] noise, the same [policy] executor (`load_robot_policy`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from takeover.config import Config, DemonstrationConfig
from takeover.control.arbiter import Arbiter
from takeover.control.loop import ControlLoop, OperatorSource, PolicyDriver
from takeover.control.perturbation import CommandPerturbation
from takeover.hw.base import RobotLink
from takeover.recorder.writer import EpisodeWriter, RecorderAlert

if TYPE_CHECKING:
    from takeover.policy.runtime import ChunkPolicy


def build_control_loop(config: Config, link: RobotLink, operator: OperatorSource,
                       policy: PolicyDriver | None, *, rate_hz: float | None = None,
                       demonstration: DemonstrationConfig | None = None,
                       noise_seed: int = 0) -> ControlLoop:
    """The loop over `link` with the Arbiter of `config.safety`. rate_hz: a override of
    [loop] rate_hz (`drive --rate-hz`); demonstration: of [demonstration] (`drive --demo-noise`).
    The noise, when on, pushes MANUAL demonstrations only (control/perturbation.py)."""
    rate = rate_hz or config.loop.rate_hz
    demo = demonstration or config.demonstration
    perturbation = CommandPerturbation(demo, rate, seed=noise_seed) if demo.active else None
    return ControlLoop(link, Arbiter(config.safety, policy_available=policy is not None),
                       operator, policy, rate_hz=rate,
                       realtime_priority=config.loop.realtime_priority, perturbation=perturbation)


def start_recorder(workspace: Path, rate_hz: float, *, lockstep: bool = False,
                   on_alert: Callable[[RecorderAlert], None] | None = None) -> EpisodeWriter:
    """The episode writer of a workspace, started. In lockstep nothing is real time, so the
    simulation waits for the disk (backpressure) rather than drop a step."""
    writer = EpisodeWriter(workspace, rate_hz=rate_hz, backpressure=lockstep, on_alert=on_alert)
    writer.start()
    return writer


def load_robot_policy(path: Path, config: Config) -> ChunkPolicy:
    """The ONNX policy as the robot runs it ([policy] executor, checked against [robot]'s
    camera): `takeover.policy.runtime.load_policy`, imported when first needed so that a
    session without a model never loads onnxruntime."""
    from takeover.policy.runtime import load_policy

    return load_policy(path, config)
