"""The simulated operator honours [supervision] mode: human-gated it watches and corrects a
straying policy; robot-gated it looks away until asked, answers after its reaction time, and
misses what the robot does not ask about. The real Arbiter and loop over the simulator."""

from __future__ import annotations

import math

from takeover.config import HelpRiskConfig, SafetyConfig, SupervisionConfig
from takeover.control.arbiter import Arbiter, OperatorEvent
from takeover.control.loop import ControlLoop
from takeover.inputs.operator_sim import SimulatedOperator
from takeover.sim.expert import DockingExpert
from takeover.sim.link import SimLink
from takeover.types import Command, Mode, Observation, Pose2D, StepRecord

SEED = 3


class AimedExpert:
    """The docking expert aimed at a point `off_m` beside the dock (it strays), with a
    novelty that is high within `unsure_within_m` of the dock (0: never)."""

    novelty_threshold = 0.5

    def __init__(self, link: SimLink, off_m: float = 0.0, unsure_within_m: float = 0.0) -> None:
        dock = link.dock_pose()
        tx, ty = -math.sin(dock.yaw_rad), math.cos(dock.yaw_rad)
        self.dock = dock
        self.expert = DockingExpert(Pose2D(dock.x_m + off_m * tx, dock.y_m + off_m * ty,
                                           dock.yaw_rad))
        self.unsure_within_m = unsure_within_m
        self.novelty: float | None = None

    def propose(self, obs: Observation) -> Command | None:
        o = obs.odom
        near = math.hypot(o.x_m - self.dock.x_m, o.y_m - self.dock.y_m) < self.unsure_within_m
        self.novelty = 0.9 if near else 0.1
        return self.expert.command(o)

    def drop_queued_actions(self) -> None:
        """No queue: the expert decides from the current pose."""

    def reset(self) -> None:
        self.expert.reset()


def drive(supervision: SupervisionConfig, policy_of, ticks: int = 600  # type: ignore[no-untyped-def]
          ) -> tuple[list[StepRecord], SimulatedOperator]:
    link = SimLink(seed=SEED, with_image=False)
    link.connect()
    loop = ControlLoop(link, Arbiter(SafetyConfig(), policy_available=True,
                                     supervision=supervision), None, policy_of(link))
    operator = SimulatedOperator(link.dock_pose(), loop.post, supervision=supervision)
    loop.operator = operator
    loop.sinks.append(operator)
    loop.post(OperatorEvent.AUTO)
    records = []
    for _ in range(ticks):
        records.append(loop.tick())
        if link.sim.outcome.value != "running":
            break
    return records, operator


def test_human_gated_corrects_a_straying_policy() -> None:
    records, operator = drive(SupervisionConfig(mode="human"),
                              lambda link: AimedExpert(link, off_m=0.25))
    assert operator.takeovers >= 1
    assert any(r.mode is Mode.TAKEOVER for r in records)
    assert not any(r.help is not None and r.help.requested for r in records)
    assert operator.attention_s > 1.0


def test_robot_gated_corrects_only_when_asked() -> None:
    records, operator = drive(SupervisionConfig(mode="robot"),
                              lambda link: AimedExpert(link, off_m=0.25))
    # Stopped by the field beside the dock, the robot asks (blocked); the operator turns to
    # it, sees it off the axis, and corrects: every takeover answers a request.
    starts = [i for i in range(1, len(records)) if records[i].mode is Mode.TAKEOVER
              and records[i - 1].mode is not Mode.TAKEOVER]
    assert len(starts) == operator.takeovers >= 1
    for i in starts:
        before = records[i - 1].help
        assert before is not None and before.requested, records[i - 1].reason
    looked_s = operator.attention_s
    assert 0.0 < looked_s < len(records) / 20


def test_robot_gated_misses_what_the_robot_does_not_ask_about() -> None:
    silent = SupervisionConfig(mode="robot", risk=HelpRiskConfig(no_progress_s=0, blocked_s=0))
    records, operator = drive(silent, lambda link: AimedExpert(link, off_m=0.25))
    assert operator.takeovers == 0 and operator.attention_s == 0.0, operator.last_reason
    assert not any(r.mode is Mode.TAKEOVER for r in records)


def test_robot_gated_answers_after_its_reaction_time() -> None:
    supervision = SupervisionConfig(mode="robot", operator_reaction_s=0.5)
    records, operator = drive(supervision, lambda link: AimedExpert(link, unsure_within_m=1.2))
    assert operator.params.help_reaction_s == 0.5
    asked = [i for i, r in enumerate(records) if r.help is not None and r.help.requested]
    assert asked, "the robot asked"
    first = asked[0]
    answered = next(i for i in range(first, len(records))
                    if not (records[i].help is not None and records[i].help.requested))
    waited_s = (records[answered].t_ns - records[first].t_ns) / 1e9
    assert 0.5 <= waited_s <= 0.5 + 3 / 20, waited_s
    assert operator.requests_answered >= 1
    assert operator.hand_backs + operator.takeovers >= 1
    assert 0.0 < operator.attention_s < len(records) / 20 / 2, "it looked only when asked"
