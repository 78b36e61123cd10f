"""The model registry: `models/rNNN/` directories, their cards, the `models/current` pointer
and the deployment history behind it.

(When to promote or roll back is the DAgger layer's decision, `takeover.workspace.deploy`; this
module names, reads, points and remembers.) No torch here: the robot-side path resolves
`models/current` too.

    models/r001/policy.onnx  card.json  checkpoint.pt
    models/current -> r001      a relative symlink, replaced atomically (rename over it)
    models/history.json         the deployments, newest last (written atomically)

history.json holds `deployed`, a stack of model ids (the last is the one `current` points at;
`rollback` pops it) and `events`, an append-only log of every move of the pointer. Every
pointer move goes through `set_current` or `roll_back`, under an advisory lock on
models/.registry.lock, pointer first and history second: a crash between the two leaves a
pointer the history does not know, which `roll_back` treats as the newest deployment.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from takeover.errors import PolicyError, UsageError
from takeover.workspace.atomic import atomic_write_bytes

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None  # type: ignore[assignment]

MODELS_DIR = "models"
CURRENT_POINTER = "current"
ONNX_NAME = "policy.onnx"
CARD_NAME = "card.json"
CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.json"
HISTORY_VERSION = 1
_LOCK_NAME = ".registry.lock"


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


def newest_model_id(workspace: Path) -> str:
    """The highest registered model id; UsageError (one line) when there is none."""
    ids = model_ids(workspace)
    if not ids:
        raise UsageError(f"{workspace}: no models yet (models/rNNN); train one with "
                         "`takeover train` or `takeover dagger train`")
    return ids[-1]


def resolve_model_id(workspace: Path, model_id: str | None) -> str:
    """`model_id` checked against the registry ('r2' and '2' mean r002); the newest without one.
    UsageError (one line) for an unknown id."""
    if model_id is None:
        return newest_model_id(workspace)
    text = model_id.strip().rstrip("/")
    text = text.removeprefix(f"{MODELS_DIR}/")
    digits = text[1:] if text.startswith("r") else text
    ids = model_ids(workspace)
    if digits.isdigit() and f"r{int(digits):03d}" in ids:
        return f"r{int(digits):03d}"
    known = ", ".join(ids) if ids else "none yet"
    raise UsageError(f"{model_id}: no such model in {models_dir(workspace)} (models: {known})")


def model_path(workspace: Path, model_id: str) -> Path:
    return models_dir(workspace) / model_id


def read_card(workspace: Path, model_id: str) -> dict[str, Any]:
    """A model's card.json; PolicyError (one line) when it is missing or unreadable."""
    path = model_path(workspace, model_id) / CARD_NAME
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{path}: no model card; not a registered model") from None
    except (OSError, ValueError):
        raise PolicyError(f"{path}: unreadable model card; retrain the model") from None
    if not isinstance(card, dict):
        raise PolicyError(f"{path}: unreadable model card; retrain the model")
    return card


def write_card(model_dir: Path, card: dict[str, Any]) -> None:
    """Replace a card atomically: a reader sees the old card or the new one, never a mix."""
    data = json.dumps(card, indent=2, default=str) + "\n"
    atomic_write_bytes(model_dir / CARD_NAME, data.encode())


def update_card(workspace: Path, model_id: str, updates: dict[str, Any]) -> dict[str, Any]:
    """Read, merge the top-level `updates` into, and atomically rewrite a model's card (under
    the registry lock, so two updates never lose each other's fields). Returns the new card."""
    with _registry_lock(workspace):
        card = read_card(workspace, model_id)
        card.update(updates)
        write_card(model_path(workspace, model_id), card)
    return card


