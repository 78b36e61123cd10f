"""The LeRobot export and import: ten simulated episodes recorded by the real writer, exported to
LeRobot's v3.0 layout, read back as LeRobot reads it (pyarrow, pandas, PyAV for the MP4), and
imported again.

LeRobot itself is not installed here (on Python 3.11 its newest release pins torch < 2.11, the
project pins 2.14), so the layout is checked against LeRobot's format description
(lerobot/datasets/utils.py and lerobot_dataset.py of LeRobot 0.4, CODEBASE_VERSION "v3.0").

Video tolerance (AV1, yuv420p, CRF 30, LeRobot's settings): every decoded frame within a mean
absolute error of 12 levels (of 255) and a PSNR of at least 22 dB of the recorded frame, and
over an episode's frames a mean absolute error of at most 9 and a mean PSNR of at least 24 dB.
The simulator's flat colours with hard edges are the hard case for 4:2:0 chroma; docs/recorder.md
has the measured figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from recorder_support import record_episode
from recsim import sim_records

from takeover.cli.data import add_data_parser
from takeover.errors import TakeoverError, UsageError
from takeover.recorder import lerobot_format as fmt
from takeover.recorder.errors import ExportError
from takeover.recorder.lerobot_export import DEFAULT_TASK, export_lerobot
from takeover.recorder.lerobot_import import LeRobotImportOptions, import_lerobot
from takeover.recorder.reader import Episode, read_episode
from takeover.recorder.store import EpisodeStore
from takeover.recorder.writer import EpisodeWriter

EPISODES = 10
STEPS = 40
MAX_MEAN_ABS_ERROR = 12.0  # per frame, levels of 255
MIN_PSNR_DB = 22.0  # per frame
MAX_MEAN_ABS_ERROR_ALL = 9.0  # over an episode's frames
MIN_PSNR_DB_ALL = 24.0
LEROBOT_TOLERANCE_S = 1e-4  # LeRobotDataset's default tolerance_s between frame and timestamp


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("lerobot") / "ws"
    ws.mkdir()
    with EpisodeWriter(ws, fsync=False) as w:
        for k in range(EPISODES):
            rows = list(sim_records(seed=60 + k, n=STEPS))
            record_episode(w, rows, round_index=k // 5,
                           outcome="failure" if k % 4 == 3 else "success")
    return ws


@pytest.fixture(scope="module")
def episodes(recorded: Path) -> list[Episode]:
    return [read_episode(i.path) for i in EpisodeStore(recorded).episodes()]


@pytest.fixture(scope="module")
def exported(recorded: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lerobot-out") / "dock"
    export_lerobot(recorded, out)
    return out


def file_digests(ws: Path) -> dict[str, str]:
    return {str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(ws.rglob("*.hdf5"))}


def decode_all(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of an MP4 and its presentation time (s), with PyAV directly."""
    frames, times = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * frame.time_base))
    return np.stack(frames), np.array(times)


def assert_close_frames(decoded: np.ndarray, recorded: np.ndarray) -> None:
    assert decoded.shape == recorded.shape and len(decoded) > 0
    diff = decoded.astype(np.float64) - recorded.astype(np.float64)
    mae = np.abs(diff).mean(axis=(1, 2, 3))
    psnr = 10 * np.log10(255.0**2 / np.maximum((diff**2).mean(axis=(1, 2, 3)), 1e-9))
    worst = int(np.argmax(mae))
    assert mae.max() <= MAX_MEAN_ABS_ERROR and psnr.min() >= MIN_PSNR_DB, (worst, mae.max(),
                                                                          psnr.min())
    assert mae.mean() <= MAX_MEAN_ABS_ERROR_ALL and psnr.mean() >= MIN_PSNR_DB_ALL, \
        (mae.mean(), psnr.mean())


