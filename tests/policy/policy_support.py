"""Tiny data and a tiny model for the policy tests: made here, in seconds, on a 2-core CPU.

Episodes come from the real pipeline (the simulator's expert through the control loop and the
recorder), at 48x48 pixels and 40 steps; the model is resnet10t at 8 channels. Nothing here is
about accuracy: shapes, masks, plumbing, parity and equivalences.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.writer import EpisodeWriter
from takeover.session.drive import DriveRequest, run_drive
from takeover.types import (
    ACTION_MODE_DEMONSTRATION,
    ACTION_MODE_INTERVENTION,
    ACTION_MODE_ROBOT,
    Command,
    CommandSource,
    Mode,
    Observation,
    Odometry,
    StepRecord,
)
from takeover.workspace.layout import init_workspace

TINY_HW = 48
TINY_CHUNK = 5
TINY_MODEL_ARGS = {
    "backbone": "resnet10t",
    "backbone_args": {"channels": [8, 8, 8, 8], "stem_width": 8},
    "image_height": TINY_HW, "image_width": TINY_HW, "chunk_size": TINY_CHUNK,
    "image_channels": 8, "lidar_hidden": 32, "lidar_features": 16, "head_hidden": 32,
}


def make_workspace(root: Path, camera_hw: int = TINY_HW) -> Path:
    ws = init_workspace(root)
    toml = ws / "takeover.toml"
    text = toml.read_text().replace("camera_width = 96", f"camera_width = {camera_hw}")
    toml.write_text(text.replace("camera_height = 96", f"camera_height = {camera_hw}"))
    return ws


@pytest.fixture(scope="session")
def expert_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 short expert episodes (40 steps each) recorded through `takeover drive --record`."""
    ws = make_workspace(tmp_path_factory.mktemp("policy") / "ws")
    summary = run_drive(DriveRequest(robot_url="sim://", driver="expert", episodes=4, seed=3,
                                     workspace=ws, record=True, fast=True, max_steps=40))
    assert len(summary["recorded"]) == 4
    return ws


def synthetic_record(step: int, action_mode: int | None, hw: int = TINY_HW,
                     v: float = 0.1, human_action: Command | None = None) -> StepRecord:
    rng = np.random.default_rng(step)
    scan = rng.uniform(0.5, 4.0, 180).astype(np.float32)
    scan[::9] = np.nan
    obs = Observation(t_ns=step * 50_000_000, odom=Odometry(0.0, 0.0, 0.0, v, 0.0),
                      image=rng.integers(0, 256, (hw, hw, 3), dtype=np.uint8), scan_m=scan)
    mode = {ACTION_MODE_DEMONSTRATION: Mode.MANUAL, ACTION_MODE_ROBOT: Mode.AUTO,
            ACTION_MODE_INTERVENTION: Mode.TAKEOVER, None: Mode.IDLE}[action_mode]
    source = {Mode.MANUAL: CommandSource.HUMAN, Mode.TAKEOVER: CommandSource.HUMAN,
              Mode.AUTO: CommandSource.POLICY, Mode.IDLE: CommandSource.NONE}[mode]
    # The command encodes the step, so a test can tell which step a label came from.
    command = Command(0.0, 0.0) if mode is Mode.IDLE else Command(step / 100.0, -step / 100.0)
    return StepRecord(step=step, t_ns=obs.t_ns, observation=obs, command=command, source=source,
                      mode=mode, policy_action=None, human_action=human_action,
                      action_mode=action_mode,
                      loop_late_ns=0, policy_latency_ns=0)


def write_episode(ws: Path, modes: list[int | None], round_index: int = 0,
                  intent: bool = False) -> Path:
    """One episode whose step i has action_mode modes[i] (None = IDLE, unlabeled). intent: the
    operator's command (human_action) is recorded too, as the sent command x 10."""
    with EpisodeWriter(ws, rate_hz=20.0, fsync=False, backpressure=True) as writer:
        writer.begin_episode(EpisodeMeta(round=round_index, rate_hz=20.0))
        for i, m in enumerate(modes):
            human = Command(i / 10.0, -i / 10.0) if intent and m is not None else None
            assert writer.offer(synthetic_record(i, m, human_action=human))
        path = writer.end_episode("success").result(timeout=60)
    assert path is not None
    return path


@pytest.fixture
def tiny_model_config() -> Iterator[object]:
    from takeover.policy.model import ModelConfig

    yield ModelConfig(**TINY_MODEL_ARGS)  # type: ignore[arg-type]
