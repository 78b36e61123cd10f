"""Episodes exported to MCAP and read back with the mcap reader and its protobuf decoder."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory
from PIL import Image
from recorder_support import record_episode
from recsim import sim_records

from takeover.recorder.errors import ExportError
from takeover.recorder.mcap_export import export_mcap
from takeover.recorder.reader import Episode, read_episode
from takeover.recorder.store import EpisodeStore
from takeover.recorder.writer import EpisodeWriter

SCHEMAS = {
    "/camera/image": "foxglove.CompressedImage", "/scan": "foxglove.LaserScan",
    "/odom": "foxglove.Odometry", "/pose": "foxglove.PoseInFrame",
    "/tf": "foxglove.FrameTransform", "/cmd_vel": "takeover.Twist",
    "/policy_action": "takeover.Twist", "/human_action": "takeover.Twist",
    "/drive_state": "takeover.DriveState", "/log": "foxglove.Log",
}


@pytest.fixture(scope="module")
def workspace_eps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Episode]]:
    ws = tmp_path_factory.mktemp("mcap") / "ws"
    ws.mkdir()
    with EpisodeWriter(ws, fsync=False) as w:
        for k in range(2):
            record_episode(w, list(sim_records(seed=90 + k, n=30)), round_index=1,
                           outcome="success" if k else "failure", operator="sam")
    return ws, [read_episode(i.path) for i in EpisodeStore(ws).episodes()]


def read_back(path: Path) -> tuple[dict[str, str], dict[str, list], list]:
    by_topic: dict[str, list] = {}
    with path.open("rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert summary is not None
        schemas = {c.topic: summary.schemas[c.schema_id].name for c in summary.channels.values()}
        for _schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=False):
            by_topic.setdefault(channel.topic, []).append((message.log_time, decoded))
        metadata = list(reader.iter_metadata())
    return schemas, by_topic, metadata


def test_every_message_type_round_trips(workspace_eps: tuple[Path, list[Episode]],
                                        tmp_path: Path) -> None:
    _, episodes = workspace_eps
    ep = episodes[0]
    out = tmp_path / "one.mcap"
    summary = export_mcap([ep.info.path], out, image_format="png")
    assert summary.files == [out]
    schemas, topics, metadata = read_back(out)
    assert schemas == SCHEMAS
    valid = ep.obs_valid
    wall = ep.info.start_time_ns + (ep.t_ns - ep.t_ns[0])
    assert [t for t, _ in topics["/cmd_vel"]] == wall.tolist()
    np.testing.assert_array_equal([(m.linear.x, m.angular.z) for _, m in topics["/cmd_vel"]],
                                  ep.action)
    has_policy = np.isfinite(ep.policy_action).all(axis=1)
    np.testing.assert_array_equal([(m.linear.x, m.angular.z) for _, m in topics["/policy_action"]],
                                  ep.policy_action[has_policy])
    assert len(topics["/human_action"]) == int(np.isfinite(ep.human_action).all(axis=1).sum())
    for topic in ("/odom", "/pose", "/tf", "/scan", "/camera/image"):
        assert len(topics[topic]) == int(valid.sum()), topic
    odom = np.array([(m.pose.position.x, m.pose.position.y, m.linear_velocity.x,
                      m.angular_velocity.z) for _, m in topics["/odom"]])
    np.testing.assert_allclose(odom, ep.odom[valid][:, [0, 1, 3, 4]])
    yaw = [2 * np.arctan2(m.pose.orientation.z, m.pose.orientation.w) for _, m in topics["/odom"]]
    np.testing.assert_allclose(np.angle(np.exp(1j * (np.array(yaw) - ep.odom[valid][:, 2]))), 0,
                               atol=1e-9)
    assert ep.scan is not None and ep.image is not None
    scans = np.array([list(m.ranges) for _, m in topics["/scan"]])
    np.testing.assert_array_equal(scans, ep.scan[valid].astype(np.float64))
    _, first_scan = topics["/scan"][0]
    assert first_scan.end_angle - first_scan.start_angle == pytest.approx(
        (ep.scan.shape[1] - 1) * ep.scan_angle_increment_rad)
    frames = np.stack([np.asarray(Image.open(io.BytesIO(m.data)).convert("RGB"))
                       for _, m in topics["/camera/image"]])
    np.testing.assert_array_equal(frames, ep.image[valid])  # PNG: lossless
    assert {m.format for _, m in topics["/camera/image"]} == {"png"}
    states = [(m.mode, m.source, m.action_mode) for _, m in topics["/drive_state"]]
    assert [s[2] for s in states] == ep.action_mode.tolist()
    assert {s[0] for s in states} >= {"MANUAL", "AUTO", "TAKEOVER", "IDLE"}
    logs = [m.message for _, m in topics["/log"]]
    assert logs[0].startswith(f"{ep.info.key} start") and logs[-1] == \
        f"{ep.info.key} end: {ep.info.outcome} ({ep.info.end_reason})"
    assert any("TAKEOVER, human drives (intervention)" in line for line in logs)
    [record] = metadata
    assert record.name == "takeover.episode" and record.metadata["outcome"] == ep.info.outcome


def test_several_episodes_one_file_or_one_each(workspace_eps: tuple[Path, list[Episode]],
                                               tmp_path: Path) -> None:
    _, episodes = workspace_eps
    paths = [ep.info.path for ep in episodes]
    both = export_mcap(paths, tmp_path / "both.mcap")
    _, topics, metadata = read_back(both.files[0])
    assert len(topics["/cmd_vel"]) == sum(len(ep) for ep in episodes)
    assert sorted(m.metadata["key"] for m in metadata) == sorted(ep.info.key for ep in episodes)
    each = export_mcap(paths, tmp_path / "dir")
    assert [p.name for p in each.files] == ["r001_ep_0001.mcap", "r001_ep_0002.mcap"]
    schemas, _, _ = read_back(each.files[1])
    assert set(schemas) == set(SCHEMAS)
    with pytest.raises(ExportError, match="not overwriting"):
        export_mcap(paths, tmp_path / "dir")
    with pytest.raises(ExportError, match="image format"):
        export_mcap(paths, tmp_path / "x.mcap", image_format="gif")
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_export_mcap(workspace_eps: tuple[Path, list[Episode]], tmp_path: Path) -> None:
    from test_recorder_lerobot import run_cli
    ws, episodes = workspace_eps
    code, text = run_cli("export-mcap", "r001", str(tmp_path / "round.mcap"), "--workspace",
                         str(ws), "--json")
    result = json.loads(text.strip().splitlines()[-1])
    assert code == 0 and result["episodes"] == len(episodes)
    assert set(result["messages"]) == set(SCHEMAS)
