"""The robot's own retry of a misaligned approach (control/realign.py, the Arbiter's AUTO): the
real Arbiter and ControlLoop over the simulator in lockstep, with policies that creep into the
dock face off the charger's tolerance, once or every time."""

from __future__ import annotations

import dataclasses
import math

import pytest
from dock_support import tick_until_settled

from takeover.config import HelpRiskConfig, SafetyConfig, SupervisionConfig, config_from_dict
from takeover.control.arbiter import Arbiter, OperatorEvent, OperatorInput
from takeover.control.loop import ControlLoop
from takeover.control.realign import MAX_BACKOFF_S, MisalignedBackoff
from takeover.errors import ConfigError
from takeover.sim.expert import DockingExpert
from takeover.sim.link import SimLink
from takeover.sim.simulator import SimOutcome
from takeover.types import (
    ACTION_MODE_ROBOT,
    Command,
    CommandSource,
    HelpReason,
    Mode,
    Observation,
    Odometry,
    Pose2D,
    StepRecord,
)

RATE_HZ = 20.0
DT_S = 1.0 / RATE_HZ
# Only the misaligned signal, at its defaults (one retry, back out to 0.5 m).
RISK = HelpRiskConfig(no_progress_s=0, blocked_s=0, no_approach_s=0)


class MisalignedDriver:
    """A PolicyDriver that docks confidently to the dock turned `off_deg` about its face's
    centre (a contact the simulated charger calls misaligned) for its first `bad_approaches`
    approaches, and to the true dock after that. A new approach begins when its queued
    actions are dropped (a takeover, a request or the end of a back-out)."""

    def __init__(self, link: SimLink, off_deg: float = 5.0, bad_approaches: int = 99) -> None:
        d = link.dock_pose()
        self.turned = DockingExpert(Pose2D(d.x_m, d.y_m, d.yaw_rad + math.radians(off_deg)))
        self.true = DockingExpert(d)
        self.bad_approaches = bad_approaches
        self.drops = 0

    def propose(self, obs: Observation) -> Command | None:
        expert = self.turned if self.drops < self.bad_approaches else self.true
        return expert.command(obs.odom)

    def drop_queued_actions(self) -> None:
        self.drops += 1

    def reset(self) -> None:
        self.turned.reset()
        self.true.reset()


class Deadman:
    def __init__(self) -> None:
        self.held = True

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        return OperatorInput(deadman=self.held)


def make_loop(driver_of, mode: str = "robot", risk: HelpRiskConfig = RISK,  # type: ignore[no-untyped-def]
              seed: int = 3) -> tuple[SimLink, ControlLoop, Deadman]:
    link = SimLink("sim://?fast=1", seed=seed, with_image=False)
    link.connect()
    arbiter = Arbiter(SafetyConfig(), policy_available=True,
                      supervision=SupervisionConfig(mode=mode, risk=risk))
    operator = Deadman()
    loop = ControlLoop(link, arbiter, operator, driver_of(link), rate_hz=RATE_HZ)
    loop.refresh_dock_pose()
    loop.post(OperatorEvent.AUTO)
    return link, loop, operator


def run(link: SimLink, loop: ControlLoop, seconds: float = 60.0) -> list[StepRecord]:
    return tick_until_settled(link, loop, seconds)


def backoffs(records: list[StepRecord]) -> list[list[StepRecord]]:
    """The runs of consecutive back-out steps (AUTO, source reset)."""
    runs: list[list[StepRecord]] = []
    previous = False
    for r in records:
        now = r.mode is Mode.AUTO and r.source is CommandSource.RESET
        if now and not previous:
            runs.append([])
        if now:
            runs[-1].append(r)
        previous = now
    return runs


def gap_of(link: SimLink) -> float:
    f = DockingExpert(link.dock_pose()).dock_frame(Odometry(link.sim.x, link.sim.y, link.sim.yaw))
    return f.gap_m


def test_a_policy_misaligned_once_backs_out_and_docks_without_asking() -> None:
    link, loop, _ = make_loop(lambda link: MisalignedDriver(link, bad_approaches=1))
    records = run(link, loop)
    assert link.sim.outcome is SimOutcome.DOCKED, link.sim.outcome
    assert not any(r.help is not None and r.help.requested for r in records)
    (out,) = backoffs(records)
    # It reversed (never a label: the robot's own action), under AUTO.
    assert all(r.command.v_mps <= 0 and r.action_mode == ACTION_MODE_ROBOT for r in out)
    assert any(r.command.v_mps < -0.1 for r in out)
    assert "backing out to try again (retry 1 of 1)" in out[0].reason
    # The policy drove again right after, from a fresh chunk.
    after = records[records.index(out[-1]) + 1]
    assert after.source in (CommandSource.POLICY, CommandSource.NONE) and after.mode is Mode.AUTO


