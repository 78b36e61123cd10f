"""Resets between attempts: the Arbiter's RESET rules, the reset driver, the reset planner."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from takeover.config import DockingConfig, ResetConfig, SafetyConfig, load_config
from takeover.control.arbiter import RESET_BLIND_GRACE_MS, Arbiter, OperatorEvent, OperatorInput
from takeover.control.reset_driver import (
    DockFrame,
    ResetDriver,
    ResetPhase,
    draw_start_pose,
    scan_points,
    staging_pose,
)
from takeover.control.reset_planner import ResetPlanner
from takeover.errors import ConfigError
from takeover.types import (
    Command,
    CommandSource,
    Mode,
    Observation,
    Odometry,
    Outcome,
    Pose2D,
)

DT = 0.05
OPEN_SCAN = np.full(180, 5.0, dtype=np.float32)
HOLD = OperatorInput(deadman=True)  # the deadman held, sticks centred


def obs(t_ns: int = 0, scan: np.ndarray | None = OPEN_SCAN, **kw: object) -> Observation:
    return Observation(t_ns=t_ns, scan_m=scan, **kw)  # type: ignore[arg-type]


def resetting() -> Arbiter:
    arb = Arbiter(SafetyConfig())
    arb.reset_available = True
    arb.handle(OperatorEvent.RESET)
    assert arb.mode is Mode.RESET
    return arb


# --- the Arbiter ---------------------------------------------------------------------------------


def test_reset_is_refused_without_a_target() -> None:
    arb = Arbiter(SafetyConfig())
    arb.handle(OperatorEvent.RESET)
    assert arb.mode is Mode.IDLE and "no reset target" in arb.reason


def test_reset_drives_the_proposal_under_auto_limits_and_is_never_a_label() -> None:
    arb = resetting()
    d = arb.decide(0, obs(), True, HOLD, Command(-5.0, 0.0), DT)  # beyond the fault limit
    assert d.mode is Mode.IDLE and "bad reset command" in d.reason  # a fault ends it
    arb = resetting()
    for i in range(40):
        d = arb.decide(i, obs(i), True, HOLD, Command(0.9, 0.0), DT)
    assert d.mode is Mode.RESET and d.source is CommandSource.RESET
    assert d.command.v_mps == pytest.approx(SafetyConfig().auto.max_v_mps)
    assert d.action_mode is None  # the recorder stores it unlabeled: training never sees it


@pytest.mark.parametrize("why, operator, scan, expect", [
    ("deadman", OperatorInput(deadman=False), OPEN_SCAN, "deadman released"),
    ("sticks", OperatorInput(deadman=True, deflection=0.6), OPEN_SCAN, "sticks moved"),
    ("obstacle", HOLD, np.full(180, 0.25, dtype=np.float32), "reset stopped"),
])
def test_any_stop_ends_the_reset_in_idle_and_it_stays_stopped(
        why: str, operator: OperatorInput, scan: np.ndarray | None, expect: str) -> None:
    arb = resetting()
    d = arb.decide(0, obs(0, scan=scan), True, operator, Command(0.2, 0.0), DT)
    assert d.mode is Mode.IDLE and d.command.is_zero and expect in d.reason, (why, d)
    # The cause gone, nothing moves until the operator asks again.
    d = arb.decide(1, obs(1), True, HOLD, Command(0.2, 0.0), DT)
    assert d.mode is Mode.IDLE and d.command.is_zero


def test_a_blind_lidar_holds_the_reset_still_then_ends_it() -> None:
    arb = resetting()
    step_ns = int(DT * 1e9)
    # One late scan: this tick stands still, the reset goes on with the next fresh one.
    d = arb.decide(0, obs(0, scan=None), True, HOLD, Command(0.2, 0.0), DT)
    assert d.mode is Mode.RESET and d.command.is_zero
    d = arb.decide(step_ns, obs(step_ns), True, HOLD, Command(0.2, 0.0), DT)
    assert d.mode is Mode.RESET and not d.command.is_zero
    # Blind for longer than the grace: the reset ends, and stays ended.
    t = 2 * step_ns
    while t <= 2 * step_ns + int(RESET_BLIND_GRACE_MS * 1e6):
        d = arb.decide(t, obs(t, scan=None), True, HOLD, Command(0.2, 0.0), DT)
        assert d.command.is_zero
        t += step_ns
    assert d.mode is Mode.IDLE and "reset stopped" in d.reason
    d = arb.decide(t, obs(t), True, HOLD, Command(0.2, 0.0), DT)
    assert d.mode is Mode.IDLE and d.command.is_zero


def test_estop_and_link_loss_latch_during_a_reset() -> None:
    arb = resetting()
    arb.handle(OperatorEvent.ESTOP)
    d = arb.decide(0, obs(), True, HOLD, Command(0.2, 0.0), DT)
    assert d.mode is Mode.ESTOP and d.command.is_zero
    arb = resetting()
    d = arb.decide(0, obs(), False, HOLD, Command(0.2, 0.0), DT)
    assert d.mode is Mode.LINK_LOST and d.command.is_zero


def test_reset_finished_lands_in_idle() -> None:
    arb = resetting()
    arb.reset_finished("reset done")
    assert arb.mode is Mode.IDLE and arb.reason == "reset done"


# --- the reset driver on a unicycle --------------------------------------------------------------


def drive(driver: ResetDriver, start: Pose2D, max_ticks: int = 2000) -> tuple[Pose2D, int]:
    """Integrate the driver's commands on a perfect unicycle at 20 Hz."""
    x, y, yaw = start.x_m, start.y_m, start.yaw_rad
    for tick in range(max_ticks):
        o = Observation(t_ns=tick, odom=Odometry(x, y, yaw))
        cmd = driver.propose(o)
        assert cmd is not None
        if driver.done:
            return Pose2D(x, y, yaw), tick
        x += cmd.v_mps * DT * math.cos(yaw)
        y += cmd.v_mps * DT * math.sin(yaw)
        yaw = math.atan2(math.sin(yaw + cmd.w_radps * DT), math.cos(yaw + cmd.w_radps * DT))
    raise AssertionError(f"not done after {max_ticks} ticks: {driver.phase}")


