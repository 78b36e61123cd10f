"""The simulated operator through the real control loop, Arbiter and simulator (lockstep)."""

from __future__ import annotations

import math
from typing import Any

from takeover.config import SafetyConfig
from takeover.control.arbiter import Arbiter, OperatorEvent
from takeover.control.episodes import EpisodeRunner
from takeover.control.loop import ControlLoop
from takeover.inputs.operator_sim import SimulatedOperator
from takeover.sim.expert import DockingExpert
from takeover.sim.link import SimLink
from takeover.types import Command, CommandSource, Mode, Observation


class FlawedPolicy:
    """The expert close to the dock, but circling whenever it is more than 1.2 m from it: a
    correction far out should be all it needs."""

    def __init__(self, link: SimLink) -> None:
        self.link = link
        self.expert = DockingExpert(link.dock_pose())

    def propose(self, obs: Observation) -> Command | None:
        cmd = self.expert.command(obs.odom)
        d = self.expert.dock
        if math.hypot(obs.odom.x_m - d.x_m, obs.odom.y_m - d.y_m) > 1.2:
            return Command(0.25, 0.5)
        return cmd

    def drop_queued_actions(self) -> None: ...

    def reset(self) -> None:
        self.expert.reset(self.link.dock_pose())


def run(seed: int, policy_type: type[FlawedPolicy] = FlawedPolicy) -> tuple[Any, list[Any]]:
    """One episode of `policy_type` under the simulated operator, through the real loop."""
    link = SimLink("sim://?fast=1", seed=seed)
    link.connect()
    policy = policy_type(link)
    loop = ControlLoop(link, Arbiter(SafetyConfig(), policy_available=True), policy=policy)
    operator = SimulatedOperator(link.dock_pose(), loop.post)
    loop.operator = operator
    loop.sinks.append(operator)
    runner = EpisodeRunner(loop, max_steps=2000, keep_records=True)
    result = runner.run(seed, OperatorEvent.AUTO,
                        prepare=lambda: operator.reset(link.dock_pose()))
    link.close()
    return result, result.records


def test_operator_takes_over_corrects_and_hands_back() -> None:
    result, records = run(seed=31)
    assert result.outcome == "success", result.detail
    assert result.interventions >= 1
    modes = [r.mode for r in records]
    first = modes.index(Mode.TAKEOVER)
    assert Mode.AUTO in modes[first:], "handed back to the policy after correcting"
    takeover_recs = [r for r in records if r.mode is Mode.TAKEOVER]
    assert all(r.action_mode == 1 for r in takeover_recs)
    assert all(r.source is CommandSource.HUMAN for r in takeover_recs if not r.command.is_zero)
    assert all(r.policy_action is not None for r in takeover_recs), "proposals kept while human drives"
    assert records[-1].mode is Mode.AUTO, "the policy finished the docking"


def test_operator_leaves_a_good_policy_alone() -> None:
    class ExpertPolicy(FlawedPolicy):
        def propose(self, obs: Observation) -> Command | None:
            return self.expert.command(obs.odom)

    result, _ = run(32, ExpertPolicy)
    assert result.outcome == "success" and result.interventions == 0


def test_operator_drives_a_fumbled_final_approach_in_instead_of_taking_turns() -> None:
    """A policy that stops once within 0.25 m of the dock: the operator takes over (no
    progress) once and docks it. (Handing back there had the two take turns, 1 s each, until timeout.)"""

    class FumblingPolicy(FlawedPolicy):
        def propose(self, obs: Observation) -> Command | None:
            cmd = self.expert.command(obs.odom)
            return Command(0.0, 0.0) if self.expert.dock_frame(obs.odom).gap_m < 0.25 else cmd

    result, records = run(33, FumblingPolicy)
    assert result.outcome == "success", result.detail
    assert result.interventions == 1
    assert records[-1].mode is Mode.TAKEOVER, "the operator's hands docked it"
