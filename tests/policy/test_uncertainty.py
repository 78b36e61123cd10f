"""The ensemble's novelty output: trained with torch, exported to ONNX, run in onnxruntime.

A tiny model (tests/policy/policy_support.py) with several chunk heads is trained on the
simulator expert's episodes; the tests check the graph's outputs, the calibration on the
held-out episode, what the runtime and the chunk policy report, that the members disagree more
on inputs unlike the demonstrations than on the demonstrations themselves, and that a model
with one head (or one exported before the ensemble) still loads, with no novelty.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from policy_support import TINY_CHUNK, TINY_MODEL_ARGS

from takeover.config import workspace_config
from takeover.policy.build import train_workspace
from takeover.policy.dataset import load_dataset
from takeover.policy.export import PARITY_TOLERANCE, export_onnx
from takeover.policy.model import DockingPolicy, ModelConfig
from takeover.policy.runtime import ChunkExecutor, ExecutorConfig, PolicyRuntime, load_policy
from takeover.policy.spec import NOVELTY_METADATA_KEY, SPEC_METADATA_KEY, PolicyError
from takeover.policy.train import TrainConfig, load_checkpoint, model_from_checkpoint
from takeover.policy.uncertainty import (
    calibrate,
    confirm_steps,
    episode_rate,
    step_rate,
    threshold_for_budget,
)
from takeover.types import Observation, Odometry

HEADS = 4
ENSEMBLE_TRAIN = TrainConfig(epochs=2, batch_size=16, threads=1, val_fraction=0.25, seed=1,
                             novelty_budget=0.1)


@pytest.fixture(scope="module")
def ensemble(expert_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ws = tmp_path_factory.mktemp("ensemble") / "ws"
    shutil.copytree(expert_workspace, ws)
    torch.set_num_threads(1)
    card = train_workspace(ws, ModelConfig(**TINY_MODEL_ARGS, heads=HEADS),  # type: ignore[arg-type]
                           ENSEMBLE_TRAIN)
    model_dir = ws / "models" / card["model_id"]
    dataset = load_dataset(ws, chunk_size=TINY_CHUNK)
    val_ids = [dataset.episodes.index(k) for k in card["data"]["val_episodes"]]
    train_ids = [dataset.episodes.index(k) for k in card["data"]["train_episodes"]]
    return {"ws": ws, "card": card, "onnx": model_dir / "policy.onnx",
            "checkpoint": model_dir / "checkpoint.pt",
            "val": dataset.subset(val_ids), "train": dataset.subset(train_ids)}


def _novelty0(runtime: PolicyRuntime, image: np.ndarray, scan: np.ndarray, proprio: np.ndarray
              ) -> np.ndarray:
    _, novelty = runtime.run_batch(np.ascontiguousarray(image), np.ascontiguousarray(scan),
                                   np.ascontiguousarray(proprio))
    assert novelty is not None
    return novelty[:, 0]


def test_ensemble_graph_outputs_the_mean_chunk_and_novelty(ensemble: dict[str, Any]) -> None:
    runtime = PolicyRuntime(ensemble["onnx"])
    assert [o.name for o in runtime.session.get_outputs()] == ["actions", "novelty", "attention"]
    assert runtime.spec.heads == HEADS and runtime.has_novelty
    val = ensemble["val"]
    image, scan, proprio = (val.image[:8].numpy(), val.scan[:8].numpy(), val.proprio[:8].numpy())
    actions, novelty = runtime.run_batch(image, scan, proprio)
    assert actions.shape == (8, TINY_CHUNK, 2)
    assert novelty is not None and novelty.shape == (8, TINY_CHUNK)
    assert np.all(np.isfinite(novelty)) and np.all(novelty >= 0)
    # The same in PyTorch: the action is the members' mean, the novelty their spread.
    model = model_from_checkpoint(load_checkpoint(ensemble["checkpoint"]))
    with torch.no_grad():
        members = model(torch.from_numpy(image), torch.from_numpy(scan),
                        torch.from_numpy(proprio), members=True)
    assert members.shape == (8, HEADS, TINY_CHUNK, 2)
    mean = model.denormalize(members.mean(dim=1)).numpy()
    np.testing.assert_allclose(actions, mean, atol=PARITY_TOLERANCE)
    spread = members.std(dim=1, correction=0).mean(dim=-1).numpy()
    np.testing.assert_allclose(novelty, spread, atol=PARITY_TOLERANCE)
    export = ensemble["card"]["export"]
    assert export["outputs"] == ["actions", "novelty", "attention"]
    assert export["parity_novelty_max_abs_error"] <= PARITY_TOLERANCE
    # The old entry points still give the chunk alone.
    assert runtime.infer_batch(image, scan, proprio).shape == (8, TINY_CHUNK, 2)


def test_threshold_gives_the_budgeted_rate_on_the_held_out_episodes(ensemble: dict[str, Any]
                                                                     ) -> None:
    card = ensemble["card"]
    calib = card["novelty"]
    budget = ENSEMBLE_TRAIN.novelty_budget
    val = ensemble["val"]
    assert calib["budget"] == budget and calib["source"] == "validation episodes"
    assert calib["steps"] == len(val) and calib["episodes"] == len(card["data"]["val_episodes"])
    # Measured again through onnxruntime, as the robot computes the score.
    runtime = PolicyRuntime(ensemble["onnx"])
    assert runtime.novelty_threshold == pytest.approx(calib["threshold"])
    scores = _novelty0(runtime, val.image.numpy(), val.scan.numpy(), val.proprio.numpy())
    rate = float((scores > runtime.novelty_threshold).mean())
    allowed = int(np.floor(budget * len(val)))
    # At most the budget, and short of it by ties only (a step's worth of parity error at most).
    assert rate <= budget + 1.0 / len(val)
    assert rate >= (allowed - 1) / len(val)
    assert calib["step_rate"] == pytest.approx(allowed / len(val), abs=1.0 / len(val))
    # The same calibration sits in the ONNX metadata, where the runtime reads it.
    meta = {p.key: p.value for p in onnx.load(str(ensemble["onnx"])).metadata_props}
    assert json.loads(meta[NOVELTY_METADATA_KEY])["threshold"] == calib["threshold"]


def _ood_inputs(n: int, hw: int, beams: int, seed: int = 0) -> dict[str, tuple[np.ndarray, ...]]:
    """Observations unlike any demonstration, one family per kind of failure."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (n, hw, hw, 3), dtype=np.uint8)
    black = np.zeros((n, hw, hw, 3), dtype=np.uint8)
    near = np.full((n, beams), 0.1, dtype=np.float32)  # a wall all around, 10 cm away
    empty = np.full((n, beams), np.nan, dtype=np.float32)  # no returns at all
    fast = np.tile(np.array([[0.6, -1.5]], dtype=np.float32), (n, 1))
    return {"noise image, empty scan": (noise, empty, fast),
            "black image, wall 10 cm all round": (black, near, fast)}


