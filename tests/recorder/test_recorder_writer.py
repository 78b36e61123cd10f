"""The threaded writer's behaviour: a full queue, a full disk, episode boundaries, the lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from recorder_support import record_episode
from recsim import sim_records

from takeover.recorder import episode_file
from takeover.recorder import writer as writer_mod
from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.errors import WorkspaceBusyError, WorkspaceError
from takeover.recorder.reader import read_episode, read_info
from takeover.recorder.recover import recover_workspace
from takeover.recorder.verify import verify_workspace
from takeover.recorder.writer import EpisodeWriter, RecorderAlert
from takeover.types import StepRecord

META = EpisodeMeta(round=0, rate_hz=20.0)


class Gate:
    """Blocks the writer thread inside its first frame write until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        original = episode_file.EpisodeFileWriter.write_frame

        def gated(this: Any, frame: Any, **kwargs: Any) -> bool:
            if not self.entered.is_set():
                self.entered.set()
                assert self.release.wait(60)
            return original(this, frame, **kwargs)

        monkeypatch.setattr(episode_file.EpisodeFileWriter, "write_frame", gated)


@pytest.fixture
def alerts() -> list[RecorderAlert]:
    return []


@pytest.fixture
def small_writer(workspace: Path, alerts: list[RecorderAlert]) -> Iterator[EpisodeWriter]:
    w = EpisodeWriter(workspace, rate_hz=20.0, queue_s=1.0, fsync=False,
                      on_alert=alerts.append)
    w.start()
    yield w
    w.stop()


def test_full_queue_drops_without_blocking(monkeypatch: pytest.MonkeyPatch,
                                           small_writer: EpisodeWriter,
                                           alerts: list[RecorderAlert],
                                           records_60: list[StepRecord]) -> None:
    gate = Gate(monkeypatch)
    capacity = small_writer.stats().queue_capacity
    assert capacity == 20  # 1 s at 20 Hz
    rows = [replace(records_60[i % 60], step=i, t_ns=records_60[0].t_ns + i * 50_000_000)
            for i in range(capacity + 6)]
    small_writer.begin_episode(META)
    assert small_writer.offer(rows[2])  # the writer takes this one and blocks on it
    assert gate.entered.wait(30)
    accepted = [small_writer.offer(r) for r in rows[3:]]
    assert accepted == [True] * capacity + [False] * 3
    stats = small_writer.stats()
    assert stats.dropped_steps == 3 and stats.queue_high_water == capacity
    assert stats.queue_depth == capacity
    gate.release.set()
    path = small_writer.end_episode("success").result(30)
    assert path is not None
    info = read_info(path)
    assert info.num_steps == 1 + capacity and info.dropped_steps == 3
    ep = read_episode(path)
    assert list(ep.step) == [r.step for r in rows[2:3 + capacity]]
    codes = {a.code for a in alerts}
    assert {"steps_dropped", "falling_behind", "episode_saved"} <= codes


def test_disk_nearly_full_stops_recording_and_keeps_the_episode(
        monkeypatch: pytest.MonkeyPatch, small_writer: EpisodeWriter,
        alerts: list[RecorderAlert], records_60: list[StepRecord]) -> None:
    real = writer_mod.shutil.disk_usage
    free = {"bytes": 10**12}

    def fake_usage(path: Any) -> Any:
        u = real(path)
        return type(u)(u.total, u.used, free["bytes"])

    monkeypatch.setattr(writer_mod.shutil, "disk_usage", fake_usage)
    small_writer.begin_episode(META)
    for r in records_60[:15]:
        assert small_writer.offer(r)
    assert small_writer.sync(30)
    free["bytes"] = 1000
    assert small_writer.offer(records_60[15])
    assert small_writer.sync(30)  # the commit sees the low space and stops
    assert not small_writer.offer(records_60[16])  # refused, without blocking
    assert not small_writer.recording
    assert small_writer.stats().refused_steps == 1
    saved = small_writer.end_episode("success").result(30)
    assert saved is not None
    info = read_info(saved)
    assert info.outcome == "interrupted" and info.end_reason == "disk full"
    assert info.num_steps == 16
    assert any(a.code == "disk_full" and "recording stopped" in a.message for a in alerts)
    # No space: a new episode does not start.
    small_writer.begin_episode(META)
    small_writer.offer(records_60[20])
    assert small_writer.sync(30)
    assert not small_writer.offer(records_60[21])
    assert small_writer.end_episode("success").result(30) is None
    # Space again: recording works again.
    free["bytes"] = 10**12
    path = record_episode(small_writer, records_60[30:40])
    assert read_info(path).num_steps == 10 and path.name == "ep_0002.hdf5"


