"""Asking for help (control/help.py, docs/safety.md "Asking for help"): the real Arbiter and
ControlLoop over the simulator link in lockstep, a docking expert as the policy whose novelty
rises in a region, and the simulator's own wheels checked, not only the command."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from expert_driver import ExpertDriver

from takeover.config import (
    HelpRiskConfig,
    SafetyConfig,
    SupervisionConfig,
    config_from_dict,
)
from takeover.control.arbiter import Arbiter, OperatorEvent, OperatorInput
from takeover.control.help import HelpMonitor, front_clearance_m
from takeover.control.loop import ControlLoop
from takeover.errors import ConfigError
from takeover.sim.expert import DockingExpert
from takeover.sim.link import SimLink
from takeover.types import (
    ACTION_MODE_INTERVENTION,
    Command,
    CommandSource,
    HelpPriority,
    HelpReason,
    Mode,
    Observation,
    Odometry,
    StepRecord,
)

RATE_HZ = 20.0
DT_S = 1.0 / RATE_HZ


class UnsureExpert:
    """A PolicyDriver: the simulator's docking expert, unsure (novelty 0.9 against a card's
    threshold of 0.5) once it is within `unsure_within_m` of the dock, sure (0.1) elsewhere."""

    novelty_threshold = 0.5

    def __init__(self, link: SimLink, unsure_within_m: float) -> None:
        self.dock = link.dock_pose()
        self.expert = DockingExpert(self.dock)
        self.unsure_within_m = unsure_within_m
        self.novelty: float | None = None
        self.dropped = 0

    def propose(self, obs: Observation) -> Command | None:
        o = obs.odom
        near = math.hypot(o.x_m - self.dock.x_m, o.y_m - self.dock.y_m) < self.unsure_within_m
        self.novelty = 0.9 if near else 0.1
        return self.expert.command(o)

    def drop_queued_actions(self) -> None:
        self.dropped += 1

    def reset(self) -> None:
        self.expert.reset()


class Hand:
    """The operator's hands: the deadman held, sticks still unless the test moves them."""

    def __init__(self) -> None:
        self.deadman = True
        self.command = Command()
        self.deflection = 0.0

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        return OperatorInput(deadman=self.deadman, command=self.command,
                             deflection=self.deflection)


def build(seed: int = 3, unsure_within_m: float = 1.2, mode: str = "robot",
          confirm_ms: float = 300.0, risk: HelpRiskConfig | None = None
          ) -> tuple[SimLink, ControlLoop, Hand, UnsureExpert]:
    link = SimLink("sim://?fast=1", seed=seed, with_image=False)
    link.connect()
    supervision = SupervisionConfig(mode=mode, help_confirm_ms=confirm_ms,
                                    risk=risk or HelpRiskConfig())
    policy = UnsureExpert(link, unsure_within_m)
    hand = Hand()
    arbiter = Arbiter(SafetyConfig(), policy_available=True, supervision=supervision)
    loop = ControlLoop(link, arbiter, hand, policy, rate_hz=RATE_HZ)
    return link, loop, hand, policy


def run_until(loop: ControlLoop, pred, max_ticks: int = 2000) -> StepRecord:  # type: ignore[no-untyped-def]
    for _ in range(max_ticks):
        rec = loop.tick()
        if pred(rec):
            return rec
    raise AssertionError(f"not reached in {max_ticks} ticks; reason: {loop.arbiter.reason}")


def ticks(loop: ControlLoop, n: int) -> list[StepRecord]:
    return [loop.tick() for _ in range(n)]


def asking(rec: StepRecord) -> bool:
    return rec.help is not None and rec.help.requested


def engage(loop: ControlLoop) -> None:
    loop.post(OperatorEvent.AUTO)
    rec = loop.tick()
    assert rec.mode is Mode.AUTO, loop.arbiter.reason