def test_members_disagree_more_off_the_demonstrations(ensemble: dict[str, Any]) -> None:
    runtime = PolicyRuntime(ensemble["onnx"])
    train = ensemble["train"]
    seen = _novelty0(runtime, train.image.numpy(), train.scan.numpy(), train.proprio.numpy())
    hw, beams = runtime.spec.image_height, runtime.spec.scan_beams
    print(f"\nnovelty on training frames: median {np.median(seen):.4f}, p90 "
          f"{np.percentile(seen, 90):.4f}, max {seen.max():.4f}")
    for name, (image, scan, proprio) in _ood_inputs(32, hw, beams).items():
        ood = _novelty0(runtime, image, scan, proprio)
        print(f"novelty on {name}: median {np.median(ood):.4f}")
        assert np.median(ood) > np.percentile(seen, 90), name


def test_chunk_policy_reports_novelty_and_threshold(ensemble: dict[str, Any]) -> None:
    config = workspace_config(ensemble["ws"])
    # One command per inference, so each tick's score is its own observation's.
    config = dataclasses.replace(config, policy=dataclasses.replace(config.policy,
                                                                    n_action_steps=1))
    policy = load_policy(ensemble["onnx"], config)
    runtime = policy.runtime
    assert policy.novelty is None
    assert policy.novelty_threshold == pytest.approx(ensemble["card"]["novelty"]["threshold"])
    val = ensemble["val"]
    for i in range(3):
        obs = Observation(t_ns=i * 50_000_000,
                          odom=Odometry(0.0, 0.0, 0.0, float(val.proprio[i, 0]),
                                        float(val.proprio[i, 1])),
                          image=val.image[i].numpy(), scan_m=val.scan[i].numpy())
        assert policy.propose(obs) is not None
        _, novelty = runtime.infer_with_novelty(obs)
        assert novelty is not None
        assert policy.novelty == pytest.approx(float(novelty[0]), abs=1e-6)
    policy.drop_queued_actions()
    assert policy.novelty is None


