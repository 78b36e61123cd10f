"""The simulator playing a real base (SimConfig.real_base, sim://?reset=drive): contacts stop the
robot without freezing it and release when it drives away; no ground-truth docked flag; the
truth goes to the truth log. Off, a contact freezes the robot as before."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from dock_support import place_at_dock

from takeover.sim.simulator import SimConfig, SimOutcome, Simulator
from takeover.sim.truth_log import read_truth_log
from takeover.sim.world import KIND_DOCK, KIND_WALL, ROBOT_RADIUS_M, segment_distance
from takeover.types import POWER_SUPPLY_STATUS_CHARGING, POWER_SUPPLY_STATUS_DISCHARGING, Command

REAL = SimConfig(real_base=True)


def drive(sim: Simulator, v: float, w: float, seconds: float,
          until: SimOutcome | None = None) -> bool:
    """Command (v, w) for up to `seconds` of sim time, in 50 ms steps; with `until`, stop once
    the outcome is that. Returns whether `until` was reached."""
    for _ in range(round(seconds / 0.05)):
        sim.command(Command(v, w))
        sim.step(0.05)
        if until is not None and sim.outcome is until:
            return True
    return False


def dock_distance(sim: Simulator) -> float:
    """From the robot's centre to the dock box."""
    w = sim.world
    dock = w.seg_kind == KIND_DOCK
    return float(segment_distance(np.array([sim.x, sim.y]), w.seg_a[dock], w.seg_b[dock]).min())


def face_a_bare_wall(sim: Simulator, gap_m: float = 0.03) -> int:
    """Put the robot gap_m from a stretch of wall with nothing else within 0.6 m, facing it.
    Returns the wall segment's index."""
    w = sim.world
    walls = np.flatnonzero(w.seg_kind == KIND_WALL)
    for i in walls:
        a, b = w.seg_a[i], w.seg_b[i]
        along = (b - a) / np.linalg.norm(b - a)
        inward = np.array([-along[1], along[0]])
        centre = (a + b) / 2
        if segment_distance(centre + inward * 0.5, w.seg_a[i:i + 1], w.seg_b[i:i + 1])[0] < 0.4:
            inward = -inward  # the room is on the other side
        for frac in np.linspace(0.2, 0.8, 13):
            p = a + (b - a) * frac + inward * (ROBOT_RADIUS_M + gap_m)
            others = np.ones(len(w.seg_a), dtype=bool)
            others[i] = False
            if segment_distance(p, w.seg_a[others], w.seg_b[others]).min() > ROBOT_RADIUS_M + 0.6:
                sim.x, sim.y = float(p[0]), float(p[1])
                sim.yaw = math.atan2(-inward[1], -inward[0])
                return int(i)
    raise AssertionError("no bare stretch of wall in this room")


def wall_distance(sim: Simulator, i: int) -> float:
    w = sim.world
    return float(segment_distance(np.array([sim.x, sim.y]), w.seg_a[i:i + 1],
                                  w.seg_b[i:i + 1])[0])


def test_docks_backs_out_releases_and_docks_again() -> None:
    sim = Simulator(4, REAL)
    place_at_dock(sim)
    assert drive(sim, 0.08, 0.0, 3.0, until=SimOutcome.DOCKED)
    sim.step(0.05)
    obs = sim.observe()
    assert not obs.docked, "a real base has no ground-truth docked flag"
    assert not obs.bumper
    assert obs.power_supply_status == POWER_SUPPLY_STATUS_CHARGING
    assert obs.battery_current_a is not None and obs.battery_current_a > 1.0
    charge = sim.battery
    # Pushing on keeps it docked and charging, and it goes no further into the dock.
    touch = dock_distance(sim)
    drive(sim, 0.1, 0.0, 1.0)
    assert sim.outcome is SimOutcome.DOCKED and sim.battery > charge
    assert dock_distance(sim) >= touch - 1e-9
    # Backing out along the dock axis: the contact opens once the body is 5 mm clear.
    assert drive(sim, -0.08, 0.0, 3.0, until=SimOutcome.RUNNING)
    assert dock_distance(sim) > ROBOT_RADIUS_M + sim.config.release_margin_m
    assert dock_distance(sim) < ROBOT_RADIUS_M + 0.03
    current_a, status = sim.battery_reading()
    assert status == POWER_SUPPLY_STATUS_DISCHARGING and current_a < 0
    drive(sim, -0.08, 0.0, 0.3)
    assert sim.outcome is SimOutcome.RUNNING
    # ... and it can dock again.
    assert drive(sim, 0.06, 0.0, 3.0, until=SimOutcome.DOCKED)
    assert [(e["event"], e["outcome"], e["with"]) for e in sim.truth_events] == [
        ("start", "running", ""), ("contact", "docked", "dock"), ("release", "running", "dock"),
        ("contact", "docked", "dock")]
    assert sim.truth_events[0]["seed"] == 4


