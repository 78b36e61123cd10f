"""Behavioural cloning of the chunked docking policy (needs the `train` extra).

AdamW with a OneCycle schedule, gradient clipping, mixed precision where the device has it
(bf16 autocast on CPUs with native bf16, bf16/fp16 on CUDA), channels_last, early stopping on
the validation loss (the best weights are kept), a checkpoint per epoch that `resume` continues
from, and warm start from the previous round's weights.

Distributed: under `torchrun` (WORLD_SIZE > 1) every process joins a process group (NCCL on
CUDA, gloo on CPU) and the model is wrapped in DistributedDataParallel. The sample order and the
augmentation draws are seeded by (seed, epoch, step, shard), never by the process, so a run on
P processes with `grad_accum` A computes exactly what one process computes with accumulation
P*A: the global batch is cut into P*A shards, shard s = batch[s::P*A], and process r handles
shards j*P + r. tests/policy/test_ddp.py checks this.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from takeover.errors import UsageError
from takeover.policy.dataset import (
    AugmentConfig,
    PolicyDataset,
    augment_images,
    draw_epoch,
    episode_split,
    sample_weights,
)
from takeover.policy.model import POSE_SCALE, DockingPolicy, ModelConfig
from takeover.policy.progress import ProgressCallback, TrainProgress
from takeover.policy.spec import PolicyError
from takeover.policy.uncertainty import DEFAULT_CONFIRM_MS, DEFAULT_NOVELTY_BUDGET

CHECKPOINT_FORMAT = "takeover-policy-checkpoint/1"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 12
    batch_size: int = 64  # global batch, over all processes and accumulation shards
    grad_accum: int = 1
    lr: float = 2e-3  # OneCycle peak
    weight_decay: float = 1e-4
    grad_clip_norm: float = 1.0
    loss: str = "l1"  # l1 | huber
    label: str = "intent"  # intent | sent: which command is learned (dataset.py load_dataset)
    pose_loss_weight: float = 0.5  # the auxiliary dock-pose head (model.py), against the actions
    val_fraction: float = 0.1
    # The weights kept: "last", the end of the OneCycle schedule (annealed), or "best", the epoch
    # with the lowest validation loss, with early stopping after `patience` epochs without a
    # better one. "last" by default: a validation split of a few episodes is noisy, and "best"
    # kept mid-schedule weights at a high learning rate (a warm-started DAgger model kept its
    # epoch 2 of 4 and docked 15/100 where its predecessor docked 37/100, docs/dagger.md).
    keep: str = "last"  # last | best
    patience: int = 4  # keep="best": epochs without a better validation loss before stopping
    weighting: str = "none"  # none | iwr | sirius
    sirius_intervention_weight: float = 2.0
    sirius_pre_intervention_s: float = 2.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto | off | bf16 | fp16
    threads: int = 0  # torch intra-op threads on CPU (0: all cores)
    seed: int = 0
    # An ensemble (ModelConfig.heads > 1): the fraction of training samples each member learns
    # from, drawn once per member (a fixed bootstrap-style mask over the samples). 1.0, the
    # default: every member gets the whole loss and the members differ by their initial weights
    # only. Osband et al. (bootstrapped DQN, 2016) found the random initialisation alone gives
    # most of the diversity of a shared-torso ensemble, and the command driven is the members'
    # mean, so no member should learn from less data. Below 1: more disagreement on the
    # demonstrated states themselves (each member misses some of them).
    head_bootstrap: float = 1.0
    # The help-request calibration after training (policy/uncertainty.py): the fraction of
    # held-out steps whose novelty may exceed the threshold, and the confirmation time assumed
    # for the episode-level figure recorded beside it.
    novelty_budget: float = DEFAULT_NOVELTY_BUDGET
    novelty_confirm_ms: float = DEFAULT_CONFIRM_MS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in raw.items() if k in known}
        if isinstance(kw.get("augment"), dict):
            kw["augment"] = AugmentConfig(**kw["augment"])
        return cls(**kw)


@dataclass
class TrainResult:
    model: DockingPolicy  # the kept weights (config.keep), in eval mode, on CPU
    history: list[dict[str, float]]
    best_val_loss: float | None
    best_epoch: int  # the epoch with the lowest validation loss
    kept_epoch: int  # the epoch whose weights `model` holds (config.keep)
    epochs_run: int
    wall_s: float  # the training loop, data loading not included
    images_per_s: float  # training samples per second through forward + backward
    train_episodes: list[str]
    val_episodes: list[str]
    val_metrics: dict[str, float]
    device: str
    amp: str
    world_size: int


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                       local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r}: not a device (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where bf16 autocast is faster than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off":
        return None
    if amp == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise UsageError("amp fp16 needs CUDA; use bf16 or off on a CPU")
        return torch.float16
    raise UsageError(f"amp {amp!r}: expected auto, off, bf16 or fp16")


def chunk_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str
               ) -> torch.Tensor:
    """Masked loss over (B, K, 2) standardised actions; the mean over supervised steps."""
    if kind == "l1":
        per = (pred - target).abs()
    elif kind == "huber":
        per = nn.functional.smooth_l1_loss(pred, target, reduction="none", beta=0.1)
    else:
        raise UsageError(f"loss {kind!r}: expected l1 or huber")
    m = mask.unsqueeze(-1).to(per.dtype)
    return (per * m).sum() / (m.sum() * per.shape[-1]).clamp_min(1.0)


def ensemble_loss(members: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str,
                  member_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Every member's chunk loss, averaged over the members: (B, heads, K, 2) predictions,
    (B, K, 2) standardised targets, (B, K) mask, optional (B, heads) per-member sample mask.

    The mean (not the sum) keeps the shared layers' gradient the size of a one-head model's,
    and with one member this is exactly `chunk_loss`."""
    losses = []
    for h in range(members.shape[1]):
        m = mask if member_mask is None else mask & member_mask[:, h:h + 1]
        losses.append(chunk_loss(members[:, h], target, m, kind))
    return torch.stack(losses).mean()


