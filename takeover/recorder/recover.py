"""Crash recovery: turn every file a dead writer left behind into a finished episode.

- `ep_N.hdf5.partial`: rebuilt into `ep_N.hdf5` with every committed step (`num_steps`), outcome
  `interrupted` (or the outcome the writer had already stored if it died while renaming). The
  new file is written under `ep_N.hdf5.recovering` and renamed when complete, and the partial is
  deleted only after that, so a crash during recovery loses nothing: run it again.
- `ep_N.hdf5.init` (created, no step yet) and `ep_N.hdf5.recovering` (an interrupted
  recovery) are deleted.
- A partial that HDF5 cannot open at all is moved to `quarantine/` and reported.

Finished episodes are never opened for writing. A leftover belongs to the robot its name
says (`ep_N_<robot>.hdf5.partial`; unnamed: the unnamed robot), and recovery takes that robot's
recorder lock first, so it never touches the open episode of a recorder that is still running:
with several robots recording into one workspace, the live files of the others are left alone
(reported as `live`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from takeover.recorder import schema
from takeover.recorder.codec import Compression
from takeover.recorder.episode_file import EpisodeFileWriter, EpisodeMeta, ObsSpec, duration_of
from takeover.recorder.errors import EpisodeError, WorkspaceBusyError
from takeover.recorder.layout import (
    INIT_SUFFIX,
    PARTIAL_SUFFIX,
    QUARANTINE_DIR,
    RECOVERING_SUFFIX,
    WorkspaceLock,
    check_workspace,
    final_path_of,
    make_dirs,
    parse_episode_name,
    round_dirs,
)
from takeover.recorder.reader import attr_text, open_h5
from takeover.types import Outcome
from takeover.workspace.atomic import fsync_dir

COPY_ROWS = 4096


@dataclass(frozen=True)
class RecoveryResult:
    """What recovery did with one leftover file; `message` is one line for people."""

    path: Path
    action: str  # "recovered" | "removed" | "quarantined" | "failed" | "live" (left alone)
    final: Path | None
    steps: int
    message: str

    @property
    def ok(self) -> bool:
        return self.action != "failed"


def find_leftovers(workspace: Path, robot_name: str | None = None) -> list[Path]:
    """Every .partial, .init and .recovering file in the workspace's rounds (of one robot:
    robot_name, "" for the unnamed one; None: of every robot)."""
    found = []
    for _, directory in round_dirs(workspace):
        for entry in directory.iterdir():
            parsed = parse_episode_name(entry.name)
            if parsed is not None and parsed.state and robot_name in (None, parsed.robot):
                found.append(entry)
    return sorted(found)


def leftover_robot(path: Path) -> str:
    """The robot whose recorder made a leftover file ("" for the unnamed robot)."""
    parsed = parse_episode_name(path.name)
    return parsed.robot if parsed is not None else ""


def _rel(path: Path) -> str:
    parts = path.parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(path)


def recover_file(path: Path) -> RecoveryResult:
    """Recover one leftover file. The caller must hold the workspace lock."""
    name = path.name
    if name.endswith((INIT_SUFFIX, RECOVERING_SUFFIX)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fsync_dir(path.parent)
        what = "unfinished file (no step was ever written to it)" if name.endswith(INIT_SUFFIX) \
            else "interrupted recovery (the .partial is recovered again)"
        return RecoveryResult(path, "removed", None, 0, f"{_rel(path)}: removed {what}")
    if not name.endswith(PARTIAL_SUFFIX):
        raise ValueError(f"{path} is not a leftover file")
    final = final_path_of(path)
    if final.exists():
        # The final file appears only complete (os.replace), so the partial is a leftover of a
        # recovery that died before deleting it.
        try:
            open_h5(final).close()
        except EpisodeError as err:
            return RecoveryResult(path, "failed", None, 0,
                                  f"{_rel(path)}: left alone, {final.name} exists but {err}")
        path.unlink()
        fsync_dir(path.parent)
        return RecoveryResult(path, "removed", final, 0,
                              f"{_rel(path)}: removed, {final.name} is already complete")
    try:
        src = open_h5(path)
    except EpisodeError as err:
        return _quarantine(path, str(err))
    try:
        with src:
            return _rebuild(path, final, src)
    except OSError as err:
        with contextlib.suppress(FileNotFoundError):
            final.with_name(final.name + RECOVERING_SUFFIX).unlink()
        first_error = err
    # A writer killed between flushes can leave a step's data referenced but not readable
    # (HDF5: "addr overflow"). Salvage the steps that do read back, once, rather than none.
    try:
        with open_h5(path) as src:
            return _rebuild(path, final, src, limit=_readable_steps(src, _committed_steps(src)))
    except (OSError, EpisodeError) as err:
        with contextlib.suppress(FileNotFoundError):
            final.with_name(final.name + RECOVERING_SUFFIX).unlink()
        return RecoveryResult(path, "failed", None, 0,
                              f"{_rel(path)}: not recovered ({first_error}; then {err}); it is "
                              "kept, try again once the problem is fixed (e.g. free disk space)")


def _quarantine(path: Path, why: str) -> RecoveryResult:
    workspace = path.parent.parent.parent
    target_dir = workspace / QUARANTINE_DIR
    make_dirs(target_dir)
    target = target_dir / f"{path.parent.name}_{path.name}"
    n = 1
    while target.exists():
        n += 1
        target = target_dir / f"{path.parent.name}_{path.name}.{n}"
    os.replace(path, target)
    fsync_dir(path.parent)
    fsync_dir(target_dir)
    return RecoveryResult(path, "quarantined", None, 0,
                          f"{_rel(path)}: unreadable, moved to {QUARANTINE_DIR}/{target.name} "
                          f"({why.split(': ', 1)[-1]})")


def _committed_steps(src: h5py.File) -> int:
    n = int(src.attrs.get("num_steps", 0))
    for dataset_name in (*schema.COLUMN_NAMES, "obs/image"):
        if dataset_name in src:
            n = min(n, src[dataset_name].shape[0])
    return max(n, 0)


def _readable_prefix(read: Callable[[int], object], n: int) -> int:
    """The largest m <= n for which read(m) (the first m steps) succeeds; read(0) must."""
    try:
        read(n)
        return n
    except OSError:
        pass
    ok, bad = 0, n
    while bad - ok > 1:
        mid = (ok + bad) // 2
        try:
            read(mid)
            ok = mid
        except OSError:
            bad = mid
    return ok


def _read_rows(column: h5py.Dataset, m: int) -> object:
    return np.asarray(column[:m])


def _readable_steps(src: h5py.File, n: int) -> int:
    """How many of the first n steps every column and frame of `src` can be read back for."""
    for name in schema.COLUMN_NAMES:
        if name in src:
            n = _readable_prefix(functools.partial(_read_rows, src[name]), n)
    image = src.get("obs/image", None)
    if image is not None:
        for i in range(n):
            try:
                if image.id.get_chunk_info_by_coord((i, 0, 0, 0)).byte_offset is not None:
                    image.id.read_direct_chunk((i, 0, 0, 0))
            except OSError:
                return i
    return n


def _rebuild(path: Path, final: Path, src: h5py.File, limit: int | None = None) -> RecoveryResult:
    """Copy the committed steps (at most `limit`) of `src` into a finished `final`."""
    attrs = src.attrs
    if attr_text(attrs.get("schema", "")) != schema.SCHEMA_NAME:
        src.close()
        return _quarantine(path, "not a takeover episode file")
    # A partial of an older schema version lacks the datasets added since; they are filled.
    missing = [n for n in schema.COLUMN_NAMES
               if n != "obs/scan" and n not in schema.COLUMN_FILL and n not in src]
    if missing:
        src.close()
        return _quarantine(path, f"dataset {missing[0]!r} is missing")
    n = _committed_steps(src) if limit is None else min(limit, _committed_steps(src))
    if n == 0:
        src.close()
        path.unlink()
        fsync_dir(path.parent)
        return RecoveryResult(path, "removed", None, 0,
                              f"{_rel(path)}: removed, no step had been saved yet")
    image = src.get("obs/image", None)
    scan = src.get("obs/scan", None)
    spec = ObsSpec(
        image_shape=tuple(image.shape[1:]) if image is not None else None,
        scan_beams=scan.shape[1] if scan is not None else None,
        scan_angle_min_rad=float(scan.attrs.get("angle_min_rad", 0.0)) if scan is not None else 0.0,
        scan_angle_increment_rad=(
            float(scan.attrs["angle_increment_rad"])
            if scan is not None and "angle_increment_rad" in scan.attrs else None
        ),
        missing_inputs=_missing_inputs(attrs),
    )
    try:
        compression = Compression.parse(attr_text(attrs.get("image_compression", "")))
    except Exception:
        compression = Compression.parse(None)
    try:
        extra = json.loads(attr_text(attrs.get("extra", "{}")))
    except ValueError:
        extra = {}
    meta = EpisodeMeta(
        round=int(attrs["round"]),
        rate_hz=float(attrs["rate_hz"]),
        model_id=attr_text(attrs.get("model_id", "")),
        operator=attr_text(attrs.get("operator", "")),
        robot_url=attr_text(attrs.get("robot_url", "")),
        config=attr_text(attrs.get("config", "{}")),
        extra=extra if isinstance(extra, dict) else {},
        origin=attr_text(attrs.get("origin", "recorder")),
        start_time_ns=int(attrs.get("start_time_ns", 0)),
        # The file name's robot (the writer wrote the same into the attribute): the name the
        # rebuilt file keeps.
        robot_name=leftover_robot(path),
    )
    stored_outcome = attr_text(attrs.get("outcome", schema.OUTCOME_RECORDING))
    finished = stored_outcome in {o.value for o in Outcome}
    out = EpisodeFileWriter(
        final, meta, spec, compression, episode_index=int(attrs["episode"]),
        crash_safe=False, staging_suffix=RECOVERING_SUFFIX,
    )
    try:
        for start in range(0, n, COPY_ROWS):
            stop = min(n, start + COPY_ROWS)
            out.append_columns({name: np.asarray(src[name][start:stop])
                                for name in schema.COLUMN_NAMES if name in src})
        if image is not None:
            _copy_frames(image, out, n)
        end_time = int(attrs.get("end_time_ns", 0)) if finished else 0
        if end_time <= 0:  # not known: start + the time the salvaged steps cover
            duration_s = duration_of(out.t_first_ns, out.t_last_ns, meta.rate_hz)
            end_time = (meta.start_time_ns or 0) + int(duration_s * 1e9)
        out.finalize(
            stored_outcome if finished else Outcome.INTERRUPTED,
            end_reason=attr_text(attrs.get("end_reason", "")) if finished
            else "recovered after crash",
            dropped_steps=int(attrs.get("dropped_steps", 0)),
            recovered=True,
            end_time_ns=end_time,
        )
    except BaseException:
        out.abandon()
        with contextlib.suppress(FileNotFoundError):
            out.path.unlink()
        raise
    src.close()
    path.unlink()
    fsync_dir(path.parent)
    how = f"outcome {stored_outcome}" if finished else "outcome interrupted"
    return RecoveryResult(path, "recovered", final, n,
                          f"{_rel(path)}: recovered {n} steps into {final.name} ({how})")


def _missing_inputs(attrs: h5py.AttributeManager) -> tuple[tuple[str, float], ...]:
    """The partial's `missing_inputs`, carried over to the rebuilt file (none if unreadable)."""
    try:
        missing = json.loads(attr_text(attrs.get("missing_inputs", "{}")))
        return tuple((str(k), float(v)) for k, v in sorted(missing.items()))
    except (AttributeError, TypeError, ValueError):
        return ()


