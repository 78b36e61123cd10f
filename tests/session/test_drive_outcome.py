"""`takeover drive` runs the docking outcome detector beside the episode's own ending: its
verdict and evidence in the JSON and the episode file, the simulator's truth beside them, and
`[docking]` from the workspace's takeover.toml."""

from __future__ import annotations

from pathlib import Path

import h5py

from takeover.recorder.reader import read_info
from takeover.recorder.verify import verify_episode
from takeover.session.drive import DriveRequest, run_drive
from takeover.workspace.layout import init_workspace

WALK_IN_SEED = 7002  # sim://?obstacles=walk-in: someone walks into the expert (a collision)


def test_detected_outcome_and_evidence_go_to_the_json_and_the_episode_file(
        tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    summary = run_drive(DriveRequest(robot_url="sim://", driver="expert", episodes=2, seed=7000,
                                     fast=True, record=True, workspace=ws))
    assert summary["successes"] == 2
    for episode, path in zip(summary["per_episode"], summary["recorded"], strict=True):
        # Every field of DESIGN.md's contract is still there, beside the detector's.
        assert set(episode) >= {"seed", "outcome", "steps", "human_steps", "interventions",
                                "outcome_detected", "outcome_evidence", "outcome_truth"}
        assert episode["outcome"] == episode["outcome_truth"] == "success"
        assert episode["outcome_detected"] == "success"
        evidence = episode["outcome_evidence"]
        assert evidence["signal"] == "battery_current" and evidence["status"] == "charging"
        assert evidence["held_ms"] >= 500.0 and evidence["value_a"] > 0.5
        assert evidence["t_ns"] - evidence["since_t_ns"] >= 500_000_000
        info = read_info(path)
        assert info.detected_outcome == "success" and info.outcome_evidence == evidence
        assert verify_episode(Path(path)) == []


def test_a_collision_is_detected_from_the_bumper_without_charging(tmp_path: Path) -> None:
    summary = run_drive(DriveRequest(robot_url="sim://?obstacles=walk-in", driver="expert",
                                     episodes=1, seed=WALK_IN_SEED, fast=True))
    (episode,) = summary["per_episode"]
    assert episode["outcome_truth"] == "failure" and episode["detail"] == "bumper"
    assert episode["outcome_detected"] == "failure"
    evidence = episode["outcome_evidence"]
    assert evidence["signal"] == "bumper" and evidence["waited_ms"] >= 500.0
    assert evidence["value_a"] < 0  # discharging: the contact closed no charging circuit


def test_docking_settings_come_from_the_workspace(tmp_path: Path) -> None:
    """A threshold above the simulator's 1.5 A charge: the current no longer counts, and the
    base's CHARGING status decides instead."""
    ws = init_workspace(tmp_path / "ws")
    toml = ws / "takeover.toml"
    toml.write_text(toml.read_text().replace("charging_current_a = 0.5",
                                             "charging_current_a = 5.0"))
    summary = run_drive(DriveRequest(robot_url="sim://", driver="expert", episodes=1,
                                     seed=7000, fast=True, workspace=ws))
    (episode,) = summary["per_episode"]
    assert episode["outcome_detected"] == "success"
    assert episode["outcome_evidence"]["signal"] == "power_supply_status"


def test_an_episode_file_without_the_detector_attributes_still_reads_and_verifies(
        tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    summary = run_drive(DriveRequest(robot_url="sim://", driver="expert", episodes=1,
                                     seed=7000, fast=True, record=True, workspace=ws))
    path = Path(summary["recorded"][0])
    with h5py.File(path, "r+") as f:  # as written before the attributes existed
        del f.attrs["detected_outcome"]
        del f.attrs["outcome_evidence"]
    info = read_info(path)
    assert info.detected_outcome == "" and info.outcome_evidence == {}
    assert info.outcome == "success" and verify_episode(path) == []
