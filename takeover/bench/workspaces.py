"""What the training benchmarks (`bench dagger`, `bench spread`) share: a progress log with the
elapsed time, a workspace with the benchmark's camera size, and linking recorded episodes into
another workspace without copying them."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TextIO

from takeover.workspace.layout import init_workspace


class ProgressLog:
    """Progress lines prefixed with the seconds since the benchmark started (to `stream`,
    usually stderr; None: silent)."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if self.stream is not None:
            print(f"[{time.perf_counter() - self.t0:6.0f} s] {msg}", file=self.stream, flush=True)


def bench_workspace(path: Path, camera_hw: int) -> Path:
    """A new workspace at `path` whose simulated camera renders `camera_hw` x `camera_hw`."""
    ws = init_workspace(path)
    toml = ws / "takeover.toml"
    text = toml.read_text().replace("camera_width = 96", f"camera_width = {camera_hw}")
    toml.write_text(text.replace("camera_height = 96", f"camera_height = {camera_hw}"))
    return ws


def link_or_copy(src: str, dst: str) -> None:
    """Hard-link `src` to `dst` (episodes are never modified in place), or copy it where the
    file system cannot link."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
