"""The policy's interface contract, shared by training, export and the runtime (no torch here).

A model consumes raw sensor values exactly as the robot reports them and produces commands in
physical units; every normalisation lives inside the model (and so inside the ONNX graph):

    image    uint8   (batch, H, W, 3)   RGB camera frame, as in `Observation.image`
    scan     float32 (batch, N)         LiDAR ranges in metres, CCW from forward, NaN = no return
    proprio  float32 (batch, 2)         measured body velocities v_mps, w_radps
    ->
    actions  float32 (batch, K, 2)      the next K commands (v_mps, w_radps), one per control tick
    novelty  float32 (batch, K)         only when `heads` > 1: per chunk step, how much the
                                        ensemble's members disagree (model.py `novelty`)
    attention float32 (batch, h, w)     only when `attention_height` > 0: where in the frame the
                                        policy looks, 0..1, at the backbone's feature-map (or
                                        ViT patch-grid) resolution; the consumer upsamples it

The spec travels with the model in the ONNX metadata (key `takeover.spec`) so that the runtime
can refuse a model whose inputs do not match the robot's sensors before it ever drives. A model
with a `novelty` output also carries its calibration (the threshold chosen for a budget of help
requests, `takeover.policy.uncertainty`) as JSON under `takeover.novelty`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from takeover.errors import PolicyError

SPEC_METADATA_KEY = "takeover.spec"
SPEC_VERSION = 1
INPUT_NAMES = ("image", "scan", "proprio")
OUTPUT_NAME = "actions"
NOVELTY_NAME = "novelty"
NOVELTY_METADATA_KEY = "takeover.novelty"
ATTENTION_NAME = "attention"
PROPRIO_NAMES = ("v_mps", "w_radps")
ACTION_NAMES = ("v_mps", "w_radps")


@dataclass(frozen=True)
class ModelSpec:
    """What a model expects and produces. Stored in the ONNX metadata and the model card."""

    image_height: int = 96
    image_width: int = 96
    scan_beams: int = 180
    chunk_size: int = 10  # K: commands predicted per inference
    rate_hz: float = 20.0  # the control rate the chunk's steps are spaced at
    model_id: str = ""  # e.g. "r001"
    backbone: str = ""
    data_digest: str = ""  # sha256 over the training episodes' names, sizes and step counts
    # Ensemble members of the chunk head. 1: the graph has one output, `actions`; more: it also
    # outputs `novelty`. A model exported before the ensemble has no such key and reads as 1.
    heads: int = 1
    # The `attention` output's map size (h, w); 0 (as for every model exported before it):
    # no such output.
    attention_height: int = 0
    attention_width: int = 0
    spec_version: int = SPEC_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> ModelSpec:
        try:
            raw = json.loads(text)
        except ValueError:
            raise PolicyError(f"{source}: metadata {SPEC_METADATA_KEY!r} is not valid JSON") from None
        if not isinstance(raw, dict):
            raise PolicyError(f"{source}: metadata {SPEC_METADATA_KEY!r} is not a JSON object")
        version = raw.get("spec_version")
        if version != SPEC_VERSION:
            raise PolicyError(f"{source}: model spec version {version!r}, this takeover reads "
                              f"{SPEC_VERSION}; re-export the model with this version")
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in raw.items() if k in known})
        except TypeError as e:
            raise PolicyError(f"{source}: bad model spec ({e})") from None

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample input shapes (without the batch axis)."""
        return {
            "image": (self.image_height, self.image_width, 3),
            "scan": (self.scan_beams,),
            "proprio": (len(PROPRIO_NAMES),),
        }

    @property
    def has_novelty(self) -> bool:
        return self.heads > 1

    @property
    def has_attention(self) -> bool:
        return self.attention_height > 0 and self.attention_width > 0

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample output shapes (without the batch axis), in graph order."""
        shapes: dict[str, tuple[int, ...]] = {OUTPUT_NAME: (self.chunk_size, len(ACTION_NAMES))}
        if self.has_novelty:
            shapes[NOVELTY_NAME] = (self.chunk_size,)
        if self.has_attention:
            shapes[ATTENTION_NAME] = (self.attention_height, self.attention_width)
        return shapes

    def sensor_mismatch(self, image_shape: tuple[int, ...] | None, scan_beams: int | None
                        ) -> str | None:
        """Why this model cannot run on a robot with these sensors, or None if it can."""
        want_image = (self.image_height, self.image_width, 3)
        if image_shape is None:
            return "the robot has no camera, but the model needs camera frames"
        if tuple(image_shape) != want_image:
            h, w = image_shape[:2]
            return (f"the model expects {self.image_width}x{self.image_height} RGB camera frames, "
                    f"the robot sends {w}x{h} (set robot.camera_width/height in takeover.toml, "
                    "or retrain on this camera)")
        if scan_beams is None:
            return "the robot has no LiDAR, but the model needs a scan"
        if scan_beams != self.scan_beams:
            return (f"the model expects a {self.scan_beams}-beam LiDAR scan, the robot sends "
                    f"{scan_beams} beams")
        return None

    @classmethod
    def field_dict(cls, spec: ModelSpec) -> dict[str, Any]:
        return asdict(spec)