def _copy_frames(image: h5py.Dataset, out: EpisodeFileWriter, n: int) -> None:
    """Copy frames as stored (compressed) chunks, without decoding, where the filters match."""
    same_filters = image.compression == (out.compression.h5py_kwargs().get("compression"))
    for i in range(n):
        if same_filters:
            info = image.id.get_chunk_info_by_coord((i, 0, 0, 0))
            if info.byte_offset is None:  # never written: no frame on that step
                out.skip_frame()
                continue
            mask, data = image.id.read_direct_chunk((i, 0, 0, 0))
            out.write_raw_chunk(data, mask)
        else:
            out.write_frame(np.asarray(image[i]))


def recover_workspace(workspace: Path | str, *, take_lock: bool = True,
                      robot_name: str | None = None) -> list[RecoveryResult]:
    """Recover leftover files in the workspace (see the module doc).

    robot_name None: every robot's; each robot's lock is taken in turn, and the files of a
    robot whose recorder is running are left alone (action "live"). robot_name given: only
    that robot's ("" the unnamed one); WorkspaceBusyError if its recorder is running.
    take_lock=False: the caller (that robot's writer) holds its lock already.
    """
    ws = check_workspace(workspace)
    by_robot: dict[str, list[Path]] = {}
    for path in find_leftovers(ws, robot_name):
        by_robot.setdefault(leftover_robot(path), []).append(path)
    if robot_name is not None:
        by_robot.setdefault(robot_name, [])  # its lock is checked even with nothing to do
    results: list[RecoveryResult] = []
    for robot, leftovers in sorted(by_robot.items()):
        lock = WorkspaceLock(ws, robot)
        if take_lock:
            try:
                lock.acquire()
            except WorkspaceBusyError:
                if robot_name is not None:
                    raise
                who = f"robot {robot!r}" if robot else "the unnamed robot"
                results.extend(RecoveryResult(p, "live", None, 0,
                                              f"{_rel(p)}: left alone, {who} is recording now")
                               for p in leftovers)
                continue
        try:
            # Stale staging files first, so that a partial's rebuild can use its .recovering
            # name.
            leftovers.sort(key=lambda p: (p.name.endswith(PARTIAL_SUFFIX), str(p)))
            results.extend(recover_file(p) for p in leftovers if p.exists())
        finally:
            if take_lock:
                lock.release()
    return results