def test_layout_is_lerobot_v3(exported: Path, episodes: list[Episode]) -> None:
    info = json.loads((exported / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == \
        "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert (exported / "data/chunk-000/file-000.parquet").is_file()
    assert (exported / "videos/observation.images.front/chunk-000/file-000.mp4").is_file()
    assert (exported / "meta/episodes/chunk-000/file-000.parquet").is_file()
    features = info["features"]
    camera = features["observation.images.front"]
    assert camera["dtype"] == "video" and camera["shape"] == [96, 96, 3]
    assert camera["names"] == ["height", "width", "channels"]
    assert camera["info"]["video.codec"] == "av1" and camera["info"]["video.fps"] == 20
    assert features["action"] == {"dtype": "float32", "shape": [2],
                                  "names": ["v_mps", "w_radps"], "fps": 20}
    assert features["observation.state"]["shape"] == [5]
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert features[key]["shape"] == [1]
    labeled = [int(ep.labeled.sum()) for ep in episodes]
    assert info["total_episodes"] == EPISODES and info["total_frames"] == sum(labeled)
    assert info["splits"] == {"train": f"0:{EPISODES}"} and info["total_tasks"] == 1

    tasks = pd.read_parquet(exported / "meta/tasks.parquet")  # as LeRobot's load_tasks
    assert int(tasks.loc[DEFAULT_TASK].task_index) == 0 and tasks.iloc[0].name == DEFAULT_TASK

    eps = pq.read_table(exported / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["episode_index"] for e in eps] == list(range(EPISODES))
    start = 0
    for e, ep, n in zip(eps, episodes, labeled, strict=True):
        assert e["length"] == n and e["tasks"] == [DEFAULT_TASK]
        assert (e["dataset_from_index"], e["dataset_to_index"]) == (start, start + n)
        assert (e["data/chunk_index"], e["data/file_index"]) == (0, 0)
        assert e["videos/observation.images.front/from_timestamp"] == pytest.approx(start / 20)
        assert e["videos/observation.images.front/to_timestamp"] == pytest.approx((start + n) / 20)
        assert e["success"] == (ep.info.outcome == "success")
        assert e["takeover/episode"] == ep.info.key
        assert len(e["stats/action/mean"]) == 2
        assert np.asarray(e["stats/observation.images.front/mean"]).shape == (3, 1, 1)
        start += n

    stats = json.loads((exported / "meta/stats.json").read_text())
    all_actions = np.concatenate([ep.action[ep.labeled] for ep in episodes]).astype(np.float32)
    np.testing.assert_allclose(stats["action"]["min"], all_actions.min(0), rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["max"], all_actions.max(0), rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["mean"], all_actions.mean(0), rtol=1e-4)
    assert stats["action"]["count"] == [sum(labeled)]
    assert set(stats["observation.state"]) >= {"min", "max", "mean", "std", "count", "q01", "q99"}
    assert np.asarray(stats["observation.images.front"]["std"]).shape == (3, 1, 1)


def test_frames_and_actions_equal_the_episode_files(exported: Path,
                                                    episodes: list[Episode]) -> None:
    data = pq.read_table(exported / "data/chunk-000/file-000.parquet")
    video, times = decode_all(exported / "videos/observation.images.front/chunk-000/file-000.mp4")
    assert len(video) == data.num_rows
    fps = 20
    # Frame i of the file is shown at i / fps: LeRobot's timestamp + from_timestamp lookup.
    np.testing.assert_allclose(times, np.arange(len(times)) / fps, atol=LEROBOT_TOLERANCE_S)
    eps = pq.read_table(exported / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    columns = data.to_pydict()
    for e, ep in zip(eps, episodes, strict=True):
        keep = ep.labeled
        lo, hi = e["dataset_from_index"], e["dataset_to_index"]
        rows = slice(lo, hi)
        np.testing.assert_array_equal(columns["episode_index"][rows], [e["episode_index"]] * (hi - lo))
        np.testing.assert_array_equal(columns["frame_index"][rows], np.arange(hi - lo))
        np.testing.assert_allclose(columns["timestamp"][rows],
                                   np.arange(hi - lo, dtype=np.float32) / fps)
        # Actions: the command sent, exactly, as float32 (LeRobot's dtype).
        np.testing.assert_array_equal(np.array(columns["action"][rows], dtype=np.float32),
                                      ep.action[keep].astype(np.float32))
        modes = np.array(columns["complementary_info.action_mode"][rows])
        np.testing.assert_array_equal(modes, ep.action_mode[keep])
        np.testing.assert_array_equal(columns["complementary_info.is_intervention"][rows],
                                      ep.action_mode[keep] == 1)
        valid = ep.obs_valid[keep]
        state = np.array(columns["observation.state"][rows])
        np.testing.assert_allclose(state[valid], ep.odom[keep][valid].astype(np.float32))
        assert np.isfinite(state).all()  # held over steps without an observation
        scan = np.array(columns["observation.environment_state"][rows])
        assert ep.scan is not None
        original = ep.scan[keep][valid]
        np.testing.assert_array_equal(scan[valid] == 0.0, np.isnan(original))
        np.testing.assert_array_equal(scan[valid][~np.isnan(original)],
                                      original[~np.isnan(original)])
        done = np.array(columns["next.done"][rows])
        assert done[-1] and not done[:-1].any()
        assert columns["next.success"][hi - 1] == (ep.info.outcome == "success")
        assert ep.image is not None
        assert_close_frames(video[rows][valid], ep.image[keep][valid])


def test_import_of_the_export_gives_the_same_actions(exported: Path, episodes: list[Episode],
                                                     tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    result = import_lerobot(exported, ws, LeRobotImportOptions(round=2))
    assert len(result.episodes) == EPISODES and not result.warnings
    for path, ep in zip(result.episodes, episodes, strict=True):
        back = read_episode(path)
        keep = ep.labeled
        assert back.info.origin == "lerobot" and back.info.round == 2
        assert back.info.outcome == ep.info.outcome and back.info.extra["exported_from"] == ep.info.key
        np.testing.assert_array_equal(back.action, ep.action[keep].astype(np.float32))
        np.testing.assert_array_equal(back.action_mode, ep.action_mode[keep])
        np.testing.assert_array_equal(back.t_ns, ep.t_ns[keep])
        np.testing.assert_array_equal(back.obs_valid, ep.obs_valid[keep])
        np.testing.assert_allclose(back.odom, ep.odom[keep].astype(np.float32), equal_nan=True)
        np.testing.assert_array_equal(back.source, ep.source[keep])
        np.testing.assert_array_equal(back.mode, ep.mode[keep])
        assert back.scan is not None and ep.scan is not None
        np.testing.assert_array_equal(np.isnan(back.scan), np.isnan(ep.scan[keep]))
        assert back.scan_angle_increment_rad == pytest.approx(ep.scan_angle_increment_rad)
        assert back.image is not None and ep.image is not None
        valid = back.obs_valid
        assert_close_frames(back.image[valid], ep.image[keep][valid])
        assert not back.image[~valid].any()
    # The same dataset again: one line, nothing written; --force imports it again.
    again = import_lerobot(exported, ws)
    assert again.episodes == [] and len(again.already_imported) == EPISODES
    assert len(import_lerobot(exported, ws, LeRobotImportOptions(force=True)).episodes) == EPISODES


def test_fps_rollover_and_filters(recorded: Path, episodes: list[Episode], tmp_path: Path) -> None:
    out = tmp_path / "ten-hz"
    summary = export_lerobot(recorded, out, fps=10, rounds=[1], outcomes=["success"],
                             data_file_mb=0, video_file_mb=0)
    chosen = [ep for ep in episodes if ep.info.round == 1 and ep.info.outcome == "success"]
    assert summary.episodes == len(chosen) and summary.fps == 10
    # A size limit of 0: every episode starts a new data file and a new video file.
    assert len(list((out / "data").glob("chunk-000/*.parquet"))) == len(chosen)
    assert len(list((out / "videos").rglob("*.mp4"))) == len(chosen)
    ws = tmp_path / "ws"
    ws.mkdir()
    result = import_lerobot(out, ws)
    for path, ep in zip(result.episodes, chosen, strict=True):
        back = read_episode(path)
        rows = np.arange(0, len(ep), 2)  # 20 Hz -> 10 Hz: every other tick
        rows = rows[ep.labeled[rows]]
        np.testing.assert_array_equal(back.action, ep.action[rows].astype(np.float32))
        assert back.info.rate_hz == 10
        assert back.image is not None and ep.image is not None
        assert_close_frames(back.image[back.obs_valid], ep.image[rows][back.obs_valid])


def test_bad_input_is_one_line_and_leaves_nothing(recorded: Path, exported: Path,
                                                  tmp_path: Path) -> None:
    before = file_digests(recorded)
    ws = tmp_path / "ws"
    ws.mkdir()
    not_dataset = tmp_path / "plain"
    not_dataset.mkdir()
    old = tmp_path / "old"
    (old / "meta").mkdir(parents=True)
    (old / "meta/info.json").write_text(json.dumps({"codebase_version": "v2.1", "fps": 30,
                                                    "features": {}, "data_path": "x"}))
    broken = tmp_path / "broken"
    (broken / "meta").mkdir(parents=True)
    (broken / "meta/info.json").write_text("{not json")
    arm = tmp_path / "arm"
    (arm / "meta").mkdir(parents=True)
    (arm / "meta/info.json").write_text(json.dumps({
        "codebase_version": "v3.0", "fps": 30, "data_path": fmt.DATA_PATH,
        "features": {"action": {"dtype": "float32", "shape": [6], "names": None}}}))
    cases = [(tmp_path / "missing", "does not exist"), (not_dataset, "no meta/info.json"),
             (old, "version v2.1"), (broken, "not readable JSON"), (arm, "--action-names")]
    for path, text in cases:
        with pytest.raises(UsageError) as err:
            import_lerobot(path, ws)
        assert text in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UsageError, match=r"no component 'x\.vel'"):
        import_lerobot(exported, ws, LeRobotImportOptions(action_names=("x.vel", "theta.vel")))
    assert not list(ws.rglob("*.hdf5"))

    with pytest.raises(ExportError, match="not overwriting"):
        export_lerobot(recorded, exported)
    with pytest.raises(ExportError, match="does not exist"):
        export_lerobot(recorded, tmp_path / "no" / "such" / "dir")
    with pytest.raises(ExportError, match="one fps"):
        _mixed_rates(tmp_path)
    with pytest.raises(TakeoverError, match="no episode to export"):
        export_lerobot(recorded, tmp_path / "none", rounds=[7])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    assert file_digests(recorded) == before  # the export only read the episodes


def _mixed_rates(tmp_path: Path) -> None:
    ws = tmp_path / "mixed"
    ws.mkdir()
    with EpisodeWriter(ws, fsync=False) as w:
        record_episode(w, list(sim_records(seed=1, n=10)))
        from takeover.recorder.episode_file import EpisodeMeta
        w.begin_episode(EpisodeMeta(round=0, rate_hz=30.0))
        for r in sim_records(seed=2, n=10):
            assert w.offer(r)
        assert w.end_episode("success").result(timeout=60) is not None
    export_lerobot(ws, tmp_path / "mixed-out")


def run_cli(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="takeover")
    add_data_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", *argv])
    out = StringIO()
    with redirect_stdout(out):
        code = args.func(args)
    return code, out.getvalue()


def test_cli_export_and_import(recorded: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-dataset"
    code, text = run_cli("export-lerobot", str(out), "--workspace", str(recorded), "--round", "0",
                         "--video-codec", "h264", "--json")
    summary = json.loads(text.strip().splitlines()[-1])
    assert code == 0 and summary["episodes"] == 5 and summary["fps"] == 20
    info = json.loads((out / "meta/info.json").read_text())
    assert info["features"]["observation.images.front"]["info"]["video.codec"] == "h264"
    ws = tmp_path / "ws"
    ws.mkdir()
    code, text = run_cli("import-lerobot", str(out), "--workspace", str(ws))
    assert code == 0 and text.strip().splitlines()[-1].startswith("imported 5 episode(s)")
    code, text = run_cli("import-lerobot", str(out), "--workspace", str(ws))
    assert code == 0 and len(text.strip().splitlines()) == 1
    assert "imported already as r000/ep_0001 ... r000/ep_0005" in text and "--force" in text
