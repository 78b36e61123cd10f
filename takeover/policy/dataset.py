"""Training samples from the episode store: observation at t, the human's commands t..t+K-1.

Every round is used (DAgger aggregation). Labels follow the Sirius convention of the recorder:
only human-driven steps (action_mode -1 demonstration, 1 intervention) are supervised. Robot
steps (0) are what the policy did, not what it should have done, and unlabeled steps (IDLE,
e-stop, link lost) are not driving at all. A chunk step past the episode's end or on an
unsupervised step is masked out of the loss; a sample whose chunk has no supervised step at all
is dropped.

The whole dataset is decoded once into memory as uint8 tensors (40 episodes of 96x96 frames are
about 300 MB); batches are gathered by index, which on a 2-core laptop is far faster than a
DataLoader with workers decoding HDF5 chunks.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from takeover.config import WEIGHTINGS
from takeover.errors import UsageError
from takeover.recorder.errors import EpisodeError
from takeover.recorder.reader import read_episode
from takeover.recorder.store import EpisodeStore
from takeover.types import ACTION_MODE_DEMONSTRATION, ACTION_MODE_INTERVENTION, ACTION_MODE_ROBOT

SUPERVISED_MODES = (ACTION_MODE_DEMONSTRATION, ACTION_MODE_INTERVENTION)
LABELS = ("intent", "sent")


@dataclass
class PolicyDataset:
    """All samples of a set of episodes, in memory.

    image (S, H, W, 3) uint8; scan (S, N) float32 m; proprio (S, 2) float32 (v, w);
    actions (S, K, 2) float32 (v_mps, w_radps); mask (S, K) bool (supervised chunk steps);
    action_mode (S,) int8 at the sample's own step; episode (S,) int64 index into `episodes`;
    step (S,) int64 within the episode; steps_to_intervention (S,) int64 (steps until the next
    intervention starts in that episode, a large number if none follows); dock_pose (S, 3)
    float32 and dock_pose_valid (S,) bool: see `hindsight_dock_pose`.
    """

    image: torch.Tensor
    scan: torch.Tensor
    proprio: torch.Tensor
    actions: torch.Tensor
    mask: torch.Tensor
    action_mode: torch.Tensor
    episode: torch.Tensor
    step: torch.Tensor
    steps_to_intervention: torch.Tensor
    dock_pose: torch.Tensor
    dock_pose_valid: torch.Tensor
    episodes: list[str]  # 'r000/ep_0001' per episode index
    rounds: list[int]  # round of each episode
    digest: str

    def __len__(self) -> int:
        return int(self.image.shape[0])

    @property
    def chunk_size(self) -> int:
        return int(self.actions.shape[1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        h, w, c = self.image.shape[1:]
        return int(h), int(w), int(c)

    @property
    def scan_beams(self) -> int:
        return int(self.scan.shape[1])

    def subset(self, episode_ids: Sequence[int]) -> PolicyDataset:
        """The samples of some episodes (a view of the same frames where possible)."""
        keep = torch.isin(self.episode, torch.as_tensor(list(episode_ids), dtype=torch.int64))
        idx = torch.nonzero(keep).flatten()
        return PolicyDataset(
            image=self.image[idx], scan=self.scan[idx], proprio=self.proprio[idx],
            actions=self.actions[idx], mask=self.mask[idx], action_mode=self.action_mode[idx],
            episode=self.episode[idx], step=self.step[idx],
            steps_to_intervention=self.steps_to_intervention[idx],
            dock_pose=self.dock_pose[idx], dock_pose_valid=self.dock_pose_valid[idx],
            episodes=self.episodes, rounds=self.rounds, digest=self.digest,
        )

    def action_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the supervised actions (the labels the model learns)."""
        labels = self.actions[self.mask]
        return labels.mean(0), labels.std(0)

    def proprio_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.proprio.mean(0), self.proprio.std(0)


