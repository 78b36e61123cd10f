"""The protective field in the Arbiter's path, with the real loop in lockstep with the real
simulator: a LiDAR that stops or freezes, the docking corridor, an obstacle in the path, and
what `warn` leaves to the operator."""

from __future__ import annotations

import dataclasses

import pytest

from takeover.bench.safety import ExpertAsPolicy
from takeover.config import FieldConfig, FieldDockConfig, SafetyConfig
from takeover.control.arbiter import Arbiter, OperatorEvent
from takeover.control.episodes import EpisodeRunner
from takeover.control.loop import ControlLoop
from takeover.inputs.scripted import DeadmanHolder, ScriptedOperator
from takeover.sim.expert import DockingExpert
from takeover.sim.link import SimLink
from takeover.sim.simulator import SimConfig, SimOutcome
from takeover.types import CommandSource, FieldState, Mode, StepRecord

SEED = 1000  # the expert docks from this start in MANUAL and in AUTO


def safety(**field: object) -> SafetyConfig:
    return dataclasses.replace(SafetyConfig(), field=dataclasses.replace(FieldConfig(), **field))


def auto_stack(config: SafetyConfig, seed: int = SEED, obstacles: str = "none"
               ) -> tuple[SimLink, ControlLoop]:
    """The expert proposing in AUTO (as a policy would), a script holding the deadman."""
    link = SimLink(seed=seed, config=SimConfig(obstacles=obstacles), with_image=False)
    link.connect()
    loop = ControlLoop(link, Arbiter(config, policy_available=True), DeadmanHolder(),
                       ExpertAsPolicy(link))
    loop.refresh_dock_pose()
    return link, loop


def engage_auto(loop: ControlLoop) -> StepRecord:
    loop.post(OperatorEvent.AUTO)
    return loop.tick()


def test_without_a_scan_auto_stops_the_robot_and_says_so() -> None:
    link, loop = auto_stack(SafetyConfig())
    link.lidar_fault = "off"
    link.reset(SEED)
    start = link.sim.pose
    records = [engage_auto(loop)] + [loop.tick() for _ in range(20)]
    for rec in records:
        assert rec.mode is Mode.AUTO and rec.command.is_zero and rec.source is CommandSource.NONE
        assert rec.field is not None and rec.field.state is FieldState.BLIND
        assert "no LiDAR scan" in rec.reason
        assert rec.policy_action is not None and rec.policy_action.v_mps > 0  # it wanted to go
    assert link.sim.pose == start
    link.lidar_fault = ""  # the LiDAR is back: the policy drives again
    loop.tick()
    assert loop.tick().command.v_mps > 0


def test_a_frozen_scan_stops_the_robot_once_it_is_older_than_the_limit() -> None:
    config = SafetyConfig()
    link, loop = auto_stack(config)
    engage_auto(loop)
    for _ in range(20):
        assert not loop.tick().command.is_zero
    link.lidar_fault = "frozen"
    limit_ns = config.field.scan_max_age_ms * 1e6
    for _ in range(8):
        rec = loop.tick()
        obs = rec.observation
        assert obs is not None
        age_ns = rec.t_ns - obs.input_t_ns.get("scan", obs.t_ns)
        if age_ns > limit_ns:
            assert rec.command.is_zero
            assert rec.mode is Mode.LINK_LOST or "LiDAR scan" in rec.reason
        else:
            assert rec.field is not None and rec.field.state is not FieldState.BLIND
    assert rec.command.is_zero


def test_the_docking_corridor_lets_the_robot_dock_and_without_it_the_dock_stops_it() -> None:
    link, loop = auto_stack(SafetyConfig())
    result = EpisodeRunner(loop, keep_records=True).run(SEED, OperatorEvent.AUTO)
    assert result.outcome == "success" and link.sim.outcome is SimOutcome.DOCKED
    corridor = [r for r in result.records if r.field and r.field.state is FieldState.CORRIDOR]
    assert corridor, "the dock was muted in its corridor"
    creep = SafetyConfig().field.creep_mps
    assert all(r.command.v_mps <= creep + 1e-9 for r in corridor if r.field.clearance_m < 0.01)
    assert link.sim.contact_report["speed_mps"] <= creep

    no_corridor = safety(dock=FieldDockConfig(source="none"))
    link, loop = auto_stack(no_corridor)
    result = EpisodeRunner(loop, max_steps=500, keep_records=True).run(SEED, OperatorEvent.AUTO)
    assert result.detail == "timeout" and link.sim.outcome is SimOutcome.RUNNING
    assert result.protective_stops >= 1
    assert link.sim.clearance_m() > 0.05  # it stopped short of the dock it may not touch


# A seed whose box (or person) the expert, unaware of it, drives into (`bench safety`'s first).
OBSTACLE_SEED = 7002


@pytest.mark.parametrize("obstacle", ["box", "person"])
def test_an_obstacle_in_the_path_stops_the_robot_and_then_it_docks(obstacle: str) -> None:
    link, loop = auto_stack(safety(auto="off"), OBSTACLE_SEED, obstacles=obstacle)
    EpisodeRunner(loop).run(OBSTACLE_SEED, OperatorEvent.AUTO)
    assert link.sim.outcome is SimOutcome.COLLISION and link.sim.collided_with == obstacle

    link, loop = auto_stack(SafetyConfig(), OBSTACLE_SEED, obstacles=obstacle)
    result = EpisodeRunner(loop, keep_records=True).run(OBSTACLE_SEED, OperatorEvent.AUTO)
    assert link.sim.obstacles.appeared
    assert result.outcome == "success", "the obstacle goes away and the robot docks"
    assert result.protective_stops >= 1
    stopped = [r for r in result.records if r.field and r.field.state is FieldState.STOPPED]
    assert all(r.command.v_mps == 0.0 and r.mode is Mode.AUTO for r in stopped)
    assert "protective field" in stopped[0].reason


def test_warn_only_in_manual_leaves_the_command_to_the_operator() -> None:
    seed = OBSTACLE_SEED
    link = SimLink(seed=seed, config=SimConfig(obstacles="box"), with_image=False)
    link.connect()
    expert = DockingExpert(link.dock_pose())
    loop = ControlLoop(link, Arbiter(SafetyConfig()), ScriptedOperator(expert.command))
    result = EpisodeRunner(loop, keep_records=True).run(seed, OperatorEvent.MANUAL)
    warned = [r for r in result.records if r.field and "(warn only)" in r.field.reason]
    assert warned, "the field says what it would have done"
    assert any(r.command.v_mps > 0 for r in warned), "it would have stopped; it did not"
    assert all(r.field.state is FieldState.WARNING for r in warned)
    assert link.sim.collided_with == "box"  # the operator's call: the expert ignored the box
    assert result.protective_stops == 0
