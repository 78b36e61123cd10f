"""The docking policy network: timm backbone + LiDAR encoder + proprioception -> action chunk.

    image   uint8 (B, H, W, 3) ─> /255, mean/std, NCHW ─> timm backbone features (B, C, h, w)
                                 ─> 1x1 conv to `image_channels`, pooled to a 3x3 grid, flattened
    scan    float32 (B, N) m    ─> log range (NaN = no return -> max range) + no-return flag
                                 ─> MLP
    proprio float32 (B, 2)      ─> (v, w) standardised with the training data's statistics
    concat ─> MLP head ─> (B, K, 2) standardised actions ─> x std + mean ─> commands (m/s, rad/s)
           └> with `heads` = H > 1: H such heads (an ensemble sharing everything before them)
              ─> (B, H, K, 2); the actions are their mean, and `novelty` (B, K) their spread

The image features keep a coarse spatial grid instead of a global average: the lateral offset
from the dock is *where* the marker and the dock sit in the frame, which global pooling throws
away. Every normalisation statistic is a buffer, so it is saved with the weights and exported
inside the ONNX graph; the runtime feeds raw sensor values.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import timm
import torch
from torch import nn

from takeover.errors import UsageError
from takeover.policy.spec import ModelSpec

LIDAR_MAX_RANGE_M = 8.0
LIDAR_MIN_RANGE_M = 0.05
DEFAULT_BACKBONE_ARGS: dict[str, Any] = {"channels": [16, 32, 64, 128], "stem_width": 8}
# The auxiliary dock pose (ahead m, lateral m, heading rad) is learned divided by these.
POSE_SCALE = (1.0, 0.3, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. Chosen in `takeover.toml` under [policy] (see docs/policy.md)."""

    backbone: str = "resnet10t"
    # Extra keyword arguments for timm.create_model; the default narrows resnet10t to a quarter
    # of its width (the comparison in docs/policy.md).
    backbone_args: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_BACKBONE_ARGS))
    pretrained: bool = False  # only with weights already in the local timm/HF cache
    image_height: int = 96
    image_width: int = 96
    scan_beams: int = 180
    chunk_size: int = 10
    rate_hz: float = 20.0
    image_channels: int = 32  # after the 1x1 projection of the backbone's feature map
    image_grid: int = 3  # the projected map is pooled to grid x grid cells, then flattened
    lidar_hidden: int = 256
    lidar_features: int = 128
    head_hidden: int = 512
    dropout: float = 0.0
    # Proprioception (measured v, w) as an input. The current velocity predicts the next command
    # almost perfectly in demonstrations, so a clone leans on it and keeps doing whatever it is
    # doing (the copycat problem of behavioural cloning). Off: the input is kept for the
    # interface but zeroed; dropout: zeroed for this fraction of training samples.
    use_proprio: bool = True
    proprio_dropout: float = 0.0
    # An auxiliary head that predicts the dock's pose relative to the robot (dataset.py
    # `hindsight_dock_pose`); trained alongside the actions, not exported.
    pose_head: bool = True
    # Ensemble members of the chunk head ("a policy that knows when it doesn't know"): each
    # predicts the whole chunk from the shared features, the action is their mean and their
    # disagreement is exported as `novelty`. 1 is the single-head model (one output). Members
    # differ by their random initialisation (train.py: each gets the full loss; bootstrap
    # masks are optional, TrainConfig.head_bootstrap). 5, as ThriftyDAgger's ensemble: with 5
    # members a standard deviation is a usable estimate, and on this model they cost about
    # 0.2 ms of inference and no measurable training speed (docs/policy.md, "Uncertainty").
    heads: int = 5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        """A saved configuration; one written before the ensemble (no `heads`) had one head."""
        known = {f.name for f in fields(cls)}
        return cls(**{"heads": 1, **{k: v for k, v in raw.items() if k in known}})


def create_backbone(name: str, pretrained: bool = False, args: dict[str, Any] | None = None
                    ) -> nn.Module:
    """A timm model without its classifier, exportable (no custom autograd/ops)."""
    kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                              for k, v in (args or {}).items()}
    if pretrained:
        # Nothing may download at run time: weights must already be in the local cache.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        backbone: nn.Module = timm.create_model(
            name, pretrained=pretrained, num_classes=0, global_pool="", exportable=True, **kwargs)
        return backbone
    except RuntimeError as e:  # timm: "Unknown model (...)"
        raise UsageError(f"backbone {name!r}: {e}") from None
    except TypeError as e:  # backbone_args the model does not take
        raise UsageError(f"backbone {name!r} does not take arguments {kwargs}: {e}") from None


