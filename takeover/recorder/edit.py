"""Operator edits of finished episodes: relabel the outcome, add notes, move to the trash.

Finished episode files are never modified in place (docs/dataset-format.md, recorder/layout.py):
an edit writes a complete copy next to the file, changes its attributes, fsyncs it and replaces
the original with `os.replace`, then fsyncs the directory. A reader sees the old file or the new
one, never half of either. The store's attribute cache notices the new size/mtime and re-reads.

The trash is `WORKSPACE/trash/rNNN/`; a trashed file keeps its name plus the time it was
trashed, so it can be moved back by hand (and is never listed or trained on).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import h5py
import numpy as np

from takeover.recorder.episode_file import summary_json
from takeover.recorder.reader import read_info
from takeover.types import Outcome
from takeover.workspace.atomic import fsync_dir

TRASH_DIR = "trash"


def annotate_episode(path: Path, outcome: Outcome | str | None = None, notes: str | None = None
                     ) -> Path:
    """Set the outcome and/or the `notes` attribute of a finished episode, atomically."""
    if outcome is None and notes is None:
        return path
    oc = None if outcome is None else (outcome if isinstance(outcome, Outcome)
                                       else Outcome.parse(outcome))
    read_info(path)  # a clear error if this is not a readable episode
    tmp = path.with_name(f".{path.name}.edit")
    try:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+") as f:
            a = f.attrs
            if oc is not None:
                a.modify("outcome", np.bytes_(oc.value))
                a["relabeled"] = True
                if "summary" in a:  # the recorder's one-read copy of the attributes
                    a.modify("summary", np.bytes_(summary_json(a)))
            if notes is not None:
                a["notes"] = notes
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def episode_notes(path: Path) -> str:
    with h5py.File(path, "r") as f:
        value = f.attrs.get("notes", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def trash_episode(workspace: Path, path: Path) -> Path:
    """Move a finished episode to WORKSPACE/trash/rNNN/ (same file system: a rename)."""
    target_dir = workspace / TRASH_DIR / path.parent.name
    target_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = target_dir / f"{path.name}.{stamp}"
    n = 1
    while target.exists():
        target = target_dir / f"{path.name}.{stamp}-{n}"
        n += 1
    os.replace(path, target)
    fsync_dir(path.parent)
    fsync_dir(target_dir)
    return target
