"""Backbone comparison: validation accuracy, training images/s and CPU latency per timm backbone.

    python benchmarks/policy_backbones.py --workspace DIR [--epochs 2] [--episodes 40] [--json]

The same data (the workspace's episodes, split by episode), the same head, the same training
configuration and the same number of epochs for every backbone; then each model is exported
and timed in onnxruntime on one thread (`takeover bench latency`'s measurement). Training
images/s is forward + backward + optimiser step on this machine's cores, from the training loop
itself. Backbones are given as NAME or NAME:JSON_ARGS.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from takeover.policy.dataset import load_dataset
from takeover.policy.export import export_onnx
from takeover.policy.latency import measure_latency
from takeover.policy.model import ModelConfig
from takeover.policy.train import TrainConfig, train
from takeover.recorder.store import EpisodeStore

DEFAULT_BACKBONES = [
    'resnet10t:{"channels": [16, 32, 64, 128], "stem_width": 8}',
    'resnet10t:{"channels": [16, 32, 64, 128], "stem_width": 16}',
    "mobilenetv3_small_050",
    "lcnet_050",
]


def parse_backbone(text: str) -> tuple[str, dict[str, Any]]:
    name, _, args = text.partition(":")
    return name, (json.loads(args) if args else {})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=40, help="use the first N episodes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backbones", nargs="*", default=DEFAULT_BACKBONES)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    paths = EpisodeStore(args.workspace).episode_paths()[: args.episodes]
    ds = load_dataset(args.workspace, paths=paths)
    rows = []
    for spec in args.backbones:
        name, bargs = parse_backbone(spec)
        mc = ModelConfig(backbone=name, backbone_args=bargs)
        tc = TrainConfig(epochs=args.epochs, threads=args.threads, patience=args.epochs, seed=0)
        result = train(ds, mc, tc)
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = Path(tmp) / "policy.onnx"
            export_onnx(result.model, onnx_path, result.model.spec(model_id=name))
            lat = measure_latency(onnx_path, threads=1, iterations=1000)
        row = {
            "backbone": spec,
            "params_m": round(sum(p.numel() for p in result.model.parameters()) / 1e6, 3),
            "val_loss": round(result.best_val_loss or float("nan"), 4),
            "val_mae_v_mps": round(result.val_metrics.get("mae_v_mps", float("nan")), 4),
            "val_mae_w_radps": round(result.val_metrics.get("mae_w_radps", float("nan")), 4),
            "train_images_per_s": round(result.images_per_s, 1),
            "latency_p50_ms": lat["p50_ms"],
            "latency_p99_ms": lat["p99_ms"],
        }
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"epochs": args.epochs, "samples": len(ds), "rows": rows}))
    else:
        cols = list(rows[0])
        print(" | ".join(cols))
        for r in rows:
            print(" | ".join(str(r[c]) for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
