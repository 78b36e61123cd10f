"""The robot-side policy: an onnxruntime session and a chunk executor. No torch, no timm.

    policy = load_policy("models/r001/policy.onnx", config)  # [policy] of takeover.toml,
    loop = ControlLoop(link, arbiter, operator, policy)       # checked against [robot]'s camera

`load_policy` is the one way the robot side loads a model: `takeover run`'s core, `takeover
drive`, `dagger eval` and `bench dagger` all go through it, so the policy an operator supervises
is the one that was measured.

The model predicts K future commands (batch, K, 2) from one observation. The executor turns the
stream of chunks into one command per tick:

- temporal ensembling (ACT, Zhao et al. 2023): a new chunk every tick; the command for tick t
  averages every stored chunk's prediction for t, weighted exp(-k * i) with i = 0 for the oldest
  prediction. k = 0 is a plain mean; larger k trusts the oldest prediction more (smoother).
- receding horizon: execute the first `n_action_steps` of a chunk, then infer again.

`drop_queued_actions()` (called by the loop on every takeover) forgets every queued and stored
prediction, so the next AUTO tick plans from the new observation.

Uncertainty (an ensemble model, spec `heads` > 1): the graph also returns `novelty` (K,), how
much the ensemble's members disagree on each chunk step. `ChunkPolicy.novelty` is the score of
the command proposed on this tick, and `ChunkPolicy.novelty_threshold` the threshold calibrated
for the model's help-request budget (metadata `takeover.novelty`, policy/uncertainty.py); a
request is `novelty > novelty_threshold`. Both are None for a model without the output (any
model exported before the ensemble) or, for the threshold, without a calibration. Which score:

- receding horizon: the step-0 score of the chunk being executed, for each of its
  n_action_steps commands (how unsure the policy was of the observation it planned them from);
- temporal ensembling: the newest chunk's step 0, i.e. the score of this tick's observation.
  Not a weighted mean over the stored chunks: the older chunks' later steps disagree more by
  construction (the far future is uncertain in every state), and with the oldest prediction
  weighted most a new, unfamiliar sight would reach the score only after K ticks.

The threshold is calibrated on step-0 scores, so it means the same in both cases and for any
n_action_steps.

Attention (a model with spec `attention_height` > 0): the graph also returns `attention`
(h, w), 0..1, where in the frame the policy looked (model.py: a CNN's feature-importance map, a
ViT's last-block attention), at the feature map's resolution; the viewer upsamples it.
`ChunkPolicy.attention` is the map of the latest inference (None before one, after a drop, and
for a model without the output). The map depends on the image alone (it is computed in the
image branch, before the fusion with LiDAR and velocity), so `PolicyRuntime.attention_map(frame)`
gives the same map for any recorded or displayed frame (the TUI's overlay and episode replay).

Inference is on the loop's thread: one inference takes about 1 ms on one core (docs/policy.md,
`takeover bench latency`), a fiftieth of the 50 ms period, and running it inline keeps the
command exactly aligned with the observation it came from. `max_latency_ms` guards the
assumption: an inference slower than that is counted (`slow_inferences`) so a deployment on a
slower computer shows it in `takeover bench latency` and the loop timing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from takeover.config import Config, PolicyConfig
from takeover.policy.spec import (
    ATTENTION_NAME,
    INPUT_NAMES,
    NOVELTY_METADATA_KEY,
    NOVELTY_NAME,
    OUTPUT_NAME,
    SPEC_METADATA_KEY,
    ModelSpec,
    PolicyError,
)
from takeover.types import Command, Observation
from takeover.workspace.registry import check_model_card

EXECUTION_MODES = ("ensemble", "receding")
_INPUT_DTYPES = {"image": "tensor(uint8)", "scan": "tensor(float)", "proprio": "tensor(float)"}

FloatArray = npt.NDArray[np.float32]


def session_options(intra_op_threads: int = 1, inter_op_threads: int = 1) -> ort.SessionOptions:
    """Explicit threads: by default onnxruntime spins a pool as wide as the machine, which on
    a 2-core robot computer competes with the control loop and the drivers."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads otherwise spin-wait after each run and burn a core between ticks.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


