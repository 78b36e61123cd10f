"""The training configuration of a workspace: defaults, then takeover.toml [train], then flags.

`takeover train` and `takeover dagger train` both start here, so a key set in the workspace's
takeover.toml means the same to both.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from takeover.config import TrainSettings
from takeover.errors import UsageError
from takeover.policy.dataset import AugmentConfig
from takeover.policy.model import ModelConfig
from takeover.policy.train import TrainConfig


def apply_overrides(model: ModelConfig, train: TrainConfig, overrides: dict[str, Any],
                    source: str) -> tuple[ModelConfig, TrainConfig]:
    """Set each non-None key on whichever of the two configs has it ("augment" takes a bool or
    a preset name: on, off, camera).
    An unknown key is a UsageError naming `source`."""
    model_keys = {f.name for f in fields(ModelConfig)}
    train_keys = {f.name for f in fields(TrainConfig)}
    model_set: dict[str, Any] = {}
    train_set: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "augment" and isinstance(value, bool | str):
            name = ("on" if value else "off") if isinstance(value, bool) else value
            try:
                train_set[key] = AugmentConfig.named(name)
            except ValueError as e:
                raise UsageError(f"{source}: {e}") from None
        elif key in model_keys:
            model_set[key] = value
        elif key in train_keys:
            train_set[key] = value
        else:
            raise UsageError(f"{source}: unknown setting {key!r}; known: "
                             f"{', '.join(sorted((model_keys | train_keys) - {'augment'}))}, augment")
    if "backbone" in model_set and "backbone_args" not in model_set:
        model_set["backbone_args"] = {}  # another backbone: the default's narrowing does not apply
    try:
        return replace(model, **model_set), replace(train, **train_set)
    except TypeError as e:
        raise UsageError(f"{source}: {e}") from None


# A warm-started retrain (`takeover dagger train`) fine-tunes a model that already knows the
# task. Epochs ([train] warm_epochs): a retrain on ~20k frames must stay under 5 minutes on two
# cores. Peak learning rate ([train] warm_lr): a quarter of the from-scratch peak, and the
# interventions weighted up (IWR) unless [train] weighting says otherwise. The three were
# compared in `bench dagger` (docs/dagger.md, "Retraining recipe").
DEFAULT_WARM_EPOCHS = 4
DEFAULT_WARM_LR = 5e-4
DEFAULT_WARM_WEIGHTING = "iwr"

# [train] dagger_retrain = "auto" (the default): a DAgger retrain from new weights while the
# workspace is small, warm-started beyond. From scratch, every DAgger model on demonstration set 1
# docked far more than its warm-started counterpart at the same labels (53/71/78/86 against
# 9/22/35/30 of 100 for r002-r005; docs/dagger.md, "Retraining from scratch"), but it costs
# `epochs` over all the data instead of `warm_epochs`. So scratch while epochs x labels stay
# within the warm retrain's budget: warm_epochs (4) over 20k frames, under 5 minutes on two cores.
WARM_BUDGET_FRAMES = 20_000


def retrain_from_scratch(choice: str | None, labels: int, epochs: int,
                         warm_epochs_: int) -> bool:
    """Whether `dagger train` trains the next model from new weights: [train] dagger_retrain
    (None: auto), the workspace's expert labels, and the two epoch counts that would apply."""
    if choice in ("warm", "scratch"):
        return choice == "scratch"
    return epochs * labels <= warm_epochs_ * WARM_BUDGET_FRAMES


WARM_ONLY = ("warm_epochs", "warm_lr")  # [train] keys read only by a warm-started retrain
DAGGER_ONLY = ("dagger_retrain",)  # read by `takeover dagger train` to choose warm or scratch


def workspace_training_configs(settings: TrainSettings) -> tuple[ModelConfig, TrainConfig]:
    """The defaults with a workspace's [train] section applied (warm_epochs and warm_lr aside:
    `warm_start_config` applies them; dagger_retrain is `dagger train`'s own)."""
    values = {f.name: getattr(settings, f.name) for f in fields(TrainSettings)
              if f.name not in WARM_ONLY + DAGGER_ONLY}
    return apply_overrides(ModelConfig(), TrainConfig(), values, "takeover.toml [train]")


def warm_epochs(settings: TrainSettings) -> int:
    """Epochs of a warm-started retrain: [train] warm_epochs, else DEFAULT_WARM_EPOCHS."""
    return settings.warm_epochs or DEFAULT_WARM_EPOCHS


def warm_start_config(settings: TrainSettings, base: TrainConfig) -> TrainConfig:
    """`base` for a warm-started retrain: [train] warm_epochs epochs, a peak learning rate of
    [train] warm_lr and [train] weighting, each defaulting to the DEFAULT_WARM_* above."""
    return replace(base, epochs=warm_epochs(settings), lr=settings.warm_lr or DEFAULT_WARM_LR,
                   weighting=settings.weighting or DEFAULT_WARM_WEIGHTING)
