"""A recorded round exported to robomimic's layout, read back with plain h5py."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from recorder_support import record_episode
from recsim import sim_records

from takeover.recorder.errors import ExportError
from takeover.recorder.reader import read_episode
from takeover.recorder.robomimic import export_robomimic, split_train_valid
from takeover.recorder.store import EpisodeStore
from takeover.recorder.writer import EpisodeWriter


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("rm") / "ws"
    ws.mkdir()
    with EpisodeWriter(ws, fsync=False) as w:
        for k, (rnd, outcome) in enumerate([(0, "success"), (0, "success"), (1, "failure"),
                                            (1, "success"), (2, "aborted")]):
            rows = list(sim_records(seed=20 + k, n=30 + 5 * k))
            if k == 4:  # an episode with no labeled step at all
                rows = [replace(r, action_mode=None) for r in rows]
            record_episode(w, rows, round_index=rnd, outcome=outcome, model_id=f"r{rnd:03d}")
    return ws


def test_export_layout_and_exact_numbers(recorded: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo.hdf5"
    summary = export_robomimic(recorded, out, valid_fraction=0.25, seed=1)
    assert summary.demos == 4 and summary.train + summary.valid == 4 and summary.valid == 1
    assert any("no labeled step" in s for s in summary.skipped)
    episodes = [read_episode(i.path) for i in EpisodeStore(recorded).episodes()][:4]
    with h5py.File(out, "r") as f:  # robomimic's reader, in plain h5py
        data = f["data"]
        demos = sorted(data.keys(), key=lambda k: int(k[5:]))
        assert demos == [f"demo_{i}" for i in range(4)]
        env = json.loads(data.attrs["env_args"])
        assert set(env) == {"env_name", "type", "env_kwargs"}
        assert env["env_kwargs"]["image_shape"] == [96, 96, 3]
        total = 0
        for name, ep in zip(demos, episodes, strict=True):
            g = data[name]
            keep = ep.labeled
            n = int(keep.sum())
            assert g.attrs["num_samples"] == n and g.attrs["takeover_episode"] == ep.info.key
            total += n
            np.testing.assert_array_equal(g["actions"][:], ep.action[keep])
            np.testing.assert_array_equal(g["obs/image"][:], ep.image[keep])  # type: ignore[index]
            np.testing.assert_array_equal(g["obs/scan"][:], ep.scan[keep])  # type: ignore[index]
            np.testing.assert_array_equal(g["obs/odom"][:], ep.odom[keep])
            np.testing.assert_array_equal(g["action_modes"][:], ep.action_mode[keep])
            assert set(np.unique(g["action_modes"][:])) <= {-1, 0, 1}
            dones = g["dones"][:]
            assert dones[-1] == 1 and dones[:-1].sum() == 0
            rewards = g["rewards"][:]
            assert rewards[-1] == (1.0 if ep.info.outcome == "success" else 0.0)
            assert rewards[:-1].sum() == 0
            for key in ("actions", "rewards", "dones", "action_modes"):
                assert g[key].shape[0] == n
        assert data.attrs["total"] == total
        train = [x.decode() for x in f["mask/train"][:]]
        valid = [x.decode() for x in f["mask/valid"][:]]
        assert sorted(train + valid) == demos and not set(train) & set(valid)
        assert [x.decode() for x in f["mask/r001"][:]] == ["demo_2", "demo_3"]


def test_export_with_unlabeled_steps_and_filters(recorded: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.hdf5"
    summary = export_robomimic(recorded, out, include_unlabeled=True, rounds=[2],
                               valid_fraction=0.0)
    assert summary.demos == 1 and summary.valid == 0
    ep = read_episode(EpisodeStore(recorded).episodes(round=2)[0].path)
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["data/demo_0/obs/image"][:], ep.image)
        np.testing.assert_array_equal(f["data/demo_0/action_modes"][:], ep.action_mode)
    with pytest.raises(ExportError, match="not overwriting"):
        export_robomimic(recorded, out)
    export_robomimic(recorded, out, overwrite=True, outcomes=["failure"])
    with h5py.File(out, "r") as f:
        assert list(f["data"].keys()) == ["demo_0"]
        assert f["data/demo_0"].attrs["outcome"] == "failure"
    assert not list(tmp_path.glob(".*.tmp"))


def test_split_is_seeded_and_complete() -> None:
    names = [f"demo_{i}" for i in range(10)]
    train, valid = split_train_valid(names, 0.2, seed=3)
    assert len(valid) == 2 and sorted(train + valid) == sorted(names)
    assert split_train_valid(names, 0.2, seed=3) == (train, valid)
    with pytest.raises(ExportError):
        split_train_valid(names, 1.0, seed=0)
