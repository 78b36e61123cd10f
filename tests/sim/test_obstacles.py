"""The simulator's dynamic obstacles (sim/obstacles.py): drawn from the seed, placed in the
robot's path beyond a walking robot's stopping distance, seen by the LiDAR, and a person who
never walks into a robot; reachable through the robot URL."""

from __future__ import annotations

import math

import numpy as np
import pytest

from takeover.errors import UsageError
from takeover.hw.base import LinkOptions, open_link
from takeover.sim.link import SimLink
from takeover.sim.obstacles import PERSON_RADIUS_M, plan_obstacle
from takeover.sim.simulator import SimConfig, SimOutcome, Simulator
from takeover.sim.world import ROBOT_RADIUS_M
from takeover.types import Command


def drive_straight(sim: Simulator, v: float, seconds: float) -> None:
    for _ in range(round(seconds / 0.05)):
        sim.command(Command(v, 0.0))
        sim.step(0.05)
        if sim.outcome is not SimOutcome.RUNNING:
            return


def test_the_seed_chooses_the_obstacle_and_the_same_seed_gives_the_same_one() -> None:
    assert plan_obstacle("none", 3) is None
    kinds = {plan_obstacle("walk-in", s).kind for s in range(20)}  # type: ignore[union-attr]
    assert kinds == {"box", "person"}
    assert plan_obstacle("walk-in", 11) == plan_obstacle("walk-in", 11)
    with pytest.raises(ValueError, match="unknown obstacle family"):
        plan_obstacle("piano", 1)


def test_a_box_appears_in_the_path_beyond_the_stopping_distance_and_is_seen() -> None:
    sim = Simulator(7002, SimConfig(obstacles="box"))
    sim.yaw = math.atan2(sim.world.dock.y_m - sim.y, sim.world.dock.x_m - sim.x)  # face the dock
    x0, y0 = sim.x, sim.y
    for _ in range(60):
        sim.command(Command(0.3, 0.0))
        sim.step(0.05)
        if sim.obstacles.active:
            break
    assert sim.obstacles.active and sim.obstacles.kind == "box"
    gap = sim.obstacles.distance_m(sim.x, sim.y) - ROBOT_RADIUS_M
    plan = sim.obstacles.plan
    assert plan is not None and plan.ahead_m - 0.02 <= gap <= plan.ahead_m + 0.15
    # Straight ahead: the forward beams return at the box, closer than the room.
    obs = sim.observe(with_image=False)
    assert obs.scan_m is not None and float(np.nanmin(obs.scan_m[[0, 1, -1]])) < gap + 0.5
    assert math.hypot(sim.x - x0, sim.y - y0) > 0  # it was driving when the box was set down
    drive_straight(sim, 0.3, 5.0)  # driving on, it hits the box
    assert sim.outcome is SimOutcome.COLLISION and sim.collided_with == "box"


def test_a_person_walks_around_a_robot_that_stands_still() -> None:
    sim = Simulator(7002, SimConfig(obstacles="person"))
    sim.yaw = math.atan2(sim.world.dock.y_m - sim.y, sim.world.dock.x_m - sim.x)
    for _ in range(60):
        sim.command(Command(0.3, 0.0))
        sim.step(0.05)
        if sim.obstacles.active:
            break
    assert sim.obstacles.kind == "person" and sim.obstacles.active
    closest = math.inf
    for _ in range(400):  # the robot stands still; the person crosses and leaves
        sim.command(Command(0.0, 0.0))
        sim.step(0.05)
        closest = min(closest, sim.obstacles.distance_m(sim.x, sim.y) - ROBOT_RADIUS_M)
        if not sim.obstacles.active:
            break
    assert not sim.obstacles.active, "the person walked on"
    assert sim.outcome is SimOutcome.RUNNING and closest > 0
    assert sim.obstacles.appeared and PERSON_RADIUS_M == 0.25


def test_the_robot_url_selects_the_obstacles() -> None:
    link = open_link("sim://?fast=1&obstacles=walk-in", LinkOptions(seed=4))
    assert isinstance(link, SimLink) and link.sim.config.obstacles == "walk-in"
    with pytest.raises(UsageError, match="obstacles"):
        open_link("sim://?fast=1&obstacles=piano", LinkOptions())
