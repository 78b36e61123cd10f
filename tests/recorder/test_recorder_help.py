"""Help requests recorded per step (help/requested, help/reason, help/score): an episode of the
real loop over the simulator, supervised robot-gated by the simulated operator, written to
HDF5, reopened, verified and counted; files written before the help datasets still read."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np

from takeover.config import SafetyConfig, SupervisionConfig
from takeover.control.arbiter import Arbiter, OperatorEvent
from takeover.control.episodes import EpisodeResult, EpisodeRunner
from takeover.control.loop import ControlLoop
from takeover.dagger.metrics import episode_help_counts, help_counts
from takeover.inputs.operator_sim import SimulatedOperator
from takeover.recorder import schema
from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.reader import read_episode
from takeover.recorder.verify import verify_episode
from takeover.recorder.writer import EpisodeWriter
from takeover.sim.expert import DockingExpert
from takeover.sim.link import SimLink
from takeover.types import Command, HelpReason, Mode, Observation, StepRecord

SEED = 3


class UnsureExpert:
    """The docking expert as a policy, unsure (novelty 0.9, card threshold 0.5) within 1.2 m
    of the dock: it asks for help on the way in."""

    novelty_threshold = 0.5

    def __init__(self, link: SimLink) -> None:
        self.link = link
        self.expert = DockingExpert(link.dock_pose())
        self.novelty: float | None = None

    def propose(self, obs: Observation) -> Command | None:
        dock, o = self.expert.dock, obs.odom
        self.novelty = 0.9 if math.hypot(o.x_m - dock.x_m, o.y_m - dock.y_m) < 1.2 else 0.1
        return self.expert.command(o)

    def drop_queued_actions(self) -> None:
        """No queue: the expert decides from the current pose."""

    def reset(self) -> None:
        self.expert.reset(self.link.dock_pose())


def record_robot_gated_episode(workspace: Path) -> tuple[Path, EpisodeResult,
                                                        SimulatedOperator]:
    link = SimLink(seed=SEED, with_image=False)
    link.connect()
    arbiter = Arbiter(SafetyConfig(), policy_available=True,
                      supervision=SupervisionConfig(mode="robot"))
    loop = ControlLoop(link, arbiter, None, UnsureExpert(link))
    operator = SimulatedOperator(link.dock_pose(), loop.post, supervision="robot")
    loop.operator = operator
    writer = EpisodeWriter(workspace, rate_hz=20.0, backpressure=True, fsync=False)
    writer.start()
    loop.sinks += [writer, operator]

    def prepare() -> None:
        operator.reset(link.dock_pose())
        writer.begin_episode(EpisodeMeta(round=1, rate_hz=20.0, model_id="unsure-expert"))

    result = EpisodeRunner(loop, keep_records=True, max_steps=1200).run(
        SEED, OperatorEvent.AUTO, prepare=prepare)
    path = writer.end_episode(result.outcome).result(timeout=60)
    writer.stop()
    assert path is not None
    return path, result, operator


def test_help_is_recorded_per_step_and_counted(tmp_path: Path) -> None:
    path, result, operator = record_robot_gated_episode(tmp_path)
    records: list[StepRecord] = result.records
    # The simulated operator looked only when asked: a first request handed back (the expert
    # was doing fine), the repeat right after corrected; the robot docked.
    assert operator.hand_backs >= 1 and operator.takeovers >= 1, operator.last_reason
    assert result.outcome == "success", result.detail
    assert verify_episode(path) == []
    episode = read_episode(path, images=False)
    assert episode.help_requested is not None and episode.help_reason is not None
    assert episode.help_score is not None
    by_step = {r.step: r for r in records}
    checked = 0
    for i, step in enumerate(episode.step):
        rec = by_step.get(int(step))
        if rec is None:
            continue
        h = rec.help
        assert bool(episode.help_requested[i]) == (h is not None and h.requested)
        assert int(episode.help_reason[i]) == (0 if h is None
                                               else schema.HELP_REASON_CODES[h.reason])
        if h is None or math.isnan(h.score):
            assert math.isnan(episode.help_score[i])
        else:
            assert episode.help_score[i] == np.float32(h.score)
        checked += 1
    assert checked >= len(records) - 1
    asked = episode.help_requested
    assert asked.any()
    assert set(episode.help_reason[asked].tolist()) == {schema.HELP_REASON_CODES[
        HelpReason.NOVELTY]}
    with h5py.File(path) as f:
        assert f["help/reason"].attrs["labels"] == ("none,blocked,novelty,no_progress,clearance,slip,"
                                                   "misaligned")
    counts = help_counts([episode])
    assert counts.requests == int(np.count_nonzero(asked & ~np.r_[False, asked[:-1]]))
    assert counts.false_alarms == operator.hand_backs
    assert counts.robot_gated == operator.takeovers and counts.human_gated == 0
    assert counts.missed_failures == 0 and counts.asking_s > 0
    # The takeover that answered a request is a correction like any other (action_mode 1).
    assert episode.info.interventions == operator.takeovers


def test_an_episode_written_before_the_help_datasets_still_reads(tmp_path: Path) -> None:
    path, _, _ = record_robot_gated_episode(tmp_path)
    with h5py.File(path, "r+") as f:  # what a takeover before help requests wrote
        del f["help"]
    assert verify_episode(path) == []
    episode = read_episode(path, images=False)
    assert episode.help_requested is None and episode.help_reason is None
    assert episode.help_score is None
    counts = help_counts([episode])
    assert counts.requests == 0 and counts.robot_gated == 0
    assert counts.human_gated == episode.info.interventions


def test_missed_failures_and_false_alarms_from_columns() -> None:
    auto, takeover = schema.MODE_CODES[Mode.AUTO], schema.MODE_CODES[Mode.TAKEOVER]
    t = np.arange(200, dtype=np.int64) * 50_000_000  # 10 s at 20 Hz
    mode = np.full(200, auto, dtype=np.uint8)
    action_mode = np.zeros(200, dtype=np.int8)
    asked = np.zeros(200, dtype=bool)
    asked[20:40] = True  # handed back at step 40: a false alarm
    asked[60:80] = True  # answered by a takeover at step 80
    mode[80:100], action_mode[80:100] = takeover, 1
    mode[120:130], action_mode[120:130] = takeover, 1  # unasked: human-gated
    c = episode_help_counts(t, mode, action_mode, asked, "failure", 20.0)
    assert (c.requests, c.false_alarms, c.robot_gated, c.human_gated) == (2, 1, 1, 1)
    assert c.missed_failures == 1, "no request in the last 5 s before the failure"
    asked[190] = True
    assert episode_help_counts(t, mode, action_mode, asked, "failure", 20.0).missed_failures == 0
    assert episode_help_counts(t, mode, action_mode, None, "success", 20.0).human_gated == 2
    assert json.dumps(c.as_json())