@pytest.mark.parametrize("seed", range(12))
def test_the_driver_undocks_straight_then_reaches_every_drawn_start_pose(seed: int) -> None:
    config = ResetConfig()
    docked = Pose2D(1.0, -2.0, math.radians(30.0 * seed))
    frame = DockFrame(docked)
    target = draw_start_pose(frame, config, np.random.default_rng(seed))
    assert target is not None
    driver = ResetDriver(config)
    driver.start(target)
    # The undock phase backs out straight: the first commands have no turn and negative speed.
    first = driver.propose(Observation(t_ns=0, odom=Odometry(docked.x_m, docked.y_m,
                                                              docked.yaw_rad)))
    assert first is not None and first.v_mps < 0 and first.w_radps == 0.0
    assert driver.phase is ResetPhase.UNDOCK
    end, _ = drive(driver, docked)
    assert math.hypot(end.x_m - target.x_m, end.y_m - target.y_m) <= config.position_tolerance_m
    heading_error = math.atan2(math.sin(end.yaw_rad - target.yaw_rad),
                               math.cos(end.yaw_rad - target.yaw_rad))
    assert abs(math.degrees(heading_error)) <= config.heading_tolerance_deg
    assert driver.progress == 1.0


def test_start_poses_lie_in_the_region_and_face_the_dock() -> None:
    config = ResetConfig()
    docked = Pose2D(0.0, 0.0, math.pi)  # facing -x: the room is towards +x
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = draw_start_pose(DockFrame(docked), config, rng)
        assert p is not None
        distance = math.hypot(p.x_m, p.y_m)
        assert config.distance_min_m - 1e-9 <= distance <= config.distance_max_m + 1e-9
        assert abs(math.degrees(math.atan2(p.y_m, p.x_m))) <= config.bearing_deg + 1e-9
        to_dock = math.atan2(-p.y_m, -p.x_m)
        off = math.atan2(math.sin(p.yaw_rad - to_dock), math.cos(p.yaw_rad - to_dock))
        assert abs(math.degrees(off)) <= config.heading_deg + 1e-9
    s = staging_pose(DockFrame(docked), config)
    assert s.x_m == pytest.approx(config.staging_m) and s.y_m == pytest.approx(0.0, abs=1e-12)
    assert math.cos(s.yaw_rad) == pytest.approx(-1.0)


