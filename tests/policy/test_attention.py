"""The attention output: a spatial map from the image branch, exported in the ONNX graph beside
`actions` (and `novelty`), run in onnxruntime, reported by the chunk policy; and the ViT backbone
option, whose map is its last block's attention.

Real components throughout: tiny timm models built here, exported with the project's exporter,
run with onnxruntime (tests/policy/policy_support.py for the tiny CNN and the expert episodes).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from policy_support import TINY_HW, TINY_MODEL_ARGS

from takeover.policy.build import train_workspace
from takeover.policy.export import PARITY_TOLERANCE, export_onnx
from takeover.policy.model import (
    DockingPolicy,
    ModelConfig,
    PhysicalPolicy,
    backbone_kwargs,
    vit_tokens_and_attention,
)
from takeover.policy.runtime import ChunkExecutor, ChunkPolicy, ExecutorConfig, PolicyRuntime
from takeover.policy.spec import ATTENTION_NAME, SPEC_METADATA_KEY, ModelSpec
from takeover.policy.train import TrainConfig
from takeover.types import Observation, Odometry

# A ViT small enough to train in seconds: vit_tiny's layout, 2 blocks of width 32, 8-pixel
# patches (a 6x6 grid at 48x48 pixels).
TINY_VIT_ARGS: dict[str, Any] = {
    **TINY_MODEL_ARGS, "backbone": "vit_tiny_patch16_224",
    "backbone_args": {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2},
}


def frames(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (n, TINY_HW, TINY_HW, 3), dtype=np.uint8),
            "scan": rng.uniform(0.2, 6.0, (n, 180)).astype(np.float32),
            "proprio": rng.normal(0, 0.2, (n, 2)).astype(np.float32)}


def export(model: DockingPolicy, path: Path) -> PolicyRuntime:
    export_onnx(model.eval(), path, model.spec(model_id="r001"))
    return PolicyRuntime(path)


def reference(model: DockingPolicy, feeds: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        out = PhysicalPolicy(model.eval())(*(torch.from_numpy(feeds[k])
                                             for k in ("image", "scan", "proprio")))
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("heads", [1, 3])
def test_cnn_attention_is_a_graph_output_matching_torch(tmp_path: Path, heads: int) -> None:
    torch.manual_seed(0)
    model = DockingPolicy(ModelConfig(**TINY_MODEL_ARGS, heads=heads))  # type: ignore[arg-type]
    runtime = export(model, tmp_path / "policy.onnx")
    h, w = model.image.map_size
    names = ["actions", "novelty", "attention"] if heads > 1 else ["actions", "attention"]
    assert [o.name for o in runtime.session.get_outputs()] == names
    assert runtime.has_attention and runtime.spec.output_shapes()[ATTENTION_NAME] == (h, w)
    # The map's weighting is a constant of the graph, not recomputed from the heads' weights
    # on every inference (that cost 5 ms a tick).
    ops = {node.op_type for node in onnx.load(str(tmp_path / "policy.onnx")).graph.node}
    assert "ReduceL2" not in ops and "Slice" not in ops
    meta = runtime.session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["attention"])["shape"] == [h, w]
    assert json.loads(meta[SPEC_METADATA_KEY])["attention_height"] == h
    feeds = frames(4)
    out = runtime.run_outputs(feeds["image"], feeds["scan"], feeds["proprio"])
    for name, ref in zip(names, reference(model, feeds), strict=True):
        assert out[name].shape == tuple(ref.shape)
        assert np.abs(out[name] - ref.numpy()).max() <= PARITY_TOLERANCE, name
    attention = out[ATTENTION_NAME]
    assert attention.shape == (4, h, w)
    assert attention.min() >= 0.0 and attention.max() <= 1.0
    assert np.allclose(attention.reshape(4, -1).max(axis=1), 1.0, atol=1e-3)  # stretched
    # The actions are those of the model without the attention output.
    plain = DockingPolicy(ModelConfig(**TINY_MODEL_ARGS, heads=heads,  # type: ignore[arg-type]
                                      attention_map=False))
    plain.load_state_dict(model.state_dict())
    np.testing.assert_allclose(reference(plain, feeds)[0].numpy(), out["actions"], atol=1e-5)


def test_feature_importance_map_weights_features_by_the_heads_first_layer() -> None:
    """The CAM-like map: each projected activation times the norm of the first-layer weights
    reading the pooled cell it falls in, summed over channels, stretched to 0..1."""
    torch.manual_seed(1)
    model = DockingPolicy(ModelConfig(**{**TINY_MODEL_ARGS, "image_height": 96,  # type: ignore[arg-type]
                                         "image_width": 96, "image_grid": 1}, heads=2)).eval()
    projected = torch.rand(2, 8, 3, 3)  # a 3x3 map pooled to one cell
    got = model.feature_importance_map(projected)
    norms = torch.stack([head[0].weight[:, :8].norm(dim=0)  # type: ignore[index]
                         for head in (model.head, *model.extra_heads)]).mean(0)
    raw = (projected * norms.view(1, 8, 1, 1)).sum(1)
    low = raw.flatten(1).min(1).values.view(-1, 1, 1)
    high = raw.flatten(1).max(1).values.view(-1, 1, 1)
    torch.testing.assert_close(got, (raw - low) / (high - low + 1e-6))
    # A channel the heads do not read does not move the map.
    for head in (model.head, *model.extra_heads):
        with torch.no_grad():
            head[0].weight[:, 0] = 0.0  # type: ignore[index]
    changed = projected.clone()
    changed[:, 0] *= 5.0
    torch.testing.assert_close(model.feature_importance_map(changed),
                               model.feature_importance_map(projected))


def test_attention_depends_on_the_image_alone(tmp_path: Path) -> None:
    """What lets a viewer compute the map for any frame (runtime.attention_map)."""
    model = DockingPolicy(ModelConfig(**TINY_MODEL_ARGS))  # type: ignore[arg-type]
    runtime = export(model, tmp_path / "policy.onnx")
    a, b = frames(3, seed=1), frames(3, seed=2)
    b["image"] = a["image"]
    first = runtime.run_outputs(a["image"], a["scan"], a["proprio"])
    second = runtime.run_outputs(b["image"], b["scan"], b["proprio"])
    np.testing.assert_array_equal(first[ATTENTION_NAME], second[ATTENTION_NAME])
    assert not np.array_equal(first["actions"], second["actions"])
    single = runtime.attention_map(a["image"][1])
    assert single is not None
    np.testing.assert_allclose(single, first[ATTENTION_NAME][1], atol=1e-6)
    batch = runtime.attention_map(a["image"])
    assert batch is not None and batch.shape == first[ATTENTION_NAME].shape
    assert runtime.attention_map(np.zeros((10, 10, 3), np.uint8)) is None  # another camera


def test_chunk_policy_reports_the_latest_map(tmp_path: Path) -> None:
    model = DockingPolicy(ModelConfig(**TINY_MODEL_ARGS))  # type: ignore[arg-type]
    runtime = export(model, tmp_path / "policy.onnx")
    policy = ChunkPolicy(runtime, ChunkExecutor(runtime.spec.chunk_size,
                                                ExecutorConfig(mode="receding", n_action_steps=2)))
    feeds = frames(2)
    obs = [Observation(t_ns=i, image=feeds["image"][i], scan_m=feeds["scan"][i],
                       odom=Odometry(v_mps=0.1, w_radps=0.0)) for i in range(2)]
    assert policy.attention is None
    assert policy.propose(obs[0]) is not None
    first = policy.attention
    assert first is not None and first.shape == model.image.map_size
    np.testing.assert_allclose(first, runtime.attention_map(feeds["image"][0]), atol=1e-6)
    policy.propose(obs[1])  # from the queue: no inference, the map stays the latest one
    assert policy.attention is first
    policy.drop_queued_actions()
    assert policy.attention is None


def test_a_model_without_the_output_still_loads(tmp_path: Path) -> None:
    """attention_map=False exports the graph before the output; a spec written before it has
    no attention keys. Both load, with no map anywhere."""
    model = DockingPolicy(ModelConfig(**TINY_MODEL_ARGS, heads=2,  # type: ignore[arg-type]
                                      attention_map=False))
    path = tmp_path / "policy.onnx"
    runtime = export(model, path)
    assert [o.name for o in runtime.session.get_outputs()] == ["actions", "novelty"]
    assert not runtime.has_attention and runtime.attention_map(frames(1)["image"][0]) is None
    # The metadata exactly as a model exported before the attention output wrote it.
    proto = onnx.load(str(path))
    for entry in proto.metadata_props:
        if entry.key == SPEC_METADATA_KEY:
            raw = json.loads(entry.value)
            del raw["attention_height"], raw["attention_width"]
            entry.value = json.dumps(raw)
    onnx.save(proto, str(path))
    old = PolicyRuntime(path)
    assert old.spec == ModelSpec.from_json(json.dumps(raw))
    assert not old.has_attention and "attention" not in old.spec.output_shapes()
    feeds = frames(1)
    obs = Observation(t_ns=0, image=feeds["image"][0], scan_m=feeds["scan"][0],
                      odom=Odometry())
    policy = ChunkPolicy(old)
    assert policy.propose(obs) is not None and policy.attention is None and policy.novelty is not None


# --- the ViT backbone ------------------------------------------------------------------------


def test_vit_img_size_follows_the_camera() -> None:
    assert backbone_kwargs("vit_tiny_patch16_224", {}, (96, 96)) == {"img_size": (96, 96)}
    assert backbone_kwargs("vit_small_patch8_224.dino", None, (96, 96))["img_size"] == (96, 96)
    assert backbone_kwargs("vit_tiny_patch16_224", {"img_size": 64}, (96, 96)) == {"img_size": 64}
    assert backbone_kwargs("resnet10t", {"stem_width": 8}, (96, 96)) == {"stem_width": 8}


def test_vit_tokens_and_attention_match_timm(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = DockingPolicy(ModelConfig(**TINY_VIT_ARGS)).eval()
    assert model.image.vit and model.image.map_size == (6, 6)  # 48 px / 8 px patches
    x = torch.randn(3, 3, TINY_HW, TINY_HW)
    with torch.no_grad():
        tokens, attention = vit_tokens_and_attention(model.image.backbone, x)
        expected = model.image.backbone.forward_features(x)  # type: ignore[operator]
        # The last block's attention, written out as timm's unfused path computes it.
        last = model.image.backbone.blocks[-1]  # type: ignore[index]
        t = model.image.backbone.patch_embed(x)  # type: ignore[operator]
        t = model.image.backbone._pos_embed(t)  # type: ignore[operator]
        for block in model.image.backbone.blocks[:-1]:  # type: ignore[index]
            t = block(t)
        attn = last.attn
        qkv = attn.qkv(last.norm1(t)).reshape(3, -1, 3, attn.num_heads, 16).permute(2, 0, 3, 1, 4)
        weights = ((qkv[0] * attn.scale) @ qkv[1].transpose(-2, -1)).softmax(-1)
        received = weights[:, :, 1:, 1:].mean(dim=(1, 2)).reshape(3, 6, 6)
    torch.testing.assert_close(tokens, expected)
    low = received.flatten(1).min(1).values.view(-1, 1, 1)
    high = received.flatten(1).max(1).values.view(-1, 1, 1)
    torch.testing.assert_close(attention, (received - low) / (high - low + 1e-6))
    runtime = export(model, tmp_path / "vit.onnx")
    assert runtime.spec.output_shapes()[ATTENTION_NAME] == (6, 6)
    feeds = frames(2)
    out = runtime.run_outputs(feeds["image"], feeds["scan"], feeds["proprio"])
    for name, ref in zip(out, reference(model, feeds), strict=True):
        assert np.abs(out[name] - ref.numpy()).max() <= PARITY_TOLERANCE, name


def test_vit_backbone_trains_exports_and_runs(expert_workspace: Path, tmp_path: Path) -> None:
    """`takeover train --backbone vit_...`'s path: train, export (parity of every output on
    real frames), register; the runtime loads it and reports its map."""
    ws = tmp_path / "ws"
    shutil.copytree(expert_workspace, ws)
    torch.set_num_threads(1)
    card = train_workspace(ws, ModelConfig(**TINY_VIT_ARGS, heads=2),
                           TrainConfig(epochs=1, batch_size=16, threads=1, val_fraction=0.25,
                                       seed=1))
    export_card = card["export"]
    assert export_card["outputs"] == ["actions", "novelty", "attention"]
    assert export_card["parity_attention_max_abs_error"] <= PARITY_TOLERANCE
    assert card["spec"]["backbone"] == "vit_tiny_patch16_224"
    runtime = PolicyRuntime(ws / "models" / card["model_id"] / "policy.onnx")
    feeds = frames(1)
    attention = runtime.attention_map(feeds["image"][0])
    assert attention is not None and attention.shape == (6, 6)
