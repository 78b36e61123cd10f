"""The robomimic export read by robomimic's own SequenceDataset, with and without next_obs
(robomimic's base configuration loads next_obs; its offline-RL algorithms need it)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from recorder_support import record_episode
from recsim import sim_records

from takeover.recorder.reader import read_episode
from takeover.recorder.robomimic import export_robomimic
from takeover.recorder.store import EpisodeStore
from takeover.recorder.writer import EpisodeWriter

ObsUtils = pytest.importorskip("robomimic.utils.obs_utils")
SequenceDataset = pytest.importorskip("robomimic.utils.dataset").SequenceDataset

OBS_KEYS = ("image", "scan", "odom")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    ws = tmp_path_factory.mktemp("rm-loader") / "ws"
    ws.mkdir()
    with EpisodeWriter(ws, fsync=False) as w:
        for k in range(3):
            record_episode(w, list(sim_records(seed=80 + k, n=30)),
                           outcome="success" if k else "failure")
    out = ws.parent / "demo.hdf5"
    export_robomimic(ws, out, valid_fraction=0.0)
    return ws, out


@pytest.mark.parametrize("load_next_obs", [False, True])
def test_sequence_dataset_loads_the_export(exported: tuple[Path, Path], load_next_obs: bool) -> None:
    _, out = exported
    ObsUtils.initialize_obs_modality_mapping_from_dict({"low_dim": ["odom", "scan"],
                                                        "rgb": ["image"]})
    ds = SequenceDataset(hdf5_path=str(out), obs_keys=OBS_KEYS,
                         dataset_keys=("actions", "rewards", "dones"),
                         load_next_obs=load_next_obs, seq_length=10, frame_stack=1,
                         hdf5_cache_mode=None, hdf5_use_swmr=False)
    with h5py.File(out, "r") as f:
        total = int(f["data"].attrs["total"])
    assert len(ds) == total
    item = ds[5]
    assert item["actions"].shape == (10, 2) and item["obs"]["image"].shape == (10, 96, 96, 3)
    assert ("next_obs" in item) == load_next_obs
    if load_next_obs:
        assert item["next_obs"]["odom"].shape == (10, 5)
        assert item["next_obs"]["scan"].shape[0] == 10


def test_next_obs_is_the_next_step_of_the_episode(exported: tuple[Path, Path]) -> None:
    ws, out = exported
    episodes = [read_episode(i.path) for i in EpisodeStore(ws).episodes()]
    with h5py.File(out, "r") as f:
        for k, ep in enumerate(episodes):
            g = f[f"data/demo_{k}"]
            keep = np.flatnonzero(ep.labeled)
            successor = np.minimum(keep + 1, len(ep) - 1)
            assert ep.image is not None and ep.scan is not None
            np.testing.assert_array_equal(g["next_obs/image"][:], ep.image[successor])
            np.testing.assert_array_equal(g["next_obs/scan"][:], ep.scan[successor])
            np.testing.assert_array_equal(g["next_obs/odom"][:], ep.odom[successor])
            np.testing.assert_array_equal(g["obs/odom"][:], ep.odom[keep])
