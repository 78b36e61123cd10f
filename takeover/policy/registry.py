"""The minimal model registry: `models/rNNN/` directories and the `models/current` pointer.

(Promotion, rollback and round bookkeeping are the DAgger layer's; this module only names,
creates and points.) No torch here: the robot-side path resolves `models/current` too.

    models/r001/policy.onnx  card.json  checkpoint.pt
    models/current -> r001      a relative symlink, replaced atomically (rename over it)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from takeover.policy.spec import PolicyError

MODELS_DIR = "models"
CURRENT_POINTER = "current"


_MODEL_DIR = re.compile(r"^r(\d{3,})$")


def models_dir(workspace: Path) -> Path:
    return workspace / MODELS_DIR


def model_ids(workspace: Path) -> list[str]:
    """Model directories (rNNN), ascending."""
    d = models_dir(workspace)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), e.name) for e in d.iterdir()
             if e.is_dir() and not e.is_symlink() and (m := _MODEL_DIR.match(e.name))]
    return [name for _, name in sorted(found)]


def next_model_id(workspace: Path) -> str:
    """r001 for the first model, then one more than the highest existing."""
    ids = model_ids(workspace)
    n = int(ids[-1][1:]) + 1 if ids else 1
    return f"r{n:03d}"


def set_current(workspace: Path, model_id: str) -> Path:
    """Point models/current at models/<model_id> atomically (a reader sees the old or the new
    target, never none): make a new symlink beside it, then rename it over the old one."""
    d = models_dir(workspace)
    if not (d / model_id / "policy.onnx").exists():
        raise PolicyError(f"{d / model_id}: no policy.onnx; cannot deploy it")
    tmp = d / f".{CURRENT_POINTER}.tmp{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(model_id, tmp)
    os.replace(tmp, d / CURRENT_POINTER)
    return d / model_id


def current_model_id(workspace: Path) -> str | None:
    pointer = models_dir(workspace) / CURRENT_POINTER
    if pointer.is_symlink():
        return Path(os.readlink(pointer)).name
    if pointer.is_file():
        return pointer.read_text().strip() or None
    return None


def current_model_path(workspace: Path) -> Path:
    """The deployed model of a workspace: `models/current` names a model directory (a symlink,
    or a one-line text file where symlinks are not available)."""
    pointer = workspace / MODELS_DIR / CURRENT_POINTER
    if pointer.is_symlink() or pointer.is_dir():
        target = pointer.resolve()
    elif pointer.is_file():
        name = pointer.read_text().strip()
        target = workspace / MODELS_DIR / name
    else:
        raise PolicyError(f"{workspace}: no deployed model ({pointer} does not exist); train one "
                          "with `takeover train`, or pass --policy PATH")
    onnx_path = target / "policy.onnx"
    if not onnx_path.exists():
        raise PolicyError(f"{pointer} points at {target}, which has no policy.onnx")
    return onnx_path


def resolve_policy_path(policy: Path | None, workspace: Path | None) -> Path:
    """--policy PATH (a .onnx file or a model directory), else the workspace's current model."""
    if policy is not None:
        path = Path(os.path.expanduser(policy))
        return path / "policy.onnx" if path.is_dir() else path
    if workspace is None:
        raise PolicyError("--driver policy needs --policy PATH or --workspace DIR with a trained "
                          "model (models/current)")
    return current_model_path(workspace)