def member_masks(samples: int, heads: int, keep: float, seed: int) -> torch.Tensor | None:
    """(samples, heads) bool: which training samples each member learns from (None: all)."""
    if heads <= 1 or keep >= 1.0:
        return None
    if not 0.0 < keep <= 1.0:
        raise UsageError(f"head_bootstrap {keep}: must be a fraction in (0, 1]")
    g = torch.Generator().manual_seed(seed + 7919)
    masks = torch.rand(samples, heads, generator=g) < keep
    masks[masks.sum(dim=1) == 0, 0] = True  # every sample teaches at least one member
    return masks


def pose_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L1 between the predicted (B, 3) and hindsight dock pose (B, 3, physical units), over the
    valid rows, each coordinate divided by POSE_SCALE."""
    scale = torch.tensor(POSE_SCALE, device=pred.device, dtype=pred.dtype)
    per = (pred - target / scale).abs().sum(dim=1) * valid.to(pred.dtype)
    return per.sum() / (valid.sum().to(pred.dtype) * 3).clamp_min(1.0)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: a crash mid-write leaves the previous checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's contents (tensors and plain data only: weights_only=True)."""
    if not path.exists():
        raise PolicyError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt zip, truncated file, pickled objects
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise PolicyError(f"{path}: not a readable takeover checkpoint ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise PolicyError(f"{path}: not a takeover policy checkpoint")
    return payload


def model_from_checkpoint(payload: dict[str, Any], which: str = "best_model") -> DockingPolicy:
    config = ModelConfig.from_dict(payload["model_config"])
    model = DockingPolicy(config)
    state = payload.get(which) or payload["model"]
    model.load_state_dict(state)
    return model.eval()


def _warm_start(model: DockingPolicy, path: Path) -> None:
    """Load a previous round's weights; the normalisation statistics stay those of the new data."""
    payload = load_checkpoint(path)
    state = payload.get("best_model") or payload["model"]
    own = model.state_dict()
    norm_buffers = {"proprio_mean", "proprio_std", "action_mean", "action_std"}
    mismatched = [k for k, v in state.items()
                  if k in own and k not in norm_buffers and own[k].shape != v.shape]
    # Ensemble members the previous model did not have (a one-head model warm-starting an
    # ensemble) keep their fresh initial weights: they are what makes the members differ.
    missing = [k for k in own if k not in state and not k.startswith("extra_heads.")]
    if mismatched or missing:
        raise UsageError(f"{path}: warm start needs the same architecture (backbone "
                         f"{payload['model_config'].get('backbone')}); first difference: "
                         f"{(mismatched or missing)[0]}")
    model.load_state_dict({k: v for k, v in state.items() if k not in norm_buffers}, strict=False)


def _unwrap(model: nn.Module) -> DockingPolicy:
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    assert isinstance(inner, DockingPolicy)
    return inner


@torch.no_grad()
def evaluate(model: DockingPolicy, ds: PolicyDataset, device: torch.device, loss_kind: str,
             batch_size: int = 256, ctx: DistContext | None = None) -> dict[str, float]:
    """Validation loss (standardised, as trained) and errors in physical units.

    In a distributed run each process takes a strided share and the sums are all-reduced."""
    ctx = ctx or DistContext()
    model.eval()
    idx_all = torch.arange(ctx.rank, len(ds), ctx.world_size)
    # loss*n, n, |dv|, |dw| over all, |dv0|, |dw0|, |d lateral|, |d heading| of the dock pose
    sums = torch.zeros(8, dtype=torch.float64)
    counts = torch.zeros(3, dtype=torch.float64)  # supervised chunk steps, first steps, poses
    for start in range(0, len(idx_all), batch_size):
        idx = idx_all[start:start + batch_size]
        image, scan, prop = ds.image[idx].to(device), ds.scan[idx].to(device), ds.proprio[idx].to(device)
        target, mask = ds.actions[idx].to(device), ds.mask[idx].to(device)
        pred, pose = model(image, scan, prop, with_pose=True)
        pred = pred.float()
        loss = chunk_loss(pred, model.normalize_actions(target), mask, loss_kind)
        if pose is not None:
            valid = ds.dock_pose_valid[idx].to(device)
            scale = torch.tensor(POSE_SCALE, device=device)
            pose_err = (pose.float() * scale - ds.dock_pose[idx].to(device)).abs()
            sums[6] += float((pose_err[:, 1] * valid).sum())
            sums[7] += float((pose_err[:, 2] * valid).sum())
            counts[2] += float(valid.sum())
        n_sup = float(mask.sum())
        err = (model.denormalize(pred) - target).abs() * mask.unsqueeze(-1)
        sums[0] += float(loss) * n_sup
        sums[1] += n_sup
        sums[2] += float(err[..., 0].sum())
        sums[3] += float(err[..., 1].sum())
        sums[4] += float(err[:, 0, 0].sum())
        sums[5] += float(err[:, 0, 1].sum())
        counts[0] += n_sup
        counts[1] += float(mask[:, 0].sum())
    if ctx.world_size > 1:
        both = torch.cat([sums, counts])
        dist.all_reduce(both)
        sums, counts = both[:8], both[8:]
    n, n0 = max(float(counts[0]), 1.0), max(float(counts[1]), 1.0)
    total = max(float(sums[1]), 1.0)
    pose_metrics = {} if counts[2] == 0 else {
        "pose_mae_lateral_m": float(sums[6]) / float(counts[2]),
        "pose_mae_heading_deg": math.degrees(float(sums[7]) / float(counts[2])),
    }
    return {**pose_metrics,
        "val_loss": float(sums[0]) / total,
        "mae_v_mps": float(sums[2]) / n,
        "mae_w_radps": float(sums[3]) / n,
        "mae_v_mps_first": float(sums[4]) / n0,
        "mae_w_radps_first": float(sums[5]) / n0,
    }


def train(
    dataset: PolicyDataset,
    model_config: ModelConfig,
    config: TrainConfig,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    init_from: Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train on `dataset` and return the best model. Writes `checkpoint_path` every epoch (on the
    main process) and continues from it when `resume` is set."""
    if config.epochs < 1:
        raise UsageError("--epochs must be at least 1")
    if config.keep not in ("last", "best"):
        raise UsageError(f"keep {config.keep!r}: expected last or best")
    if not 0.0 <= config.novelty_budget < 1.0:
        raise UsageError(f"novelty_budget {config.novelty_budget}: must be a fraction of steps "
                         "in [0, 1), e.g. 0.05")
    if model_config.heads < 1:
        raise UsageError(f"heads {model_config.heads}: must be at least 1")
    if dataset.chunk_size != model_config.chunk_size:
        raise UsageError(f"dataset chunks have {dataset.chunk_size} steps, the model "
                         f"{model_config.chunk_size}")
    h, w, _ = dataset.image_shape
    model_config = replace(model_config, image_height=h, image_width=w,
                           scan_beams=dataset.scan_beams)
    device = resolve_device(config.device)
    amp_dtype = resolve_amp(config.amp, device)
    if device.type == "cpu" and config.threads > 0:
        torch.set_num_threads(config.threads)
    ctx = init_distributed(device)
    if device.type == "cuda" and ctx.world_size > 1:
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    shards = ctx.world_size * config.grad_accum
    if config.batch_size % shards:
        raise UsageError(f"batch size {config.batch_size} must divide into {shards} shards "
                         f"({ctx.world_size} processes x grad_accum {config.grad_accum})")

    train_ids, val_ids = episode_split(len(dataset.episodes), config.val_fraction, config.seed)
    train_ds = dataset.subset(train_ids)
    val_ds = dataset.subset(val_ids) if val_ids else None
    if len(train_ds) < config.batch_size:
        raise UsageError(f"only {len(train_ds)} training samples, fewer than one batch of "
                         f"{config.batch_size}; record more episodes or lower the batch size")

    torch.manual_seed(config.seed)  # identical initial weights in every process
    model = DockingPolicy(model_config)
    model.set_normalization(*train_ds.proprio_stats(), *train_ds.action_stats())
    if init_from is not None:
        _warm_start(model, init_from)
    model.to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]

    boot = member_masks(len(train_ds), model.heads, config.head_bootstrap, config.seed)
    weights = None if config.weighting == "none" else sample_weights(
        train_ds, config.weighting, config.sirius_intervention_weight,
        config.sirius_pre_intervention_s, model_config.rate_hz)
    steps_per_epoch = len(train_ds) // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                    total_steps=total_steps, pct_start=0.15)
    history: list[dict[str, float]] = []
    best_val: float | None = None
    best_epoch = 0
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch = 0
    if resume and checkpoint_path is not None and checkpoint_path.exists():
        payload = load_checkpoint(checkpoint_path)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        start_epoch = int(payload["epoch"])
        history = list(payload.get("history", []))
        best_val = payload.get("best_val_loss")
        best_epoch = int(payload.get("best_epoch", 0))
        best_state = payload.get("best_model")

    net: nn.Module = model
    if ctx.world_size > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype is torch.float16 else None

    t_train = 0.0
    images_done = 0
    t0 = time.perf_counter()
    epochs_run = start_epoch
    stale = 0 if best_epoch == 0 else start_epoch - best_epoch
    for epoch in range(start_epoch, config.epochs):
        net.train()
        order = draw_epoch(len(train_ds), weights, steps_per_epoch * config.batch_size,
                           config.seed, epoch)
        running = 0.0
        t_epoch = time.perf_counter()
        for step in range(steps_per_epoch):
            batch = order[step * config.batch_size:(step + 1) * config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for j in range(config.grad_accum):
                shard = j * ctx.world_size + ctx.rank
                idx = batch[shard::shards]
                g = torch.Generator().manual_seed(
                    hash((config.seed, epoch, step, shard)) & 0x7FFF_FFFF_FFFF)
                image = augment_images(train_ds.image[idx], config.augment, g).to(device)
                scan, prop = train_ds.scan[idx].to(device), train_ds.proprio[idx].to(device)
                target, mask = train_ds.actions[idx].to(device), train_ds.mask[idx].to(device)
                last = j == config.grad_accum - 1
                accumulate = isinstance(net, nn.parallel.DistributedDataParallel) and not last
                with (net.no_sync() if accumulate else _null()), torch.autocast(  # type: ignore[operator]
                        device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                    pred, pose = net(image, scan, prop, with_pose=True, members=True)
                    loss = ensemble_loss(pred.float(), model.normalize_actions(target), mask,
                                         config.loss,
                                         None if boot is None else boot[idx].to(device))
                    if pose is not None:
                        loss = loss + config.pose_loss_weight * pose_loss(
                            pose.float(), train_ds.dock_pose[idx].to(device),
                            train_ds.dock_pose_valid[idx].to(device))
                    scaled = loss / config.grad_accum
                    if scaler is not None:
                        scaler.scale(scaled).backward()
                    else:
                        scaled.backward()
                step_loss += float(loss.detach()) / config.grad_accum
            if scaler is not None:
                scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            running += step_loss
            images_done += config.batch_size // ctx.world_size
            if on_progress is not None and ctx.is_main:
                elapsed = time.perf_counter() - t_epoch
                on_progress(TrainProgress(
                    epoch + 1, config.epochs, step + 1, steps_per_epoch, running / (step + 1),
                    None, (step + 1) * config.batch_size / max(elapsed, 1e-9),
                    time.perf_counter() - t0))
        t_train += time.perf_counter() - t_epoch
        epochs_run = epoch + 1
        train_loss = running / steps_per_epoch
        metrics = evaluate(model, val_ds, device, config.loss, ctx=ctx) if val_ds is not None \
            else {}
        val_loss = metrics.get("val_loss")
        history.append({"epoch": epoch + 1, "train_loss": train_loss,
                        **({} if val_loss is None else {"val_loss": val_loss})})
        improved = val_loss is None or best_val is None or val_loss < best_val
        if improved:
            best_val, best_epoch, stale = val_loss, epoch + 1, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            stale += 1
        if checkpoint_path is not None and ctx.is_main:
            save_checkpoint(checkpoint_path, {
                "format": CHECKPOINT_FORMAT,
                "model_config": model_config.to_dict(),
                "train_config": config.to_dict(),
                "model": model.state_dict(),
                "best_model": best_state,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch + 1,
                "best_epoch": best_epoch,
                "best_val_loss": best_val,
                "history": history,
                "data_digest": dataset.digest,
                "train_episodes": [dataset.episodes[i] for i in train_ids],
                "val_episodes": [dataset.episodes[i] for i in val_ids],
            })
        # After the checkpoint: a callback that cancels (raises) loses no finished epoch.
        if on_progress is not None and ctx.is_main:
            on_progress(TrainProgress(
                epoch + 1, config.epochs, steps_per_epoch, steps_per_epoch, train_loss, val_loss,
                images_done * ctx.world_size / max(t_train, 1e-9), time.perf_counter() - t0,
                epoch_end=True))
        if config.keep == "best" and val_loss is not None and stale >= config.patience:
            break

    final = _unwrap(net)
    kept_epoch = epochs_run
    if config.keep == "best" and best_state is not None:
        final.load_state_dict(best_state)
        kept_epoch = best_epoch
    final = copy.deepcopy(final)
    final.to("cpu", memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    final.eval()
    val_metrics = evaluate(final, val_ds, torch.device("cpu"), config.loss) if val_ds is not None \
        else {}
    return TrainResult(
        model=final, history=history, best_val_loss=best_val, best_epoch=best_epoch,
        kept_epoch=kept_epoch, epochs_run=epochs_run, wall_s=t_train,
        images_per_s=images_done * ctx.world_size / max(t_train, 1e-9),
        train_episodes=[dataset.episodes[i] for i in train_ids],
        val_episodes=[dataset.episodes[i] for i in val_ids], val_metrics=val_metrics,
        device=str(device), amp=str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
        world_size=ctx.world_size,
    )


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

