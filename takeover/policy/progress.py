"""The training-progress protocol: how a trainer in a child process tells the operator's terminal
how far it is. Torch-free: the trainer (`takeover train`, `takeover dagger train`) and the reader
(session/training.py, the TUI's Rounds screen) both import this module, so the format is written
down once.

The reader starts the trainer with `TAKEOVER_PROGRESS=jsonl` in its environment; the trainer then
writes one line per report on stderr, `encode(report)`:

    {"event": "progress", "epoch": 3, "epochs": 12, "step": 40, "steps": 40,
     "train_loss": 0.031, "val_loss": 0.029, "images_per_s": 410.0, "elapsed_s": 61.2,
     "epoch_end": true}

and, as every `--json` command does, one JSON object as the last line of stdout with the result:
the model card, which names the trained model by its `model_id` from there on. Any other line
is log text. Losses that are not finite are written as null (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

PROGRESS_ENV = "TAKEOVER_PROGRESS"
PROGRESS_FORMAT = "jsonl"
PROGRESS_EVENT = "progress"


@dataclass(frozen=True)
class TrainProgress:
    """One report: after optimiser steps (at most a few a second) and after every epoch."""

    epoch: int  # 1-based
    epochs: int
    step: int  # within the epoch, 1-based
    steps: int
    train_loss: float | None
    val_loss: float | None  # set on epoch-end reports
    images_per_s: float | None
    elapsed_s: float
    epoch_end: bool = False


ProgressCallback = Callable[[TrainProgress], None]


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def encode(report: TrainProgress) -> str:
    """The report as one protocol line (no newline)."""
    body = asdict(report)
    for key in ("train_loss", "val_loss", "images_per_s", "elapsed_s"):
        body[key] = _finite(body[key])
    return json.dumps({"event": PROGRESS_EVENT, **body}, allow_nan=False)


def decode(line: str) -> TrainProgress | None:
    """The report a protocol line stands for, or None for any other line (log text, the
    result)."""
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("event") != PROGRESS_EVENT:
        return None
    try:
        return TrainProgress(
            epoch=int(obj["epoch"]), epochs=int(obj["epochs"]), step=int(obj.get("step", 0)),
            steps=int(obj.get("steps", 0)), train_loss=_finite(obj.get("train_loss")),
            val_loss=_finite(obj.get("val_loss")), images_per_s=_finite(obj.get("images_per_s")),
            elapsed_s=_finite(obj.get("elapsed_s")) or 0.0, epoch_end=bool(obj.get("epoch_end")))
    except (KeyError, TypeError, ValueError):
        return None

