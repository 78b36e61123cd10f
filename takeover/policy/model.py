"""The docking policy network: timm backbone + LiDAR encoder + proprioception -> action chunk.

    image   uint8 (B, H, W, 3) ─> /255, mean/std, NCHW ─> timm backbone features (B, C, h, w)
                                 ─> 1x1 conv to `image_channels`, pooled to a 3x3 grid, flattened
    scan    float32 (B, N) m    ─> log range (NaN = no return -> max range) + no-return flag
                                 ─> MLP
    proprio float32 (B, 2)      ─> (v, w) standardised with the training data's statistics
    concat ─> MLP head ─> (B, K, 2) standardised actions ─> x std + mean ─> commands (m/s, rad/s)
           └> with `heads` = H > 1: H such heads (an ensemble sharing everything before them)
              ─> (B, H, K, 2); the actions are their mean, and `novelty` (B, K) their spread
    `attention` (B, h, w), 0..1: where in the frame the image features the head reads come from
              (`attention_map`; the feature map's resolution, the consumer upsamples)

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
    # Export a spatial map (`attention`, B x h x w, 0..1) of where in the frame the policy looks,
    # from the same forward pass: for a CNN the projected feature map weighted by how strongly
    # the head's first layer reads each feature (`feature_importance_map`); for a ViT the last
    # block's attention (`vit_tokens_and_attention`). No weights of its own: an old checkpoint
    # re-exported gains the output, and False exports the outputs of before it.
    attention_map: bool = True

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


# timm model names whose img_size follows the camera (backbone_kwargs).
VIT_PREFIXES = ("vit_", "deit_", "deit3_")


def is_vit(backbone: nn.Module) -> bool:
    """A timm VisionTransformer (a token sequence with a patch grid, not a feature map)."""
    return hasattr(backbone, "patch_embed") and hasattr(backbone, "blocks") \
        and hasattr(backbone, "num_prefix_tokens")


def backbone_kwargs(name: str, args: dict[str, Any] | None, image_hw: tuple[int, int]
                    ) -> dict[str, Any]:
    """`args`, plus a ViT's `img_size` set to the camera's frame size unless given: timm's ViTs
    are built for 224x224 and their position embedding fixes the patch grid."""
    kwargs = dict(args or {})
    if name.split(".")[0].startswith(VIT_PREFIXES) and "img_size" not in kwargs:
        kwargs["img_size"] = image_hw
    return kwargs


class SpatialImageEncoder(nn.Module):
    """Backbone feature map -> 1x1 projection -> grid x grid cells -> flat vector.

    A ViT's patch tokens are laid back out on the patch grid (B, D, h, w) and take the same
    path: a 96x96 frame is a 6x6 grid with 16-pixel patches, 12x12 with 8-pixel ones."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.backbone = create_backbone(
            config.backbone, config.pretrained,
            backbone_kwargs(config.backbone, config.backbone_args,
                            (config.image_height, config.image_width)))
        self.vit = is_vit(self.backbone)
        with torch.no_grad():
            probe = torch.zeros(1, 3, config.image_height, config.image_width)
            _, channels, h, w = self._features(probe).shape
        self.map_size = (int(h), int(w))  # the attention map's resolution
        self.project = nn.Sequential(
            nn.Conv2d(channels, config.image_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(config.image_channels),
            nn.ReLU(inplace=True),
        )
        grid = config.image_grid
        if h % grid == 0 and w % grid == 0:
            # A fixed kernel, not AdaptiveAvgPool2d: the same numbers, and it exports even where
            # the tracer loses the map's static size (a ViT's tokens reshaped onto their grid).
            self.pool: nn.Module = nn.AvgPool2d((h // grid, w // grid))
            cells = grid * grid
        else:  # e.g. a 2x2 map from small frames: keep it as it is
            self.pool = nn.Identity()
            cells = h * w
        self.out_features = config.image_channels * cells

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 3, H, W) normalised float -> (B, out_features)
        return self.pool(self.project(self._features(x))).flatten(1)

    def forward_with_maps(self, x: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(B, 3, H, W) -> the flat features (B, out_features), the projected map they are
        pooled from (B, image_channels, h, w), and for a ViT its last block's attention map
        (B, h, w) (None for a CNN)."""
        attention = None
        if self.vit:
            tokens, attention = vit_tokens_and_attention(self.backbone, x)
            features = self._grid(tokens)
        else:
            features = self._features(x)
        projected = self.project(features)
        return self.pool(projected).flatten(1), projected, attention

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        # timm models share forward_features (B, C, h, w); nn.Module's typing does not know it.
        features: torch.Tensor = self.backbone.forward_features(x)  # type: ignore[operator]
        return self._grid(features) if self.vit else features

    def _grid(self, tokens: torch.Tensor) -> torch.Tensor:
        # ViT tokens (B, prefix + h*w, D) -> the patch tokens on their grid (B, D, h, w). Sizes
        # as Python ints, not traced shapes: the exporter's pooling needs a static map size.
        vit: Any = self.backbone
        h, w = (int(n) for n in vit.patch_embed.grid_size)
        patches = tokens[:, int(vit.num_prefix_tokens):]
        return patches.transpose(1, 2).reshape(-1, int(vit.embed_dim), h, w)


def vit_tokens_and_attention(vit: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A timm VisionTransformer's forward_features (B, tokens, D), and where its last block
    looks: the attention each patch receives from the patch queries, averaged over the heads
    and those queries, on the patch grid (B, h, w), scaled to 0..1.

    Patch queries, not the class token's: this encoder reads the patch tokens (laid out on
    their grid) and never the class token, so the class token's last attention row is computed
    and thrown away; the patch tokens' rows are the mixing that reaches the head. The last
    block's q and k are computed once more for it (one extra qkv projection of one block; the
    block itself runs as timm wrote it, fused attention included)."""
    v: Any = vit
    t = v.patch_embed(x)
    t = v.norm_pre(v.patch_drop(v._pos_embed(t)))
    for block in v.blocks[:-1]:
        t = block(t)
    last = v.blocks[-1]
    attn = last.attn
    b, n, d = t.shape
    qkv = attn.qkv(last.norm1(t)).reshape(b, n, 3, attn.num_heads, d // attn.num_heads)
    qkv = qkv.permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    weights = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, heads, N, N)
    prefix = int(v.num_prefix_tokens)
    received = weights[:, :, prefix:, prefix:].mean(dim=(1, 2))  # (B, patches)
    gh, gw = v.patch_embed.grid_size
    tokens = v.norm(last(t))
    return tokens, unit_scale(received.reshape(b, int(gh), int(gw)))


def unit_scale(maps: torch.Tensor) -> torch.Tensor:
    """(B, h, w) -> each map stretched to 0..1 (its least attended cell 0, its most attended 1;
    a flat map is all 0). Relative, not absolute: an overlay needs the contrast within one
    frame, and a raw scale means nothing across backbones."""
    flat = maps.flatten(1)
    low = flat.amin(dim=1).view(-1, 1, 1)
    high = flat.amax(dim=1).view(-1, 1, 1)
    return (maps - low) / (high - low + 1e-6)


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
        fused, _ = self.encode(image_u8, scan_m, proprio)
        actions = self.chunks(fused, members)
        if not with_pose:
            return actions
        return actions, (self.pose(fused) if self.pose is not None else None)

    def encode(self, image_u8: torch.Tensor, scan_m: torch.Tensor, proprio: torch.Tensor,
               with_attention: bool = False, importance: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The fused features (B, F) the heads read and, with_attention, the attention map
        (B, h, w) in 0..1 (`attention_map`), from the same pass. `importance`: a CNN map's
        weighting computed beforehand (`feature_importance`)."""
        x = self.preprocess_image(image_u8)
        attention = None
        if with_attention:
            img, projected, vit_map = self.image.forward_with_maps(x)
            attention = vit_map if vit_map is not None else \
                self.feature_importance_map(projected, importance)
        else:
            img = self.image(x)
        lidar = self.lidar(scan_m)
        prop = (proprio - self.proprio_mean) / self.proprio_std
        if not self.config.use_proprio:
            prop = prop * 0.0
        elif self.training and self.config.proprio_dropout > 0:
            keep = torch.rand(prop.shape[0], 1, device=prop.device) >= self.config.proprio_dropout
            prop = prop * keep.to(prop.dtype)
        return torch.cat([img, lidar, prop.to(img.dtype)], dim=1).to(img.dtype), attention

    def chunks(self, fused: torch.Tensor, members: bool = False) -> torch.Tensor:
        """Fused features -> standardised actions (B, K, 2), the members' mean; members: every
        member's chunk (B, heads, K, 2)."""
        k = self.config.chunk_size
        if members or self.extra_heads:
            chunks = torch.stack([h(fused) for h in (self.head, *self.extra_heads)], dim=1)
            chunks = chunks.view(-1, self.heads, k, 2)  # (B, heads, K, 2)
            return chunks if members else chunks.mean(dim=1)
        # one head: exactly the graph of the model before the ensemble
        return self.head(fused).view(-1, k, 2)

    def feature_importance_map(self, projected: torch.Tensor,
                               weight: torch.Tensor | None = None) -> torch.Tensor:
        """Where the image features the heads read come from: (B, C, h, w) projected map (after
        its ReLU, so >= 0) -> (B, h, w) in 0..1.

        Each projected activation is weighted by how strongly the heads' first layers read the
        pooled feature it flows into (`feature_importance`) and the channels are summed: a
        gradient-free class activation map (Zhou et al. 2016, with the first layer's weights in
        place of a linear classifier's). Not the channel mean of the backbone's activations:
        that shows where the backbone fires, including channels the 1x1 projection and the head
        ignore; this shows what reaches the actions, for one multiply and sum. `weight`: that
        weighting computed beforehand (the exported graph holds it as a constant)."""
        if weight is None:
            weight = self.feature_importance()
        return unit_scale((projected * weight.to(projected.dtype)).sum(dim=1))

    def feature_importance(self) -> torch.Tensor:
        """(C, h, w): per projected channel and map cell, the L2 norm of the first-layer weight
        column that reads it (its pooled cell's), averaged over the ensemble's members."""
        c = self.config.image_channels
        h, w = self.image.map_size
        grid_h, grid_w = (h, w) if isinstance(self.image.pool, nn.Identity) else \
            (self.config.image_grid, self.config.image_grid)
        image_features = c * grid_h * grid_w
        firsts: list[nn.Linear] = [head[0] for head in (self.head, *self.extra_heads)]
        norms = torch.stack([first.weight[:, :image_features].norm(dim=0)
                             for first in firsts]).mean(dim=0)
        weight = norms.view(c, grid_h, grid_w)
        if (grid_h, grid_w) != (h, w):  # each pooled cell covers a block of the map
            weight = weight.repeat_interleave(h // grid_h, dim=1).repeat_interleave(
                w // grid_w, dim=2)
        return weight

    def denormalize(self, actions: torch.Tensor) -> torch.Tensor:
        return actions.float() * self.action_std + self.action_mean

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions - self.action_mean) / self.action_std

    def spec(self, model_id: str = "", data_digest: str = "") -> ModelSpec:
        c = self.config
        return ModelSpec(image_height=c.image_height, image_width=c.image_width,
                         scan_beams=c.scan_beams, chunk_size=c.chunk_size, rate_hz=c.rate_hz,
                         model_id=model_id, backbone=c.backbone, data_digest=data_digest,
                         heads=self.heads,
                         attention_height=self.image.map_size[0] if c.attention_map else 0,
                         attention_width=self.image.map_size[1] if c.attention_map else 0)


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
    ensemble (heads > 1) also `novelty` (B, K), and with `attention_map` also `attention`
    (B, h, w), all from the same forward pass, in that order (spec.output_shapes)."""

    importance: torch.Tensor

    def __init__(self, policy: DockingPolicy) -> None:
        super().__init__()
        self.policy = policy
        # The CNN map's weighting, computed once from the weights as they are now: in the graph
        # a constant. Computed from the weights inside the graph, onnxruntime did not fold it
        # and the slices and norms of the five heads' first layers took 5 ms of every inference.
        with torch.no_grad():
            self.register_buffer("importance", policy.feature_importance().detach().clone())

    def forward(self, image: torch.Tensor, scan: torch.Tensor, proprio: torch.Tensor
                ) -> Any:
        p = self.policy
        fused, attention = p.encode(image, scan, proprio, with_attention=p.config.attention_map,
                                    importance=self.importance)
        if p.heads == 1:
            outputs: tuple[torch.Tensor, ...] = (p.denormalize(p.chunks(fused)),)
        else:
            members = p.chunks(fused, members=True)
            outputs = (p.denormalize(members.mean(dim=1)), novelty(members.float()))
        if attention is not None:
            outputs = (*outputs, attention.float())
        return outputs[0] if len(outputs) == 1 else outputs
