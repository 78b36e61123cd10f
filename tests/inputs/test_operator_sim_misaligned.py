"""Asked for help at a misaligned approach (control/help.py's misaligned signal), the simulated
operator answers as a person would: it takes over, backs out and docks the robot itself. The
real Arbiter and loop over the simulator in lockstep, a policy that creeps in 5 degrees off."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
from expert_driver import ExpertDriver

from takeover.config import SafetyConfig, SupervisionConfig
from takeover.control.arbiter import Arbiter, OperatorEvent
from takeover.control.episodes import EpisodeRunner
from takeover.control.loop import ControlLoop
from takeover.inputs.operator_sim import SimulatedOperator
from takeover.recorder import schema
from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.reader import read_episode
from takeover.recorder.verify import verify_episode
from takeover.recorder.writer import EpisodeWriter
from takeover.sim.link import SimLink
from takeover.sim.simulator import SimOutcome
from takeover.types import CommandSource, HelpReason, Mode, StepRecord


def drive(seed: int, mode: str, seconds: float = 60.0
          ) -> tuple[SimLink, list[StepRecord], SimulatedOperator]:
    supervision = SupervisionConfig(mode=mode)  # every signal at its default
    link = SimLink("sim://?fast=1", seed=seed, with_image=False)
    link.connect()
    loop = ControlLoop(link, Arbiter(SafetyConfig(), policy_available=True,
                                     supervision=supervision), None,
                       ExpertDriver(link, 5.0), rate_hz=20.0)
    loop.refresh_dock_pose()
    operator = SimulatedOperator(link.dock_pose(), loop.post, supervision=supervision)
    loop.operator = operator
    loop.sinks.append(operator)
    loop.post(OperatorEvent.AUTO)
    records = []
    for _ in range(round(seconds * 20)):
        records.append(loop.tick())
        if link.sim.outcome is not SimOutcome.RUNNING:
            break
    return link, records, operator


@pytest.mark.parametrize("seed", [3, 11])
def test_asked_at_a_misaligned_approach_it_backs_out_and_docks(seed: int) -> None:
    link, records, operator = drive(seed, "robot")
    assert link.sim.outcome is SimOutcome.DOCKED, operator.last_reason
    asked = [r for r in records if r.help is not None and r.help.requested]
    assert asked and all(r.help is not None and r.help.reason is HelpReason.MISALIGNED
                         for r in asked)
    assert operator.takeovers == 1 and operator.hand_backs == 0
    assert operator.last_reason.startswith("misaligned at the dock")
    first = records.index(asked[0])
    taken = records[first:]
    takeover = [r for r in taken if r.mode is Mode.TAKEOVER]
    assert takeover and all(r.source is CommandSource.HUMAN for r in takeover)
    # It backs out first (the expert's BACKUP), then drives in itself, to the contacts:
    # from the takeover on, the policy never drives again.
    assert any(r.command.v_mps < -0.05 for r in takeover)
    assert not any(r.mode is Mode.AUTO and r.source is CommandSource.POLICY
                   for r in records[records.index(takeover[0]):])



def test_the_request_is_recorded_as_misaligned(tmp_path: Path) -> None:
    """help/reason round trip: code 6 in the file, read back as MISALIGNED, verified."""
    supervision = SupervisionConfig(mode="robot")
    link = SimLink("sim://?fast=1", seed=3, with_image=False)
    link.connect()
    loop = ControlLoop(link, Arbiter(SafetyConfig(), policy_available=True,
                                     supervision=supervision), None,
                       ExpertDriver(link, 5.0), rate_hz=20.0)
    operator = SimulatedOperator(link.dock_pose(), loop.post, supervision=supervision)
    loop.operator = operator
    writer = EpisodeWriter(tmp_path, rate_hz=20.0, backpressure=True, fsync=False)
    writer.start()
    loop.sinks += [writer, operator]

    def prepare() -> None:
        operator.reset(link.dock_pose())
        writer.begin_episode(EpisodeMeta(round=1, rate_hz=20.0, model_id="turned-dock"))

    result = EpisodeRunner(loop, keep_records=True, max_steps=1200).run(
        3, OperatorEvent.AUTO, prepare=prepare)
    path = writer.end_episode(result.outcome).result(timeout=60)
    writer.stop()
    assert path is not None and result.outcome == "success", result.detail
    assert verify_episode(path) == []
    episode = read_episode(path, images=False)
    assert episode.help_requested is not None and episode.help_reason is not None
    asked = episode.help_reason[episode.help_requested]
    assert asked.size and {schema.HELP_REASON_BY_CODE[int(c)] for c in asked} == {
        HelpReason.MISALIGNED}
    assert schema.HELP_REASON_CODES[HelpReason.MISALIGNED] == 6  # appended: 1-5 keep theirs
    with h5py.File(path) as f:
        assert f["help/reason"].attrs["labels"].split(",")[6] == "misaligned"