def test_a_wall_blocks_forward_and_releases_the_bumper_when_backing_away() -> None:
    sim = Simulator(4, REAL)
    wall = face_a_bare_wall(sim)
    assert drive(sim, 0.2, 0.0, 2.0, until=SimOutcome.COLLISION)
    assert sim.collided_with == "wall" and sim.observe().bumper
    touch = wall_distance(sim, wall)
    # Forward into the wall stays blocked: no closer, no speed, still in contact.
    drive(sim, 0.3, 0.0, 1.5)
    assert sim.outcome is SimOutcome.COLLISION and sim.observe().bumper
    assert wall_distance(sim, wall) >= touch - 1e-9
    assert sim.v == 0.0
    # Backing away releases the bumper.
    assert drive(sim, -0.1, 0.0, 2.0, until=SimOutcome.RUNNING)
    obs = sim.observe()
    assert not obs.bumper and not obs.docked
    assert wall_distance(sim, wall) > ROBOT_RADIUS_M + sim.config.release_margin_m
    assert sim.collided_with == ""
    drive(sim, -0.1, 0.0, 0.5)
    assert sim.outcome is SimOutcome.RUNNING and wall_distance(sim, wall) > ROBOT_RADIUS_M + 0.03
    assert [(e["event"], e["outcome"], e["with"]) for e in sim.truth_events[1:]] == [
        ("contact", "collision", "wall"), ("release", "running", "wall")]


def test_a_misaligned_contact_releases_too() -> None:
    sim = Simulator(2, REAL)
    place_at_dock(sim, lateral_m=0.06)
    assert drive(sim, 0.08, 0.0, 3.0, until=SimOutcome.MISALIGNED)
    assert sim.observe().bumper
    _, status = sim.battery_reading()
    assert status == POWER_SUPPLY_STATUS_DISCHARGING  # a misaligned contact closes no circuit
    assert drive(sim, -0.08, 0.0, 3.0, until=SimOutcome.RUNNING)
    assert not sim.observe().bumper


def test_off_a_contact_freezes_the_robot_as_before() -> None:
    """real_base=False (the default): docked is reported, and nothing moves after a contact."""
    sim = Simulator(4)
    assert not sim.config.real_base
    place_at_dock(sim)
    assert drive(sim, 0.08, 0.0, 3.0, until=SimOutcome.DOCKED)
    assert sim.observe().docked
    pose = (sim.x, sim.y, sim.yaw)
    drive(sim, -0.2, 0.5, 2.0)
    assert (sim.x, sim.y, sim.yaw) == pose and sim.outcome is SimOutcome.DOCKED

    sim = Simulator(4)
    face_a_bare_wall(sim)
    assert drive(sim, 0.2, 0.0, 2.0, until=SimOutcome.COLLISION)
    pose = (sim.x, sim.y, sim.yaw)
    drive(sim, -0.2, 0.0, 2.0)
    assert (sim.x, sim.y, sim.yaw) == pose and sim.outcome is SimOutcome.COLLISION
    # The truth log is kept either way: the contact, and no release.
    assert [e["event"] for e in sim.truth_events] == ["start", "contact"]


def test_the_mode_changes_no_draw_before_the_first_contact() -> None:
    """Until a contact, real_base drives exactly as the default (same draws, same poses):
    every seed's episode is the same up to where the modes differ by design."""
    a, b = Simulator(7), Simulator(7, REAL)
    for i in range(60):
        for sim in (a, b):
            sim.command(Command(0.3, 0.4 if i < 30 else -0.3))
            sim.step(0.05)
        assert (a.x, a.y, a.yaw, a.v, a.w) == (b.x, b.y, b.yaw, b.v, b.w)
        assert a.outcome is b.outcome is SimOutcome.RUNNING


def test_the_truth_log_file_gets_a_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    sim = Simulator(4, SimConfig(real_base=True, truth_log=str(path)))
    place_at_dock(sim)
    assert drive(sim, 0.08, 0.0, 3.0, until=SimOutcome.DOCKED)
    assert drive(sim, -0.08, 0.0, 3.0, until=SimOutcome.RUNNING)
    events = read_truth_log(path)
    assert events == sim.truth_events
    assert [e["event"] for e in events] == ["start", "contact", "release"]
    assert events[1]["t_ns"] < events[2]["t_ns"] and events[0]["wall_ns"] <= events[1]["wall_ns"]
    # Append mode: a second simulator on the same file adds to it.
    Simulator(5, SimConfig(real_base=True, truth_log=str(path)))
    assert [e["event"] for e in read_truth_log(path)] == ["start", "contact", "release", "start"]


def test_a_box_in_the_way_blocks_and_releases_like_a_wall() -> None:
    sim = Simulator(0, SimConfig(obstacles="box", real_base=True))
    assert drive(sim, 0.4, 0.0, 5.0, until=SimOutcome.COLLISION)
    assert sim.collided_with == "box"
    touch = sim.obstacles.distance_m(sim.x, sim.y)
    drive(sim, 0.3, 0.0, 1.0)
    assert sim.outcome is SimOutcome.COLLISION
    assert sim.obstacles.distance_m(sim.x, sim.y) >= touch - 1e-9
    assert drive(sim, -0.1, 0.0, 2.0, until=SimOutcome.RUNNING)
    assert [(e["event"], e["with"]) for e in sim.truth_events[1:]] == [
        ("contact", "box"), ("release", "box")]
