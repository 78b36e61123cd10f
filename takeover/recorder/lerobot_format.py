"""LeRobot's dataset format, v3.0 (what LeRobot 0.4 and later read), as the export writes it
and the import reads it. One place for the paths, the feature keys and the statistics.

```
OUT/
  meta/info.json                       codebase_version "v3.0", fps, features, path templates
  meta/stats.json                      per feature: min, max, mean, std, count, q01..q99
  meta/tasks.parquet                   task text (the pandas index) -> task_index
  meta/episodes/chunk-000/file-000.parquet   one row per episode: length, tasks, where its
                                       frames and video are, its statistics (stats/...)
  meta/takeover.json                   what LeRobot does not carry (scan angles, source episodes)
  data/chunk-000/file-000.parquet      one row per frame (many episodes per file)
  videos/observation.images.front/chunk-000/file-000.mp4   many episodes per file, one after
                                       the other; an episode's frames start at its
                                       videos/KEY/from_timestamp
```

A file rolls over to the next `file-NNN` once it holds `data_files_size_in_mb` (100) or
`video_files_size_in_mb` (500) MB; a chunk holds `chunks_size` (1000) files. This is
LeRobot's layout to the letter (lerobot/datasets/utils.py, lerobot_dataset.py).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from takeover.recorder.errors import LeRobotError

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
TAKEOVER_PATH = "meta/takeover.json"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE + ".parquet"
CHUNKS_SIZE = 1000  # files per chunk directory
DATA_FILE_MB = 100.0
VIDEO_FILE_MB = 500.0

# Feature keys. `observation.*` and `action` are what LeRobot's policies take (state, images,
# environment state, action); `next.*` are its reward/done/success; `complementary_info.*` is
# where LeRobot's own human-in-the-loop recorder keeps per-frame extras (is_intervention).
CAMERA_KEY = "observation.images.front"
STATE_KEY = "observation.state"
SCAN_KEY = "observation.environment_state"
ACTION_KEY = "action"
REWARD_KEY = "next.reward"
DONE_KEY = "next.done"
SUCCESS_KEY = "next.success"
INTERVENTION_KEY = "complementary_info.is_intervention"
ACTION_MODE_KEY = "complementary_info.action_mode"
SOURCE_KEY = "complementary_info.source"
MODE_KEY = "complementary_info.mode"
OBS_VALID_KEY = "complementary_info.obs_valid"
POLICY_ACTION_KEY = "complementary_info.policy_action"
HUMAN_ACTION_KEY = "complementary_info.human_action"
T_NS_KEY = "complementary_info.t_ns"
INDEX_KEYS = ("timestamp", "frame_index", "episode_index", "index", "task_index")

#: A LiDAR beam without a return is NaN in an episode and 0.0 here: a policy's normaliser
#: cannot take NaN, and 0 m is never a real range (every LiDAR has range_min > 0); several
#: drivers report no return as 0 already. The import turns 0 back into NaN.
NO_RETURN_M = 0.0
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)


def feature(dtype: str, shape: Iterable[int], names: list[str] | None, fps: int
            ) -> dict[str, Any]:
    """One entry of info.json's `features` (LeRobot: dtype, shape, names, fps)."""
    return {"dtype": dtype, "shape": list(shape), "names": names, "fps": fps}


def index_features(fps: int) -> dict[str, dict[str, Any]]:
    """The five columns every LeRobot frame has (its DEFAULT_FEATURES)."""
    return {
        "timestamp": feature("float32", (1,), None, fps),
        "frame_index": feature("int64", (1,), None, fps),
        "episode_index": feature("int64", (1,), None, fps),
        "index": feature("int64", (1,), None, fps),
        "task_index": feature("int64", (1,), None, fps),
    }


def info_json(*, fps: int, features: dict[str, dict[str, Any]], total_episodes: int,
              total_frames: int, total_tasks: int, robot_type: str,
              data_file_mb: float, video_file_mb: float) -> dict[str, Any]:
    """meta/info.json as LeRobot's `create_empty_dataset_info` lays it out, filled in."""
    has_video = any(f["dtype"] == "video" for f in features.values())
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": total_episodes,
        "total_frames": total_frames,
        "total_tasks": total_tasks,
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": data_file_mb,
        "video_files_size_in_mb": video_file_mb,
        "fps": fps,
        "splits": {"train": f"0:{total_episodes}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if has_video else None,
        "features": features,
    }


def next_file(chunk_index: int, file_index: int) -> tuple[int, int]:
    """The (chunk, file) after this one (LeRobot's update_chunk_file_indices)."""
    if file_index == CHUNKS_SIZE - 1:
        return chunk_index + 1, 0
    return chunk_index, file_index + 1


# --- statistics ---------------------------------------------------------------------------------

