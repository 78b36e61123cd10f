"""Bag import hygiene on real bags: a bag imported twice is skipped by content (renamed or
not) unless forced; a robot that never moves though commanded is flagged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from test_recorder_bag_import import write_bag
from test_recorder_lerobot import run_cli

from takeover.recorder.bag_import import ImportOptions, import_bag
from takeover.recorder.import_hygiene import source_digest, stuck_robot
from takeover.recorder.reader import read_info


def episode_files(ws: Path) -> list[Path]:
    return sorted(ws.rglob("*.hdf5"))


def test_a_bag_imported_again_is_skipped_unless_forced(tmp_path: Path, workspace: Path) -> None:
    bag = tmp_path / "drive"
    write_bag(bag, ros1=False, steps=20, move=True)
    first = import_bag(bag, workspace)
    assert len(first.episodes) == 1 and not first.already_imported
    assert read_info(first.episodes[0]).extra["source_sha256"] == source_digest(bag)
    again = import_bag(bag, workspace)
    assert again.episodes == [] and again.already_imported == ["r000/ep_0001"]
    copy = tmp_path / "drive-copy"  # same bytes under another name: the same bag
    shutil.copytree(bag, copy)
    assert import_bag(copy, workspace).already_imported == ["r000/ep_0001"]
    assert len(episode_files(workspace)) == 1
    forced = import_bag(bag, workspace, ImportOptions(force=True))
    assert [p.name for p in forced.episodes] == ["ep_0002.hdf5"]
    other = tmp_path / "other.bag"
    write_bag(other, ros1=True, steps=12, image="rgb8", move=True)
    assert len(import_bag(other, workspace).episodes) == 1


def test_cli_says_one_line_for_a_bag_imported_already(tmp_path: Path, workspace: Path) -> None:
    bag = tmp_path / "drive"
    write_bag(bag, ros1=False, steps=12, move=True)
    code, _ = run_cli("import-bag", str(bag), "--workspace", str(workspace))
    assert code == 0
    code, text = run_cli("import-bag", str(bag), "--workspace", str(workspace))
    lines = text.strip().splitlines()
    assert code == 0 and len(lines) == 1
    assert lines[0].startswith(f"skipped bag {bag}: its content was imported already as "
                               "r000/ep_0001") and "--force" in lines[0]
    code, text = run_cli("import-bag", str(bag), "--workspace", str(workspace), "--force",
                         "--json")
    assert code == 0 and len(json.loads(text.strip().splitlines()[-1])["episodes"]) == 1


def test_a_stuck_robot_is_flagged(tmp_path: Path, workspace: Path) -> None:
    stuck_bag = tmp_path / "stuck"
    write_bag(stuck_bag, ros1=False, steps=40)  # commands 0.1..0.5 m/s, robot never moves
    result = import_bag(stuck_bag, workspace)
    [path] = result.episodes
    [warning] = result.warnings
    assert warning.startswith("r000/ep_0001: robot stuck?") and "40 of 40 steps" in warning
    info = read_info(path)
    assert info.extra["flags"] == "stuck" and info.extra["stuck"] in warning
    assert info.outcome == "success"  # the verdict stays the operator's; the flag says why to look
    moving_bag = tmp_path / "moving"
    write_bag(moving_bag, ros1=False, steps=40, move=True)
    moving = import_bag(moving_bag, workspace)
    assert moving.warnings == [] and "flags" not in read_info(moving.episodes[0]).extra
    code, text = run_cli("import-bag", str(stuck_bag), "--workspace", str(workspace), "--force")
    assert code == 0 and "[flagged: stuck]" in text and "warning: r000/ep_0003: robot stuck?" in text


def test_stuck_needs_a_second_of_commands_and_odometry() -> None:
    still = np.zeros((40, 5))
    commanded = np.tile([0.3, 0.0], (40, 1))
    assert stuck_robot(commanded, still, 20.0) is not None
    assert stuck_robot(commanded[:19].copy(), still[:19], 20.0) is None  # under a second
    assert stuck_robot(np.zeros((40, 2)), still, 20.0) is None  # never commanded
    assert stuck_robot(commanded, np.full((40, 5), np.nan), 20.0) is None  # no odometry
    moving = still.copy()
    moving[:, 0] = np.linspace(0, 0.5, 40)
    assert stuck_robot(commanded, moving, 20.0) is None