class PolicyRuntime:
    """One ONNX policy model, checked against its metadata, run with explicit thread settings."""

    def __init__(self, path: Path | str, intra_op_threads: int = 1, inter_op_threads: int = 1
                 ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise PolicyError(f"{self.path}: no such model file (train one with `takeover train`, "
                              "or pass --policy PATH to an exported policy.onnx)")
        if self.path.is_dir():
            raise PolicyError(f"{self.path} is a directory; pass the policy.onnx inside it")
        check_model_card(self.path)
        self.intra_op_threads = intra_op_threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=session_options(intra_op_threads, inter_op_threads),
                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise PolicyError(f"{self.path}: not a loadable ONNX model ({first})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if SPEC_METADATA_KEY not in meta:
            raise PolicyError(f"{self.path}: not a takeover policy (no {SPEC_METADATA_KEY!r} "
                              "metadata); export it with `takeover export`")
        self.spec = ModelSpec.from_json(meta[SPEC_METADATA_KEY], str(self.path))
        self.metadata = dict(meta)
        self._check_signature()
        self._outputs = list(self.spec.output_shapes())
        # The help-request calibration of an ensemble model (policy/uncertainty.py), or None.
        self.calibration = self._read_calibration(meta)
        threshold = None if self.calibration is None else self.calibration.get("threshold")
        self.novelty_threshold: float | None = None if threshold is None else float(threshold)

    @property
    def has_novelty(self) -> bool:
        return self.spec.has_novelty

    @property
    def has_attention(self) -> bool:
        return self.spec.has_attention

    def _read_calibration(self, meta: dict[str, str]) -> dict[str, Any] | None:
        if not self.spec.has_novelty or NOVELTY_METADATA_KEY not in meta:
            return None
        try:
            raw = json.loads(meta[NOVELTY_METADATA_KEY])
        except ValueError:
            raw = None
        threshold = raw.get("threshold") if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or not (
                threshold is None or (isinstance(threshold, int | float)
                                      and math.isfinite(threshold))):
            raise PolicyError(f"{self.path}: metadata {NOVELTY_METADATA_KEY!r} is not a novelty "
                              "calibration with a finite threshold; re-export the model")
        return raw

    def _check_signature(self) -> None:
        """The graph's inputs and output must be what the metadata promises."""
        inputs = {i.name: i for i in self.session.get_inputs()}
        if set(inputs) != set(INPUT_NAMES):
            raise PolicyError(f"{self.path}: model inputs {sorted(inputs)} do not match the "
                              f"policy interface {list(INPUT_NAMES)}")
        for name, want in self.spec.input_shapes().items():
            arg = inputs[name]
            if arg.type != _INPUT_DTYPES[name]:
                raise PolicyError(f"{self.path}: input {name!r} is {arg.type}, expected "
                                  f"{_INPUT_DTYPES[name]}")
            got = tuple(arg.shape[1:])
            if got != want:
                raise PolicyError(f"{self.path}: input {name!r} has shape {got} per sample, but "
                                  f"its metadata says {want}; the model and its metadata disagree")
        outputs = self.session.get_outputs()
        want_outputs = self.spec.output_shapes()
        if [o.name for o in outputs] != list(want_outputs):
            raise PolicyError(f"{self.path}: model outputs {[o.name for o in outputs]}, but its "
                              f"metadata (heads {self.spec.heads}) says {list(want_outputs)}")
        for out in outputs:
            if tuple(out.shape[1:]) != want_outputs[out.name]:
                raise PolicyError(f"{self.path}: output {out.name!r} has shape "
                                  f"{tuple(out.shape[1:])} per sample, but its metadata (chunk "
                                  f"size {self.spec.chunk_size}) says {want_outputs[out.name]}")

    @property
    def model_id(self) -> str:
        return self.spec.model_id or self.path.parent.name

    def check_sensors(self, image_shape: tuple[int, ...] | None, scan_beams: int | None) -> None:
        """PolicyError (one line) if this model cannot run on a robot with these sensors."""
        why = self.spec.sensor_mismatch(image_shape, scan_beams)
        if why is not None:
            raise PolicyError(f"{self.path}: {why}")

    def check_observation(self, obs: Observation) -> None:
        self.check_sensors(None if obs.image is None else tuple(obs.image.shape),
                           None if obs.scan_m is None else int(obs.scan_m.shape[0]))

    def run_outputs(self, image: npt.NDArray[np.uint8], scan: FloatArray, proprio: FloatArray
                    ) -> dict[str, FloatArray]:
        """(B, H, W, 3) uint8, (B, N) m, (B, 2) -> every output of the graph by name: `actions`
        (B, K, 2) and, where the model has them, `novelty` (B, K) and `attention` (B, h, w).
        One forward pass."""
        out = self.session.run(self._outputs, {"image": image, "scan": scan, "proprio": proprio})
        return {name: np.asarray(o, dtype=np.float32)
                for name, o in zip(self._outputs, out, strict=True)}

    def run_batch(self, image: npt.NDArray[np.uint8], scan: FloatArray, proprio: FloatArray
                  ) -> tuple[FloatArray, FloatArray | None]:
        """(B, H, W, 3) uint8, (B, N) m, (B, 2) -> (B, K, 2) commands and (B, K) novelty (None
        for a model without it). One forward pass for every output."""
        out = self.run_outputs(image, scan, proprio)
        return out[OUTPUT_NAME], out.get(NOVELTY_NAME)

    def infer_batch(self, image: npt.NDArray[np.uint8], scan: FloatArray, proprio: FloatArray
                    ) -> FloatArray:
        """(B, H, W, 3) uint8, (B, N) m, (B, 2) -> (B, K, 2) commands. Runs every output, as
        the robot does (`run_batch`), so timings of this call are what a tick pays."""
        return self.run_batch(image, scan, proprio)[0]

    def infer(self, obs: Observation) -> FloatArray:
        """One observation -> its chunk (K, 2) of (v_mps, w_radps)."""
        return self.infer_with_novelty(obs)[0]

    def infer_with_novelty(self, obs: Observation) -> tuple[FloatArray, FloatArray | None]:
        """One observation -> its chunk (K, 2) of (v_mps, w_radps) and its novelty (K,), None
        for a model without the output."""
        out = self.infer_outputs(obs)
        return out[OUTPUT_NAME], out.get(NOVELTY_NAME)

    def infer_outputs(self, obs: Observation) -> dict[str, FloatArray]:
        """One observation -> every output for it (`run_outputs` without the batch axis):
        `actions` (K, 2) and, where the model has them, `novelty` (K,), `attention` (h, w)."""
        if obs.image is None or obs.scan_m is None:
            self.check_observation(obs)  # raises with the missing sensor named
        assert obs.image is not None and obs.scan_m is not None
        image = np.ascontiguousarray(obs.image, dtype=np.uint8)[None]
        scan = np.asarray(obs.scan_m, dtype=np.float32)[None]
        odom = obs.odom
        proprio = np.array([[odom.v_mps, odom.w_radps]], dtype=np.float32)
        try:
            out = self.run_outputs(image, scan, proprio)
        except Exception as e:  # onnxruntime's shape errors: a robot with other sensors
            self.check_observation(obs)
            raise PolicyError(f"{self.path}: inference failed: {str(e).splitlines()[0][:200]}"
                              ) from None
        return {name: value[0] for name, value in out.items()}

    def attention_map(self, image: npt.NDArray[np.uint8]) -> FloatArray | None:
        """The attention map (h, w), 0..1, for one (H, W, 3) uint8 frame (or (B, h, w) for a
        batch (B, H, W, 3)); None for a model without the output or a frame of another size.
        The map depends on the image alone, so the other inputs are fed neutral values (no
        LiDAR return, standing still)."""
        if not self.has_attention:
            return None
        frames = np.ascontiguousarray(image, dtype=np.uint8)
        single = frames.ndim == 3
        if single:
            frames = frames[None]
        if frames.shape[1:] != self.spec.input_shapes()["image"]:
            return None
        n = frames.shape[0]
        scan = np.full((n, self.spec.scan_beams), np.nan, dtype=np.float32)
        proprio = np.zeros((n, 2), dtype=np.float32)
        maps = self.run_outputs(frames, scan, proprio)[ATTENTION_NAME]
        return maps[0] if single else maps


_POLICY_DEFAULTS = PolicyConfig()  # the executor's defaults are [policy]'s, never a second set


@dataclass(frozen=True)
class ExecutorConfig:
    mode: str = _POLICY_DEFAULTS.execution  # ensemble | receding
    ensemble_k: float = _POLICY_DEFAULTS.ensemble_k  # weights exp(-k * i), i = 0 oldest
    n_action_steps: int = _POLICY_DEFAULTS.n_action_steps  # receding: commands per inference (<= K)

    @classmethod
    def from_config(cls, policy: PolicyConfig) -> ExecutorConfig:
        """The executor that takeover.toml's [policy] table asks for."""
        return cls(mode=policy.execution, ensemble_k=policy.ensemble_k,
                   n_action_steps=policy.n_action_steps)

    def validated(self, chunk_size: int) -> ExecutorConfig:
        if self.mode not in EXECUTION_MODES:
            raise PolicyError(f"execution mode {self.mode!r}: expected one of "
                              f"{', '.join(EXECUTION_MODES)}")
        if self.mode == "receding" and self.n_action_steps < 1:
            raise PolicyError(f"n_action_steps {self.n_action_steps}: must be at least 1")
        if not math.isfinite(self.ensemble_k):
            raise PolicyError("ensemble_k must be a finite number")
        if self.n_action_steps > chunk_size:
            # A model with a shorter chunk than the setting executes its whole chunk.
            return dataclasses.replace(self, n_action_steps=chunk_size)
        return self


class ChunkExecutor:
    """Turns chunks (K, 2) into one action per tick (ensembling or receding horizon)."""

    def __init__(self, chunk_size: int, config: ExecutorConfig | None = None) -> None:
        self.chunk_size = chunk_size
        self.config = (config or ExecutorConfig()).validated(chunk_size)
        self._tick = 0  # ticks executed since the last reset/drop
        self._chunks: deque[tuple[int, FloatArray]] = deque()  # (tick it starts at, (K, 2))
        self._queue: deque[FloatArray] = deque()  # receding horizon: actions left to execute
        # The novelty (K,) of the newest chunk and the tick it starts at; receding horizon: the
        # scores of the queued actions. `novelty`: the score of the last action returned.
        self._newest_novelty: tuple[int, FloatArray] | None = None
        self._novelty_queue: deque[float | None] = deque()
        self.novelty: float | None = None

    @property
    def needs_chunk(self) -> bool:
        """Whether the next action needs a fresh inference first."""
        return self.config.mode == "ensemble" or not self._queue

    def add_chunk(self, chunk: FloatArray, novelty: FloatArray | None = None) -> None:
        """A chunk predicted from the current tick's observation; (K, 2), and its novelty (K,)
        when the model has one."""
        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.shape != (self.chunk_size, 2):
            raise PolicyError(f"chunk of shape {chunk.shape}, expected ({self.chunk_size}, 2)")
        scores = None if novelty is None else np.asarray(novelty, dtype=np.float32).reshape(-1)
        if scores is not None and scores.shape != (self.chunk_size,):
            raise PolicyError(f"novelty of shape {scores.shape}, expected ({self.chunk_size},)")
        self._newest_novelty = None if scores is None else (self._tick, scores)
        if self.config.mode == "ensemble":
            self._chunks.append((self._tick, chunk))
            while self._chunks and self._tick - self._chunks[0][0] >= self.chunk_size:
                self._chunks.popleft()
        else:
            n = self.config.n_action_steps
            self._queue.clear()
            self._queue.extend(chunk[:n])
            self._novelty_queue.clear()
            # Every command of the chunk carries its step-0 score: how unsure the policy was of
            # the observation it planned them from (the calibrated quantity; the later steps
            # disagree more in every state, the far future being uncertain by construction).
            self._novelty_queue.extend([None if scores is None else float(scores[0])] * n)

    def ensemble_weights(self, count: int) -> FloatArray:
        """Weights of `count` predictions for one tick, oldest first (normalised)."""
        w = np.exp(-self.config.ensemble_k * np.arange(count, dtype=np.float64))
        return (w / w.sum()).astype(np.float32)

    def next_action(self) -> FloatArray | None:
        """The command for this tick (2,), or None if nothing is planned; advances one tick."""
        if self.config.mode == "ensemble":
            preds = [c[self._tick - start] for start, c in self._chunks
                     if 0 <= self._tick - start < self.chunk_size]
            action = None
            if preds:
                w = self.ensemble_weights(len(preds))
                action = (np.stack(preds) * w[:, None]).sum(axis=0).astype(np.float32)
            self.novelty = None
            if action is not None and self._newest_novelty is not None:
                start, scores = self._newest_novelty
                if 0 <= self._tick - start < self.chunk_size:
                    self.novelty = float(scores[self._tick - start])
        else:
            action = self._queue.popleft() if self._queue else None
            self.novelty = self._novelty_queue.popleft() if self._novelty_queue else None
        self._tick += 1
        return action

    def drop_queued_actions(self) -> None:
        self._chunks.clear()
        self._queue.clear()
        self._novelty_queue.clear()
        self._newest_novelty = None
        self.novelty = None

    def reset(self) -> None:
        self.drop_queued_actions()
        self._tick = 0


class ChunkPolicy:
    """The `PolicyDriver` for the control loop: infer, execute chunks, propose one command.

    For the help-request logic of the control layer, two attributes, read each tick:
    `novelty` (float | None), the ensemble's disagreement on the command proposed on this tick
    (None before a proposal, after a drop, or for a model without the output), and
    `novelty_threshold` (float | None), the calibrated threshold from the model's metadata;
    a request is `novelty > novelty_threshold` (see the module docstring). For a viewer:
    `attention` (an (h, w) array, 0..1, or None), the map of the latest inference.
    """

    def __init__(self, runtime: PolicyRuntime, executor: ChunkExecutor | None = None,
                 max_latency_ms: float = 25.0) -> None:
        self.runtime = runtime
        self.executor = executor or ChunkExecutor(runtime.spec.chunk_size)
        if self.executor.chunk_size != runtime.spec.chunk_size:
            raise PolicyError(f"executor chunk size {self.executor.chunk_size} does not match the "
                              f"model's {runtime.spec.chunk_size}")
        self.max_latency_ms = max_latency_ms
        self.inferences = 0
        self.slow_inferences = 0
        self.last_latency_ms = 0.0
        self.latencies_ms: deque[float] = deque(maxlen=100_000)
        self._checked = False
        self.novelty: float | None = None
        self.novelty_threshold: float | None = runtime.novelty_threshold
        self.attention: FloatArray | None = None

    def propose(self, obs: Observation) -> Command | None:
        if not self._checked:
            self.runtime.check_observation(obs)
            self._checked = True
        if self.executor.needs_chunk:
            t0 = time.perf_counter()
            out = self.runtime.infer_outputs(obs)
            chunk, novelty = out[OUTPUT_NAME], out.get(NOVELTY_NAME)
            self.attention = out.get(ATTENTION_NAME)
            self.last_latency_ms = (time.perf_counter() - t0) * 1e3
            self.latencies_ms.append(self.last_latency_ms)
            self.inferences += 1
            if self.last_latency_ms > self.max_latency_ms:
                self.slow_inferences += 1
            self.executor.add_chunk(chunk, novelty)
        action = self.executor.next_action()
        self.novelty = self.executor.novelty
        if action is None:
            return None
        return Command(float(action[0]), float(action[1]))

    def drop_queued_actions(self) -> None:
        self.executor.drop_queued_actions()
        self.novelty = None
        self.attention = None

    def reset(self) -> None:
        self.executor.reset()
        self.novelty = None
        self.attention = None

    def latency_summary(self) -> dict[str, float | None]:
        """Inference latency percentiles (ms) over the recent inferences, None before any."""
        if not self.latencies_ms:
            return {"latency_ms_p50": None, "latency_ms_p99": None, "latency_ms_max": None}
        lat = np.asarray(self.latencies_ms)
        return {"latency_ms_p50": round(float(np.percentile(lat, 50)), 4),
                "latency_ms_p99": round(float(np.percentile(lat, 99)), 4),
                "latency_ms_max": round(float(lat.max()), 4)}


def load_policy(path: Path | str, config: Config) -> ChunkPolicy:
    """Load an ONNX policy for this robot: the executor and threads of `config.policy`, and the
    model checked against the camera of `config.robot` (and its LiDAR once it reports) before
    anything moves. PolicyError (one line) if it cannot run here."""
    runtime = PolicyRuntime(path, intra_op_threads=config.policy.threads)
    image_shape = (config.robot.camera_height, config.robot.camera_width, 3)
    runtime.check_sensors(image_shape, runtime.spec.scan_beams)
    return ChunkPolicy(runtime, ChunkExecutor(runtime.spec.chunk_size,
                                              ExecutorConfig.from_config(config.policy)))
