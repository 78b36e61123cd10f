"""The no-approach help signal (control/help.py, docs/safety.md "Asking for help"): the real
Arbiter and ControlLoop over the simulator in lockstep, a policy that wanders in circles and
one that docks; the request, its timing and the simulator's own wheels checked."""

from __future__ import annotations

import dataclasses
import math

import pytest
from expert_driver import ExpertDriver

from takeover.config import HelpRiskConfig, SafetyConfig, SupervisionConfig, config_from_dict
from takeover.control.arbiter import Arbiter, OperatorEvent, OperatorInput
from takeover.control.help import HelpMonitor
from takeover.control.loop import ControlLoop
from takeover.errors import ConfigError
from takeover.sim.link import SimLink
from takeover.types import (
    Command,
    CommandSource,
    HelpPriority,
    HelpReason,
    Mode,
    Observation,
    Odometry,
    Pose2D,
)

RATE_HZ = 20.0
DT_S = 1.0 / RATE_HZ
NO_APPROACH_S = 3.0
# Only the no-approach signal, with a short window to keep the tests quick.
RISK = HelpRiskConfig(no_progress_s=0, blocked_s=0, no_approach_s=NO_APPROACH_S, approach_m=0.05)


class Wanderer:
    """A PolicyDriver that is lost: it drives in circles (0.2 m/s, 0.8 rad/s: a 0.25 m
    radius, one lap in 7.9 s) wherever it starts, never getting closer to the dock."""

    def propose(self, obs: Observation) -> Command | None:
        return Command(0.2, 0.8)

    def drop_queued_actions(self) -> None:
        pass

    def reset(self) -> None:
        pass


class Deadman:
    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        return OperatorInput(deadman=True)


def build(policy: str, *, seed: int = 3, dock_known: bool = True, mode: str = "robot",
          risk: HelpRiskConfig = RISK) -> tuple[SimLink, ControlLoop]:
    link = SimLink("sim://?fast=1", seed=seed, with_image=False)
    link.connect()
    driver = Wanderer() if policy == "wander" else ExpertDriver(link)
    arbiter = Arbiter(SafetyConfig(), policy_available=True,
                      supervision=SupervisionConfig(mode=mode, risk=risk))
    loop = ControlLoop(link, arbiter, Deadman(), driver, rate_hz=RATE_HZ)
    if dock_known:
        loop.refresh_dock_pose()  # as EpisodeRunner and the operator session do
    loop.post(OperatorEvent.AUTO)
    assert loop.tick().mode is Mode.AUTO, arbiter.reason
    return link, loop


def dock_distance_m(link: SimLink) -> float:
    dock = link.dock_pose()
    return math.hypot(link.sim.x - dock.x_m, link.sim.y - dock.y_m)


def test_a_wandering_policy_asks_after_no_approach_s_and_the_wheels_stop() -> None:
    link, loop = build("wander")
    start_ns = loop.tick().t_ns
    records = [loop.tick() for _ in range(round(30 / DT_S))]
    asked = [r for r in records if r.help is not None and r.help.requested]
    assert asked, "a policy that circles for 30 s must ask"
    request = asked[0]
    waited_s = (request.t_ns - start_ns) / 1e9
    # The window runs from the last time it came 5 cm closer (within its first lap), then
    # help_confirm_ms (0.3 s) confirms it.
    assert NO_APPROACH_S + 0.3 - DT_S <= waited_s <= NO_APPROACH_S + 7.9 + 0.3 + DT_S, waited_s
    assert request.help is not None and request.help.reason is HelpReason.NO_PROGRESS
    assert request.help.priority is HelpPriority.RISK
    assert "from the dock" in request.reason and "closer in 3 s" in request.reason
    before = records[records.index(request) - 1]
    assert before.source is CommandSource.POLICY and before.command.v_mps > 0.1
    # It holds still until answered: the simulator's own wheels stop.
    after = records[records.index(request):]
    assert all(r.help is not None and r.help.requested and r.mode is Mode.AUTO for r in after)
    assert all(r.command.is_zero for r in after[20:])
    assert abs(link.sim.v) < 1e-6 and abs(link.sim.w) < 1e-6


