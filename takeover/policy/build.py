"""`takeover train` and `takeover export`: data -> training -> ONNX -> parity -> model card.

A trained model is assembled in `models/.rNNN.partial/` and renamed to `models/rNNN/` only when
its export passed the parity check; then `models/current` is pointed at it (atomically). A
failed or interrupted run leaves the deployed model as it was.

card.json records what a reviewer needs to trust the model: the round it runs in, the data
(episodes with the sha256 of each file, rounds, expert-labelled steps, digest), the
configurations, the training figures (time, wall time, images/s, losses), the export (sha256,
parity error on real frames), the runtime latency on one thread, when asked for the INT8
result, the novelty calibration of an ensemble model (`novelty`: the help-request threshold for
the budget, measured on the validation episodes; policy/uncertainty.py; the same JSON is in the
ONNX metadata, where the runtime reads it), and the held-out evaluation (`takeover dagger eval`,
written into the card later).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from takeover import __version__
from takeover.errors import UsageError
from takeover.policy.dataset import PolicyDataset, load_dataset
from takeover.policy.export import ParityFrames, check_parity, export_onnx, parity_errors
from takeover.policy.latency import measure_latency
from takeover.policy.model import DockingPolicy, ModelConfig, novelty
from takeover.policy.spec import OUTPUT_NAME, PolicyError
from takeover.policy.train import (
    ProgressCallback,
    TrainConfig,
    TrainResult,
    load_checkpoint,
    model_from_checkpoint,
    train,
)
from takeover.policy.uncertainty import calibrate
from takeover.workspace.layout import round_for_model
from takeover.workspace.registry import file_sha256, models_dir, next_model_id, set_current

ONNX_NAME = "policy.onnx"
INT8_NAME = "policy.int8.onnx"
CARD_NAME = "card.json"
CHECKPOINT_NAME = "checkpoint.pt"
PARITY_FRAMES = 256


def parity_frames(ds: PolicyDataset, count: int = PARITY_FRAMES, seed: int = 0) -> ParityFrames:
    """Up to `count` real frames spread over the dataset (the validation episodes when given
    the validation subset)."""
    n = len(ds)
    if n == 0:
        raise PolicyError("no dataset frames for the parity check")
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(count, n), replace=False))
    t = torch.from_numpy(idx)
    return ParityFrames(image=ds.image[t].numpy(), scan=ds.scan[t].numpy(),
                        proprio=ds.proprio[t].numpy())


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


@torch.no_grad()
def novelty_scores(model: DockingPolicy, ds: PolicyDataset, batch_size: int = 256
                   ) -> list[np.ndarray]:
    """The step-0 novelty of every sample of `ds`, one array per episode in step order (what
    the runtime reports tick by tick with the default executor)."""
    model = model.eval().to("cpu")
    scores = np.empty(len(ds), dtype=np.float64)
    for start in range(0, len(ds), batch_size):
        sl = slice(start, start + batch_size)
        members = model(ds.image[sl], ds.scan[sl], ds.proprio[sl], members=True)
        scores[sl] = novelty(members.float())[:, 0].numpy()
    episode, step = ds.episode.numpy(), ds.step.numpy()
    return [scores[episode == e][np.argsort(step[episode == e], kind="stable")]
            for e in np.unique(episode)]


def novelty_calibration(model: DockingPolicy, held_out: PolicyDataset | None,
                        train_config: TrainConfig) -> dict[str, Any] | None:
    """The help-request calibration of an ensemble model on held-out episodes; None for a
    one-head model; without held-out episodes a record saying why there is no threshold
    (training frames would set it too low: the model fits them)."""
    if model.heads == 1:
        return None
    if held_out is None or len(held_out) == 0:
        return {"threshold": None, "budget": train_config.novelty_budget,
                "reason": "no validation episodes to calibrate on (val_fraction 0)"}
    return calibrate(novelty_scores(model, held_out), budget=train_config.novelty_budget,
                     rate_hz=model.config.rate_hz, confirm_ms=train_config.novelty_confirm_ms)


def _export_and_check(model: DockingPolicy, out_dir: Path, model_id: str, digest: str,
                      frames: ParityFrames, calibration: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
    onnx_path = out_dir / ONNX_NAME
    # Written and checked under another name, then moved over the old file in one step: a
    # re-export beside a card (`takeover export`) is not refused as a file changed after
    # training while it is checked, and a failed check leaves the old model as it was.
    staged = out_dir / f"{ONNX_NAME}.partial"
    t0 = time.perf_counter()
    spec = model.spec(model_id=model_id, data_digest=digest)
    try:
        export_onnx(model, staged, spec, calibration)
        errors = parity_errors(model, staged, frames)
        for name, error in errors.items():
            check_parity(error, onnx_path, name)
        latency = measure_latency(staged, threads=1, iterations=1000)
        sha256 = file_sha256(staged)
        os.replace(staged, onnx_path)
    finally:
        staged.unlink(missing_ok=True)
    err = errors[OUTPUT_NAME]
    return {
        "onnx": ONNX_NAME,
        "sha256": sha256,
        "opset": 17,
        "outputs": list(spec.output_shapes()),
        "parity_max_abs_error": err,
        **{f"parity_{name}_max_abs_error": e for name, e in errors.items() if name != OUTPUT_NAME},
        "parity_frames": len(frames),
        "parity_tolerance": 1e-4,
        "export_s": round(time.perf_counter() - t0, 2),
        "latency_1_thread": {k: latency[k] for k in ("p50_ms", "p99_ms", "mean_ms", "threads")},
    }


def _int8(out_dir: Path, frames: ParityFrames) -> dict[str, Any]:
    from takeover.policy.quantize import quantize_int8

    report = quantize_int8(out_dir / ONNX_NAME, out_dir / INT8_NAME, frames)
    result = report.to_json()
    if result["path"] is not None:
        result["path"] = INT8_NAME
    return result


def train_workspace(
    workspace: Path,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    int8: bool = False,
    init_from: Path | None = None,
    deploy: bool = True,
    on_progress: ProgressCallback | None = None,
    on_status: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train on every round of `workspace`, register models/rNNN and (by default) deploy it.

    Returns the model card. Under torchrun only the main process writes anything."""
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    status = on_status or (lambda _msg: None)
    workspace = workspace.expanduser()
    if not (workspace / "rounds").is_dir():
        raise UsageError(f"{workspace}: not a workspace (no rounds/ directory); create one with "
                         "`takeover init DIR` and record demonstrations")
    t_load = time.perf_counter()
    status("reading episodes ...")
    dataset = load_dataset(workspace, chunk_size=model_config.chunk_size, label=train_config.label)
    load_s = time.perf_counter() - t_load
    status(f"{len(dataset)} samples from {len(dataset.episodes)} episodes "
           f"(rounds {sorted(set(dataset.rounds))}) in {load_s:.1f} s")
    model_id = next_model_id(workspace)
    staging = models_dir(workspace) / f".{model_id}.partial"
    is_main = int(os.environ.get("RANK", "0")) == 0
    if is_main:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
    result = train(dataset, model_config, train_config,
                   checkpoint_path=staging / CHECKPOINT_NAME if is_main else None,
                   init_from=init_from, on_progress=on_progress)
    if not is_main:
        return {}
    status("exporting to ONNX and checking parity on real frames ...")
    val_ids = [dataset.episodes.index(k) for k in result.val_episodes]
    check_ds = dataset.subset(val_ids) if val_ids else dataset
    frames = parity_frames(check_ds)
    calibration = novelty_calibration(result.model, check_ds if val_ids else None, train_config)
    export = _export_and_check(result.model, staging, model_id, dataset.digest, frames,
                               calibration if calibration and calibration["threshold"] is not None
                               else None)
    card = _card(workspace, model_id, dataset, result, train_config, export, load_s, init_from)
    card["novelty"] = calibration
    if int8:
        status("quantising to INT8 (static, calibrated on dataset frames) ...")
        card["int8"] = _int8(staging, frames)
    _write_json_atomic(staging / CARD_NAME, card)
    final = models_dir(workspace) / model_id
    os.replace(staging, final)
    if deploy:
        set_current(workspace, model_id)
        card["deployed"] = True
    return card