def test_partial_is_readable_while_recording(small_writer: EpisodeWriter,
                                             records_60: list[StepRecord]) -> None:
    small_writer.begin_episode(META)
    for r in records_60[:12]:
        small_writer.offer(r)
    assert small_writer.sync(30)
    partial = small_writer.workspace / "rounds" / "r000" / "ep_0001.hdf5.partial"
    info = read_info(partial)
    assert info.partial and info.outcome == "recording" and info.num_steps == 12
    ep = read_episode(partial)
    assert len(ep) == 12 and ep.step[-1] == records_60[11].step
    report = verify_workspace(small_writer.workspace)
    assert report.ok and report.live == [partial]
    with pytest.raises(WorkspaceBusyError, match="is recording"):
        recover_workspace(small_writer.workspace, robot_name="")
    [left_alone] = recover_workspace(small_writer.workspace)  # every robot: the live one skipped
    assert left_alone.action == "live" and left_alone.ok and partial.exists()
    small_writer.end_episode("success").result(30)


def test_episode_boundaries(small_writer: EpisodeWriter, alerts: list[RecorderAlert],
                            records_60: list[StepRecord]) -> None:
    assert small_writer.offer(records_60[0])  # no episode: accepted, nothing recorded
    small_writer.begin_episode(META)
    for r in records_60[:5]:
        small_writer.offer(r)
    small_writer.begin_episode(replace(META, round=1))  # the open one is saved as aborted
    for r in records_60[5:9]:
        small_writer.offer(r)
    second = small_writer.end_episode("failure").result(30)
    assert second is not None and second.parent.name == "r001"
    first = small_writer.workspace / "rounds" / "r000" / "ep_0001.hdf5"
    assert read_info(first).outcome == "aborted" and read_info(first).num_steps == 5
    assert any(a.code == "episode_replaced" for a in alerts)
    small_writer.begin_episode(META)
    small_writer.offer(records_60[10])
    small_writer.stop()
    third = small_writer.workspace / "rounds" / "r000" / "ep_0002.hdf5"
    assert read_info(third).outcome == "aborted"
    assert read_info(third).end_reason == "recorder stopped"


def test_backpressure_mode_loses_nothing(workspace: Path) -> None:
    rows = list(sim_records(seed=2, n=80, images=False))
    with EpisodeWriter(workspace, queue_s=0.1, rate_hz=20.0, backpressure=True,
                       fsync=False) as w:
        assert w.stats().queue_capacity == 16
        path = record_episode(w, rows)
        assert w.stats().dropped_steps == 0
    assert read_info(path).num_steps == 80


def test_one_writer_per_workspace_and_alert_callback_errors(
        workspace: Path, records_60: list[StepRecord]) -> None:
    def broken(alert: RecorderAlert) -> None:
        raise RuntimeError("UI went away")

    with EpisodeWriter(workspace, fsync=False, on_alert=broken) as w:
        other = EpisodeWriter(workspace)
        with pytest.raises(WorkspaceBusyError):
            other.start()
        record_episode(w, records_60[:5])
    with EpisodeWriter(workspace, fsync=False) as again:  # the lock was released
        record_episode(again, records_60[:5])
    with pytest.raises(WorkspaceError, match="does not exist"):
        EpisodeWriter(workspace / "nope")


def test_bad_options() -> None:
    from takeover.errors import UsageError
    with pytest.raises(UsageError, match="unknown compression"):
        EpisodeWriter(".", compression="zstd")
    with pytest.raises(ValueError, match="at least once a second"):
        EpisodeWriter(".", flush_interval_s=2.0)


def test_start_recovers_what_a_crash_left(workspace: Path, records_60: list[StepRecord]) -> None:
    import shutil
    partial = workspace / "rounds" / "r000" / "ep_0001.hdf5.partial"
    with EpisodeWriter(workspace, fsync=False) as w:
        w.begin_episode(META)
        for r in records_60[:14]:
            w.offer(r)
        assert w.sync(30)
        shutil.copy(partial, workspace / "crash.tmp")  # the file as a crash leaves it
        w.end_episode("success").result(30)
    (workspace / "rounds" / "r000" / "ep_0001.hdf5").unlink()
    (workspace / "crash.tmp").rename(partial)
    alerts: list[RecorderAlert] = []
    with EpisodeWriter(workspace, fsync=False, on_alert=alerts.append) as w:
        path = record_episode(w, records_60[20:25])  # recovery ran first, on the thread
        assert [r.action for r in w.recovered] == ["recovered"]
    assert path.name == "ep_0002.hdf5"
    info = read_info(workspace / "rounds" / "r000" / "ep_0001.hdf5")
    assert info.outcome == "interrupted" and info.num_steps == 14 and info.recovered
    assert alerts[0].code == "recovered" and "recovered 14 steps" in alerts[0].message