def episode_split(num_episodes: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Train and validation episode indices: split by episode, never by frame (neighbouring
    frames are near-duplicates, a frame split would leak). No validation with < 2 episodes."""
    order = np.random.default_rng(seed).permutation(num_episodes)
    n_val = round(num_episodes * val_fraction) if num_episodes >= 2 else 0
    n_val = min(max(n_val, 1 if val_fraction > 0 and num_episodes >= 2 else 0), num_episodes - 1)
    val = sorted(int(i) for i in order[:n_val])
    train = sorted(int(i) for i in order[n_val:])
    return train, val


def sample_weights(ds: PolicyDataset, weighting: str, sirius_intervention_weight: float = 2.0,
                   sirius_pre_intervention_s: float = 2.0, rate_hz: float = 20.0) -> torch.Tensor:
    """Per-sample draw probabilities (sum 1) for one of the intervention weightings.

    none: uniform. iwr (Mandlekar et al., 2020): intervention samples make up half of the draws
    (when there are any). sirius (Liu et al., 2022): interventions weighted up by
    `sirius_intervention_weight`; samples taken on the robot's own steps shortly before an
    intervention (the policy was heading for trouble; they are supervised only by the chunk's
    human steps) are left out; everything else weighs 1.
    """
    if weighting not in WEIGHTINGS:
        raise UsageError(f"weighting {weighting!r}: expected one of {', '.join(WEIGHTINGS)}")
    n = len(ds)
    weights = torch.ones(n, dtype=torch.float64)
    is_int = ds.action_mode == ACTION_MODE_INTERVENTION
    n_int = int(is_int.sum())
    if weighting == "iwr" and 0 < n_int < n:
        weights[is_int] = 0.5 / n_int
        weights[~is_int] = 0.5 / (n - n_int)
    elif weighting == "sirius":
        weights[is_int] = sirius_intervention_weight
        pre = (ds.action_mode == ACTION_MODE_ROBOT) & (
            ds.steps_to_intervention <= round(sirius_pre_intervention_s * rate_hz))
        weights[pre] = 0.0
    total = weights.sum()
    if total <= 0:
        weights = torch.ones(n, dtype=torch.float64)
        total = weights.sum()
    return weights / total


def _steps_to_next_intervention(action_mode: np.ndarray) -> np.ndarray:
    """For each step, how many steps until the next intervention run starts (inf-like if none)."""
    t = len(action_mode)
    out = np.full(t, 1 << 30, dtype=np.int64)
    is_int = action_mode == ACTION_MODE_INTERVENTION
    starts = np.flatnonzero(is_int & ~np.concatenate([[False], is_int[:-1]]))
    nxt = 1 << 30
    j = len(starts) - 1
    for i in range(t - 1, -1, -1):
        while j >= 0 and starts[j] > i:
            nxt = int(starts[j])
            j -= 1
        out[i] = nxt - i if nxt < (1 << 30) else (1 << 30)
    return out


def _digest(parts: list[str]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\n")
    return h.hexdigest()


def hindsight_dock_pose(odom: np.ndarray, docked: bool) -> tuple[np.ndarray, np.ndarray]:
    """Where the dock was, relative to the robot, at every step of an episode that docked.

    An episode that ends docked ends *at* the dock, so its last odometry pose is the docked pose
    in the odometry frame, and every earlier pose can be expressed relative to it: (distance
    still to drive along the dock's axis m, lateral offset from the axis m, heading error rad).
    That is the state a classical docking stack steers by. It needs no map and no dock
    detector, only odometry over the few seconds of one episode, so it works the same on a
    real robot. The policy learns to predict it as an auxiliary target (docs/policy.md).

    odom (T, 5) -> pose (T, 3) float32, valid (T,) bool (all False unless `docked`).
    """
    t = odom.shape[0]
    finite = np.isfinite(odom[:, :3]).all(axis=1)
    if not docked or t == 0 or not finite[-1]:
        return np.zeros((t, 3), np.float32), np.zeros(t, bool)
    xf, yf, yawf = odom[-1, :3]
    c, s = np.cos(yawf), np.sin(yawf)
    dx, dy = odom[:, 0] - xf, odom[:, 1] - yf
    ahead = -(c * dx + s * dy)  # the robot drives forward into the dock: behind it is negative
    lateral = -s * dx + c * dy
    heading = np.arctan2(np.sin(odom[:, 2] - yawf), np.cos(odom[:, 2] - yawf))
    pose = np.nan_to_num(np.stack([ahead, lateral, heading], axis=1)).astype(np.float32)
    return pose, finite


def load_dataset(workspace: Path, chunk_size: int = 10, rounds: Sequence[int] | None = None,
                 paths: Sequence[Path] | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 label: str = "intent") -> PolicyDataset:
    """Decode every usable episode of a workspace (all rounds unless `rounds` is given).

    label: "intent" (the operator's command, `human_action`, where recorded) or "sent" (the
    command sent after the Arbiter's limits, `action`).

    Raises UsageError (one line) when there is nothing to train on."""
    if label not in LABELS:
        raise UsageError(f"label {label!r}: expected one of {', '.join(LABELS)}")
    if paths is None:
        store = EpisodeStore(workspace)
        if rounds is None:
            paths = store.episode_paths()
        else:
            paths = [p for r in rounds for p in store.episode_paths(r)]
    if not paths:
        raise UsageError(f"{workspace}: no recorded episodes to train on; record demonstrations "
                         "first (takeover drive --record, or the TUI)")
    images: list[np.ndarray] = []
    scans: list[np.ndarray] = []
    proprios: list[np.ndarray] = []
    chunk_actions: list[np.ndarray] = []
    chunk_masks: list[np.ndarray] = []
    modes: list[np.ndarray] = []
    episode_ids: list[np.ndarray] = []
    steps: list[np.ndarray] = []
    to_int: list[np.ndarray] = []
    dock_poses: list[np.ndarray] = []
    dock_valid: list[np.ndarray] = []
    names: list[str] = []
    rounds_of: list[int] = []
    digest_parts: list[str] = []
    shape: tuple[int, ...] | None = None
    beams: int | None = None
    skipped: list[str] = []
    for i, path in enumerate(paths):
        if progress is not None:
            progress(i, len(paths))
        try:
            ep = read_episode(path, images=True)
        except EpisodeError as e:
            skipped.append(str(e))
            continue
        if ep.image is None or ep.scan is None:
            raise UsageError(f"{path}: episode has no camera frames or no LiDAR scan; the policy "
                             "needs both")
        if shape is None:
            shape, beams = ep.image.shape[1:], ep.scan.shape[1]
        elif ep.image.shape[1:] != shape or ep.scan.shape[1] != beams:
            raise UsageError(f"{path}: sensors differ from the other episodes (frames "
                             f"{ep.image.shape[1:]} vs {shape}, {ep.scan.shape[1]} vs {beams} "
                             "beams); train on one robot configuration at a time")
        t = len(ep)
        mode = ep.action_mode.astype(np.int8)
        supervised = np.isin(mode, SUPERVISED_MODES) & np.isfinite(ep.action).all(axis=1)
        # (T, K) index of each chunk step; masked past the end.
        idx = np.arange(t)[:, None] + np.arange(chunk_size)[None, :]
        inside = idx < t
        idx_c = np.minimum(idx, t - 1)
        mask = inside & supervised[idx_c]
        labels = ep.action
        if label == "intent":
            # What the operator asked for, before the Arbiter's speed and acceleration limits:
            # a function of what the operator sees, where the sent command also depends on the
            # previous one (the acceleration limit), which a policy would learn to copy. The
            # same limits apply again when the policy drives.
            labels = np.where(np.isfinite(ep.human_action), ep.human_action, ep.action)
        acts = np.nan_to_num(labels[idx_c]).astype(np.float32)
        keep = ep.obs_valid & mask.any(axis=1)
        if not keep.any():
            continue
        ep_index = len(names)
        names.append(ep.info.key)
        rounds_of.append(ep.info.round)
        digest_parts.append(f"{ep.info.key} {ep.info.size_bytes} {t}")
        images.append(ep.image[keep])
        scans.append(ep.scan[keep].astype(np.float32))
        proprios.append(np.nan_to_num(ep.odom[keep][:, 3:5]).astype(np.float32))
        chunk_actions.append(acts[keep])
        chunk_masks.append(mask[keep])
        modes.append(mode[keep])
        episode_ids.append(np.full(int(keep.sum()), ep_index, dtype=np.int64))
        steps.append(np.flatnonzero(keep).astype(np.int64))
        to_int.append(_steps_to_next_intervention(mode)[keep])
        pose, valid = hindsight_dock_pose(ep.odom, ep.info.outcome == "success")
        dock_poses.append(pose[keep])
        dock_valid.append(valid[keep])
    if not names:
        why = f" ({len(skipped)} unreadable, first: {skipped[0]})" if skipped else ""
        raise UsageError(f"{workspace}: no episode has human-driven (demonstration or "
                         f"intervention) steps to learn from{why}")
    return PolicyDataset(
        image=torch.from_numpy(np.concatenate(images)),
        scan=torch.from_numpy(np.concatenate(scans)),
        proprio=torch.from_numpy(np.concatenate(proprios)),
        actions=torch.from_numpy(np.concatenate(chunk_actions)),
        mask=torch.from_numpy(np.concatenate(chunk_masks)),
        action_mode=torch.from_numpy(np.concatenate(modes)),
        episode=torch.from_numpy(np.concatenate(episode_ids)),
        step=torch.from_numpy(np.concatenate(steps)),
        steps_to_intervention=torch.from_numpy(np.concatenate(to_int)),
        dock_pose=torch.from_numpy(np.concatenate(dock_poses)),
        dock_pose_valid=torch.from_numpy(np.concatenate(dock_valid)),
        episodes=names, rounds=rounds_of, digest=_digest(digest_parts),
    )


@dataclass(frozen=True)
class AugmentConfig:
    """Image augmentation, applied per sample on the batch (uint8 in, uint8 out)."""

    brightness: float = 0.2  # multiplicative, +- fraction
    contrast: float = 0.2
    saturation: float = 0.2
    shift_px: int = 0  # random translation (replicate padding); see docs/policy.md on why 0
    # Per-channel gains (+- fraction): a colour cast, as from another room's walls and light.
    channel_gain: float = 0.3
    # Probability of permuting the colour channels: hues the training rooms never had.
    channel_shuffle: float = 0.5
    noise_std: float = 4.0  # additive pixel noise, in 0..255 units
    # Camera randomisation (`augment = "camera"`): the camera families of the robustness suite
    # (sim/perturb.py) drawn on training images, each on a sample with probability `camera_p`
    # at a strength drawn uniformly up to its maximum here (severity 1 of the family).
    camera_p: float = 0.0
    exposure_stops: float = 0.0  # exposure off by up to +- this many stops, clipped
    blur_sigma_px: float = 0.0  # Gaussian blur up to this sigma (defocus, motion)
    sensor_noise_std: float = 0.0  # Gaussian sensor noise up to this sigma (0..255 units)
    # A patch of up to this fraction of the width and of the height painted one colour of the
    # image itself: the dock or anything else partly covered.
    erase_fraction: float = 0.0

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(brightness=0.0, contrast=0.0, saturation=0.0, shift_px=0, channel_gain=0.0,
                   channel_shuffle=0.0, noise_std=0.0)

    @classmethod
    def camera(cls) -> AugmentConfig:
        """The default jitter plus camera randomisation up to the suite's severity 1: exposure,
        blur and sensor noise, each on a quarter of the samples. Measured (docs/evaluation.md):
        on half of the samples and with covered patches it lifted the camera rows too, but cost
        30-41 points of nominal success on two of three demonstration sets; this milder draw
        costs 0-5."""
        return cls(camera_p=0.25, exposure_stops=2.0, blur_sigma_px=2.0, sensor_noise_std=25.5)

    @classmethod
    def named(cls, name: str) -> AugmentConfig:
        """`augment` of [train] / --augment: on | off | camera."""
        presets = {"on": cls(), "off": cls.off(), "camera": cls.camera()}
        if name not in presets:
            raise ValueError(f"augment {name!r}: use one of {', '.join(presets)}")
        return presets[name]

    @property
    def active(self) -> bool:
        return (self.brightness > 0 or self.contrast > 0 or self.saturation > 0
                or self.channel_gain > 0 or self.channel_shuffle > 0 or self.noise_std > 0
                or self.shift_px > 0 or self.camera_active)

    @property
    def camera_active(self) -> bool:
        return self.camera_p > 0 and (self.exposure_stops > 0 or self.blur_sigma_px > 0
                                      or self.sensor_noise_std > 0 or self.erase_fraction > 0)


def augment_images(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator
                   ) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> augmented (B, H, W, 3) uint8. Parameters come from `generator`, so
    every process of a distributed run can draw the same ones for the same global batch."""
    if not cfg.active:
        return images
    b = images.shape[0]
    x = images.to(torch.float32)

    def factor(amount: float) -> torch.Tensor:
        return 1.0 + (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * amount

    if cfg.camera_active:
        x = _erase_patches(x, cfg, generator)  # on the scene, before the camera sees it
    if cfg.brightness > 0:
        x = x * factor(cfg.brightness)
    if cfg.contrast > 0:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * factor(cfg.contrast) + mean
    if cfg.saturation > 0:
        grey = x.mean(dim=3, keepdim=True)
        x = (x - grey) * factor(cfg.saturation) + grey
    if cfg.channel_gain > 0:
        x = x * (1.0 + (torch.rand(b, 1, 1, 3, generator=generator) * 2 - 1) * cfg.channel_gain)
    if cfg.channel_shuffle > 0:
        perms = torch.argsort(torch.rand(b, 3, generator=generator), dim=1)  # (B, 3)
        shuffle = torch.rand(b, generator=generator) < cfg.channel_shuffle
        perms[~shuffle] = torch.arange(3)
        x = torch.gather(x, 3, perms[:, None, None, :].expand_as(x))
    if cfg.camera_active:  # exposure, optics, then the sensor's noise: as a camera does
        x, sensor_std = _camera_effects(x, cfg, generator)
        std = torch.sqrt(sensor_std**2 + cfg.noise_std**2)  # two Gaussians: one draw
        x = x + torch.randn(x.shape, generator=generator) * std[:, None, None, None]
    elif cfg.noise_std > 0:
        x = x + torch.randn(x.shape, generator=generator) * cfg.noise_std
    if cfg.shift_px > 0:
        pad = cfg.shift_px
        h, w = x.shape[1:3]
        padded = torch.nn.functional.pad(x.permute(0, 3, 1, 2), (pad, pad, pad, pad),
                                         mode="replicate")
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        rows = (dy[:, None] + torch.arange(h)[None, :])  # (B, H)
        cols = (dx[:, None] + torch.arange(w)[None, :])  # (B, W)
        bi = torch.arange(b)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]
    return x.clamp_(0, 255).round_().to(torch.uint8)


def _chosen(b: int, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Which samples of the batch get one camera effect: (B,) bool, each with `camera_p`."""
    return torch.rand(b, generator=generator) < cfg.camera_p


def _erase_patches(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator
                   ) -> torch.Tensor:
    """A rectangle of up to `erase_fraction` of each side, anywhere, painted the colour of one
    pixel of the same image (a wall-, floor- or dock-coloured cover)."""
    b, h, w, _ = x.shape
    chosen = _chosen(b, cfg, generator)
    if cfg.erase_fraction <= 0:
        return x
    sizes = torch.rand(b, 2, generator=generator) * cfg.erase_fraction
    corners = torch.rand(b, 2, generator=generator)
    source = torch.rand(b, 2, generator=generator)
    if not bool(chosen.any()):
        return x
    x = x.clone()
    for i in torch.nonzero(chosen).flatten().tolist():
        ph, pw = max(1, int(sizes[i, 0] * h)), max(1, int(sizes[i, 1] * w))
        top, left = int(corners[i, 0] * (h - ph + 1)), int(corners[i, 1] * (w - pw + 1))
        colour = x[i, int(source[i, 0] * (h - 1)), int(source[i, 1] * (w - 1))].clone()
        x[i, top:top + ph, left:left + pw] = colour
    return x


def _camera_effects(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exposure (clipped as a sensor clips) and Gaussian blur, each drawn per sample with
    probability `camera_p` at a strength uniform up to the configured maximum; returns the
    image and each sample's sensor-noise sigma (0 where not drawn), which the caller adds with
    its own pixel noise in one draw. Every draw is made for every sample, so the generator's
    stream does not depend on the images."""
    b = x.shape[0]
    exposure = _chosen(b, cfg, generator)
    stops = (torch.rand(b, generator=generator) * 2 - 1) * cfg.exposure_stops
    blur = _chosen(b, cfg, generator)
    sigmas = torch.rand(b, generator=generator) * cfg.blur_sigma_px
    noise = _chosen(b, cfg, generator)
    noise_std = torch.rand(b, generator=generator) * cfg.sensor_noise_std
    gains = torch.where(exposure, torch.exp2(stops), torch.ones(b))
    x = (x * gains[:, None, None, None]).clamp(0, 255)
    blurred = torch.nonzero(blur & (sigmas >= 0.3)).flatten()  # below 0.3 px: the identity
    if cfg.blur_sigma_px > 0 and blurred.numel():
        x = x.clone()
        radius = math.ceil(3 * cfg.blur_sigma_px)  # the widest sigma's: a sample's blur
        x[blurred] = gaussian_blur(x[blurred], sigmas[blurred], radius)  # ignores its batch
    return x, torch.where(noise, noise_std, torch.zeros(b))


def gaussian_blur(images: torch.Tensor, sigmas_px: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, H, W, C) float, (N,) sigmas -> each image blurred by its own separable Gaussian of
    2 * radius + 1 taps, edges replicated: one grouped convolution per axis for the batch."""
    n, _, _, c = images.shape
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernels = torch.exp(-0.5 * (taps[None, :] / sigmas_px[:, None]) ** 2)
    kernels = (kernels / kernels.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)
    planes = images.permute(0, 3, 1, 2).reshape(1, n * c, *images.shape[1:3])
    planes = torch.nn.functional.pad(planes, (radius, radius, radius, radius), mode="replicate")
    planes = torch.nn.functional.conv2d(planes, kernels.view(n * c, 1, 1, -1), groups=n * c)
    planes = torch.nn.functional.conv2d(planes, kernels.view(n * c, 1, -1, 1), groups=n * c)
    return planes.reshape(n, c, *images.shape[1:3]).permute(0, 2, 3, 1)


def draw_epoch(n: int, weights: torch.Tensor | None, num_draws: int, seed: int, epoch: int
               ) -> torch.Tensor:
    """The sample order of one epoch, identical in every process (seeded by seed and epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if weights is None:
        return torch.randperm(n, generator=g)[:num_draws]
    return torch.multinomial(weights, num_draws, replacement=True, generator=g)


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    return max(1, math.ceil(num_samples / batch_size))