def _episode_digests(workspace: Path, keys: list[str]) -> list[dict[str, Any]]:
    """Each training episode with the sha256 of its file and its label counts, so a card says
    exactly which data made the model (and a changed or relabelled file shows)."""
    from takeover.recorder.store import EpisodeStore

    store = EpisodeStore(workspace)
    infos = {info.key: info for info in store.episodes()}
    rows = []
    for key in keys:
        info = infos.get(key)
        path = info.path if info is not None else store.resolve(key)
        rows.append({
            "episode": key,
            "sha256": file_sha256(path),
            "steps": info.num_steps if info else None,
            "human_steps": info.human_steps if info else None,
            "interventions": info.interventions if info else None,
            "outcome": info.outcome if info else None,
            "seed": info.extra.get("seed") if info else None,
        })
    return rows


def _card(workspace: Path, model_id: str, ds: PolicyDataset, result: TrainResult,
          train_config: TrainConfig, export: dict[str, Any], load_s: float,
          init_from: Path | None) -> dict[str, Any]:
    """The model card. `round`: the round this model's runs are recorded in (model rN, trained
    on rounds < N); `data.episode_list`: every training episode with its file's sha256;
    `data.human_steps`: the expert-labelled steps (demonstration + intervention) trained on;
    `evaluation`: filled in later by `takeover dagger eval` (None until then)."""
    mask = ds.mask
    episodes = _episode_digests(workspace, list(ds.episodes))
    warm_model = init_from.resolve().parent.name if init_from else None
    return {
        "model_id": model_id,
        "round": round_for_model(model_id),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "takeover_version": __version__,
        "files": {"onnx": ONNX_NAME, "checkpoint": CHECKPOINT_NAME},
        "spec": json.loads(result.model.spec(model_id, ds.digest).to_json()),
        "model_config": result.model.config.to_dict(),
        "parameters": sum(p.numel() for p in result.model.parameters()),
        "train_config": train_config.to_dict(),
        "warm_start": str(init_from) if init_from else None,
        "warm_start_model": warm_model,
        "data": {
            "digest": ds.digest,
            "episodes": len(ds.episodes),
            "rounds": sorted(set(ds.rounds)),
            "human_steps": sum(int(e["human_steps"] or 0) for e in episodes),
            "episode_list": episodes,
            "samples": len(ds),
            "supervised_chunk_steps": int(mask.sum()),
            "intervention_samples": int((ds.action_mode == 1).sum()),
            "train_episodes": result.train_episodes,
            "val_episodes": result.val_episodes,
        },
        "training": {
            "device": result.device,
            "amp": result.amp,
            "processes": result.world_size,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "kept_epoch": result.kept_epoch,
            "wall_s": round(result.wall_s, 2),
            "data_load_s": round(load_s, 2),
            "images_per_s": round(result.images_per_s, 1),
            "history": result.history,
        },
        "metrics": {"best_val_loss": result.best_val_loss, **result.val_metrics},
        "export": export,
        "evaluation": None,
    }


