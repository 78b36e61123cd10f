"""Write episodes through the threaded writer, read them back, compare every field."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from recorder_support import record_episode

from takeover.recorder import schema
from takeover.recorder.episode_file import encode_text
from takeover.recorder.reader import EpisodeReader, read_episode, read_info
from takeover.recorder.writer import EpisodeWriter
from takeover.types import StepRecord


def _expected_command(rows: list[StepRecord], attr: str) -> np.ndarray:
    out = []
    for r in rows:
        c = getattr(r, attr)
        out.append((math.nan, math.nan) if c is None else (c.v_mps, c.w_radps))
    return np.array(out)


def assert_matches(path: Path, records: list[StepRecord]) -> None:
    ep = read_episode(path)
    n = len(records)
    assert len(ep) == n
    assert ep.info.num_steps == n
    np.testing.assert_array_equal(ep.t_ns, [r.t_ns for r in records])
    np.testing.assert_array_equal(ep.step, [r.step for r in records])
    np.testing.assert_array_equal(ep.obs_valid, [r.observation is not None for r in records])
    np.testing.assert_array_equal(
        ep.obs_t_ns, [-1 if r.observation is None else r.observation.t_ns for r in records])
    assert ep.image is not None and ep.scan is not None
    for i, r in enumerate(records):
        if r.observation is None:
            assert not ep.image[i].any()
            assert np.isnan(ep.scan[i]).all()
            assert np.isnan(ep.odom[i]).all()
        else:
            o = r.observation
            assert o.image is not None and o.scan_m is not None
            np.testing.assert_array_equal(ep.image[i], o.image)
            np.testing.assert_array_equal(ep.scan[i], o.scan_m)
            np.testing.assert_array_equal(
                ep.odom[i], [o.odom.x_m, o.odom.y_m, o.odom.yaw_rad, o.odom.v_mps, o.odom.w_radps])
            assert ep.battery_frac[i] == np.float32(o.battery_frac)
            assert ep.docked[i] == o.docked and ep.estop[i] == o.estop
            assert ep.bumper[i] == o.bumper
    np.testing.assert_array_equal(ep.action, _expected_command(records, "command"))
    np.testing.assert_array_equal(ep.policy_action, _expected_command(records, "policy_action"))
    np.testing.assert_array_equal(ep.human_action, _expected_command(records, "human_action"))
    np.testing.assert_array_equal(
        ep.action_mode,
        [schema.ACTION_MODE_UNLABELED if r.action_mode is None else r.action_mode
         for r in records])
    np.testing.assert_array_equal(ep.source, [schema.SOURCE_CODES[r.source] for r in records])
    np.testing.assert_array_equal(ep.mode, [schema.MODE_CODES[r.mode] for r in records])
    assert [bytes(x) for x in ep.reason] == [encode_text(r.reason, 48) for r in records]
    np.testing.assert_array_equal(ep.loop_late_ns, [r.loop_late_ns for r in records])
    np.testing.assert_array_equal(ep.policy_latency_ns, [r.policy_latency_ns for r in records])


@pytest.mark.parametrize("compression", ["none", "lzf", "gzip", "gzip:6"])
def test_roundtrip_every_field(workspace: Path, records_60: list[StepRecord],
                               compression: str) -> None:
    with EpisodeWriter(workspace, compression=compression, fsync=False) as w:
        path = record_episode(w, records_60, round_index=2, model_id="r001", operator="ana",
                              robot_url="sim://?seed=5", config={"loop": {"rate_hz": 20}},
                              extra={"seed": 5})
    assert path == workspace / "rounds" / "r002" / "ep_0001.hdf5"
    assert_matches(path, records_60)
    info = read_info(path)
    assert (info.round, info.episode, info.outcome) == (2, 1, "success")
    assert info.model_id == "r001" and info.operator == "ana" and info.robot_url == "sim://?seed=5"
    assert info.extra == {"seed": 5}
    assert info.key == "r002/ep_0001" and not info.partial and not info.recovered
    modes = np.array([-128 if r.action_mode is None else r.action_mode for r in records_60])
    assert info.demo_steps == int((modes == -1).sum())
    assert info.robot_steps == int((modes == 0).sum())
    assert info.intervention_steps == int((modes == 1).sum())
    assert info.human_steps == int((modes == 1).sum() + (modes == -1).sum())
    assert info.unlabeled_steps == int((modes == -128).sum())
    assert info.interventions == 2
    assert info.duration_s == pytest.approx(3.0)
    with h5py.File(path, "r") as f:
        assert json.loads(f.attrs["config"]) == {"loop": {"rate_hz": 20}}
        assert f.attrs["image_compression"] == str(compression if compression != "gzip"
                                                    else "gzip:1")
        assert f["obs/image"].chunks == (1, 96, 96, 3)
        assert f.attrs["schema_version"] == schema.SCHEMA_VERSION


def test_every_mode_and_source_value_roundtrips(workspace: Path,
                                                records_60: list[StepRecord]) -> None:
    from dataclasses import replace

    from takeover.types import CommandSource, Mode
    base = records_60[10]
    rows = []
    for i, (mode, source, am) in enumerate(
            (m, s, a) for m in Mode for s in CommandSource for a in (None, -1, 0, 1)):
        rows.append(replace(base, step=i, t_ns=base.t_ns + i * 50_000_000, mode=mode,
                            source=source, action_mode=am))
    # Backpressure: every combination is offered at once, more than a few seconds' queue holds.
    with EpisodeWriter(workspace, fsync=False, backpressure=True) as w:
        path = record_episode(w, rows, outcome="aborted")
    assert_matches(path, rows)
    assert read_info(path).outcome == "aborted"


def test_episodes_number_up_and_earlier_ones_stay(writer: EpisodeWriter,
                                                  records_60: list[StepRecord]) -> None:
    first = record_episode(writer, records_60[:20])
    before = first.read_bytes()
    second = record_episode(writer, records_60[20:], outcome="failure")
    assert first.name == "ep_0001.hdf5" and second.name == "ep_0002.hdf5"
    assert first.read_bytes() == before
    assert read_info(second).outcome == "failure"
    assert writer.stats().episodes_saved == 2


def test_lazy_reader_frames(writer: EpisodeWriter, records_60: list[StepRecord]) -> None:
    path = record_episode(writer, records_60)
    with EpisodeReader(path) as r:
        assert r.num_steps == 60 and r.image_shape == (96, 96, 3)
        img = records_60[7].observation.image  # type: ignore[union-attr]
        np.testing.assert_array_equal(r.frames(7), img)
        picked = r.frames(np.array([9, 7, 9, -53]))
        np.testing.assert_array_equal(picked[1], img)
        np.testing.assert_array_equal(picked[3], img)
        np.testing.assert_array_equal(picked[0], picked[2])
        with pytest.raises(IndexError):
            r.frames(60)
        assert r.frames(slice(5, 10)).shape == (5, 96, 96, 3)
        assert r.config == {}


def test_episode_without_sensors(writer: EpisodeWriter, records_60: list[StepRecord]) -> None:
    from dataclasses import replace
    rows = [replace(r, observation=None) for r in records_60[:10]]
    path = record_episode(writer, rows)
    ep = read_episode(path)
    assert ep.image is None and ep.scan is None and len(ep) == 10


def test_same_frame_object_on_consecutive_ticks(writer: EpisodeWriter,
                                                records_60: list[StepRecord]) -> None:
    """The loop runs faster than the camera: the same Observation on several ticks."""
    from dataclasses import replace
    rows = [replace(records_60[i], observation=records_60[(i // 3) * 3 + 2].observation,
                    step=i) for i in range(30)]
    path = record_episode(writer, rows)
    assert_matches(path, rows)


def test_noise_frames_stored_raw_with_filter_mask(workspace: Path,
                                                  records_60: list[StepRecord]) -> None:
    from dataclasses import replace
    rng = np.random.default_rng(0)
    rows = []
    for r in records_60[:5]:
        assert r.observation is not None or r is records_60[1]
        if r.observation is None:
            rows.append(r)
            continue
        noise = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
        rows.append(replace(r, observation=replace(r.observation, image=noise)))
    with EpisodeWriter(workspace, compression="gzip:9", fsync=False) as w:
        path = record_episode(w, rows)
    assert_matches(path, rows)
    with h5py.File(path, "r") as f:
        mask, _ = f["obs/image"].id.read_direct_chunk((0, 0, 0, 0))
        assert mask == 1  # deflate skipped: incompressible frame
