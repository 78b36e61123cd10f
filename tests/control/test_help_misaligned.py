"""The misaligned help signal (control/help.py, docs/safety.md "Asking for help"): the monitor
on poses placed around a dock, then the real Arbiter and ControlLoop over the simulator in
lockstep with a policy that docks to a dock turned 5 degrees (it creeps in off the charger's
tolerance, as the weaker policies measured in docs/policy.md do) and one that docks aligned."""

from __future__ import annotations

import dataclasses
import math

import pytest
from dock_support import tick_until_settled
from expert_driver import ExpertDriver

from takeover.config import HelpRiskConfig, SafetyConfig, SupervisionConfig, config_from_dict
from takeover.control.arbiter import Arbiter, OperatorEvent, OperatorInput
from takeover.control.help import HelpMonitor
from takeover.control.loop import ControlLoop
from takeover.errors import ConfigError
from takeover.sim.expert import DockingExpert
from takeover.sim.link import SimLink
from takeover.sim.simulator import SimOutcome
from takeover.tui.widgets import help_line
from takeover.types import (
    Command,
    CommandSource,
    HelpPriority,
    HelpReason,
    HelpStatus,
    Mode,
    Observation,
    Odometry,
    Pose2D,
)

RATE_HZ = 20.0
DT_S = 1.0 / RATE_HZ
RADIUS_M = 0.22  # [safety.field] footprint_radius_m: the robot's front from its centre
DOCK = Pose2D(2.0, 1.0, math.radians(30))  # a face somewhere, facing into the room
# Only the misaligned signal, at its defaults.
RISK = HelpRiskConfig(no_progress_s=0, blocked_s=0, no_approach_s=0)
CREEP = Command(0.05, 0.0)


def pose_at(gap_m: float, lateral_m: float, heading_deg: float, dock: Pose2D = DOCK) -> Odometry:
    """The odometry of a robot whose front is `gap_m` from the face, its centre `lateral_m`
    off the axis and its heading `heading_deg` off facing the dock."""
    c, s = math.cos(dock.yaw_rad), math.sin(dock.yaw_rad)
    along = gap_m + RADIUS_M
    x = dock.x_m + c * along - s * lateral_m
    y = dock.y_m + s * along + c * lateral_m
    return Odometry(x, y, dock.yaw_rad + math.pi + math.radians(heading_deg), v_mps=0.05)


def monitor(risk: HelpRiskConfig = RISK) -> HelpMonitor:
    m = HelpMonitor(SupervisionConfig(mode="robot", risk=risk), footprint_radius_m=RADIUS_M)
    m.dock = DOCK
    return m


def creep(m: HelpMonitor, start_gap_m: float, lateral_m: float, heading_deg: float,
          sent: Command = CREEP, seconds: float = 1.8) -> list[float]:
    """Feed the monitor a robot creeping along at `sent`'s speed (gap closing); the gaps (m)
    at which a request was confirmed."""
    fired = []
    for step in range(round(seconds / DT_S)):
        gap = start_gap_m - sent.v_mps * step * DT_S
        obs = Observation(t_ns=0, odom=pose_at(gap, lateral_m, heading_deg))
        verdict = m.update(round(step * DT_S * 1e9), obs, sent, sent, None, None, None)
        if verdict.confirmed is not None:
            assert verdict.confirmed.reason is HelpReason.MISALIGNED
            fired.append(gap)
    return fired


def test_the_dock_frame_of_the_test_poses_is_the_experts() -> None:
    """The monitor computes the dock frame itself (the robot side knows no simulator): the
    poses here and the simulator's expert agree on it."""
    f = DockingExpert(DOCK).dock_frame(pose_at(0.04, -0.02, 5.0))
    assert f.gap_m == pytest.approx(0.04) and f.lateral_m == pytest.approx(-0.02)
    assert math.degrees(f.heading_rad) == pytest.approx(5.0)


@pytest.mark.parametrize("lateral_m, heading_deg", [(0.0, 5.0), (0.0, -5.0), (0.03, 0.0),
                                                    (-0.03, 1.0)])