def verify_model(workspace: Path, model_id: str) -> Path:
    """The model's policy.onnx, refused (PolicyError, one line) when it is missing, has no
    card, or does not match the sha256 in its card."""
    onnx_path = model_path(workspace, model_id) / ONNX_NAME
    if not onnx_path.is_file():
        raise PolicyError(f"{model_path(workspace, model_id)}: no {ONNX_NAME}; retrain it")
    card = read_card(workspace, model_id)
    if not isinstance(card.get("export"), dict) or "sha256" not in card["export"]:
        raise PolicyError(f"{onnx_path.parent / CARD_NAME}: the card records no sha256 of "
                          f"{ONNX_NAME}; re-export it with `takeover export`")
    check_model_card(onnx_path)
    return onnx_path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_model_card(onnx_path: Path) -> None:
    """A registered model (`card.json` beside it) must be the file its card describes: a
    sha256 mismatch means the file was changed or damaged after training, and it is refused."""
    card_path = onnx_path.parent / "card.json"
    if not card_path.is_file():
        return  # a bare exported file: nothing to check against
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        export = card["export"]
    except (OSError, ValueError, KeyError, TypeError):
        raise PolicyError(f"{card_path}: unreadable model card; retrain, or pass the .onnx file "
                          "from elsewhere with --policy") from None
    if not isinstance(export, dict) or export.get("onnx") != onnx_path.name or "sha256" not in export:
        return  # the card describes another file of the directory (e.g. an INT8 variant)
    actual = file_sha256(onnx_path)
    if actual != export["sha256"]:
        raise PolicyError(
            f"{onnx_path}: sha256 {actual[:12]}... does not match its card ({str(export['sha256'])[:12]}"
            "...): the file was changed or damaged after training; retrain or restore it")


@contextlib.contextmanager
def _registry_lock(workspace: Path) -> Iterator[None]:
    """An exclusive advisory lock on models/.registry.lock (released by the kernel if the
    holder dies), so two processes never interleave pointer and history updates."""
    d = models_dir(workspace)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / _LOCK_NAME, "a+") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _point_at(workspace: Path, model_id: str) -> Path:
    """Point models/current at models/<model_id> atomically (a reader sees the old or the new
    target, never none): make a new symlink beside it, then rename it over the old one."""
    d = models_dir(workspace)
    if not (d / model_id / ONNX_NAME).exists():
        raise PolicyError(f"{d / model_id}: no {ONNX_NAME}; cannot deploy it")
    tmp = d / f".{CURRENT_POINTER}.tmp{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(model_id, tmp)
    os.replace(tmp, d / CURRENT_POINTER)
    return d / model_id


def read_history(workspace: Path) -> dict[str, Any]:
    """history.json ({'deployed': [...], 'events': [...]}); empty when there is none yet.
    An unreadable file is an error (rollback must not guess)."""
    path = models_dir(workspace) / HISTORY_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"version": HISTORY_VERSION, "deployed": [], "events": []}
    except (OSError, ValueError):
        raise PolicyError(f"{path}: unreadable deployment history; fix or delete it (rollback "
                          "needs it)") from None
    if not isinstance(data, dict) or not isinstance(data.get("deployed"), list):
        raise PolicyError(f"{path}: not a deployment history; fix or delete it")
    data.setdefault("events", [])
    return data


def _write_history(workspace: Path, history: dict[str, Any]) -> None:
    data = json.dumps(history, indent=1) + "\n"
    atomic_write_bytes(models_dir(workspace) / HISTORY_NAME, data.encode())


def _event(action: str, model_id: str, previous: str | None) -> dict[str, Any]:
    return {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "action": action, "model_id": model_id, "previous": previous}


def _reconciled_stack(workspace: Path, history: dict[str, Any]) -> list[str]:
    """The deployment stack, with a pointer the history does not know (a crash between the
    two writes, a hand edit) taken as the newest deployment."""
    stack = [str(m) for m in history["deployed"]]
    current = current_model_id(workspace)
    if current is not None and (not stack or stack[-1] != current):
        stack.append(current)
    return stack


