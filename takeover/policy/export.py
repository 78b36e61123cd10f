"""ONNX export with the normalisation inside the graph, metadata, and a parity check.

The exported graph takes raw sensor values (uint8 frame, LiDAR metres with NaN, v and w) and
returns commands in m/s and rad/s (see `takeover.policy.spec`); an ensemble model (heads > 1)
also returns `novelty` (batch, K), and a model with `attention_map` the `attention` map
(batch, h, w), from the same forward pass. Its metadata properties carry the
`ModelSpec` (chunk size, rate, input spec, model id, training data digest, heads) as JSON under
`takeover.spec`, plus the same fields as plain keys for people and other tools, and, for an
ensemble, the novelty calibration (uncertainty.py) as JSON under `takeover.novelty`.

Parity: the ONNX model and the PyTorch model are run on real dataset frames and the largest
absolute difference in the output commands (and in the novelty score and the attention map)
is recorded in the model
card; above `PARITY_TOLERANCE` the export fails.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from takeover.policy.model import DockingPolicy, PhysicalPolicy
from takeover.policy.runtime import PolicyRuntime
from takeover.policy.spec import (
    INPUT_NAMES,
    NOVELTY_METADATA_KEY,
    OUTPUT_NAME,
    SPEC_METADATA_KEY,
    ModelSpec,
    PolicyError,
)

PARITY_TOLERANCE = 1e-4  # max abs error in m/s or rad/s
OPSET = 17


@dataclass(frozen=True)
class ParityFrames:
    """Real observations to check parity and calibrate quantisation on: (B, ...) arrays."""

    image: np.ndarray  # uint8 (B, H, W, 3)
    scan: np.ndarray  # float32 (B, N)
    proprio: np.ndarray  # float32 (B, 2)

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def feeds(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        sl = slice(start, stop)
        return {"image": np.ascontiguousarray(self.image[sl]),
                "scan": np.ascontiguousarray(self.scan[sl]),
                "proprio": np.ascontiguousarray(self.proprio[sl])}


def export_onnx(model: DockingPolicy, path: Path, spec: ModelSpec,
                calibration: dict[str, Any] | None = None) -> None:
    """Write the model as ONNX (dynamic batch axis) with its spec (and, for an ensemble, its
    novelty calibration) in the metadata, atomically."""
    model = model.eval().to("cpu")
    graph = PhysicalPolicy(model).eval()
    h, w = spec.image_height, spec.image_width
    example = (torch.zeros(1, h, w, 3, dtype=torch.uint8),
               torch.ones(1, spec.scan_beams, dtype=torch.float32),
               torch.zeros(1, 2, dtype=torch.float32))
    outputs = list(spec.output_shapes())
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notices are not for users
        torch.onnx.export(
            graph, example, buffer,  # type: ignore[arg-type]  # a file object works too
            input_names=list(INPUT_NAMES), output_names=outputs,
            dynamic_axes={n: {0: "batch"} for n in (*INPUT_NAMES, *outputs)},
            opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
    proto = onnx.load_model_from_string(buffer.getvalue())
    write_metadata(proto, spec, calibration)
    onnx.checker.check_model(proto)
    save_onnx_atomic(proto, path)


def write_metadata(proto: onnx.ModelProto, spec: ModelSpec,
                   calibration: dict[str, Any] | None = None) -> None:
    outputs: dict[str, Any] = {name: list(shape) for name, shape in spec.output_shapes().items()}
    outputs["units"] = ["m/s", "rad/s"]
    meta = {
        SPEC_METADATA_KEY: spec.to_json(),
        "chunk_size": str(spec.chunk_size),
        "rate_hz": str(spec.rate_hz),
        "model_id": spec.model_id,
        "data_digest": spec.data_digest,
        "backbone": spec.backbone,
        "inputs": json.dumps({k: list(v) for k, v in spec.input_shapes().items()}),
        "outputs": json.dumps(outputs),
        "heads": str(spec.heads),
    }
    if spec.has_attention:
        meta["attention"] = json.dumps({"shape": [spec.attention_height, spec.attention_width],
                                        "range": [0.0, 1.0], "backbone": spec.backbone})
    if calibration is not None:
        meta[NOVELTY_METADATA_KEY] = json.dumps(calibration, sort_keys=True)
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "takeover"


def save_onnx_atomic(proto: onnx.ModelProto, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save_model(proto, str(tmp))
    os.replace(tmp, path)


def parity_error(model: DockingPolicy, onnx_path: Path, frames: ParityFrames,
                 batch_size: int = 64) -> float:
    """Max abs difference (m/s, rad/s) between PyTorch and onnxruntime on `frames`."""
    return parity_errors(model, onnx_path, frames, batch_size)[OUTPUT_NAME]


def parity_errors(model: DockingPolicy, onnx_path: Path, frames: ParityFrames,
                  batch_size: int = 64) -> dict[str, float]:
    """Max abs difference between PyTorch and onnxruntime on `frames`, per output: `actions`
    (m/s, rad/s), for an ensemble `novelty` (standardised units), with `attention_map` the
    `attention` map (0..1)."""
    if len(frames) == 0:
        raise PolicyError("parity check needs at least one dataset frame")
    runtime = PolicyRuntime(onnx_path, intra_op_threads=max(1, torch.get_num_threads()))
    graph = PhysicalPolicy(model.eval().to("cpu")).eval()
    worst = dict.fromkeys(runtime.spec.output_shapes(), 0.0)
    with torch.no_grad():
        for start in range(0, len(frames), batch_size):
            feeds = frames.feeds(start, start + batch_size)
            ref = graph(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))
            refs = ref if isinstance(ref, tuple) else (ref,)
            got = runtime.run_outputs(feeds["image"], feeds["scan"], feeds["proprio"])
            for name, r in zip(worst, refs, strict=True):
                worst[name] = max(worst[name], float(np.abs(r.numpy() - got[name]).max()))
    return worst


def check_parity(error: float, path: Path, output: str = OUTPUT_NAME) -> None:
    if not error <= PARITY_TOLERANCE:
        what = "" if output == OUTPUT_NAME else f" in {output!r}"
        raise PolicyError(f"{path}: ONNX parity error{what} {error:.2e} exceeds "
                          f"{PARITY_TOLERANCE:.0e}; the export is not faithful (kept the previous "
                          "model)")