def test_creeping_into_the_face_off_its_tolerance_asks(lateral_m: float,
                                                       heading_deg: float) -> None:
    fired = creep(monitor(), 0.10, lateral_m, heading_deg)
    # Raised from 6 cm, confirmed help_confirm_ms (0.3 s, 1.5 cm at 5 cm/s) later.
    assert fired and 0.06 - 0.015 - 0.0025 - 1e-9 <= fired[0] <= 0.06 - 0.015 + 1e-9, fired[:1]
    m = monitor()
    obs = Observation(t_ns=0, odom=pose_at(0.03, lateral_m, heading_deg))
    raised = m.update(0, obs, CREEP, CREEP, None, None, None).raised
    assert [s.reason for s in raised] == [HelpReason.MISALIGNED]
    assert raised[0].reason.priority is HelpPriority.RISK
    assert "3 cm from the dock" in raised[0].detail


@pytest.mark.parametrize("lateral_m, heading_deg", [(0.0, 0.0), (0.02, -3.0), (-0.015, 2.5)])
def test_an_approach_within_tolerance_does_not(lateral_m: float, heading_deg: float) -> None:
    assert creep(monitor(), 0.10, lateral_m, heading_deg, seconds=2.0) == []


def test_only_within_the_gap() -> None:
    # 5 degrees off but 10-7 cm out: not yet about to touch (the policy may still turn).
    assert creep(monitor(), 0.10, 0.0, 5.0, seconds=0.6) == []
    wider = dataclasses.replace(RISK, misaligned_gap_m=0.12)
    assert creep(monitor(wider), 0.10, 0.0, 5.0, seconds=0.6)


def test_not_when_reversing_or_still() -> None:
    m = monitor()
    for sent in (Command(-0.15, 0.0), Command(0.0, 0.0)):
        for step in range(40):
            obs = Observation(t_ns=0, odom=pose_at(0.03, 0.0, 5.0))
            verdict = m.update(round(step * DT_S * 1e9), obs, sent, sent, None, None, None)
            assert verdict.raised == (), sent


def test_off_without_a_dock_pose_with_a_zero_gap_and_on_the_charger() -> None:
    no_dock = monitor()
    no_dock.dock = None
    assert creep(no_dock, 0.05, 0.0, 6.0) == []
    assert creep(monitor(dataclasses.replace(RISK, misaligned_gap_m=0.0)), 0.05, 0.0, 6.0) == []
    m = monitor()
    docked = Observation(t_ns=0, odom=pose_at(0.0, 0.0, 6.0), docked=True)
    assert m.update(0, docked, CREEP, CREEP, None, None, None).raised == ()


@pytest.mark.parametrize("gap_m, lateral_m, heading_deg", [
    (-0.5, 0.0, 5.0),  # behind the dock's face (beyond its wall)
    (0.03, 0.5, 5.0),  # beside the dock, the body clear of its axis
    (0.03, 0.0, 175.0),  # facing away from it
])
def test_not_where_nothing_is_about_to_touch_the_face(gap_m: float, lateral_m: float,
                                                       heading_deg: float) -> None:
    obs = Observation(t_ns=0, odom=pose_at(gap_m, lateral_m, heading_deg))
    assert monitor().update(0, obs, CREEP, CREEP, None, None, None).raised == ()


# --- the real loop over the simulator ---------------------------------------------------------



class Deadman:
    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        return OperatorInput(deadman=True)


def run(driver_of, mode: str = "robot", seed: int = 3, risk: HelpRiskConfig = RISK,  # type: ignore[no-untyped-def]
        seconds: float = 60.0) -> tuple[SimLink, list]:  # type: ignore[type-arg]
    link = SimLink("sim://?fast=1", seed=seed, with_image=False)
    link.connect()
    arbiter = Arbiter(SafetyConfig(), policy_available=True,
                      supervision=SupervisionConfig(mode=mode, risk=risk))
    loop = ControlLoop(link, arbiter, Deadman(), driver_of(link), rate_hz=RATE_HZ)
    loop.refresh_dock_pose()
    loop.post(OperatorEvent.AUTO)
    return link, tick_until_settled(link, loop, seconds)