class SpatialImageEncoder(nn.Module):
    """Backbone feature map -> 1x1 projection -> grid x grid cells -> flat vector."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.backbone = create_backbone(config.backbone, config.pretrained, config.backbone_args)
        with torch.no_grad():
            probe = torch.zeros(1, 3, config.image_height, config.image_width)
            _, channels, h, w = self._features(probe).shape
        self.project = nn.Sequential(
            nn.Conv2d(channels, config.image_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(config.image_channels),
            nn.ReLU(inplace=True),
        )
        grid = config.image_grid
        if h % grid == 0 and w % grid == 0:
            self.pool: nn.Module = nn.AdaptiveAvgPool2d(grid)  # exports as a plain AveragePool
            cells = grid * grid
        else:  # e.g. a 2x2 map from small frames: keep it as it is
            self.pool = nn.Identity()
            cells = h * w
        self.out_features = config.image_channels * cells

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 3, H, W) normalised float -> (B, out_features)
        return self.pool(self.project(self._features(x))).flatten(1)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        # timm models share forward_features (B, C, h, w); nn.Module's typing does not know it.
        features: torch.Tensor = self.backbone.forward_features(x)  # type: ignore[operator]
        return features


class LidarEncoder(nn.Module):
    """Ranges (B, N) in metres, NaN = no return -> (B, features).

    Log range gives equal relative resolution near and far: the last centimetres to the dock
    matter as much as the metres across the room."""

    def __init__(self, beams: int, hidden: int, features: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * beams, hidden), nn.LayerNorm(hidden), nn.GELU(),
            nn.Linear(hidden, features), nn.GELU(),
        )

    def forward(self, scan_m: torch.Tensor) -> torch.Tensor:
        no_return = torch.isnan(scan_m)
        ranges = torch.where(no_return, torch.full_like(scan_m, LIDAR_MAX_RANGE_M), scan_m)
        ranges = ranges.clamp(LIDAR_MIN_RANGE_M, LIDAR_MAX_RANGE_M)
        log_range = torch.log(ranges) - math.log(1.0)  # 0 at 1 m, about ±2 over the range
        return self.net(torch.cat([log_range, no_return.to(scan_m.dtype)], dim=1))


class DockingPolicy(nn.Module):
    """Raw sensors in, a chunk of K standardised actions out (see the module docstring)."""

    image_mean: torch.Tensor
    image_std: torch.Tensor
    proprio_mean: torch.Tensor
    proprio_std: torch.Tensor
    action_mean: torch.Tensor
    action_std: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.image = SpatialImageEncoder(config)
        self.lidar = LidarEncoder(config.scan_beams, config.lidar_hidden, config.lidar_features)
        if config.heads < 1:
            raise UsageError(f"heads {config.heads}: the chunk head needs at least one member")
        fused = self.image.out_features + config.lidar_features + 2
        self.head = self._chunk_head(fused)
        self.pose = nn.Sequential(nn.Linear(fused, 128), nn.GELU(), nn.Linear(128, 3)) \
            if config.pose_head else None
        # Statistics from the training data (set_normalization); saved with the weights.
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("proprio_mean", torch.zeros(2))
        self.register_buffer("proprio_std", torch.ones(2))
        self.register_buffer("action_mean", torch.zeros(2))
        self.register_buffer("action_std", torch.ones(2))
        # The other ensemble members, made last so that a one-head model draws exactly the
        # initial weights (and has exactly the state dict) of the model before the ensemble.
        self.extra_heads = nn.ModuleList(self._chunk_head(fused) for _ in range(config.heads - 1))

    def _chunk_head(self, fused: int) -> nn.Sequential:
        c = self.config
        return nn.Sequential(
            nn.Linear(fused, c.head_hidden), nn.LayerNorm(c.head_hidden), nn.GELU(),
            nn.Dropout(c.dropout),
            nn.Linear(c.head_hidden, c.head_hidden), nn.GELU(),
            nn.Linear(c.head_hidden, c.chunk_size * 2),
        )

    @property
    def heads(self) -> int:
        return 1 + len(self.extra_heads)

    def set_normalization(self, proprio_mean: torch.Tensor, proprio_std: torch.Tensor,
                          action_mean: torch.Tensor, action_std: torch.Tensor) -> None:
        floor = 1e-3  # a constant column (e.g. v always 0 in a test) must not divide by zero
        self.proprio_mean.copy_(proprio_mean)
        self.proprio_std.copy_(proprio_std.clamp_min(floor))
        self.action_mean.copy_(action_mean)
        self.action_std.copy_(action_std.clamp_min(floor))

    def preprocess_image(self, image_u8: torch.Tensor) -> torch.Tensor:
        # (B, H, W, 3) uint8 -> (B, 3, H, W) float, standardised
        x = image_u8.permute(0, 3, 1, 2).to(torch.float32)
        return (x - self.image_mean) / self.image_std

    def forward(self, image_u8: torch.Tensor, scan_m: torch.Tensor, proprio: torch.Tensor,
                with_pose: bool = False, members: bool = False) -> Any:
        """(B, H, W, 3) uint8, (B, N) m, (B, 2) -> standardised actions (B, K, 2), the mean over
        the ensemble's members; members: every member's chunk instead, (B, heads, K, 2);
        with_pose: (that, dock pose (B, 3) scaled by POSE_SCALE, or None without a pose head)."""
        x = self.preprocess_image(image_u8)
        img = self.image(x)
        lidar = self.lidar(scan_m)
        prop = (proprio - self.proprio_mean) / self.proprio_std
        if not self.config.use_proprio:
            prop = prop * 0.0
        elif self.training and self.config.proprio_dropout > 0:
            keep = torch.rand(prop.shape[0], 1, device=prop.device) >= self.config.proprio_dropout
            prop = prop * keep.to(prop.dtype)
        fused = torch.cat([img, lidar, prop.to(img.dtype)], dim=1).to(img.dtype)
        k = self.config.chunk_size
        if members or self.extra_heads:
            chunks = torch.stack([h(fused) for h in (self.head, *self.extra_heads)], dim=1)
            chunks = chunks.view(-1, self.heads, k, 2)  # (B, heads, K, 2)
            actions = chunks if members else chunks.mean(dim=1)
        else:  # one head: exactly the graph of the model before the ensemble
            actions = self.head(fused).view(-1, k, 2)
        if not with_pose:
            return actions
        return actions, (self.pose(fused) if self.pose is not None else None)

    def denormalize(self, actions: torch.Tensor) -> torch.Tensor:
        return actions.float() * self.action_std + self.action_mean

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions - self.action_mean) / self.action_std

    def spec(self, model_id: str = "", data_digest: str = "") -> ModelSpec:
        c = self.config
        return ModelSpec(image_height=c.image_height, image_width=c.image_width,
                         scan_beams=c.scan_beams, chunk_size=c.chunk_size, rate_hz=c.rate_hz,
                         model_id=model_id, backbone=c.backbone, data_digest=data_digest,
                         heads=self.heads)


def novelty(members: torch.Tensor) -> torch.Tensor:
    """How much the ensemble disagrees: (B, heads, K, 2) standardised chunks -> (B, K), per chunk
    step the standard deviation across members (population, over these members), averaged over
    v and w. In standardised action units, so v and w weigh alike and a figure means the same
    for every model: 1.0 is a disagreement as wide as the whole spread of the demonstrations.
    Written out (not torch.std) so it exports as plain ReduceMean/Sqrt."""
    dev = members - members.mean(dim=1, keepdim=True)
    return (dev * dev).mean(dim=1).sqrt().mean(dim=-1)


class PhysicalPolicy(nn.Module):
    """The exported graph: raw sensors in, commands in m/s and rad/s out (B, K, 2); with an
    ensemble (heads > 1) also `novelty` (B, K), from the same forward pass."""

    def __init__(self, policy: DockingPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, image: torch.Tensor, scan: torch.Tensor, proprio: torch.Tensor
                ) -> Any:
        if self.policy.heads == 1:
            return self.policy.denormalize(self.policy(image, scan, proprio))
        members = self.policy(image, scan, proprio, members=True)
        return self.policy.denormalize(members.mean(dim=1)), novelty(members.float())