def test_request_fires_only_after_help_confirm_ms_then_brakes_and_holds() -> None:
    link, loop, _hand, policy = build(confirm_ms=400.0)
    engage(loop)
    first_unsure = run_until(loop, lambda r: policy.novelty == 0.9)
    assert not asking(first_unsure)
    assert first_unsure.help is not None and first_unsure.help.reason is HelpReason.NOVELTY
    assert first_unsure.help.score == pytest.approx(0.9)
    assert first_unsure.help.threshold == pytest.approx(0.5)
    # Raised, not yet confirmed: the policy still drives.
    held = [first_unsure]
    while not asking(held[-1]):
        held.append(loop.tick())
    waited_ms = (held[-1].t_ns - first_unsure.t_ns) / 1e6
    assert 400.0 <= waited_ms <= 400.0 + 1000 * DT_S + 1, waited_ms
    assert all(r.source is CommandSource.POLICY for r in held[:-1])
    request = held[-1]
    assert request.mode is Mode.AUTO and request.help is not None
    assert request.help.reason is HelpReason.NOVELTY
    assert request.help.priority is HelpPriority.UNCERTAINTY
    assert "asking for help" in request.reason
    assert policy.dropped >= 1, "the policy's queued chunk is dropped when it asks"
    # The command slows within the Arbiter's deceleration limit; the wheels follow within the
    # simulator's own; then it holds still for good.
    safety = loop.arbiter.safety
    before = held[-2].command
    after = [request, *ticks(loop, 60)]
    commands = [before] + [r.command for r in after]
    for a, b in itertools.pairwise(commands):
        assert abs(b.v_mps) <= abs(a.v_mps) + 1e-9
        assert abs(a.v_mps - b.v_mps) <= safety.decel_v_mps2 * DT_S + 1e-9
        assert abs(a.w_radps - b.w_radps) <= safety.decel_w_radps2 * DT_S + 1e-9
    assert before.v_mps > 0.1, "it was driving when it asked"
    assert not request.command.is_zero, "a ramp, not an instant stop"
    assert all(asking(r) and r.mode is Mode.AUTO for r in after)
    assert all(r.command.is_zero and r.source is CommandSource.NONE for r in after[10:])
    wheels = []
    for _ in range(20):
        loop.tick()
        wheels.append(abs(link.sim.v))
    assert max(wheels) < 1e-6 and abs(link.sim.w) < 1e-6, "the simulator's wheels stand still"
    odom = loop.latest.observation.odom if loop.latest and loop.latest.observation else None
    assert odom is not None and abs(odom.v_mps) < 0.02


def test_hand_back_resumes_auto_only_on_the_operators_event() -> None:
    link, loop, _hand, _policy = build()
    engage(loop)
    run_until(loop, asking)
    records = ticks(loop, 100)  # 5 s: nothing restarts motion by itself
    assert all(asking(r) for r in records)
    assert all(r.command.is_zero for r in records[20:])
    x_held = link.sim.x
    # Pushing the policy's button again (the TUI's AUTO key) or HAND_BACK hands back.
    loop.post(OperatorEvent.HAND_BACK)
    rec = loop.tick()
    assert rec.mode is Mode.AUTO and not asking(rec) and rec.source is CommandSource.POLICY
    assert "handed back" in rec.reason
    moved = ticks(loop, 5)
    assert max(abs(r.command.v_mps) for r in moved) > 0.0
    # From rest, within the acceleration limit.
    assert moved[0].command.v_mps <= loop.arbiter.safety.accel_v_mps2 * DT_S * 2 + 1e-9
    # Still unsure: it asks again, but only after a full confirm time from the hand-back.
    again = run_until(loop, asking, 100)
    assert (again.t_ns - rec.t_ns) / 1e6 >= 300.0
    assert link.sim.x != x_held
    # The AUTO request (the TUI's hand-back key) answers it the same way.
    loop.post(OperatorEvent.AUTO)
    rec = loop.tick()
    assert rec.mode is Mode.AUTO and not asking(rec) and "handed back" in rec.reason
    # HAND_BACK with nothing to answer changes nothing.
    loop.post(OperatorEvent.HAND_BACK)
    rec = loop.tick()
    assert rec.mode is Mode.AUTO and "nothing to hand back" in loop.arbiter.reason


def test_takeover_during_a_request_is_a_recorded_correction() -> None:
    _link, loop, hand, _policy = build()
    engage(loop)
    run_until(loop, asking)
    ticks(loop, 20)
    hand.command, hand.deflection = Command(0.2, 0.0), 1.0
    rec = loop.tick()
    assert rec.mode is Mode.TAKEOVER and rec.action_mode == ACTION_MODE_INTERVENTION
    assert rec.source is CommandSource.HUMAN and not asking(rec)
    assert rec.help is None
    drove = ticks(loop, 10)
    assert all(r.mode is Mode.TAKEOVER and r.source is CommandSource.HUMAN for r in drove)
    assert drove[-1].command.v_mps > 0.0


@pytest.mark.parametrize("fault", ["estop", "deadman", "link"])
def test_safety_stops_still_apply_while_asking(fault: str) -> None:
    link, loop, hand, _policy = build(confirm_ms=0.0)
    engage(loop)
    request = run_until(loop, asking)
    assert not request.command.is_zero, "caught while it still brakes"
    if fault == "estop":
        loop.post(OperatorEvent.ESTOP)
    elif fault == "deadman":
        hand.deadman = False
    else:
        link.close()
    rec = loop.tick()
    assert rec.command.is_zero, "stops at once, no ramp"
    if fault == "deadman":
        assert rec.mode is Mode.AUTO and rec.reason == "deadman released" and asking(rec)
        hand.deadman = True  # pressing it again does not restart motion: still asking
        later = ticks(loop, 40)
        assert all(asking(r) and r.command.is_zero for r in later)
        return
    want = Mode.ESTOP if fault == "estop" else Mode.LINK_LOST
    assert rec.mode is want and rec.mode.latched and not asking(rec)
    # Latched: neither a hand-back nor time moves it.
    loop.post(OperatorEvent.HAND_BACK)
    later = ticks(loop, 40)
    assert all(r.mode is want and r.command.is_zero for r in later)
    assert abs(link.sim.v) < 1e-6


