"""Human-gated deployment: which model drives is the operator's decision.

`takeover dagger train` registers a new model but leaves `models/current` alone (unless asked
with `--deploy`); the operator looks at its card and its held-out evaluation and then runs
`takeover dagger promote`. `takeover dagger rollback` returns to the model that was deployed
before. Both refuse a model whose policy.onnx does not match the sha256 in its card, and both
move the pointer atomically and record the move in models/history.json
(`takeover.workspace.registry`). No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from takeover.workspace.registry import (
    current_model_id,
    resolve_model_id,
    roll_back,
    set_current,
    verify_model,
)


@dataclass(frozen=True)
class Deployment:
    previous: str | None  # the model current pointed at before (None: none deployed)
    current: str  # the model it points at now
    changed: bool  # False when the model was already deployed

    def as_json(self) -> dict[str, object]:
        return {"previous": self.previous, "current": self.current, "changed": self.changed}


def promote(workspace: Path, model_id: str | None = None) -> Deployment:
    """Deploy `model_id` (the newest model when None) after checking its sha256."""
    target = resolve_model_id(workspace, model_id)
    verify_model(workspace, target)
    previous = current_model_id(workspace)
    if previous == target:
        return Deployment(previous, target, changed=False)
    set_current(workspace, target, action="promote")
    return Deployment(previous, target, changed=True)


def rollback(workspace: Path) -> Deployment:
    """Return to the model deployed before the current one (its sha256 checked first)."""
    previous, target = roll_back(workspace, check=lambda m: verify_model(workspace, m))
    return Deployment(previous, target, changed=True)
