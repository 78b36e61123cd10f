"""The simulated base: determinism, kinematics, docking physics, watchdog, e-stop, expert."""

from __future__ import annotations

import numpy as np
import pytest
from dock_support import place_at_dock

from takeover.sim.expert import DockingExpert
from takeover.sim.render import CameraModel
from takeover.sim.simulator import SimConfig, SimOutcome, Simulator
from takeover.sim.world import generate_world
from takeover.types import (
    POWER_SUPPLY_STATUS_CHARGING,
    POWER_SUPPLY_STATUS_DISCHARGING,
    POWER_SUPPLY_STATUS_FULL,
    Command,
)


def run_expert(seed: int, max_steps: int = 1200) -> Simulator:
    sim = Simulator(seed)
    expert = DockingExpert(sim.dock_pose)
    for _ in range(max_steps):
        if sim.outcome is not SimOutcome.RUNNING:
            break
        sim.command(expert.command(sim.odometry()))
        sim.step(0.05)
    return sim


def test_same_seed_same_world_and_frames() -> None:
    a, b = Simulator(11), Simulator(11)
    for sim in (a, b):
        for _ in range(20):
            sim.command(Command(0.2, 0.3))
            sim.step(0.05)
    oa, ob = a.observe(), b.observe()
    assert np.array_equal(oa.image, ob.image)
    assert np.array_equal(oa.scan_m, ob.scan_m, equal_nan=True)
    assert (a.x, a.y, a.yaw) == (b.x, b.y, b.yaw)


def test_seeds_vary_dock_start_and_look() -> None:
    worlds = [generate_world(s) for s in range(20)]
    assert len({(round(w.dock.x_m, 2), round(w.dock.y_m, 2)) for w in worlds}) == 20
    assert len({w.dock_wall for w in worlds}) >= 3
    assert len({round(w.appearance.brightness, 3) for w in worlds}) == 20
    starts = np.array([[w.start.x_m - w.dock.x_m, w.start.y_m - w.dock.y_m] for w in worlds])
    assert starts.std(axis=0).min() > 0.3


def test_observation_shapes_and_camera_size() -> None:
    sim = Simulator(3, SimConfig(camera=CameraModel(64, 48)))
    o = sim.observe()
    assert o.image is not None and o.image.shape == (48, 64, 3) and o.image.dtype == np.uint8
    assert o.scan_m is not None and o.scan_m.shape == (180,) and o.scan_m.dtype == np.float32
    # The room is closed: every beam hits a wall within range.
    assert np.isfinite(o.scan_m).all() and (o.scan_m > 0.1).all()


def test_dock_marker_is_visible_from_the_start() -> None:
    """The start pose faces the dock: the black-and-white marker shows in the first frame."""
    for seed in range(10):
        img = Simulator(seed).observe().image
        assert img is not None
        grey = img.astype(float).mean(axis=2)
        assert (grey < 25).sum() > 4, f"seed {seed}: no marker-black pixels"


def test_acceleration_limit_and_actuation_delay() -> None:
    sim = Simulator(5)
    sim.command(Command(0.5, 0.0))
    sim.step(sim.delay_s * 0.5)
    assert sim.v == 0.0, "the command has not reached the wheels yet"
    for _ in range(4):
        sim.command(Command(0.5, 0.0))
        sim.step(0.05)
    assert 0.0 < sim.v <= sim.config.accel_v_mps2 * 0.2 + 1e-9


def test_watchdog_stops_the_base_when_commands_stop() -> None:
    sim = Simulator(5)
    for _ in range(20):
        sim.command(Command(0.3, 0.0))
        sim.step(0.05)
    assert sim.v > 0.25
    sim.step(0.25 + sim.delay_s)  # no more commands: watchdog (250 ms) expires
    sim.step(0.5)  # decelerating at the base's limit
    assert sim.v == 0.0


def test_estop_latches_in_the_base() -> None:
    sim = Simulator(5)
    for _ in range(20):
        sim.command(Command(0.3, 0.0))
        sim.step(0.05)
    sim.set_estop(True)
    for _ in range(20):
        sim.command(Command(0.3, 0.0))
        sim.step(0.05)
    assert sim.v == 0.0 and sim.observe().estop


@pytest.mark.parametrize(
    ("lateral_m", "heading_deg", "speed", "expected"),
    [
        (0.0, 0.0, 0.08, SimOutcome.DOCKED),
        (0.015, -2.0, 0.1, SimOutcome.DOCKED),
        (0.03, 0.0, 0.08, SimOutcome.MISALIGNED),  # lateral > 2 cm
        (0.0, 5.0, 0.08, SimOutcome.MISALIGNED),  # heading > 3 deg
        (0.0, 0.0, 0.3, SimOutcome.MISALIGNED),  # contact speed > 0.15 m/s
    ],
)
def test_docking_tolerance(lateral_m: float, heading_deg: float, speed: float,
                           expected: SimOutcome) -> None:
    sim = Simulator(2, SimConfig(noise_v_mps=0, noise_w_radps=0, slip_frac=0.0))
    place_at_dock(sim, lateral_m, heading_deg)
    sim.v = speed
    for _ in range(40):
        if sim.outcome is not SimOutcome.RUNNING:
            break
        sim.command(Command(speed, 0.0))
        sim.step(0.02)
    assert sim.outcome is expected, sim.contact_report
    o = sim.observe()
    assert o.docked == (expected is SimOutcome.DOCKED)
    assert o.bumper == (expected is not SimOutcome.DOCKED)


