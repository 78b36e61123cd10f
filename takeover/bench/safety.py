"""`takeover bench safety`: the protective field measured, off against on, on the same seeds.

The scripted docking expert drives in AUTO as if it were the policy: it steers by the dock's
pose on the map and knows nothing of the dynamic obstacles (sim/obstacles.py) the simulator
puts in its path, as a learned policy that never saw one would not. Each seed is run twice,
with `[safety.field] auto = "off"` and with the field on (the configuration's own field, which
limits in AUTO by default), through the real Arbiter and control loop in lockstep with the
simulator. A collision is contact with anything but the dock (a wall, clutter, the box, the
person); touching the dock out of tolerance is a misaligned docking, counted apart.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TextIO

from takeover.config import Config, FieldConfig
from takeover.control.arbiter import Arbiter, OperatorEvent
from takeover.control.episodes import OUTCOME_SUCCESS, EpisodeRunner
from takeover.control.loop import ControlLoop
from takeover.dagger.metrics import wilson_interval
from takeover.errors import UsageError
from takeover.hw.base import RobotLink
from takeover.inputs.scripted import DeadmanHolder
from takeover.sim.expert import DockingExpert
from takeover.sim.link import SimLink
from takeover.sim.obstacles import OBSTACLE_FAMILIES
from takeover.sim.simulator import SimConfig, SimOutcome
from takeover.types import Command, Observation

DEFAULT_SAFETY_SEED = 7000  # apart from demonstrations (1000..), rounds (2000..), evaluation (5000..)


class ExpertAsPolicy:
    """The docking expert behind the PolicyDriver interface: proposes in AUTO every tick."""

    def __init__(self, link: RobotLink) -> None:
        self.link = link
        self.expert = DockingExpert(link.dock_pose())

    def propose(self, obs: Observation) -> Command | None:
        return self.expert.command(obs.odom)

    def drop_queued_actions(self) -> None:
        """No queue: the expert decides from the current pose."""

    def reset(self) -> None:
        self.expert.reset(self.link.dock_pose())  # the dock moves with the seed


@dataclasses.dataclass
class ArmCounts:
    episodes: int = 0
    successes: int = 0
    collisions: int = 0
    protective_stops: int = 0
    misaligned: int = 0
    timeouts: int = 0
    obstacles_appeared: int = 0
    collisions_with: dict[str, int] = dataclasses.field(default_factory=dict)
    success_times_s: list[float] = dataclasses.field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        lo, hi = wilson_interval(self.successes, self.episodes)
        times = self.success_times_s
        return {
            "episodes": self.episodes,
            "collisions": self.collisions,
            "protective_stops": self.protective_stops,
            "success_rate": round(self.successes / self.episodes, 4) if self.episodes else None,
            "ci_low": round(lo, 4) if self.episodes else None,
            "ci_high": round(hi, 4) if self.episodes else None,
            "mean_time_s": round(sum(times) / len(times), 3) if times else None,
            "successes": self.successes,
            "misaligned": self.misaligned,
            "timeouts": self.timeouts,
            "obstacles_appeared": self.obstacles_appeared,
            "collisions_with": dict(sorted(self.collisions_with.items())),
        }


def run_arm(config: Config, seeds: list[int], obstacles: str, max_steps: int,
            progress: TextIO | None = None, label: str = "") -> ArmCounts:
    """One arm of the bench: every seed with the expert in AUTO under `config.safety`."""
    link = SimLink("sim://?fast=1", seed=seeds[0], config=SimConfig(obstacles=obstacles),
                   with_image=False)
    link.connect()
    driver = ExpertAsPolicy(link)
    loop = ControlLoop(link, Arbiter(config.safety, policy_available=True), DeadmanHolder(),
                       driver, rate_hz=config.loop.rate_hz)
    runner = EpisodeRunner(loop, max_steps=max_steps)
    counts = ArmCounts()
    try:
        for i, seed in enumerate(seeds):
            result = runner.run(seed, OperatorEvent.AUTO)
            sim = link.sim
            counts.episodes += 1
            counts.protective_stops += result.protective_stops
            counts.obstacles_appeared += int(sim.obstacles.appeared)
            if result.outcome == OUTCOME_SUCCESS:
                counts.successes += 1
                counts.success_times_s.append(result.steps / config.loop.rate_hz)
            elif sim.outcome is SimOutcome.COLLISION:
                counts.collisions += 1
                what = sim.collided_with or "unknown"
                counts.collisions_with[what] = counts.collisions_with.get(what, 0) + 1
            elif sim.outcome is SimOutcome.MISALIGNED:
                counts.misaligned += 1
            elif result.detail == "timeout":
                counts.timeouts += 1
            if progress is not None and ((i + 1) % 10 == 0 or i + 1 == len(seeds)):
                print(f"{label}: {i + 1}/{len(seeds)} episodes, {counts.successes} docked, "
                      f"{counts.collisions} collisions, {counts.protective_stops} protective "
                      "stops", file=progress, flush=True)
    finally:
        loop.stop()
        link.close()
    return counts


def run_safety_bench(episodes: int = 100, seed: int = DEFAULT_SAFETY_SEED,
                     obstacles: str = "walk-in", config: Config | None = None,
                     max_steps: int = 1200, progress: TextIO | None = None) -> dict[str, Any]:
    """The `bench safety --json` object: `field_off` and `field_on`, same seeds."""
    if episodes < 1:
        raise UsageError("--episodes must be at least 1")
    if obstacles not in OBSTACLE_FAMILIES:
        raise UsageError(f"--obstacles {obstacles}: use one of {', '.join(OBSTACLE_FAMILIES)}")
    config = config or Config()
    field_on = config.safety.field
    if field_on.auto == "off":
        field_on = dataclasses.replace(field_on, auto="limit")
    arms = {}
    seeds = list(range(seed, seed + episodes))
    for name, field in (("field_off", dataclasses.replace(field_on, auto="off")),
                        ("field_on", field_on)):
        arm_config = dataclasses.replace(
            config, safety=dataclasses.replace(config.safety, field=field))
        arms[name] = run_arm(arm_config, seeds, obstacles, max_steps, progress, name).as_json()
    return {
        **arms,
        "obstacles": obstacles,
        "seeds": [seeds[0], seeds[-1]],
        "driver": "expert in AUTO, unaware of the obstacles",
        "field": _field_summary(field_on),
        "interval": "95% Wilson score",
    }


def _field_summary(field: FieldConfig) -> dict[str, float | str]:
    return {"protective_m": field.protective_m, "brake_decel_mps2": field.brake_decel_mps2,
            "reaction_time_s": field.reaction_time_s, "footprint_radius_m": field.footprint_radius_m,
            "creep_mps": field.creep_mps, "horizon_s": field.horizon_s}