def find_workspace(checkpoint: Path) -> Path | None:
    """The workspace a checkpoint lives in (models/rNNN/checkpoint.pt -> the workspace)."""
    for parent in checkpoint.resolve().parents:
        if (parent / "rounds").is_dir() and (parent / "models").is_dir():
            return parent
    return None


def export_checkpoint(checkpoint: Path, int8: bool = False, workspace: Path | None = None,
                      out_dir: Path | None = None) -> dict[str, Any]:
    """Re-export a checkpoint to ONNX beside it (or in `out_dir`), check parity on the frames
    of the episodes it was validated on, update its card. Returns the export section."""
    payload = load_checkpoint(checkpoint)
    model = model_from_checkpoint(payload)
    workspace = workspace or find_workspace(checkpoint)
    if workspace is None:
        raise UsageError(f"{checkpoint}: not inside a workspace, so no dataset frames for the "
                         "parity check; pass --workspace DIR")
    val_keys = list(payload.get("val_episodes") or [])
    # The validation episodes (all of them: the novelty calibration needs them), else a few of
    # the training episodes, for the parity check only.
    store_keys = val_keys or list(payload.get("train_episodes") or [])[:8]
    from takeover.recorder.store import EpisodeStore

    store = EpisodeStore(workspace)
    paths = []
    for key in store_keys:
        try:
            paths.append(store.resolve(key))
        except Exception:  # an episode deleted since: use what is left
            continue
    if not paths:
        paths = store.episode_paths()[:8]
    ds = load_dataset(workspace, chunk_size=model.config.chunk_size, paths=paths)
    frames = parity_frames(ds)
    out_dir = out_dir or checkpoint.parent
    model_id = out_dir.name if out_dir.name.startswith("r") else ""
    held_out = ds if val_keys and len(paths) == len(val_keys) else None
    calibration = novelty_calibration(
        model, held_out, TrainConfig.from_dict(payload.get("train_config") or {}))
    export = _export_and_check(model, out_dir, model_id, str(payload.get("data_digest", "")),
                               frames, calibration if calibration and
                               calibration["threshold"] is not None else None)
    if calibration is not None:
        export["novelty"] = calibration
    card_path = out_dir / CARD_NAME
    card: dict[str, Any] | None = None
    if card_path.exists():
        try:
            card = json.loads(card_path.read_text())
        except ValueError:
            card = {}
        card["export"] = {k: v for k, v in export.items() if k != "novelty"}
        if "novelty" in export:
            card["novelty"] = export["novelty"]
        # Now, not after the INT8 attempt: that loads the new file, checked against its card.
        _write_json_atomic(card_path, card)
    if int8:
        export["int8"] = _int8(out_dir, frames)
        if card is not None:
            card["int8"] = export["int8"]
            _write_json_atomic(card_path, card)
    return export


def model_config_with(base: ModelConfig, **overrides: Any) -> ModelConfig:
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
