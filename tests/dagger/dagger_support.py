"""Workspaces for the dagger tests, made here in seconds on a 2-core CPU.

- `synthetic_rounds_workspace`: three rounds of episodes with hand-chosen labels and outcomes
  (no frames worth learning from), for the metrics and the report.
- `trained_workspace`: 4 short expert episodes (48x48 frames, 40 steps) recorded through the
  real pipeline and a tiny model r001 trained on them and deployed: real training, real ONNX.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.writer import EpisodeWriter
from takeover.session.drive import DriveRequest, run_drive
from takeover.types import Command, CommandSource, Mode, Observation, Odometry, StepRecord
from takeover.workspace.layout import init_workspace

RATE_HZ = 20.0
MODE_OF = {-1: Mode.MANUAL, 0: Mode.AUTO, 1: Mode.TAKEOVER, None: Mode.IDLE}

# round -> episodes: (action_mode runs, outcome)
ROUNDS: dict[int, list[tuple[list[tuple[int | None, int]], str]]] = {
    0: [([(-1, 40)], "success"), ([(-1, 20)], "failure")],
    1: [([(0, 30), (1, 10), (0, 20)], "success"), ([(0, 20), (1, 5), (0, 10), (1, 5)], "failure")],
    2: [([(0, 60)], "success"), ([(0, 40), (None, 5)], "aborted")],
}

TINY_HW = 48
TINY_MODEL_ARGS = {
    "backbone": "resnet10t",
    "backbone_args": {"channels": [8, 8, 8, 8], "stem_width": 8},
    "image_height": TINY_HW, "image_width": TINY_HW, "chunk_size": 5,
    "image_channels": 8, "lidar_hidden": 32, "lidar_features": 16, "head_hidden": 32,
}
EXPERT_SEED = 3  # demonstrations on seeds 3..6


def synthetic_record(step: int, action_mode: int | None) -> StepRecord:
    t = step * 50_000_000
    human = action_mode in (-1, 1)
    return StepRecord(
        step=step, t_ns=t,
        observation=Observation(t_ns=t, odom=Odometry(v_mps=0.1)),
        command=Command(0.1, 0.0),
        source=CommandSource.HUMAN if human else CommandSource.POLICY,
        mode=MODE_OF[action_mode], policy_action=Command(0.1, 0.0),
        human_action=Command(0.1, 0.0) if human else None, action_mode=action_mode,
        loop_late_ns=0, policy_latency_ns=0,
    )


def synthetic_rounds_workspace(ws: Path) -> Path:
    with EpisodeWriter(ws, rate_hz=RATE_HZ, backpressure=True, fsync=False) as writer:
        for rnd, episodes in ROUNDS.items():
            for runs, outcome in episodes:
                writer.begin_episode(EpisodeMeta(round=rnd, rate_hz=RATE_HZ))
                step = 0
                for mode, n in runs:
                    for _ in range(n):
                        writer.offer(synthetic_record(step, mode))
                        step += 1
                assert writer.end_episode(outcome).result(timeout=30) is not None
    return ws


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_rounds_workspace(tmp_path_factory.mktemp("ws"))


def make_workspace(root: Path, camera_hw: int = TINY_HW) -> Path:
    ws = init_workspace(root)
    toml = ws / "takeover.toml"
    text = toml.read_text().replace("camera_width = 96", f"camera_width = {camera_hw}")
    toml.write_text(text.replace("camera_height = 96", f"camera_height = {camera_hw}"))
    return ws


@pytest.fixture(scope="module")
def trained_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 expert episodes in r000 and a tiny model r001 trained on them, deployed."""
    from takeover.policy.build import train_workspace
    from takeover.policy.model import ModelConfig
    from takeover.policy.train import TrainConfig

    ws = make_workspace(tmp_path_factory.mktemp("dagger") / "ws")
    summary = run_drive(DriveRequest(robot_url="sim://", driver="expert", episodes=4,
                                     seed=EXPERT_SEED, workspace=ws, record=True, fast=True,
                                     max_steps=40))
    assert len(summary["recorded"]) == 4
    card = train_workspace(ws, ModelConfig(**TINY_MODEL_ARGS),  # type: ignore[arg-type]
                           TrainConfig(epochs=1, batch_size=16, threads=1, val_fraction=0.25,
                                       seed=1))
    assert card["model_id"] == "r001" and card.get("deployed")
    return ws