def vector_stats(values: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
    """min, max, mean, std, count and quantiles per dimension of (n, d) values (NaN ignored;
    a dimension that is all NaN gets 0)."""
    x = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    n = len(x)
    if n == 0:
        raise ValueError("no values")
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            stats = {
                "min": np.nanmin(x, axis=0), "max": np.nanmax(x, axis=0),
                "mean": np.nanmean(x, axis=0), "std": np.nanstd(x, axis=0),
            }
            quantiles = np.nanquantile(x, QUANTILES, axis=0)
    for key, q in zip(QUANTILE_KEYS, quantiles, strict=True):
        stats[key] = q
    out = {k: np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0) for k, v in stats.items()}
    out["count"] = np.array([n], dtype=np.int64)
    return out


def image_stats(frames: npt.NDArray[np.uint8]) -> dict[str, npt.NDArray[Any]]:
    """Per-channel statistics of (n, H, W, 3) frames scaled to [0, 1], each of shape (3, 1, 1)
    (LeRobot's layout for camera statistics); large frames are subsampled to ~150 px."""
    n, h, w, _ = frames.shape
    step = max(1, max(h, w) // 150)
    pixels = frames[:, ::step, ::step, :].reshape(-1, 3).astype(np.float64) / 255.0
    stats = vector_stats(pixels)
    out = {k: v.reshape(3, 1, 1) for k, v in stats.items() if k != "count"}
    out["count"] = np.array([n], dtype=np.int64)
    return out


def aggregate_stats(per_episode: list[dict[str, npt.NDArray[Any]]]) -> dict[str, npt.NDArray[Any]]:
    """Dataset statistics from the episodes' as LeRobot aggregates them: min of mins, max of
    maxes, the pooled mean and variance, quantiles averaged weighted by count."""
    counts = np.array([float(s["count"][0]) for s in per_episode])
    total = counts.sum()
    weights = counts / total
    shape = per_episode[0]["mean"].shape
    w = weights.reshape((-1,) + (1,) * len(shape))
    means = np.stack([s["mean"] for s in per_episode])
    mean = (w * means).sum(axis=0)
    variance = (w * (np.stack([s["std"] for s in per_episode]) ** 2 + (means - mean) ** 2)).sum(0)
    out = {
        "min": np.min(np.stack([s["min"] for s in per_episode]), axis=0),
        "max": np.max(np.stack([s["max"] for s in per_episode]), axis=0),
        "mean": mean, "std": np.sqrt(variance),
        "count": np.array([int(total)], dtype=np.int64),
    }
    for key in QUANTILE_KEYS:
        out[key] = (w * np.stack([s[key] for s in per_episode])).sum(axis=0)
    return out


def stats_json(stats: dict[str, dict[str, npt.NDArray[Any]]]) -> dict[str, dict[str, Any]]:
    return {key: {name: np.asarray(v).tolist() for name, v in s.items()}
            for key, s in stats.items()}


# --- reading ----------------------------------------------------------------------------------

def parse_version(text: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", text.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def read_info(root: Path) -> dict[str, Any]:
    """meta/info.json of a LeRobot v3 dataset; LeRobotError (one line) for anything else."""
    if not root.exists():
        raise LeRobotError(f"{root} does not exist")
    if not root.is_dir():
        raise LeRobotError(f"{root} is not a LeRobot dataset: expected a directory with "
                           f"{INFO_PATH}")
    path = root / INFO_PATH
    if not path.is_file():
        legacy = (root / "meta" / "episodes.jsonl").exists()
        hint = " (it looks like LeRobot v1/v2: convert it to v3.0 with LeRobot first)" if legacy \
            else ""
        raise LeRobotError(f"{root} is not a LeRobot dataset: no {INFO_PATH}{hint}")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise LeRobotError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(info, dict) or not isinstance(info.get("features"), dict):
        raise LeRobotError(f"{path}: not a LeRobot info.json (no features)")
    version_text = str(info.get("codebase_version", ""))
    version = parse_version(version_text)
    if version is None or version[0] != 3:
        raise LeRobotError(
            f"{root}: LeRobot dataset version {version_text or 'unknown'}; takeover reads v3.x "
            "(convert older datasets with LeRobot's convert_dataset_v21_to_v30)")
    fps = info.get("fps")
    if not isinstance(fps, int | float) or not fps > 0 or not math.isfinite(fps):
        raise LeRobotError(f"{path}: bad fps {fps!r}")
    for key in ("data_path", "features"):
        if key not in info:
            raise LeRobotError(f"{path}: {key!r} is missing")
    return info


def read_takeover_meta(root: Path) -> dict[str, Any]:
    """meta/takeover.json when the dataset came from takeover, else {}."""
    try:
        data = json.loads((root / TAKEOVER_PATH).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
