"""Optional static INT8 quantisation (onnxruntime), calibrated on real dataset frames.

QDQ format, per-channel weights, MinMax calibration over the frames given. The quantised model's
error against the float model and both latencies on one thread are measured; the result says
whether it is worth keeping (`faster`). A model that is not faster on this CPU is deleted:
small convolutions at 96x96 are often dominated by the quantise/dequantise overhead.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from takeover.policy.export import ParityFrames, save_onnx_atomic
from takeover.policy.latency import measure_latency
from takeover.policy.runtime import PolicyRuntime


@dataclass(frozen=True)
class Int8Report:
    path: str | None  # the kept model, or None when it was not kept
    kept: bool
    max_abs_error: float  # vs the float ONNX model, m/s or rad/s
    mean_abs_error: float
    calibration_frames: int
    fp32_p50_ms: float
    fp32_p99_ms: float
    int8_p50_ms: float
    int8_p99_ms: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _FramesReader(CalibrationDataReader):
    def __init__(self, frames: ParityFrames) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = (frames.feeds(i, i + 1)
                                                     for i in range(len(frames)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_int8(fp32_path: Path, out_path: Path, frames: ParityFrames,
                  latency_iterations: int = 1000) -> Int8Report:
    """Quantise, measure, keep `out_path` only if it is faster than the float model."""
    with tempfile.TemporaryDirectory(prefix="takeover-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant = Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(quant), _FramesReader(frames), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            # The normalisation, the NaN handling of the scan and the de-normalisation stay in
            # float: only the convolutions and matrix products are quantised.
            op_types_to_quantize=["Conv", "MatMul", "Gemm"],
        )
        # Metadata (the spec) survives quantisation only if copied over.
        src, dst = onnx.load(str(fp32_path)), onnx.load(str(quant))
        del dst.metadata_props[:]
        dst.metadata_props.extend(src.metadata_props)
        save_onnx_atomic(dst, out_path)
    fp32 = PolicyRuntime(fp32_path, intra_op_threads=1)
    int8 = PolicyRuntime(out_path, intra_op_threads=1)
    errors = []
    for i in range(0, len(frames), 64):
        feeds = frames.feeds(i, i + 64)
        a = fp32.infer_batch(feeds["image"], feeds["scan"], feeds["proprio"])
        b = int8.infer_batch(feeds["image"], feeds["scan"], feeds["proprio"])
        errors.append(np.abs(a - b).reshape(-1))
    err = np.concatenate(errors)
    lat32 = measure_latency(fp32_path, threads=1, iterations=latency_iterations)
    lat8 = measure_latency(out_path, threads=1, iterations=latency_iterations)
    faster = lat8["p50_ms"] < lat32["p50_ms"]
    reason = (f"int8 p50 {lat8['p50_ms']:.3f} ms vs fp32 {lat32['p50_ms']:.3f} ms on one thread: "
              + ("kept" if faster else "not faster on this CPU, removed"))
    if not faster:
        os.unlink(out_path)
    return Int8Report(
        path=str(out_path) if faster else None, kept=faster,
        max_abs_error=float(err.max()), mean_abs_error=float(err.mean()),
        calibration_frames=len(frames),
        fp32_p50_ms=lat32["p50_ms"], fp32_p99_ms=lat32["p99_ms"],
        int8_p50_ms=lat8["p50_ms"], int8_p99_ms=lat8["p99_ms"], reason=reason,
    )
