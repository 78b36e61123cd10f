"""Round metrics with several robots in one workspace: pooled rows as before, and per robot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dagger_support import RATE_HZ, synthetic_record

from takeover.dagger.metrics import workspace_metrics, workspace_metrics_by_robot
from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.store import EpisodeStore
from takeover.recorder.writer import EpisodeWriter

# (round, robot) -> episodes: (action_mode runs, outcome). r001 pooled is dagger_support's r001.
EPISODES: dict[tuple[int, str], list[tuple[list[tuple[int | None, int]], str]]] = {
    (1, "a"): [([(0, 30), (1, 10), (0, 20)], "success")],
    (1, "b"): [([(0, 20), (1, 5), (0, 10), (1, 5)], "failure")],
    (2, "a"): [([(0, 60)], "success")],
}


@pytest.fixture(scope="module")
def fleet_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("fleet")
    writers = {robot: EpisodeWriter(ws, rate_hz=RATE_HZ, backpressure=True, fsync=False,
                                    robot_name=robot) for robot in ("a", "b")}
    for w in writers.values():
        w.start()
    try:
        for (rnd, robot), episodes in EPISODES.items():
            for runs, outcome in episodes:
                writer = writers[robot]
                writer.begin_episode(EpisodeMeta(round=rnd, rate_hz=RATE_HZ))
                step = 0
                for mode, n in runs:
                    for _ in range(n):
                        writer.offer(synthetic_record(step, mode))
                        step += 1
                assert writer.end_episode(outcome).result(timeout=30) is not None
    finally:
        for w in writers.values():
            w.stop()
    return ws


def test_rows_stay_pooled_and_split_by_robot(fleet_workspace: Path) -> None:
    infos = EpisodeStore(fleet_workspace).episodes()
    pooled = workspace_metrics(infos)
    r1 = pooled[0]
    assert (r1.round, r1.episodes, r1.robot_steps, r1.interventions) == (1, 2, 80, 3)
    assert r1.interventions_per_min == pytest.approx(45.0)
    split = workspace_metrics_by_robot(infos)
    assert [(robot, m.round) for robot, m in split] == [("a", 1), ("b", 1), ("a", 2)]
    (_, a1), (_, b1), (_, a2) = split
    # a: 50 robot steps = 2.5 s autonomous, one takeover; b: 30 robot steps = 1.5 s, two.
    assert (a1.robot_steps, a1.interventions, a1.successes, a1.decided) == (50, 1, 1, 1)
    assert a1.interventions_per_min == pytest.approx(24.0)
    assert (b1.robot_steps, b1.interventions, b1.successes, b1.decided) == (30, 2, 0, 1)
    assert b1.interventions_per_min == pytest.approx(80.0)
    assert a2.interventions_per_min == 0.0 and a2.autonomy == 1.0
    # The per-robot rows add up to the pooled ones.
    for field in ("episodes", "steps", "human_steps", "robot_steps", "interventions",
                  "successes", "decided"):
        assert getattr(a1, field) + getattr(b1, field) == getattr(r1, field)


def _status(ws: Path, *flags: str) -> str:
    p = subprocess.run([sys.executable, "-m", "takeover.cli", "dagger", "status",
                        "--workspace", str(ws), *flags], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_dagger_status_json_keeps_rounds_and_adds_per_robot(fleet_workspace: Path) -> None:
    out = json.loads(_status(fleet_workspace, "--json").splitlines()[-1])
    assert [r["round"] for r in out["rounds"]] == [1, 2]
    assert "robot" not in out["rounds"][0] and out["rounds"][0]["interventions"] == 3
    assert [(r["robot"], r["round"], r["interventions"]) for r in out["per_robot"]] == [
        ("a", 1, 1), ("b", 1, 2), ("a", 2, 0)]
    assert out["per_robot"][1]["interventions_per_min"] == 80.0


def test_dagger_status_by_robot_table(fleet_workspace: Path) -> None:
    lines = _status(fleet_workspace, "--by-robot").splitlines()
    assert lines[0].split()[:3] == ["round", "robot", "episodes"]
    rows = [line.split()[:2] for line in lines[1:4]]
    assert rows == [["r001", "a"], ["r001", "b"], ["r002", "a"]]
    # Each robot's change is against its own previous round: a went from 24 to 0 per minute.
    assert "0.00 (-24.00)" in lines[3]
    pooled = _status(fleet_workspace).splitlines()
    assert pooled[0].split()[:2] == ["round", "episodes"]
    assert [line.split()[:2] for line in pooled[1:3]] == [["r001", "2"], ["r002", "1"]]
