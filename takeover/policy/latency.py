"""`takeover bench latency`: the runtime's inference time, as the robot runs it. No torch.

The inputs are the kind the robot sends (a camera frame with texture, a scan with NaN), and the
session is the runtime's own (`PolicyRuntime`, explicit thread count), so the figure is what the
control loop pays per tick.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from takeover.policy.runtime import PolicyRuntime


def synthetic_inputs(runtime: PolicyRuntime, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    spec = runtime.spec
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (1, spec.image_height, spec.image_width, 3), dtype=np.uint8)
    scan = rng.uniform(0.3, 6.0, (1, spec.scan_beams)).astype(np.float32)
    scan[:, rng.random(spec.scan_beams) < 0.1] = np.nan
    proprio = np.array([[0.2, 0.1]], dtype=np.float32)
    return image, scan, proprio


def measure_latency(path: Path, threads: int = 1, iterations: int = 2000, warmup: int = 50
                    ) -> dict[str, Any]:
    """p50/p99 of single-observation inference, in ms, on `threads` intra-op threads."""
    runtime = PolicyRuntime(path, intra_op_threads=threads)
    image, scan, proprio = synthetic_inputs(runtime)
    for _ in range(warmup):
        runtime.infer_batch(image, scan, proprio)
    samples = np.empty(iterations, dtype=np.float64)
    for i in range(iterations):
        t0 = time.perf_counter_ns()
        runtime.infer_batch(image, scan, proprio)
        samples[i] = (time.perf_counter_ns() - t0) / 1e6
    return {
        "p50_ms": round(float(np.percentile(samples, 50)), 4),
        "p99_ms": round(float(np.percentile(samples, 99)), 4),
        "mean_ms": round(float(samples.mean()), 4),
        "max_ms": round(float(samples.max()), 4),
        "threads": threads,
        "iterations": iterations,
        "model": str(path),
        "model_id": runtime.model_id,
    }
