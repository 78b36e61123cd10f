"""`takeover dagger train`: one DAgger retraining step (torch: imported by the handler only).

Aggregate every round of the workspace, warm-start from the deployed model's checkpoint (same
architecture, read from its card), train, export, check parity and register the result as the
next model, all through `takeover.policy.build.train_workspace`. The new model is *not*
deployed: `models/current` keeps pointing at the model the operator trusts until they promote
the new one (`takeover dagger promote`), or `deploy=True` (`--deploy`) promotes it at once.
Without a deployed model the first one is trained from scratch (and also left undeployed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from takeover.errors import UsageError
from takeover.policy.build import train_workspace
from takeover.policy.model import ModelConfig
from takeover.policy.train import ProgressCallback, TrainConfig
from takeover.workspace.deploy import promote
from takeover.workspace.registry import CHECKPOINT_NAME, current_model_id, model_path, read_card


def warm_start_source(workspace: Path) -> tuple[str | None, Path | None, ModelConfig | None]:
    """(model id, checkpoint, architecture) of the deployed model; Nones without one."""
    current = current_model_id(workspace)
    if current is None:
        return None, None, None
    checkpoint = model_path(workspace, current) / CHECKPOINT_NAME
    if not checkpoint.is_file():
        raise UsageError(f"{checkpoint}: the deployed model {current} has no checkpoint to "
                         "warm-start from; retrain it with `takeover train`")
    card = read_card(workspace, current)
    raw = card.get("model_config")
    config = ModelConfig.from_dict(raw) if isinstance(raw, dict) else None
    return current, checkpoint, config


def train_next_model(
    workspace: Path,
    train_config: TrainConfig | None = None,
    model_config: ModelConfig | None = None,
    deploy: bool = False,
    on_progress: ProgressCallback | None = None,
    on_status: Callable[[str], None] | None = None,
    scratch: bool = False,
) -> dict[str, Any]:
    """Train the next model warm-started from the deployed one (or, `scratch`, from new
    weights on the same data: `[train] dagger_retrain = "scratch"`); returns its card (with
    `deployed` and `warm_start_model`). The deployed model's architecture is kept either way;
    `model_config` is used only without a deployed model."""
    workspace = workspace.expanduser()
    if not (workspace / "rounds").is_dir():
        raise UsageError(f"{workspace}: not a workspace (no rounds/ directory); create one with "
                         "`takeover init DIR` and record demonstrations")
    status = on_status or (lambda _msg: None)
    source, checkpoint, warm_config = warm_start_source(workspace)
    if source is None:
        status("no deployed model: training the first one from scratch")
    elif scratch:
        status(f"from scratch on every round, with the architecture of {source}")
        checkpoint = None
    else:
        status(f"warm start from {source} ({checkpoint})")
    config = warm_config or model_config or ModelConfig()
    card = train_workspace(workspace, config, train_config or TrainConfig(), init_from=checkpoint,
                           deploy=False, on_progress=on_progress, on_status=on_status)
    if not card:  # a non-main torchrun process
        return card
    card["deployed"] = False
    if deploy:
        promote(workspace, card["model_id"])
        card["deployed"] = True
    return card


def train_config_with(base: TrainConfig | None = None, **overrides: Any) -> TrainConfig:
    """`base` (default TrainConfig()) with the overrides that are not None."""
    return replace(base or TrainConfig(), **{k: v for k, v in overrides.items() if v is not None})
