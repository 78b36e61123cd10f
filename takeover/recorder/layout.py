"""Where episodes live in a workspace, and the file-system habits that keep them safe.

```
rounds/r000/ep_0001.hdf5            a finished episode (never modified after it appears)
rounds/r000/ep_0002.hdf5.partial    being written, or left by a crash (recovered on start)
rounds/r000/ep_0003.hdf5.init       being created; holds no step yet (deleted on recovery)
rounds/r000/ep_0002.hdf5.recovering being rebuilt from its .partial (deleted on recovery)
rounds/r000/.index.json             cache of episode attributes, rebuilt when stale
rounds/.recorder.lock               held (flock) by the process that is recording
quarantine/                         unreadable partial files, moved aside by recovery
```

A finished episode appears only by `os.replace` of a complete, fsynced file, followed by an
fsync of the directory, so a reader never sees half a file under a final name.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import IO

from takeover.recorder.errors import WorkspaceBusyError, WorkspaceError
from takeover.workspace.atomic import fsync_dir

try:  # POSIX advisory locks; on other systems the lock is a documented no-op
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

ROUNDS_DIR = "rounds"
QUARANTINE_DIR = "quarantine"
LOCK_NAME = ".recorder.lock"
INDEX_NAME = ".index.json"
EPISODE_SUFFIX = ".hdf5"
PARTIAL_SUFFIX = ".partial"
INIT_SUFFIX = ".init"
RECOVERING_SUFFIX = ".recovering"

_ROUND_RE = re.compile(r"^r(\d{3,})$")
_EPISODE_RE = re.compile(r"^ep_(\d{4,})\.hdf5(\.partial|\.init|\.recovering)?$")


def check_workspace(workspace: Path | str) -> Path:
    """The workspace as an absolute Path; WorkspaceError (one line) if it is not a directory."""
    path = Path(workspace).expanduser()
    if not path.exists():
        raise WorkspaceError(
            f"workspace {path} does not exist; create it with `takeover init {path}` "
            "or pass --workspace DIR"
        )
    if not path.is_dir():
        raise WorkspaceError(f"workspace {path} is not a directory")
    return path.resolve()


def round_name(round_index: int) -> str:
    if round_index < 0:
        raise ValueError(f"round must be >= 0, got {round_index}")
    return f"r{round_index:03d}"


def episode_name(episode_index: int) -> str:
    if episode_index < 1:
        raise ValueError(f"episode numbers start at 1, got {episode_index}")
    return f"ep_{episode_index:04d}{EPISODE_SUFFIX}"


def round_dir(workspace: Path, round_index: int) -> Path:
    return workspace / ROUNDS_DIR / round_name(round_index)


def parse_round(name: str) -> int | None:
    m = _ROUND_RE.match(name)
    return int(m.group(1)) if m else None


def parse_episode(name: str) -> tuple[int, str] | None:
    """(episode number, state suffix) of a file name in a round dir, or None if not ours."""
    m = _EPISODE_RE.match(name)
    return (int(m.group(1)), m.group(2) or "") if m else None


def round_dirs(workspace: Path) -> list[tuple[int, Path]]:
    """(round, directory) for every rNNN directory, in round order."""
    root = workspace / ROUNDS_DIR
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        r = parse_round(entry.name)
        if r is not None and entry.is_dir():
            found.append((r, entry))
    return sorted(found)


def next_episode_index(directory: Path) -> int:
    """1 + the highest episode number used in `directory` in any state (final, partial...)."""
    highest = 0
    if directory.is_dir():
        for entry in directory.iterdir():
            parsed = parse_episode(entry.name)
            if parsed is not None:
                highest = max(highest, parsed[0])
    return highest + 1


def partial_path(final: Path) -> Path:
    return final.with_name(final.name + PARTIAL_SUFFIX)


def final_path_of(path: Path) -> Path:
    """The final episode path of a .partial, .init or .recovering file."""
    for suffix in (PARTIAL_SUFFIX, INIT_SUFFIX, RECOVERING_SUFFIX):
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def make_dirs(directory: Path) -> None:
    """mkdir -p, fsyncing each parent whose entry was created, so the tree survives power loss."""
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir()
        fsync_dir(d.parent)


class WorkspaceLock:
    """An exclusive advisory lock on `rounds/.recorder.lock`, held while a process records.

    The kernel releases it when the holder dies (even by SIGKILL), so a stale lock never
    blocks recovery. It tells recovery and `verify` which .partial files are live.
    """

    def __init__(self, workspace: Path) -> None:
        self.path = workspace / ROUNDS_DIR / LOCK_NAME
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock without waiting; WorkspaceBusyError if another process holds it."""
        if self._file is not None:
            return
        make_dirs(self.path.parent)
        f = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                holder = f.read().strip() or "unknown"
                f.close()
                raise WorkspaceBusyError(
                    f"another takeover process (pid {holder}) is recording in "
                    f"{self.path.parent.parent}; stop it first"
                ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is None:
            return
        if fcntl is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def is_held_elsewhere(self) -> bool:
        """True if another holder (another process, or another lock object) holds it now."""
        if self._file is not None:
            return False
        try:
            self.acquire()
        except WorkspaceBusyError:
            return True
        except OSError:  # read-only workspace: nobody can be recording into it
            return False
        self.release()
        return False

    def __enter__(self) -> WorkspaceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