def test_driving_into_a_wall_is_a_collision() -> None:
    sim = Simulator(4)
    # Face away from the dock and drive until something is hit.
    sim.yaw = sim.dock_pose.yaw_rad
    for _ in range(800):
        if sim.outcome is not SimOutcome.RUNNING:
            break
        sim.command(Command(0.4, 0.0))
        sim.step(0.05)
    assert sim.outcome is SimOutcome.COLLISION and sim.observe().bumper


def test_expert_docks_from_varied_starts() -> None:
    outcomes = [run_expert(seed).outcome for seed in range(100, 112)]
    assert outcomes.count(SimOutcome.DOCKED) >= 11, outcomes


def test_expert_recovers_from_a_bad_pose_near_the_dock() -> None:
    """The simulated operator hands the expert whatever pose a policy left: it backs out."""
    sim = Simulator(21)
    place_at_dock(sim, lateral_m=0.12, heading_deg=20.0, gap_m=0.15)
    expert = DockingExpert(sim.dock_pose)
    for _ in range(1200):
        if sim.outcome is not SimOutcome.RUNNING:
            break
        sim.command(expert.command(sim.odometry()))
        sim.step(0.05)
    assert sim.outcome is SimOutcome.DOCKED, sim.contact_report


def test_blind_replay_of_the_mean_expert_command_cannot_dock() -> None:
    """Start poses vary enough that ignoring the sensors fails: replaying the expert's mean
    command sequence (time-aligned over many episodes) docks almost never."""
    seqs = []
    for seed in range(200, 215):
        sim = Simulator(seed)
        expert = DockingExpert(sim.dock_pose)
        cmds = []
        for _ in range(1200):
            if sim.outcome is not SimOutcome.RUNNING:
                break
            c = expert.command(sim.odometry())
            cmds.append((c.v_mps, c.w_radps))
            sim.command(c)
            sim.step(0.05)
        seqs.append(np.array(cmds))
    n = max(len(s) for s in seqs)
    padded = np.stack([np.pad(s, ((0, n - len(s)), (0, 0))) for s in seqs])
    mean_cmds = padded.mean(axis=0)
    docked = 0
    for seed in range(300, 315):
        sim = Simulator(seed)
        for v, w in mean_cmds:
            if sim.outcome is not SimOutcome.RUNNING:
                break
            sim.command(Command(float(v), float(w)))
            sim.step(0.05)
        docked += sim.outcome is SimOutcome.DOCKED
    assert docked <= 1


def _contact(lateral_m: float, seed: int = 2) -> Simulator:
    sim = Simulator(seed, SimConfig(noise_v_mps=0, noise_w_radps=0, slip_frac=0.0))
    place_at_dock(sim, lateral_m, 0.0)
    for _ in range(40):
        if sim.outcome is not SimOutcome.RUNNING:
            break
        sim.command(Command(0.08, 0.0))
        sim.step(0.02)
    return sim


def test_the_battery_reports_a_charging_current_only_on_a_good_contact() -> None:
    sim = Simulator(3)
    before = sim.observe()
    assert before.battery_current_a is not None and before.battery_current_a < 0
    assert before.power_supply_status == POWER_SUPPLY_STATUS_DISCHARGING
    docked = _contact(0.0)
    assert docked.outcome is SimOutcome.DOCKED
    readings = [docked.observe(with_image=False, with_scan=False) for _ in range(50)]
    assert all(o.power_supply_status == POWER_SUPPLY_STATUS_CHARGING for o in readings)
    currents = [o.battery_current_a for o in readings]
    assert all(c is not None and 1.2 < c < 1.8 for c in currents)  # 1.5 A, 0.05 A noise
    misaligned = _contact(0.03)  # 3 cm off the axis: the contacts do not mate
    assert misaligned.outcome is SimOutcome.MISALIGNED
    o = misaligned.observe(with_image=False, with_scan=False)
    assert o.bumper and o.battery_current_a is not None and o.battery_current_a < 0
    assert o.power_supply_status == POWER_SUPPLY_STATUS_DISCHARGING
    docked.battery = 1.0
    full = docked.observe(with_image=False, with_scan=False)
    assert full.power_supply_status == POWER_SUPPLY_STATUS_FULL


def test_battery_readings_are_seeded_and_leave_the_episode_unchanged() -> None:
    """The readings draw from their own stream: the same seed gives the same currents, and an
    episode's motion is the same whether or not anything reads the battery."""
    a, b = Simulator(5), Simulator(5)
    assert [a.battery_reading() for _ in range(5)] == [b.battery_reading() for _ in range(5)]
    quiet, read = Simulator(8), Simulator(8)
    for sim, reads in ((quiet, 0), (read, 3)):
        expert = DockingExpert(sim.dock_pose)
        for _ in range(200):
            for _ in range(reads):
                sim.battery_reading()
            sim.command(expert.command(sim.odometry()))
            sim.step(0.05)
    assert (quiet.x, quiet.y, quiet.yaw) == (read.x, read.y, read.yaw)