def test_one_head_model_has_no_novelty_and_loads_as_before(expert_workspace: Path,
                                                           tmp_path: Path) -> None:
    torch.manual_seed(0)
    one = DockingPolicy(ModelConfig(**TINY_MODEL_ARGS, heads=1))  # type: ignore[arg-type]
    torch.manual_seed(0)
    many = DockingPolicy(ModelConfig(**TINY_MODEL_ARGS, heads=3))  # type: ignore[arg-type]
    # One head: the state dict of the model before the ensemble; the members are drawn last,
    # so the shared weights and the first head start the same in both.
    assert not any(k.startswith("extra_heads") for k in one.state_dict())
    for key, value in one.state_dict().items():
        assert torch.equal(value, many.state_dict()[key]), key
    path = tmp_path / "policy.onnx"
    export_onnx(one.eval(), path, one.spec("r001"))
    assert [o.name for o in PolicyRuntime(path).session.get_outputs()] == ["actions", "attention"]
    # A file exported before the ensemble: its spec has no `heads` key.
    proto = onnx.load(str(path))
    for p in proto.metadata_props:
        if p.key == SPEC_METADATA_KEY:
            spec = json.loads(p.value)
            del spec["heads"]
            p.value = json.dumps(spec)
    old = tmp_path / "old.onnx"
    onnx.save(proto, str(old))
    policy = load_policy(old, workspace_config(expert_workspace))
    assert policy.runtime.spec.heads == 1 and policy.novelty_threshold is None
    rng = np.random.default_rng(0)
    obs = Observation(t_ns=0, odom=Odometry(0.0, 0.0, 0.0, 0.1, 0.0),
                      image=rng.integers(0, 256, (48, 48, 3), dtype=np.uint8),
                      scan_m=rng.uniform(0.5, 4.0, 180).astype(np.float32))
    assert policy.propose(obs) is not None
    assert policy.novelty is None
    # A saved configuration from before the ensemble reads as one head.
    assert ModelConfig.from_dict({"chunk_size": 5}).heads == 1


def test_graph_and_metadata_must_agree_on_the_outputs(ensemble: dict[str, Any], tmp_path: Path
                                                      ) -> None:
    proto = onnx.load(str(ensemble["onnx"]))
    for p in proto.metadata_props:
        if p.key == SPEC_METADATA_KEY:
            spec = json.loads(p.value)
            spec["heads"] = 1
            p.value = json.dumps(spec)
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(PolicyError, match="outputs") as info:
        PolicyRuntime(bad)
    assert "\n" not in str(info.value)


def test_warm_start_of_an_ensemble_from_a_one_head_model(expert_workspace: Path,
                                                         tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(expert_workspace, ws)
    tiny = TrainConfig(epochs=1, batch_size=16, threads=1, val_fraction=0.25, seed=1)
    first = train_workspace(ws, ModelConfig(**TINY_MODEL_ARGS, heads=1),  # type: ignore[arg-type]
                            tiny)
    assert first["novelty"] is None and first["export"]["outputs"] == ["actions", "attention"]
    checkpoint = ws / "models" / first["model_id"] / "checkpoint.pt"
    second = train_workspace(ws, ModelConfig(**TINY_MODEL_ARGS, heads=3),  # type: ignore[arg-type]
                             tiny, init_from=checkpoint)
    assert second["export"]["outputs"] == ["actions", "novelty", "attention"]
    assert second["novelty"]["threshold"] is not None


def test_executor_scores_each_command_by_its_chunks_observation() -> None:
    chunk = np.zeros((4, 2), dtype=np.float32)
    scores = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    receding = ChunkExecutor(4, ExecutorConfig(mode="receding", n_action_steps=3))
    receding.add_chunk(chunk, scores)
    got = []
    for _ in range(3):
        receding.next_action()
        got.append(receding.novelty)
    # The step-0 score (the calibrated quantity) for every command of the chunk.
    assert got == pytest.approx([0.1, 0.1, 0.1])
    assert receding.next_action() is None and receding.novelty is None
    ensemble = ChunkExecutor(4, ExecutorConfig(mode="ensemble"))
    for tick in range(3):
        ensemble.add_chunk(chunk, scores + tick)
        ensemble.next_action()
        assert ensemble.novelty == pytest.approx(0.1 + tick)  # the newest chunk's step 0
    ensemble.drop_queued_actions()
    assert ensemble.novelty is None
    plain = ChunkExecutor(4)
    plain.add_chunk(chunk)
    plain.next_action()
    assert plain.novelty is None
    with pytest.raises(PolicyError, match="novelty of shape"):
        plain.add_chunk(chunk, scores[:2])


def test_calibration_arithmetic() -> None:
    scores = np.arange(100, dtype=np.float64) / 100.0  # 0.00 .. 0.99
    threshold = threshold_for_budget(scores, 0.05)
    assert step_rate(scores, threshold) == pytest.approx(0.05)
    assert threshold_for_budget(scores, 0.0) == pytest.approx(0.99)
    assert confirm_steps(500.0, 20.0) == 10 and confirm_steps(0.0, 20.0) == 1
    calm = np.zeros(30)
    blip = np.zeros(30)
    blip[5] = 1.0
    long = np.zeros(30)
    long[5:20] = 1.0
    assert episode_rate([calm, blip, long], 0.5, 1) == pytest.approx(2 / 3)
    assert episode_rate([calm, blip, long], 0.5, 10) == pytest.approx(1 / 3)
    calib = calibrate([calm, blip, long], budget=0.1, rate_hz=20.0, confirm_ms=500.0)
    # 16 of 90 steps are 1.0: a budget of 9 steps cannot split the tie, so none is over.
    assert calib["threshold"] == 1.0 and calib["step_rate"] == 0.0
    assert calib["episode_rate_any"] == 0.0 and calib["confirm_steps"] == 10
    with pytest.raises(ValueError, match="budget"):
        threshold_for_budget(scores, 1.0)