def test_start_poses_keep_clear_of_what_the_lidar_sees() -> None:
    config = ResetConfig()
    frame = DockFrame(Pose2D(0.0, 0.0, math.pi))
    # A box's returns across half of the region (y > 0), from the docked robot's scan.
    docked = Odometry(0.0, 0.0, math.pi)
    scan = np.full(360, np.nan)
    box = [(1.5, 0.4), (1.6, 0.5), (1.2, 0.3), (1.8, 0.6)]
    for x, y in box:
        bearing = math.atan2(y, x) - docked.yaw_rad
        scan[round((bearing % (2 * math.pi)) / (2 * math.pi) * 360) % 360] = math.hypot(x, y)
    points = scan_points(docked, scan)
    assert points.shape == (4, 2)
    for got, want in zip(sorted(map(tuple, points.round(1))), sorted(box), strict=True):
        assert got == pytest.approx(want, abs=0.06)
    rng = np.random.default_rng(3)
    for _ in range(100):
        p = draw_start_pose(frame, config, rng, points)
        assert p is not None
        assert min(math.hypot(p.x_m - x, p.y_m - y) for x, y in box) >= config.clearance_m - 0.06
    walled_in = np.array([[x, y] for x in np.arange(0.5, 2.6, 0.1)
                          for y in np.arange(-1.5, 1.6, 0.1)])
    assert draw_start_pose(frame, config, rng, walled_in) is None
    planner = ResetPlanner(DockingConfig(reset=ResetConfig(x_m=0.0, y_m=0.0, yaw_rad=math.pi)))
    plan = planner.attempt_ended(Outcome.FAILURE, None, walled_in)
    assert plan is not None and plan.kind == "staging"  # nowhere free: the staging pose


def test_the_dock_face_is_ahead_of_the_docked_pose_facing_the_room() -> None:
    face = DockFrame(Pose2D(1.0, 1.0, math.pi / 2)).face(0.22)
    assert (face.x_m, face.y_m) == pytest.approx((1.0, 1.22))
    assert math.sin(face.yaw_rad) == pytest.approx(-1.0)


# --- the planner ---------------------------------------------------------------------------------


def test_the_planner_anchors_at_each_dock_retries_then_draws_a_new_start() -> None:
    planner = ResetPlanner(DockingConfig(max_retries=2))
    start = Odometry(2.0, 0.0, math.pi)
    planner.attempt_started(start)
    first = planner.attempt_ended(Outcome.FAILURE, None)  # no dock seen yet: back home
    assert first is not None and first.kind == "home" and first.target == Pose2D(2.0, 0.0,
                                                                                    math.pi)
    docked = Odometry(0.2, 0.1, math.pi)
    plan = planner.attempt_ended(Outcome.SUCCESS, docked)
    assert plan is not None and plan.kind == "start" and planner.anchors == 1
    assert planner.frame == DockFrame(Pose2D(0.2, 0.1, math.pi))
    kinds = [p.kind for p in (planner.attempt_ended(Outcome.FAILURE, None) for _ in range(3))
             if p is not None]
    assert kinds == ["staging", "staging", "start"]  # two retries, then a new start
    # Drift: the next dock re-anchors the frame.
    planner.attempt_ended(Outcome.SUCCESS, Odometry(0.25, 0.12, math.pi))
    assert planner.frame == DockFrame(Pose2D(0.25, 0.12, math.pi)) and planner.anchors == 2


def test_a_configured_docked_pose_is_used_until_the_first_dock_or_always() -> None:
    reset = ResetConfig(x_m=0.0, y_m=0.0, yaw_rad=0.0)
    planner = ResetPlanner(DockingConfig(reset=reset))
    assert planner.frame == DockFrame(Pose2D(0.0, 0.0, 0.0))
    fixed = ResetPlanner(DockingConfig(reset=ResetConfig(dock="config", x_m=0.0, y_m=0.0,
                                                         yaw_rad=0.0)))
    fixed.attempt_ended(Outcome.SUCCESS, Odometry(0.3, 0.0, 0.0))
    assert fixed.frame == DockFrame(Pose2D(0.0, 0.0, 0.0)) and fixed.anchors == 0


@pytest.mark.parametrize("table, says", [
    ('[docking.reset]\ndock = "map"\n', "docking.reset.dock"),
    ('[docking.reset]\ndock = "config"\n', "needs x_m, y_m and yaw_rad"),
    ('[docking.reset]\nx_m = 1.0\n', "without"),
    ('[docking.reset]\ncruise_mps = 0\n', "docking.reset.cruise_mps"),
    ('[docking.reset]\ndistance_min_m = 3.0\n', "distance_min_m"),
    ('[docking.reset]\nbearing_deg = 120\n', "docking.reset.bearing_deg"),
    ('[docking]\nmax_retries = -1\n', "docking.max_retries"),
    ('[docking.reset]\nspeed = 1\n', "speed"),
])
def test_a_bad_reset_table_names_the_key(tmp_path: Path, table: str, says: str) -> None:
    path = tmp_path / "takeover.toml"
    path.write_text(table)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert says in str(e.value) and "\n" not in str(e.value)
