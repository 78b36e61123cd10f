"""What every import checks before and after it writes episodes: was this source imported
already (by content), and did the robot in it ever move.

- **Same content, imported before**: the importers store the SHA-256 of the source's bytes
  (`source_digest`: a bag file, or every file of a bag or dataset directory, names included) in
  each episode's `extra` as `source_sha256`. An import whose digest is already in the workspace
  is skipped with one line unless forced: renaming or copying a bag does not fool it, and a bag
  that was re-recorded or changed is a new source.
- **A stuck robot**: commands that should move a base (|v| >= 0.02 m/s or |w| >= 0.05 rad/s)
  for at least a second, while the odometry never moves (position within 1 cm and heading
  within 0.02 rad of the start, measured speeds under 0.01 m/s and 0.02 rad/s on every step):
  motors disabled, a latched e-stop on the base, a brake. The episode keeps its outcome and gets
  `flags: "stuck"` and a `stuck` description in `extra`; the import prints it.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from takeover.recorder.store import EpisodeStore

DIGEST_KEY = "source_sha256"
FLAGS_KEY = "flags"
STUCK_FLAG = "stuck"

COMMAND_V_MPS = 0.02
COMMAND_W_RADPS = 0.05
COMMANDED_S = 1.0
MOVED_M = 0.01
TURNED_RAD = 0.02
MEASURED_V_MPS = 0.01
MEASURED_W_RADPS = 0.02


def source_digest(path: Path) -> str:
    """'sha256:...' of a file's bytes, or of a directory's files (relative names and bytes,
    in name order; hidden files left out)."""
    h = hashlib.sha256()
    if path.is_file():
        _feed(h, path)
        return "sha256:" + h.hexdigest()
    files: list[Path] = []
    for directory, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files.extend(Path(directory) / n for n in names if not n.startswith("."))
    for file in sorted(files, key=lambda p: p.relative_to(path).as_posix()):
        name = file.relative_to(path).as_posix().encode()
        h.update(len(name).to_bytes(8, "little") + name)
        h.update(file.stat().st_size.to_bytes(8, "little"))
        _feed(h, file)
    return "sha256:" + h.hexdigest()


def _feed(h: hashlib._Hash, file: Path) -> None:
    with file.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def earlier_imports(workspace: Path, digest: str) -> list[str]:
    """Keys ('r000/ep_0003') of the workspace's episodes imported from the same content."""
    return [i.key for i in EpisodeStore(workspace).episodes()
            if i.extra.get(DIGEST_KEY) == digest]


def describe_keys(keys: list[str]) -> str:
    return ", ".join(keys) if len(keys) <= 3 else f"{keys[0]} ... {keys[-1]} ({len(keys)} episodes)"


def stuck_robot(action: npt.NDArray[np.float64], odom: npt.NDArray[np.float64],
                rate_hz: float) -> str | None:
    """A one-line description when the commands should have moved the robot and its odometry
    shows it never did (see the module doc); None otherwise, and when there is no odometry."""
    valid = np.isfinite(odom).all(axis=1)
    if valid.sum() < 2:
        return None
    commanded = (np.abs(action[:, 0]) >= COMMAND_V_MPS) | (np.abs(action[:, 1]) >= COMMAND_W_RADPS)
    if commanded.sum() < max(2, math.ceil(COMMANDED_S * rate_hz)):
        return None
    o = odom[valid]
    moved = float(np.hypot(o[:, 0] - o[0, 0], o[:, 1] - o[0, 1]).max())
    turned = float(np.abs(np.angle(np.exp(1j * (o[:, 2] - o[0, 2])))).max())
    speed_v = float(np.abs(o[:, 3]).max())
    speed_w = float(np.abs(o[:, 4]).max())
    if moved >= MOVED_M or turned >= TURNED_RAD or speed_v >= MEASURED_V_MPS \
            or speed_w >= MEASURED_W_RADPS:
        return None
    peak_v = float(np.abs(action[:, 0]).max())
    peak_w = float(np.abs(action[:, 1]).max())
    return (f"robot stuck? commands non-zero on {int(commanded.sum())} of {len(action)} steps "
            f"(up to {peak_v:.2f} m/s, {peak_w:.2f} rad/s) but the odometry moved "
            f"{moved:.3f} m and turned {math.degrees(turned):.1f} deg")
