"""Where episodes live in a workspace, and the file-system habits that keep them safe.

```
rounds/r000/ep_0001.hdf5            a finished episode (never modified after it appears)
rounds/r000/ep_0004_amr-2.hdf5      a finished episode of the robot named "amr-2"
rounds/r000/ep_0002.hdf5.partial    being written, or left by a crash (recovered on start)
rounds/r000/ep_0003.hdf5.init       being created; holds no step yet (deleted on recovery)
rounds/r000/ep_0002.hdf5.recovering being rebuilt from its .partial (deleted on recovery)
rounds/r000/.index.json             cache of episode attributes, rebuilt when stale
rounds/.recorder.lock               held (flock) by the process recording an unnamed robot
rounds/.recorder.amr-2.lock         held (flock) by the process recording robot "amr-2"
rounds/.numbering.lock              held for an instant while an episode number is taken
quarantine/                         unreadable partial files, moved aside by recovery
```

A finished episode appears only by `os.replace` of a complete, fsynced file, followed by an
fsync of the directory, so a reader never sees half a file under a final name.

Several robots record into one workspace at once (one recorder per robot, in one process or
several). Episode numbers are unique per round across all of them: `reserve_episode` takes the
next number and creates its `.init` file under the numbering lock, so the number is visible to
every other recorder before the lock is let go. Each robot has its own recorder lock, so
recorders of different robots never wait for each other, while a second recorder of the same
robot is refused; a leftover file is live exactly while its robot's lock is held.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import IO, NamedTuple

from takeover.config import ROBOT_NAME
from takeover.errors import UsageError
from takeover.recorder.errors import WorkspaceBusyError, WorkspaceError
from takeover.workspace.atomic import fsync_dir

try:  # POSIX advisory locks; on other systems the lock is a documented no-op
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

ROUNDS_DIR = "rounds"
QUARANTINE_DIR = "quarantine"
LOCK_NAME = ".recorder.lock"
NUMBERING_LOCK_NAME = ".numbering.lock"
INDEX_NAME = ".index.json"
EPISODE_SUFFIX = ".hdf5"
PARTIAL_SUFFIX = ".partial"
INIT_SUFFIX = ".init"
RECOVERING_SUFFIX = ".recovering"

#: A robot's name (config's, the [[robots]] name): part of its episode files' names and of its
#: lock's, so short and path-safe.
ROBOT_NAME_PATTERN = ROBOT_NAME.pattern
_ROUND_RE = re.compile(r"^r(\d{3,})$")
_EPISODE_RE = re.compile(
    rf"^ep_(\d{{4,}})(?:_({ROBOT_NAME_PATTERN}))?\.hdf5(\.partial|\.init|\.recovering)?$")


def check_robot_name(name: str) -> str:
    """`name` if it is a valid robot name ("" means unnamed: the one robot of old
    workspaces); UsageError (one line) otherwise."""
    if name == "" or (isinstance(name, str) and ROBOT_NAME.fullmatch(name)):
        return name
    raise UsageError(f"robot name {name!r}: use 1 to 32 of a-z 0-9 _ -, starting with a letter "
                     "or digit (it names the robot's episode files)")


class EpisodeName(NamedTuple):
    """What an episode file's name says: `ep_0007_amr-2.hdf5.partial` is (7, "amr-2",
    ".partial"); an unnamed robot's robot is ""; a finished file's state is ""."""

    number: int
    robot: str
    state: str


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


def episode_name(episode_index: int, robot_name: str = "") -> str:
    """`ep_0007.hdf5`, or `ep_0007_<robot>.hdf5` for a named robot."""
    if episode_index < 1:
        raise ValueError(f"episode numbers start at 1, got {episode_index}")
    robot = f"_{check_robot_name(robot_name)}" if robot_name else ""
    return f"ep_{episode_index:04d}{robot}{EPISODE_SUFFIX}"


def round_dir(workspace: Path, round_index: int) -> Path:
    return workspace / ROUNDS_DIR / round_name(round_index)


def parse_round(name: str) -> int | None:
    m = _ROUND_RE.match(name)
    return int(m.group(1)) if m else None


def parse_episode_name(name: str) -> EpisodeName | None:
    """Number, robot and state of a file name in a round dir, or None if not an episode's."""
    m = _EPISODE_RE.match(name)
    return EpisodeName(int(m.group(1)), m.group(2) or "", m.group(3) or "") if m else None


def parse_episode(name: str) -> tuple[int, str] | None:
    """(episode number, state suffix) of a file name in a round dir, or None if not ours."""
    parsed = parse_episode_name(name)
    return (parsed.number, parsed.state) if parsed else None


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


def reserve_episode(directory: Path, robot_name: str = "") -> tuple[int, Path]:
    """Take the next episode number of a round for `robot_name`: (number, final path).

    The number's `.init` file is created (empty, O_EXCL) while the workspace's numbering lock
    is held, so a recorder of any robot, in this process or another, that takes a number after
    this one sees it and takes a higher one; two never get the same number. The caller builds
    the episode in that `.init` file (`EpisodeFileWriter(..., reserved=True)`).
    """
    make_dirs(directory)
    rounds = directory.parent
    with open(rounds / NUMBERING_LOCK_NAME, "a+") as lock:
        if fcntl is not None:
            # Blocking, but held only for a directory listing and one file creation.
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        index = next_episode_index(directory)
        while True:  # O_EXCL: also safe against a writer that ignores the lock
            final = directory / episode_name(index, robot_name)
            try:
                fd = os.open(final.with_name(final.name + INIT_SUFFIX),
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                             0o644)
            except FileExistsError:
                index += 1
                continue
            os.close(fd)
            return index, final


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


def lock_name(robot_name: str = "") -> str:
    """The recorder lock's file name of a robot: `.recorder.<robot>.lock`, or `.recorder.lock`
    for the unnamed robot (the one lock of workspaces before several robots)."""
    return f".recorder.{check_robot_name(robot_name)}.lock" if robot_name else LOCK_NAME


class WorkspaceLock:
    """An exclusive advisory lock on a robot's `rounds/.recorder[.<robot>].lock`, held while a
    process records that robot.

    The kernel releases it when the holder dies (even by SIGKILL), so a stale lock never
    blocks recovery. It tells recovery and `verify` which .partial files are live: those of a
    robot whose lock is held. Robots have separate locks, so their recorders run side by side.
    """

    def __init__(self, workspace: Path, robot_name: str = "") -> None:
        self.robot_name = check_robot_name(robot_name)
        self.path = workspace / ROUNDS_DIR / lock_name(robot_name)
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
                who = f" as robot {self.robot_name!r}" if self.robot_name else ""
                raise WorkspaceBusyError(
                    f"another takeover process (pid {holder}) is recording{who} in "
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