def set_current(workspace: Path, model_id: str, action: str = "deploy") -> Path:
    """Deploy `model_id`: point models/current at it (atomic) and push it onto the deployment
    history. `action` names the move in the history's event log (deploy, promote)."""
    with _registry_lock(workspace):
        history = read_history(workspace)
        stack = _reconciled_stack(workspace, history)
        previous = stack[-1] if stack else None
        target = _point_at(workspace, model_id)
        if previous != model_id:
            stack.append(model_id)
        history["deployed"] = stack
        history["events"].append(_event(action, model_id, previous))
        _write_history(workspace, history)
    return target


def previous_deployment(workspace: Path) -> str | None:
    """The model `roll_back` would return to (skipping deleted models), None without one."""
    stack = _reconciled_stack(workspace, read_history(workspace))
    for model_id in reversed(stack[:-1]):
        if (model_path(workspace, model_id) / ONNX_NAME).exists():
            return model_id
    return None


def roll_back(workspace: Path, check: Callable[[str], object] | None = None) -> tuple[str, str]:
    """Point models/current back at the model deployed before the current one and pop the
    current one off the history. `check(model_id)` runs before the pointer moves (the sha256
    check). Returns (from, to); UsageError when there is nothing to roll back to."""
    with _registry_lock(workspace):
        history = read_history(workspace)
        stack = _reconciled_stack(workspace, history)
        if not stack:
            raise UsageError(f"{workspace}: no model has been deployed; nothing to roll back")
        current = stack.pop()
        while stack and not (model_path(workspace, stack[-1]) / ONNX_NAME).exists():
            stack.pop()  # a deleted model cannot be deployed again
        if not stack:
            raise UsageError(f"{workspace}: {current} is the first deployed model; there is no "
                             "earlier one to roll back to")
        target = stack[-1]
        if check is not None:
            check(target)
        _point_at(workspace, target)
        history["deployed"] = stack
        history["events"].append(_event("rollback", target, current))
        _write_history(workspace, history)
    return current, target


def current_model_id(workspace: Path) -> str | None:
    """The id of the deployed model: what `models/current` names (a relative symlink, or a
    one-line text file where symlinks are not available), or None. The one reader of the
    pointer: `takeover run`, drive, the dagger commands and the registry itself all ask here."""
    pointer = models_dir(workspace) / CURRENT_POINTER
    if pointer.is_symlink():
        return Path(os.readlink(pointer)).name or None
    if pointer.is_dir():
        return pointer.resolve().name
    if pointer.is_file():
        return pointer.read_text(encoding="utf-8").strip().split("/")[-1] or None
    return None


def deployed_onnx(workspace: Path) -> tuple[str, Path] | None:
    """(model id, its policy.onnx) of the deployed model, or None when none is deployed or its
    file is missing."""
    model_id = current_model_id(workspace)
    if model_id is None:
        return None
    onnx_path = model_path(workspace, model_id) / ONNX_NAME
    return (model_id, onnx_path) if onnx_path.exists() else None


def current_model_path(workspace: Path) -> Path:
    """The deployed model's policy.onnx; PolicyError (one line) when there is none."""
    pointer = models_dir(workspace) / CURRENT_POINTER
    model_id = current_model_id(workspace)
    if model_id is None:
        raise PolicyError(f"{workspace}: no deployed model ({pointer} does not exist); train one "
                          "with `takeover train`, or pass --policy PATH")
    onnx_path = model_path(workspace, model_id) / ONNX_NAME
    if not onnx_path.exists():
        raise PolicyError(f"{pointer} points at {model_path(workspace, model_id)}, which has no "
                          f"{ONNX_NAME}")
    return onnx_path


def resolve_policy_path(policy: Path | None, workspace: Path | None,
                        needed_by: str = "--driver policy") -> Path:
    """--policy PATH (a .onnx file or a model directory), else the workspace's current model.
    needed_by: what asks for the model, as the error names it (e.g. "--driver operator-sim")."""
    if policy is not None:
        path = Path(os.path.expanduser(policy))
        return path / "policy.onnx" if path.is_dir() else path
    if workspace is None:
        raise PolicyError(f"{needed_by} needs --policy PATH or --workspace DIR with a trained "
                          "model (models/current)")
    return current_model_path(workspace)
