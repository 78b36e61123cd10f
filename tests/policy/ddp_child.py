"""Run by tests/policy/test_ddp.py, under torchrun (2 processes) or alone.

argv: WORKSPACE OUT GRAD_ACCUM. Trains the tiny model for 2 epochs and (on rank 0) saves the
final parameters to OUT.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from policy_support import TINY_MODEL_ARGS

from takeover.policy.dataset import load_dataset
from takeover.policy.model import ModelConfig
from takeover.policy.train import TrainConfig, train


def main() -> None:
    workspace, out, accum = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    ds = load_dataset(workspace, chunk_size=5)
    cfg = TrainConfig(epochs=2, batch_size=16, grad_accum=accum, threads=1, val_fraction=0.0,
                      seed=5, device="cpu")
    result = train(ds, ModelConfig(**TINY_MODEL_ARGS), cfg)  # type: ignore[arg-type]
    if result.world_size == 1 or dist.get_rank() == 0:
        params = {k: v for k, v in result.model.named_parameters()}
        torch.save({"params": params, "world_size": result.world_size}, out)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
