"""Export a workspace's episodes to one robomimic-layout HDF5 file (Sirius's labels included).

```
data                      attrs: total (steps in all demos), env_args (JSON)
data/demo_N               attrs: num_samples, takeover_episode ("r001/ep_0003"), outcome,
                                 model_id, round, robot_name ("" unnamed)
  obs/image  (N, H, W, 3) uint8      present when the robot has a camera
  obs/scan   (N, B) float32          present when the robot has a LiDAR
  obs/odom   (N, 5) float64          x_m, y_m, yaw_rad, v_mps, w_radps
  next_obs/image, next_obs/scan, next_obs/odom   the same keys one step later (below)
  actions    (N, 2) float64          the command sent: v_mps, w_radps
  rewards    (N,) float64            1.0 on the last step of a successful episode, else 0
  dones      (N,) int64              1 on the last step
  action_modes (N,) int64            Sirius: -1 demonstration, 0 robot, 1 intervention
mask/train, mask/valid    demo names (bytes), split by episode
mask/rNNN                 the demos of each round (robomimic filter keys)
```

Demos follow (round, episode) order; demo numbers start at 0. Steps without a Sirius label
(IDLE, ESTOP, LINK_LOST ticks) are left out unless `include_unlabeled`; everything else is
copied exactly (frames as their stored compressed chunks). `env_args` names the robot and the
rate; robomimic can train from the file but has no environment to roll it out in.

`next_obs` is what robomimic's base configuration loads (`load_next_obs`, which its offline-RL
algorithms need): for the sample of episode step i, the observation of step i + 1 of the
episode, whether or not that step is exported; the episode's last step has no successor and
repeats its own observation (its `dones` is 1, so no algorithm bootstraps from it).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from takeover.recorder import schema
from takeover.recorder.errors import ExportError
from takeover.recorder.reader import EpisodeInfo, open_h5
from takeover.recorder.store import EpisodeStore
from takeover.workspace.atomic import fsync_dir

ENV_NAME = "TakeoverDock-v0"
GYM_ENV_TYPE = 2  # robomimic's EnvType.GYM_TYPE
OBS_KEYS = ("image", "scan", "odom")


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    demos: int
    samples: int
    train: int
    valid: int
    skipped: list[str]  # one line per episode left out, with the reason


def split_train_valid(names: list[str], valid_fraction: float, seed: int
                      ) -> tuple[list[str], list[str]]:
    """A seeded split by demo. At least one validation demo once there are two demos."""
    if not 0.0 <= valid_fraction < 1.0:
        raise ExportError(f"valid fraction must be in [0, 1), got {valid_fraction}")
    n_valid = round(valid_fraction * len(names))
    if valid_fraction > 0 and len(names) >= 2:
        n_valid = max(1, n_valid)
    shuffled = list(names)
    random.Random(seed).shuffle(shuffled)
    valid = set(shuffled[:n_valid])
    return [n for n in names if n not in valid], [n for n in names if n in valid]


def export_robomimic(
    workspace: Path | str,
    out: Path | str,
    *,
    rounds: Iterable[int] | None = None,
    outcomes: Iterable[str] | None = None,
    valid_fraction: float = 0.1,
    seed: int = 0,
    include_unlabeled: bool = False,
    overwrite: bool = False,
) -> ExportSummary:
    """Write the export to `out` atomically (temporary file + rename). See the module doc."""
    store = EpisodeStore(workspace)
    out = Path(out).expanduser().absolute()
    if out.exists() and not overwrite:
        raise ExportError(f"{out} exists; not overwriting it (pass --force to replace it)")
    if not out.parent.is_dir():
        raise ExportError(f"cannot write {out}: directory {out.parent} does not exist")
    wanted_rounds = None if rounds is None else set(rounds)
    wanted_outcomes = None if outcomes is None else set(outcomes)
    infos = [i for i in store.episodes()
             if (wanted_rounds is None or i.round in wanted_rounds)
             and (wanted_outcomes is None or i.outcome in wanted_outcomes)]
    skipped = [f"{p.name}: unreadable ({why})" for p, why in store.unreadable]
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with h5py.File(tmp, "w") as dst:
            summary = _write(dst, infos, include_unlabeled, valid_fraction, seed, skipped)
            dst.flush()
            os.fsync(dst.id.get_vfd_handle())
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return ExportSummary(out, *summary, skipped)


def _write(dst: h5py.File, infos: list[EpisodeInfo], include_unlabeled: bool,
           valid_fraction: float, seed: int, skipped: list[str]) -> tuple[int, int, int, int]:
    data = dst.create_group("data")
    names: list[str] = []
    by_round: dict[int, list[str]] = {}
    total = 0
    image_shape: tuple[int, ...] | None = None
    scan_beams: int | None = None
    rate_hz: float | None = None
    robots: set[str] = set()
    for info in infos:
        try:
            exported = _export_one(data, info, f"demo_{len(names)}", include_unlabeled)
        except (OSError, ValueError, KeyError) as err:  # damage inside an episode file
            raise ExportError(f"{info.key}: cannot be exported ({err}); run `takeover data "
                              "verify`") from None
        if exported is None:
            skipped.append(f"{info.key}: no labeled step")
            continue
        name, samples, shape, beams = exported
        names.append(name)
        by_round.setdefault(info.round, []).append(name)
        total += samples
        image_shape = shape or image_shape
        scan_beams = beams or scan_beams
        rate_hz = rate_hz or info.rate_hz
        robots.add(info.robot_url)
    data.attrs["total"] = total
    data.attrs["env_args"] = json.dumps({
        "env_name": ENV_NAME,
        "type": GYM_ENV_TYPE,
        "env_kwargs": {
            "rate_hz": rate_hz,
            "robot_urls": sorted(robots),
            "image_shape": list(image_shape) if image_shape else None,
            "scan_beams": scan_beams,
            "action_keys": list(schema.ACTION_COLUMNS),
            "takeover_schema_version": schema.SCHEMA_VERSION,
        },
    })
    train, valid = split_train_valid(names, valid_fraction, seed)
    mask = dst.create_group("mask")
    mask.create_dataset("train", data=np.array(train, dtype="S"))
    mask.create_dataset("valid", data=np.array(valid, dtype="S"))
    for r, demo_names in sorted(by_round.items()):
        mask.create_dataset(f"r{r:03d}", data=np.array(demo_names, dtype="S"))
    return len(names), total, len(train), len(valid)


def _export_one(data: h5py.Group, info: EpisodeInfo, name: str, include_unlabeled: bool
                ) -> tuple[str, int, tuple[int, ...] | None, int | None] | None:
    """Write one episode as data/NAME: (name, samples, image shape, scan beams), or None if
    it has no step to export."""
    with open_h5(info.path) as src:
        modes = src["action_mode"][:]
        keep = np.arange(len(modes)) if include_unlabeled else \
            np.flatnonzero(modes != schema.ACTION_MODE_UNLABELED)
        if len(keep) == 0:
            return None
        _write_demo(data.create_group(name), src, info, keep)
        shape = tuple(src["obs/image"].shape[1:]) if "obs/image" in src else None
        beams = int(src["obs/scan"].shape[1]) if "obs/scan" in src else None
    return name, len(keep), shape, beams


def _write_demo(demo: h5py.Group, src: h5py.File, info: EpisodeInfo, keep: np.ndarray) -> None:
    n = len(keep)
    demo.attrs["num_samples"] = n
    demo.attrs["takeover_episode"] = info.key
    demo.attrs["outcome"] = info.outcome
    demo.attrs["model_id"] = info.model_id
    demo.attrs["round"] = info.round
    demo.attrs["robot_name"] = info.robot_name  # "" for an unnamed robot
    small = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    last = len(src["action_mode"]) - 1
    successor = np.minimum(keep + 1, last)
    for group_name, rows in (("obs", keep), ("next_obs", successor)):
        group = demo.create_group(group_name)
        for key in OBS_KEYS:
            source = f"obs/{key}"
            if source not in src:
                continue
            if key == "image":
                _copy_frames(src[source], group, rows)
            else:
                group.create_dataset(key, data=src[source][:][rows], **small)
    demo.create_dataset("actions", data=src["action"][:][keep], **small)
    rewards = np.zeros(n, dtype=np.float64)
    if info.outcome == "success":
        rewards[-1] = 1.0
    dones = np.zeros(n, dtype=np.int64)
    dones[-1] = 1
    demo.create_dataset("rewards", data=rewards)
    demo.create_dataset("dones", data=dones)
    demo.create_dataset("action_modes", data=src["action_mode"][:][keep].astype(np.int64))


def _copy_frames(image: h5py.Dataset, obs: h5py.Group, keep: np.ndarray) -> None:
    """Frames as stored: one chunk per frame, copied compressed, same filters as the source."""
    kwargs = {}
    if image.compression:
        kwargs["compression"] = image.compression
        if image.compression_opts is not None:
            kwargs["compression_opts"] = image.compression_opts
    shape = image.shape[1:]
    out = obs.create_dataset("image", shape=(len(keep), *shape), chunks=(1, *shape),
                             dtype=np.uint8, fillvalue=0, **kwargs)
    zeros = (0,) * len(shape)
    frame_bytes = int(np.prod(shape))
    for j, i in enumerate(keep):
        info = image.id.get_chunk_info_by_coord((int(i), *zeros))
        if info.byte_offset is None:
            continue  # no frame on that step: reads as zeros, like the source
        mask, chunk = image.id.read_direct_chunk((int(i), *zeros))
        if mask == 0 and image.compression:
            _check_chunk(image, int(i), chunk, frame_bytes)
        out.id.write_direct_chunk((j, *zeros), chunk, mask)


def _check_chunk(image: h5py.Dataset, i: int, chunk: bytes, frame_bytes: int) -> None:
    """Decode a compressed frame once, so that a damaged one stops the export rather than
    being copied into it."""
    if image.compression == "gzip":
        try:
            ok = len(zlib.decompress(chunk)) == frame_bytes
        except zlib.error:
            ok = False
        if not ok:
            raise ValueError(f"frame {i} cannot be decoded")
    else:
        image[i]  # decoded by HDF5's filter; raises OSError when damaged