def test_human_mode_records_the_signal_but_never_holds() -> None:
    _link, loop, _hand, policy = build(mode="human")
    engage(loop)
    run_until(loop, lambda r: policy.novelty == 0.9)
    records = ticks(loop, 40)
    assert not any(asking(r) for r in records)
    assert all(r.help is not None and r.help.reason is HelpReason.NOVELTY for r in records)
    assert any(r.source is CommandSource.POLICY and not r.command.is_zero for r in records)


def test_a_policy_without_novelty_still_drives() -> None:
    link, loop, _hand, _policy = build()

    loop.set_policy(ExpertDriver(link))  # no `novelty` attribute at all
    engage(loop)
    records = ticks(loop, 100)
    assert not any(asking(r) for r in records)
    assert all(r.help is not None and math.isnan(r.help.score) for r in records)


def test_no_progress_asks_with_risk_priority() -> None:
    """The monitor alone, fed what a wedged robot shows: odometry still while the policy
    pushes. It asks after no_progress_s, and never while the robot is on the charger."""
    sv = SupervisionConfig(mode="robot", help_confirm_ms=300.0)
    monitor = HelpMonitor(sv, 0.22)
    obs = Observation(t_ns=0, odom=Odometry(v_mps=0.0, w_radps=0.0))
    push = Command(0.3, 0.0)
    verdicts = [monitor.update(round(i * DT_S * 1e9), obs, push, push, None, None, None)
                for i in range(60)]
    first = next(i for i, v in enumerate(verdicts) if v.confirmed is not None)
    assert first * DT_S == pytest.approx(sv.risk.no_progress_s, abs=DT_S)
    confirmed = verdicts[first].confirmed
    assert confirmed is not None and confirmed.reason is HelpReason.NO_PROGRESS
    assert confirmed.reason.priority is HelpPriority.RISK
    docked = dataclasses.replace(obs, docked=True)
    monitor.reset()
    assert all(monitor.update(round(i * DT_S * 1e9), docked, push, push, None, None,
                              None).confirmed is None for i in range(60)), "pushing on the dock"


def test_priority_order_constraint_uncertainty_risk() -> None:
    assert HelpReason.BLOCKED.priority > HelpReason.NOVELTY.priority > HelpReason.SLIP.priority
    sv = SupervisionConfig(mode="robot", help_confirm_ms=0.0,
                           risk=HelpRiskConfig(no_progress_s=0.0001, blocked_s=0.0001))
    monitor = HelpMonitor(sv, 0.22)
    obs = Observation(t_ns=0, odom=Odometry(), bumper=True)
    push = Command(0.3, 0.0)
    monitor.update(0, obs, push, push, None, 0.9, 0.5)
    v = monitor.update(round(DT_S * 1e9), obs, push, push, None, 0.9, 0.5)
    assert [s.reason for s in v.raised] == [HelpReason.BLOCKED, HelpReason.NOVELTY,
                                            HelpReason.NO_PROGRESS]
    assert v.confirmed is not None and v.confirmed.reason is HelpReason.BLOCKED


def test_front_clearance_and_slip_signals() -> None:
    scan = np.full(360, 5.0, dtype=np.float32)
    scan[350] = 0.40  # 10 degrees right of forward
    scan[90] = 0.25  # to the left: not ahead
    assert front_clearance_m(scan, 30.0, 0.22) == pytest.approx(0.18)
    assert math.isnan(front_clearance_m(None, 30.0, 0.22))
    sv = SupervisionConfig(mode="robot", help_confirm_ms=0.0,
                           risk=HelpRiskConfig(clearance_margin_m=0.3, slip_v_mps=0.15))
    monitor = HelpMonitor(sv, 0.22)
    fwd = Command(0.3, 0.0)
    obs = Observation(t_ns=0, odom=Odometry(v_mps=0.3), scan_m=scan)
    v = monitor.update(0, obs, fwd, fwd, None, None, None)
    assert [s.reason for s in v.raised] == [HelpReason.CLEARANCE]
    slipping = Observation(t_ns=0, odom=Odometry(v_mps=0.05))
    reasons = [monitor.update(round(i * DT_S * 1e9), slipping, fwd, fwd, None, None, None)
               for i in range(20)]
    assert reasons[0].confirmed is None, "not judged before the command has settled"
    assert reasons[-1].confirmed is not None
    assert reasons[-1].confirmed.reason is HelpReason.SLIP


def test_supervision_config_errors_name_the_key() -> None:
    for table, key in (({"mode": "robots"}, "supervision.mode"),
                       ({"help_confirm_ms": -1}, "supervision.help_confirm_ms"),
                       ({"novelty_threshold": 0}, "supervision.novelty_threshold"),
                       ({"risk": {"no_progress_s": -2}}, "supervision.risk.no_progress_s"),
                       ({"risk": {"slipv": 1}}, "supervision.risk.slipv")):
        with pytest.raises(ConfigError) as err:
            config_from_dict({"supervision": table})
        assert key in str(err.value) and "\n" not in str(err.value)
    config = config_from_dict({"supervision": {"mode": "both", "novelty_threshold": 0.3}})
    assert config.supervision.robot_gated and config.supervision.novelty_threshold == 0.3
