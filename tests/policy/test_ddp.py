"""DistributedDataParallel: two CPU processes on gloo compute what one process computes.

One process with gradient accumulation 2 sees the same two half-batches (the shards) as the
two processes, so the averaged gradients, and after two epochs the weights, must agree.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from policy_support import TINY_MODEL_ARGS

from takeover.policy.model import DockingPolicy, ModelConfig

pytestmark = pytest.mark.slow  # `make test-fast` leaves it out; `make test` runs it

CHILD = Path(__file__).with_name("ddp_child.py")


def test_two_gloo_processes_match_one(expert_workspace: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    env.pop("WORLD_SIZE", None)
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    subprocess.run([sys.executable, str(CHILD), str(expert_workspace), str(one), "2"],
                   check=True, env=env, timeout=240, capture_output=True)
    run = subprocess.run(
        # --standalone: the launcher picks its own free port and rendezvous store, so no
        # port picked here can be taken by another process before the launcher binds it.
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(CHILD), str(expert_workspace), str(two), "1"],
        env=env, timeout=240, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    a = torch.load(one, weights_only=True)
    b = torch.load(two, weights_only=True)
    assert a["world_size"] == 1 and b["world_size"] == 2
    assert a["params"].keys() == b["params"].keys()
    for name, p in a["params"].items():
        torch.testing.assert_close(b["params"][name], p, rtol=1e-4, atol=1e-5, msg=name)
    # Training moved the weights: the match is not between two identical initialisations.
    torch.manual_seed(5)
    fresh = dict(DockingPolicy(ModelConfig(**TINY_MODEL_ARGS)).named_parameters())  # type: ignore[arg-type]
    assert any(not torch.allclose(fresh[n], p) for n, p in a["params"].items())