def test_a_policy_misaligned_every_time_asks_after_its_retries() -> None:
    link, loop, _ = make_loop(MisalignedDriver,
                              risk=dataclasses.replace(RISK, misaligned_retries=2))
    records = run(link, loop)
    assert len(backoffs(records)) == 2
    asked = [r for r in records if r.help is not None and r.help.requested]
    assert asked and asked[0].help is not None and asked[0].help.reason is HelpReason.MISALIGNED
    assert records.index(asked[0]) > records.index(backoffs(records)[-1][-1])
    # Held short of the face: the misaligned contact never happened.
    assert link.sim.outcome is SimOutcome.RUNNING and 0.0 < gap_of(link) < 0.06


def test_it_backs_out_to_the_configured_gap() -> None:
    link, loop, _ = make_loop(MisalignedDriver)
    records = []
    for _ in range(round(40 / DT_S)):
        records.append(loop.tick())
        if len(backoffs(records)) == 1 and records[-1].source is not CommandSource.RESET:
            break
    assert backoffs(records), "never backed out"
    # The back-out ended with the front about 0.5 m out (the last tick's braking: a few cm).
    assert 0.48 < gap_of(link) < 0.56, gap_of(link)


def test_without_retries_it_asks_at_once() -> None:
    link, loop, _ = make_loop(lambda link: MisalignedDriver(link, bad_approaches=1),
                              risk=dataclasses.replace(RISK, misaligned_retries=0))
    records = run(link, loop)
    assert not backoffs(records)
    assert any(r.help is not None and r.help.requested for r in records)


def test_human_gated_the_policy_alone_retries_and_never_asks() -> None:
    link, loop, _ = make_loop(lambda link: MisalignedDriver(link, bad_approaches=1),
                              mode="human")
    records = run(link, loop)
    assert len(backoffs(records)) == 1
    assert link.sim.outcome is SimOutcome.DOCKED
    # Human-gated, a misaligned policy that keeps at it is the watcher's to stop: no request.
    link, loop, _ = make_loop(MisalignedDriver, mode="human")
    records = run(link, loop)
    assert len(backoffs(records)) == 1
    assert not any(r.help is not None and r.help.requested for r in records)
    assert link.sim.outcome is SimOutcome.MISALIGNED


def test_the_deadman_and_the_estop_stop_a_back_out() -> None:
    _, loop, operator = make_loop(MisalignedDriver)
    records: list[StepRecord] = []
    while not backoffs(records) or len(backoffs(records)[0]) < 10:
        records.append(loop.tick())
        assert len(records) < 60 / DT_S, "never backed out"
    operator.held = False
    released = loop.tick()
    assert released.command.is_zero and released.mode is Mode.AUTO
    for _ in range(10):
        assert loop.tick().command.is_zero
    operator.held = True  # held again, the back-out carries on (AUTO was never left)
    resumed = [loop.tick() for _ in range(10)]
    assert any(r.source is CommandSource.RESET and r.command.v_mps < 0 for r in resumed)
    loop.post(OperatorEvent.ESTOP)
    stopped = loop.tick()
    assert stopped.mode is Mode.ESTOP and stopped.command.is_zero
    loop.post(OperatorEvent.ACKNOWLEDGE)
    after = [loop.tick() for _ in range(20)]
    assert after[-1].mode is Mode.IDLE
    assert all(r.command.is_zero for r in after)  # nothing resumes the back-out by itself


def test_a_back_out_that_cannot_move_gives_up_and_asks() -> None:
    dock = Pose2D(0.0, 0.0, 0.0)
    backoff = MisalignedBackoff(dock, 0.5, 0.22, start_ns=0)
    stuck = Odometry(0.22 + 0.04, 0.01, math.pi + math.radians(5))  # 4 cm out, held there
    first = backoff.step(stuck, now_ns=0)
    assert not first.done and first.command.v_mps < 0
    # Turning to face the dock: the heading error is +5 degrees, so it turns clockwise.
    assert first.command.w_radps < 0
    late = backoff.step(stuck, now_ns=round((MAX_BACKOFF_S + 0.1) * 1e9))
    assert late.done and not late.ok and "still 4 cm from the dock" in late.why
    out = backoff.step(Odometry(0.22 + 0.51, 0.01, math.pi), now_ns=10**9)
    assert out.done and out.ok


@pytest.mark.parametrize("table, message", [
    ({"misaligned_retries": -1}, r"misaligned_retries = -1: must be between 0"),
    ({"misaligned_retries": 11}, r"misaligned_retries = 11: must be between 0"),
    ({"misaligned_backoff_m": 0.05}, r"misaligned_backoff_m = 0.05: must be above "
                                     r"misaligned_gap_m \(0.06\)"),
    ({"misaligned_backoff_m": 4.0}, r"misaligned_backoff_m = 4.0: must be above"),
])
def test_bad_retry_settings_name_the_key(table: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=rf"supervision\.risk\.{message}"):
        config_from_dict({"supervision": {"risk": table}})
