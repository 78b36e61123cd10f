"""The episode store: the episodes of a workspace, listed from their attributes.

    store = EpisodeStore("path/to/workspace")
    for info in store.episodes(round=1):     # EpisodeInfo, attributes only
        ep = read_episode(info.path)         # arrays, when needed

Listing reads no dataset. Each round keeps a cache of its episodes' attributes in
`rounds/rNNN/.index.json`, keyed by file name, size and modification time; a stale or missing
entry is read from the file again and the cache rewritten atomically (temporary file + rename).
Finished episode files never change, so the cache is exact; losing it only costs time.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from takeover.recorder.errors import EpisodeError
from takeover.recorder.layout import (
    INDEX_NAME,
    ROUNDS_DIR,
    check_workspace,
    episode_name,
    parse_episode,
    parse_episode_name,
    parse_round,
    round_dir,
    round_dirs,
)
from takeover.recorder.reader import EpisodeInfo, read_info
from takeover.recorder.recover import find_leftovers
from takeover.workspace.atomic import atomic_write_json

log = logging.getLogger("takeover.recorder")

INDEX_VERSION = 1


class EpisodeStore:
    """Read-only view of a workspace's episodes (writing is the EpisodeWriter's job)."""

    def __init__(self, workspace: Path | str) -> None:
        self.workspace = check_workspace(workspace)
        #: (path, one-line reason) for files the last listing could not read.
        self.unreadable: list[tuple[Path, str]] = []

    def rounds(self) -> list[int]:
        """Round numbers that have a directory, ascending."""
        return [r for r, _ in round_dirs(self.workspace)]

    def round_dir(self, round_index: int) -> Path:
        return round_dir(self.workspace, round_index)

    def episode_paths(self, round: int | None = None) -> list[Path]:
        """Finished episode files, in (round, episode) order."""
        dirs = round_dirs(self.workspace) if round is None else \
            [(round, self.round_dir(round))]
        paths: list[Path] = []
        for _, directory in dirs:
            if not directory.is_dir():
                continue
            found = []
            for entry in directory.iterdir():
                parsed = parse_episode(entry.name)
                if parsed is not None and not parsed[1]:
                    found.append((parsed[0], entry))
            paths.extend(p for _, p in sorted(found))
        return paths

    def leftovers(self) -> list[Path]:
        """.partial/.init/.recovering files: being written now, or left by a crash."""
        return find_leftovers(self.workspace)

    def episodes(self, round: int | None = None, *, use_index: bool = True) -> list[EpisodeInfo]:
        """Metadata of every finished episode (attributes only), in (round, episode) order.

        Files that cannot be read are left out and listed in `self.unreadable`.
        """
        self.unreadable = []
        by_dir: dict[Path, list[Path]] = {}
        for path in self.episode_paths(round):
            by_dir.setdefault(path.parent, []).append(path)
        infos: list[EpisodeInfo] = []
        for directory, paths in by_dir.items():
            infos.extend(self._list_dir(directory, paths, use_index))
        return infos

    def _list_dir(self, directory: Path, paths: list[Path], use_index: bool) -> list[EpisodeInfo]:
        index_path = directory / INDEX_NAME
        cached = _load_index(index_path) if use_index else {}
        fresh: dict[str, Any] = {}
        infos: list[EpisodeInfo] = []
        changed = not use_index or len(cached) != len(paths)
        for path in paths:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            entry = cached.get(path.name)
            if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
                try:
                    info = EpisodeInfo.from_json({**entry["info"], "path": str(path)})
                except (TypeError, KeyError):
                    info = None
            else:
                info = None
            if info is None:
                changed = True
                try:
                    info = read_info(path)
                except EpisodeError as err:
                    self.unreadable.append((path, str(err)))
                    continue
            infos.append(info)
            record = info.to_json()
            del record["path"]
            fresh[path.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "info": record}
        if use_index and changed:
            try:
                atomic_write_json(index_path, {"version": INDEX_VERSION, "entries": fresh})
            except OSError as err:  # read-only media: listing still works, just slower
                log.debug("could not write %s: %s", index_path, err)
        return infos

    def resolve(self, name: str | Path) -> Path:
        """An episode's path from 'r001/ep_0003', 'r1/3', or a file path."""
        text = str(name)
        candidate = Path(text).expanduser()
        if candidate.suffix == ".hdf5" or candidate.name.endswith(".partial"):
            path = candidate if candidate.is_absolute() or candidate.exists() \
                else self.workspace / candidate
            if not path.exists():
                raise EpisodeError(f"{name}: no such episode file")
            return path
        parts = text.strip("/").split("/")
        if parts and parts[0] == ROUNDS_DIR:
            parts = parts[1:]
        r = parse_round(parts[0]) if parts else None
        if r is None and parts and parts[0].lstrip("r").isdigit():
            r = int(parts[0].lstrip("r"))
        ep: int | None = None
        robot: str | None = None  # None: any robot (the number alone is unique in its round)
        if len(parts) == 2:
            tail = parts[1].removesuffix(".hdf5").removeprefix("ep_")
            number, _, robot_part = tail.partition("_")
            ep = int(number) if number.isdigit() else None
            robot = robot_part if robot_part else None
        if r is None or ep is None or len(parts) != 2:
            raise EpisodeError(f"{name!r} does not name an episode; use ROUND/EPISODE like "
                               "r001/ep_0003 (or r001/ep_0003_ROBOT), or a path to the .hdf5 "
                               "file")
        directory = self.round_dir(r)
        found = [p for p in directory.glob(f"ep_{ep:04d}*.hdf5") if p.is_file()
                 and (parsed := parse_episode_name(p.name)) is not None and parsed.number == ep
                 and not parsed.state and robot in (None, parsed.robot)]
        if not found:
            raise EpisodeError(f"episode {name} not found (no {directory / episode_name(ep)} "
                               "or a robot's file of that number)")
        return sorted(found)[0]


def _load_index(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != INDEX_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}