def test_a_policy_creeping_in_5_degrees_off_asks_and_stops_before_the_face() -> None:
    link, records = run(lambda link: ExpertDriver(link, 5.0))
    asked = [r for r in records if r.help is not None and r.help.requested]
    assert asked, f"no request; the simulator says {link.sim.outcome.value}"
    assert asked[0].help is not None and asked[0].help.reason is HelpReason.MISALIGNED
    assert "from the dock" in asked[0].reason and "off its axis" in asked[0].reason
    before = records[records.index(asked[0]) - 1]
    assert before.source is CommandSource.POLICY and before.command.v_mps > 0
    # It holds still short of the face: the misaligned contact never happens.
    assert link.sim.outcome is SimOutcome.RUNNING and abs(link.sim.v) < 1e-6
    assert all(r.mode is Mode.AUTO and r.help is not None and r.help.requested
               for r in records[records.index(asked[0]):])
    f = DockingExpert(link.dock_pose()).dock_frame(Odometry(link.sim.x, link.sim.y, link.sim.yaw))
    assert 0.0 < f.gap_m < 0.06 and abs(math.degrees(f.heading_rad)) > 3.0


def test_without_the_signal_that_policy_touches_the_dock_misaligned() -> None:
    """The scenario above is a failure when nobody asks: the simulator's bumper."""
    link, records = run(lambda link: ExpertDriver(link, 5.0),
                        risk=dataclasses.replace(RISK, misaligned_gap_m=0.0))
    assert not any(r.help is not None and r.help.reason is not None for r in records)
    assert link.sim.outcome is SimOutcome.MISALIGNED


@pytest.mark.parametrize("seed", [3, 11])
def test_an_aligned_policy_docks_without_a_signal(seed: int) -> None:
    link, records = run(ExpertDriver, seed=seed)
    assert link.sim.outcome is SimOutcome.DOCKED
    assert not any(r.help is not None and r.help.reason is not None for r in records)


@pytest.mark.parametrize("key, value", [("misaligned_heading_deg", 0.0),
                                        ("misaligned_heading_deg", 91.0),
                                        ("misaligned_lateral_m", -0.01),
                                        ("misaligned_lateral_m", math.nan)])
def test_bad_tolerances_name_the_key(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"supervision\.risk\.{key} = .*: must be above 0"):
        config_from_dict({"supervision": {"risk": {key: value}}})


@pytest.mark.parametrize("value", [-0.01, 1.5])
def test_bad_gap_names_the_key(value: float) -> None:
    with pytest.raises(ConfigError, match=r"supervision\.risk\.misaligned_gap_m = .*: must be "
                                          r"between 0 \(off\)"):
        config_from_dict({"supervision": {"risk": {"misaligned_gap_m": value}}})


def test_the_banner_says_where_to_look() -> None:
    line = help_line(HelpStatus(requested=True, reason=HelpReason.MISALIGNED))
    assert line.startswith("robot asks for help: misaligned at the dock —"), line


def test_once_raised_it_holds_until_well_inside_the_tolerance() -> None:
    """A policy straightening up slowly hovers about the threshold (3.5 degrees): the signal
    stays raised down to 80 % of it (2.8 degrees), so the hover does not restart its timer."""
    m = monitor()

    def tick(step: int, heading_deg: float) -> tuple[HelpReason, ...]:
        obs = Observation(t_ns=0, odom=pose_at(0.05 - 0.002 * step, 0.0, heading_deg))
        verdict = m.update(round(step * DT_S * 1e9), obs, CREEP, CREEP, None, None, None)
        return tuple(s.reason for s in verdict.raised)

    assert tick(0, 3.2) == ()  # never raised: inside the tolerance
    assert tick(1, 4.0) == (HelpReason.MISALIGNED,)
    assert tick(2, 3.2) == (HelpReason.MISALIGNED,)  # hovering below 3.5: still raised
    assert tick(3, 2.7) == ()  # well inside: cleared
    assert tick(4, 3.2) == ()  # and the hysteresis is gone with it