def test_the_window_restarts_after_a_hand_back() -> None:
    _link, loop = build("wander")
    while not ((rec := loop.tick()).help is not None and rec.help.requested):
        pass
    loop.post(OperatorEvent.HAND_BACK)
    back = loop.tick()
    assert back.mode is Mode.AUTO and not back.help.requested  # type: ignore[union-attr]
    while not ((again := loop.tick()).help is not None and again.help.requested):
        assert (again.t_ns - back.t_ns) / 1e9 < 30, "it asks again"
    assert (again.t_ns - back.t_ns) / 1e9 >= NO_APPROACH_S + 0.3 - DT_S


@pytest.mark.parametrize("risk", [RISK, HelpRiskConfig()], ids=["3s", "defaults"])
def test_a_policy_that_approaches_steadily_never_asks(risk: HelpRiskConfig) -> None:
    link, loop = build("dock", risk=risk)
    start_m = dock_distance_m(link)
    for _ in range(round(60 / DT_S)):
        rec = loop.tick()
        assert rec.help is None or not rec.help.requested, rec.reason
        assert rec.help is None or rec.help.reason is None, rec.help
        if rec.observation is not None and rec.observation.docked:
            break
    else:
        raise AssertionError("the expert did not dock")
    assert start_m > 1.0, "it had a way to go"


def test_off_without_a_dock_pose() -> None:
    _link, loop = build("wander", dock_known=False)
    assert loop.arbiter.link_dock is None and loop.arbiter.help_monitor.dock is None
    for _ in range(round(20 / DT_S)):
        rec = loop.tick()
        assert rec.source is CommandSource.POLICY
        assert rec.help is None or rec.help.reason is None


def test_off_with_a_zero_window() -> None:
    _link, loop = build("wander", risk=dataclasses.replace(RISK, no_approach_s=0.0))
    for _ in range(round(15 / DT_S)):
        rec = loop.tick()
        assert rec.help is None or rec.help.reason is None


def test_human_mode_records_it_without_holding() -> None:
    _link, loop = build("wander", mode="human")
    records = [loop.tick() for _ in range(round(15 / DT_S))]
    assert any(r.help is not None and r.help.reason is HelpReason.NO_PROGRESS for r in records)
    assert not any(r.help is not None and r.help.requested for r in records)
    assert all(r.source is CommandSource.POLICY for r in records)


def test_a_dock_pose_told_afresh_each_tick_is_the_same_dock() -> None:
    """[safety.field.dock] source = "config" gives an equal, new Pose2D on every tick: the
    window must not restart for it."""
    monitor = HelpMonitor(SupervisionConfig(mode="robot", risk=RISK), footprint_radius_m=0.22)
    fired = []
    for step in range(round(10 / DT_S)):  # circling 1 m from the dock
        a = 0.8 * step * DT_S
        monitor.dock = Pose2D(0.0, 0.0, 0.0)
        obs = Observation(t_ns=0, odom=Odometry(1.0 + 0.25 * math.cos(a), 0.25 * math.sin(a),
                                                v_mps=0.2, w_radps=0.8))
        verdict = monitor.update(round(step * DT_S * 1e9), obs, Command(0.2, 0.8), Command(0.2, 0.8),
                                 None, None, None)
        if verdict.confirmed is not None:
            fired.append(step * DT_S)
    assert fired and NO_APPROACH_S <= fired[0] <= NO_APPROACH_S + 7.9 + 0.4, fired[:1]


@pytest.mark.parametrize("key, value", [("no_approach_s", -1.0), ("no_approach_s", 601.0),
                                        ("approach_m", -0.1), ("approach_m", 6.0)])
def test_bad_values_name_the_key(key: str, value: float) -> None:
    message = rf"supervision\.risk\.{key} = -?[0-9.]+: must be between 0 \(off\)"
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"supervision": {"risk": {key: value}}})
