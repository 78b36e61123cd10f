"""An input the robot's link expects but never sent is named in the episode, and `data verify`
reports it (issue 15 B.2). A link names the inputs it expects in `Observation.input_t_ns`; an
expected input that has not arrived is there with the time the link began waiting for it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
from recorder_support import record_episode
from recsim import sim_records

from takeover.recorder.verify import verify_episode
from takeover.recorder.writer import EpisodeWriter
from takeover.types import StepRecord

AWAITED_S = 5.0


def as_over_rosbridge(records: list[StepRecord], scan_from_step: int | None) -> list[StepRecord]:
    """The records as a rosbridge link gives them: every input stamped; the scan missing (and
    awaited since AWAITED_S before the first step) until `scan_from_step`."""
    out = []
    assert records[0].observation is not None
    t0 = records[0].observation.t_ns
    for i, r in enumerate(records):
        obs = r.observation
        if obs is None:  # a tick without an observation stays one
            out.append(r)
            continue
        has_scan = scan_from_step is not None and i >= scan_from_step
        stamps = {"odom": obs.t_ns, "image": obs.t_ns,
                  "scan": obs.t_ns if has_scan else t0 - int(AWAITED_S * 1e9)}
        obs = dataclasses.replace(obs, scan_m=obs.scan_m if has_scan else None,
                                  input_t_ns=stamps)
        out.append(dataclasses.replace(r, observation=obs))
    return out


def test_an_episode_without_its_lidar_says_so_and_verify_reports_it(writer: EpisodeWriter,
                                                                    workspace: Path) -> None:
    records = as_over_rosbridge(list(sim_records(seed=5, n=60)), scan_from_step=None)
    path = record_episode(writer, records, robot_url="ws://robot:9090")
    with h5py.File(path, "r") as f:
        assert "obs/scan" not in f and "obs/image" in f
        missing = json.loads(f.attrs["missing_inputs"])
    assert set(missing) == {"scan"} and missing["scan"] >= AWAITED_S
    problems = verify_episode(path, workspace=workspace)
    assert len(problems) == 1, problems
    assert "scan" in problems[0] and "never received" in problems[0], problems


def test_a_lidar_a_few_steps_late_is_waited_for_and_recorded(writer: EpisodeWriter,
                                                             workspace: Path) -> None:
    """The first observations of an episode lack the scan (it arrives 5 steps later): the file
    still has obs/scan (NaN on the first steps) and nothing is reported missing."""
    records = as_over_rosbridge(list(sim_records(seed=5, n=60)), scan_from_step=5)
    path = record_episode(writer, records)
    with h5py.File(path, "r") as f:
        assert "obs/scan" in f
        scans = f["obs/scan"][:]
        assert json.loads(f.attrs.get("missing_inputs", "{}")) == {}
    assert len(scans) == 60
    assert not (scans[:5] == scans[:5]).any()  # NaN before it arrived
    assert (scans[5:] == scans[5:]).any()
    assert verify_episode(path, workspace=workspace) == []
