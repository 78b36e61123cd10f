"""The protective field's per-step record (schema version 2): recorded from the real loop, read
back, verified, counted in the round metrics; files of version 1 still read and verify."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np

from takeover.bench.safety import ExpertAsPolicy
from takeover.config import SafetyConfig
from takeover.control.arbiter import Arbiter, OperatorEvent
from takeover.control.episodes import EpisodeRunner
from takeover.control.loop import ControlLoop
from takeover.dagger.metrics import workspace_metrics
from takeover.inputs.scripted import DeadmanHolder
from takeover.recorder import schema
from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.reader import read_episode, read_info
from takeover.recorder.store import EpisodeStore
from takeover.recorder.verify import verify_episode
from takeover.recorder.writer import EpisodeWriter
from takeover.sim.link import SimLink
from takeover.sim.simulator import SimConfig

SEED = 7002  # a box is set down in the expert's path (tests/control/test_field_arbiter.py)


def record_auto_episode(workspace: Path) -> tuple[Path, list]:
    link = SimLink(seed=SEED, config=SimConfig(obstacles="box"), with_image=False)
    link.connect()
    loop = ControlLoop(link, Arbiter(SafetyConfig(), policy_available=True), DeadmanHolder(),
                       ExpertAsPolicy(link))
    writer = EpisodeWriter(workspace, rate_hz=20.0, backpressure=True, fsync=False)
    writer.start()
    loop.sinks.append(writer)
    runner = EpisodeRunner(loop, keep_records=True)
    result = runner.run(SEED, OperatorEvent.AUTO, prepare=lambda: writer.begin_episode(
        EpisodeMeta(round=1, rate_hz=20.0, model_id="expert")))
    path = writer.end_episode(result.outcome).result(timeout=60)
    writer.stop()
    assert path is not None and result.protective_stops >= 1
    return path, result.records


def test_the_field_is_recorded_per_step_and_its_stops_counted(tmp_path: Path) -> None:
    path, records = record_auto_episode(tmp_path)
    assert verify_episode(path) == []
    episode = read_episode(path, images=False)
    assert episode.info.schema_version == schema.SCHEMA_VERSION == 2
    assert episode.field_state is not None and episode.field_clearance_m is not None
    # The file holds every tick from engaging AUTO on (the writer records from begin_episode).
    by_step = {r.step: r for r in records}
    checked = 0
    for step, code, clearance in zip(episode.step, episode.field_state,
                                     episode.field_clearance_m, strict=True):
        rec = by_step.get(int(step))
        if rec is None:
            continue
        want = rec.field
        assert code == (0 if want is None else schema.FIELD_STATE_CODES[want.state])
        if want is None or math.isnan(want.clearance_m):
            assert math.isnan(clearance)
        else:
            assert clearance == np.float32(want.clearance_m)
        checked += 1
    assert checked >= len(records) - 1
    stops = int(np.count_nonzero(np.diff(np.r_[0, episode.field_state == 4].astype(int)) == 1))
    assert episode.info.protective_stops == stops >= 1
    with h5py.File(path) as f:
        assert f["field/state"].attrs["labels"].startswith("off,clear,warning,limited,stopped")
    rows = workspace_metrics(EpisodeStore(tmp_path).episodes())
    assert [m.protective_stops for m in rows] == [stops]


def test_a_version_1_file_still_reads_and_verifies(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    path, _ = record_auto_episode(tmp_path / "ws")
    old = tmp_path / "old" / "rounds" / "r001" / "ep_0001.hdf5"
    old.parent.mkdir(parents=True)
    shutil.copy(path, old)
    with h5py.File(old, "r+") as f:  # what a takeover before the field wrote
        del f["field"]
        del f.attrs["protective_stops"]
        f.attrs["schema_version"] = 1
        summary = json.loads(bytes(f.attrs["summary"]).decode())
        del summary["protective_stops"]
        summary["schema_version"] = 1
        f.attrs["summary"] = np.bytes_(json.dumps(summary, sort_keys=True))
    assert verify_episode(old) == []
    episode = read_episode(old, images=False)
    assert episode.field_state is None and episode.field_clearance_m is None
    assert read_info(old).protective_stops == 0
    with h5py.File(old, "r+") as f:
        f.attrs["schema_version"] = 3  # from the future
    assert "schema_version 3" in verify_episode(old)[0]
