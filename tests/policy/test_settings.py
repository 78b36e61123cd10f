"""Training configuration: defaults, then takeover.toml [train], then flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from takeover.config import TrainSettings, load_config
from takeover.errors import ConfigError, UsageError
from takeover.policy.dataset import AugmentConfig
from takeover.policy.model import DEFAULT_BACKBONE_ARGS, ModelConfig
from takeover.policy.settings import (
    DEFAULT_WARM_EPOCHS,
    DEFAULT_WARM_LR,
    DEFAULT_WARM_WEIGHTING,
    apply_overrides,
    warm_start_config,
    workspace_training_configs,
)
from takeover.policy.train import TrainConfig


def test_train_section_sets_model_and_training(tmp_path: Path) -> None:
    toml = tmp_path / "takeover.toml"
    toml.write_text("[train]\nepochs = 7\nuse_proprio = false\naugment = false\n"
                    "backbone = 'lcnet_050'\nlabel = 'sent'\n")
    model, train = workspace_training_configs(load_config(toml).train)
    assert (train.epochs, train.label, model.use_proprio, model.backbone) == (7, "sent", False, "lcnet_050")
    assert train.augment == AugmentConfig.off() and not train.augment.active
    assert model.backbone_args == {}, "another backbone does not inherit the default's narrowing"
    # Keys left out keep the defaults.
    assert train.lr == TrainConfig().lr and model.chunk_size == ModelConfig().chunk_size


def test_augment_takes_a_preset_name(tmp_path: Path) -> None:
    toml = tmp_path / "takeover.toml"
    toml.write_text('[train]\naugment = "camera"\n')
    _, train = workspace_training_configs(load_config(toml).train)
    assert train.augment == AugmentConfig.camera()
    toml.write_text('[train]\naugment = "strong"\n')
    with pytest.raises(ConfigError, match=r"train\.augment = 'strong': use true, false or"):
        load_config(toml)


def test_empty_section_is_the_defaults() -> None:
    model, train = workspace_training_configs(TrainSettings())
    assert model == ModelConfig() and train == TrainConfig()
    assert model.backbone_args == DEFAULT_BACKBONE_ARGS


def test_flags_override_and_unknown_keys_are_named() -> None:
    model, train = apply_overrides(ModelConfig(), TrainConfig(), {"epochs": 3, "epochs_x": None},
                                   "takeover train")
    assert train.epochs == 3
    with pytest.raises(UsageError, match="takeover train: unknown setting 'wings'"):
        apply_overrides(model, train, {"wings": 2}, "takeover train")


def test_warm_start_reads_warm_epochs_and_warm_lr(tmp_path: Path) -> None:
    toml = tmp_path / "takeover.toml"
    toml.write_text("[train]\nepochs = 9\nlr = 0.003\nwarm_epochs = 2\nwarm_lr = 0.0005\n")
    settings = load_config(toml).train
    _, cold = workspace_training_configs(settings)
    assert (cold.epochs, cold.lr) == (9, 0.003), "warm_* keys leave training from scratch alone"
    warm = warm_start_config(settings, cold)
    assert (warm.epochs, warm.lr) == (2, 0.0005)
    assert warm.weighting == DEFAULT_WARM_WEIGHTING == "iwr" and cold.weighting == "none"
    # Without the warm_* keys a warm start takes the warm defaults, not [train] lr; an explicit
    # [train] weighting holds for both.
    toml.write_text("[train]\nlr = 0.003\nweighting = 'none'\n")
    settings = load_config(toml).train
    warm = warm_start_config(settings, workspace_training_configs(settings)[1])
    assert (warm.epochs, warm.lr, warm.weighting) == (DEFAULT_WARM_EPOCHS, DEFAULT_WARM_LR, "none")


@pytest.mark.parametrize("line", ["warm_lr = 0", "warm_lr = -0.001", "lr = 5.0"])
def test_bad_learning_rates_are_refused(tmp_path: Path, line: str) -> None:
    toml = tmp_path / "takeover.toml"
    toml.write_text(f"[train]\n{line}\n")
    with pytest.raises(ConfigError, match=r"lr = .*: must be above 0 and at most 1"):
        load_config(toml)


def test_bench_dagger_presets_retrain_as_dagger_train_does() -> None:
    """The benchmark measures the recipe a workspace gets by default."""
    from takeover.dagger.presets import PRESETS

    warm = warm_start_config(TrainSettings(), TrainConfig())
    assert (warm.lr, warm.weighting) == (DEFAULT_WARM_LR, DEFAULT_WARM_WEIGHTING)
    for preset in PRESETS.values():
        assert (preset.warm_lr, preset.dagger_weighting) == (warm.lr, warm.weighting), preset.name


def test_dagger_retrain_auto_trains_from_scratch_only_within_the_warm_budget() -> None:
    """auto (unset): scratch while epochs x labels fit in warm_epochs x 20k frames (the warm
    retrain's 5-minute budget on two cores); warm and scratch are taken as said."""
    from takeover.policy.settings import WARM_BUDGET_FRAMES, retrain_from_scratch

    budget = 4 * WARM_BUDGET_FRAMES
    assert retrain_from_scratch(None, budget // 12, 12, 4)
    assert retrain_from_scratch("auto", 5_000, 12, 4)
    assert not retrain_from_scratch(None, budget // 12 + 1, 12, 4)
    assert not retrain_from_scratch("auto", 20_000, 12, 4)
    assert not retrain_from_scratch("warm", 10, 12, 4)
    assert retrain_from_scratch("scratch", 10**6, 12, 4)
