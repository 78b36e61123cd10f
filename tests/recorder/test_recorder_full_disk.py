"""A disk that fills up while recording: recording stops with an alert, the process and the
loop carry on, and the episode is kept readable and recovered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from ci_needs import need
from recsim import sim_records

from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.reader import read_info
from takeover.recorder.recover import recover_workspace
from takeover.recorder.verify import verify_workspace
from takeover.recorder.writer import EpisodeWriter, RecorderAlert

HERE = Path(__file__).parent


def _check_kept_and_recovered(workspace: Path, committed: int | None = None) -> None:
    [partial] = (workspace / "rounds" / "r000").glob("*.partial")
    info = read_info(partial)  # readable as it is
    assert info.num_steps > 0
    if committed is not None:
        assert info.num_steps == committed
    [result] = recover_workspace(workspace)
    assert result.action == "recovered" and result.steps == info.num_steps
    final = read_info(result.final)  # type: ignore[arg-type]
    assert final.outcome == "interrupted" and final.recovered
    assert verify_workspace(workspace, deep=True).ok


def test_file_size_limit_stops_recording_cleanly(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes writes fail with EFBIG, like ENOSPC, without needing root."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run(
        [sys.executable, str(HERE / "full_disk_child.py"), str(workspace), str(2_000_000)],
        capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    out = json.loads(proc.stdout.decode().splitlines()[-1])
    # Every one of the 400 offers returned (none blocked); those after the failure said no.
    assert out["accepted"] + out["refused"] == 400 and out["refused"] > 0
    assert out["saved"] == "None" and out["state"] == "stopped"
    [(code, message)] = out["alerts"]
    assert code == "write_failed" and "File too large" in message
    assert "recording stopped" in message and "\n" not in message
    committed = int(message.split("last flush (")[1].split(" ")[0])
    _check_kept_and_recovered(workspace, committed)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (needs root; skipped elsewhere)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    need(os.geteuid() == 0, "mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                       capture_output=True)
    need(r.returncode == 0, f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        ws = mnt / "ws"
        ws.mkdir()
        yield ws
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(writer: EpisodeWriter, n: int = 400) -> tuple[int, int]:
    base = list(sim_records(seed=8, n=20))
    writer.begin_episode(EpisodeMeta(round=0, rate_hz=20.0))
    accepted = refused = 0
    for i in range(n):
        ok = writer.offer(replace(base[i % 20], step=i, t_ns=base[0].t_ns + i * 50_000_000))
        accepted += ok
        refused += not ok
        if i % 20 == 19:
            assert writer.sync(30)
    return accepted, refused


def test_real_full_disk_enospc(small_fs: Path) -> None:
    alerts: list[RecorderAlert] = []
    with EpisodeWriter(small_fs, compression="none", queue_s=1000.0, min_free_bytes=0,
                       on_alert=alerts.append) as w:
        accepted, refused = _fill(w)
        assert accepted + refused == 400 and refused > 0  # every offer returned
        assert w.end_episode("success").result(30) is None
    [alert] = [a for a in alerts if a.level == "error"]
    assert alert.code == "write_failed" and "No space left on device" in alert.message
    [partial] = (small_fs / "rounds" / "r000").glob("*.partial")
    kept = read_info(partial).num_steps
    assert kept > 0
    # Recovery needs room for its copy: without it, one clear line and the partial is kept.
    results = recover_workspace(small_fs)
    assert [r.action for r in results] == ["failed"]
    assert "No space left on device" in results[0].message and partial.exists()
    assert "\n" not in results[0].message
    # The operator frees space; recovery then succeeds.
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_fs.parent)], check=True)
    _check_kept_and_recovered(small_fs, kept)


def test_low_space_reserve_ends_the_episode_before_the_disk_is_full(small_fs: Path) -> None:
    alerts: list[RecorderAlert] = []
    with EpisodeWriter(small_fs, compression="none", queue_s=1000.0,
                       min_free_bytes=1_000_000, on_alert=alerts.append) as w:
        accepted, refused = _fill(w)
        assert accepted + refused == 400 and refused > 0  # every offer returned
        saved = w.end_episode("success").result(30)
    assert saved is not None
    info = read_info(saved)
    assert info.outcome == "interrupted" and info.end_reason == "disk full"
    assert info.num_steps > 0
    assert any(a.code == "disk_full" for a in alerts)
    assert verify_workspace(small_fs, deep=True).ok
