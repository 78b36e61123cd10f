"""Several robots recording into one workspace at once (issue 18).

Real recorders in real processes: episode numbers stay unique per round across robots and
processes, each robot's files carry its name, recorders of different robots never block each
other while a second recorder of the same robot is refused, and the recovery a robot's recorder
runs on start never touches another robot's live episode (one SIGKILLed mid-episode).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from recorder_support import record_episode
from recsim import sim_records
from waiting import wait_for

from takeover.errors import UsageError
from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.errors import EpisodeError, WorkspaceBusyError
from takeover.recorder.layout import (
    check_robot_name,
    episode_name,
    final_path_of,
    lock_name,
    parse_episode_name,
    reserve_episode,
)
from takeover.recorder.reader import read_info
from takeover.recorder.recover import find_leftovers, recover_workspace
from takeover.recorder.store import EpisodeStore
from takeover.recorder.verify import verify_episode, verify_workspace
from takeover.recorder.writer import EpisodeWriter
from takeover.types import StepRecord

HERE = Path(__file__).parent

# A recording process. Modes:
#   reserve K     wait for the go file, take K episode numbers as fast as it can, print each
#   burst K       wait for the go file, record K short episodes as fast as it can, print paths
#   live          record one long episode in real time until killed; prints "step I"
CHILD = r"""
import os, sys, time
from pathlib import Path
from recsim import RATE_HZ, sim_records
from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.layout import reserve_episode
from takeover.recorder.writer import EpisodeWriter

def say(text):
    os.write(1, (text + "\n").encode())  # unbuffered: what was said before a kill is read

ws, robot, mode = sys.argv[1], sys.argv[2], sys.argv[3]
robot = "" if robot == "-" else robot
go = os.path.join(ws, "go")
if mode == "reserve":
    say("ready")
    while not os.path.exists(go):
        time.sleep(0.001)
    for _ in range(int(sys.argv[4])):
        index, final = reserve_episode(Path(ws) / "rounds" / "r000", robot)
        say(f"number {index} {final.name}")
    sys.exit(0)
writer = EpisodeWriter(ws, rate_hz=RATE_HZ, robot_name=robot, fsync=False,
                       backpressure=mode == "burst")
writer.start()
say("ready")
if mode == "burst":
    while not os.path.exists(go):
        time.sleep(0.001)
    for seq in range(int(sys.argv[4])):
        writer.begin_episode(EpisodeMeta(round=0, rate_hz=RATE_HZ, extra={"seq": seq}))
        for record in sim_records(seq, 4, images=False):
            writer.offer(record)
        say(f"saved {writer.end_episode('success').result()}")
    writer.stop()
    sys.exit(0)
writer.begin_episode(EpisodeMeta(round=0, rate_hz=RATE_HZ))
next_t = time.perf_counter()
for i, record in enumerate(sim_records(7, 10**5, images=False)):
    next_t += 1.0 / RATE_HZ
    time.sleep(max(0.0, next_t - time.perf_counter()))
    writer.offer(record)
    say(f"step {i}")
"""


class Child:
    """A recording process (CHILD) and its stdout lines."""

    def __init__(self, workspace: Path, robot: str, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(workspace), robot or "-", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().decode().strip()
        if first != "ready":
            self.proc.kill()
            raise AssertionError(f"child did not start: {first!r} "
                                 f"{self.proc.communicate()[1].decode()}")

    def finish(self) -> list[str]:
        out, err = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, err.decode()
        return out.decode().splitlines()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=60)
        assert self.proc.returncode == -signal.SIGKILL


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:  # a failed test must not leave recorders running
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.communicate()


def test_robot_names_are_checked_with_one_line(workspace: Path) -> None:
    for good in ("a", "amr-2", "dock_bay_3", "0" * 32):
        assert check_robot_name(good) == good
    for bad in ("Amr", "-a", "_a", "a/b", "a.b", "a b", "0" * 33, "../x"):
        with pytest.raises(UsageError, match="robot name") as err:
            EpisodeMeta(round=0, rate_hz=20.0, robot_name=bad)
        assert "\n" not in str(err.value)
        with pytest.raises(UsageError, match="robot name"):
            EpisodeWriter(workspace, robot_name=bad)
    # Names with "_" and digits parse back from the file name exactly.
    for robot in ("", "a", "bay_3", "0007"):
        for state in ("", ".partial", ".init", ".recovering"):
            parsed = parse_episode_name(episode_name(7, robot) + state)
            assert parsed == (7, robot, state)
    assert parse_episode_name("ep_0007_Bad.hdf5") is None
    assert lock_name("") == ".recorder.lock" and lock_name("a") == ".recorder.a.lock"


def test_named_episodes_in_names_attributes_index_and_cli(
        workspace: Path, records_60: list[StepRecord]) -> None:
    # Three recorders in one process (the headless fleet): two named robots and an unnamed one.
    with EpisodeWriter(workspace, fsync=False, robot_name="amr-1") as a, \
            EpisodeWriter(workspace, fsync=False, robot_name="amr-2") as b, \
            EpisodeWriter(workspace, fsync=False) as unnamed:
        paths = [record_episode(w, records_60[:10]) for w in (a, b, unnamed, a)]
        with pytest.raises(ValueError, match="robot 'amr-2' given to the recorder of robot"):
            a.begin_episode(EpisodeMeta(round=0, rate_hz=20.0, robot_name="amr-2"))
    assert [p.name for p in paths] == ["ep_0001_amr-1.hdf5", "ep_0002_amr-2.hdf5",
                                       "ep_0003.hdf5", "ep_0004_amr-1.hdf5"]
    assert [read_info(p).robot_name for p in paths] == ["amr-1", "amr-2", "", "amr-1"]
    store = EpisodeStore(workspace)
    for _ in range(2):  # read from the files, then from the round's index
        infos = store.episodes()
        assert [(i.key, i.robot_name) for i in infos] == [
            ("r000/ep_0001", "amr-1"), ("r000/ep_0002", "amr-2"), ("r000/ep_0003", ""),
            ("r000/ep_0004", "amr-1")]
    index = json.loads((workspace / "rounds" / "r000" / ".index.json").read_text())
    assert index["entries"]["ep_0002_amr-2.hdf5"]["info"]["robot_name"] == "amr-2"
    assert store.resolve("r000/ep_0002") == paths[1]
    assert store.resolve("r0/ep_0004_amr-1") == paths[3]
    with pytest.raises(EpisodeError, match="not found"):
        store.resolve("r000/ep_0002_amr-1")
    assert verify_workspace(workspace).ok

    def cli(*args: str) -> str:
        p = subprocess.run([sys.executable, "-m", "takeover.cli", "data", *args,
                            "--workspace", str(workspace)], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout

    lines = cli("ls").splitlines()
    assert lines[0].split()[:3] == ["episode", "robot", "outcome"]
    assert lines[2].split()[:2] == ["r000/ep_0002", "amr-2"]
    assert lines[3].split()[:2] == ["r000/ep_0003", "-"]
    listed = json.loads(cli("ls", "--json").splitlines()[-1])["episodes"]
    assert [e["robot_name"] for e in listed] == ["amr-1", "amr-2", "", "amr-1"]
    summary = json.loads(cli("info", "--json").splitlines()[-1])["rounds"]
    assert summary[0]["robots"] == ["amr-1", "amr-2"]
    assert "amr-1,amr-2" in cli("info")
    assert "robot_name" in cli("info", "r000/ep_0004")


def test_an_unnamed_workspace_looks_as_before(workspace: Path,
                                              records_60: list[StepRecord]) -> None:
    with EpisodeWriter(workspace, fsync=False) as w:
        path = record_episode(w, records_60[:5])
    assert path.name == "ep_0001.hdf5" and read_info(path).robot_name == ""
    assert sorted(p.name for p in (workspace / "rounds").iterdir()) == [
        ".numbering.lock", ".recorder.lock", "r000"]
    p = subprocess.run([sys.executable, "-m", "takeover.cli", "data", "ls", "--workspace",
                        str(workspace)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.split()[:2] == ["episode", "outcome"]


def test_episode_numbers_never_collide_across_processes(workspace: Path,
                                                        children: list[Child]) -> None:
    robots = ["a", "b", "c", ""]
    children.extend(Child(workspace, robot, "reserve", "40") for robot in robots)
    (workspace / "go").touch()  # all four take numbers at the same moment
    taken: dict[int, str] = {}
    for child in children:
        for line in child.finish():
            _, number, name = line.split()
            assert int(number) not in taken, f"{name} and {taken[int(number)]} share a number"
            taken[int(number)] = name
    assert sorted(taken) == list(range(1, 4 * 40 + 1))
    on_disk = {p.name for p in (workspace / "rounds" / "r000").iterdir()}
    assert on_disk == {name + ".init" for name in taken.values()}


def test_real_recorders_of_several_robots_record_side_by_side(workspace: Path,
                                                              children: list[Child]) -> None:
    robots = ["a", "b", ""]
    children.extend(Child(workspace, robot, "burst", "6") for robot in robots)
    (workspace / "go").touch()
    saved = {robot: [Path(line.split(" ", 1)[1]) for line in child.finish()]
             for robot, child in zip(robots, children, strict=True)}
    infos = EpisodeStore(workspace).episodes()
    assert sorted(i.episode for i in infos) == list(range(1, 19))
    for robot, paths in saved.items():
        assert len(paths) == 6
        for path in paths:
            parsed = parse_episode_name(path.name)
            assert parsed is not None and parsed.robot == robot and parsed.state == ""
            assert read_info(path).robot_name == robot
    report = verify_workspace(workspace)
    assert report.ok and report.files_checked == 18, report.problems


def test_a_second_recorder_of_the_same_robot_is_refused(workspace: Path,
                                                        children: list[Child]) -> None:
    children.append(Child(workspace, "a", "live"))
    with pytest.raises(WorkspaceBusyError) as err:
        EpisodeWriter(workspace, robot_name="a").start()
    message = str(err.value)
    assert f"pid {children[0].proc.pid}" in message and "as robot 'a'" in message
    assert "\n" not in message
    with EpisodeWriter(workspace, robot_name="b", fsync=False):  # another robot: not blocked
        pass
    with EpisodeWriter(workspace, fsync=False):  # nor the unnamed one
        pass


def test_recovery_leaves_a_live_robot_alone(workspace: Path, children: list[Child]) -> None:
    live_a = Child(workspace, "a", "live")
    crashed_c = Child(workspace, "c", "live")
    children.extend([live_a, crashed_c])

    def committed(robot: str) -> int:
        found = [p for p in find_leftovers(workspace, robot) if p.name.endswith(".partial")]
        return read_info(found[0]).num_steps if found else 0

    wait_for(lambda: committed("a") > 0 and committed("c") > 0, 60, "both partials committed")
    crashed_c.kill()  # SIGKILL mid-episode: its partial is left behind
    [partial_a] = find_leftovers(workspace, "a")
    [partial_c] = find_leftovers(workspace, "c")

    # Robot b starts: its recovery is its own, so neither a's live partial nor c's is touched.
    with EpisodeWriter(workspace, robot_name="b", fsync=False) as b:
        assert b.sync(30)
        assert b.recovered == []
    assert partial_a.exists() and partial_c.exists()
    report = verify_workspace(workspace)
    assert report.live == [partial_a]
    assert report.problems == [f"rounds/r000/{partial_c.name}: left by an interrupted "
                               "recording; run `takeover data recover`"]

    # Robot c starts again: it recovers its own crashed episode, still not a's.
    with EpisodeWriter(workspace, robot_name="c", fsync=False) as c:
        assert c.sync(30)
        [result] = c.recovered
    assert result.action == "recovered" and result.final == final_path_of(partial_c)
    assert read_info(result.final).robot_name == "c" and read_info(result.final).recovered
    assert verify_episode(result.final) == []
    assert partial_a.exists()

    # Recovering every robot (`takeover data recover`) still leaves the live one alone...
    [alone] = recover_workspace(workspace)
    assert alone.action == "live" and alone.path == partial_a and partial_a.exists()
    with pytest.raises(WorkspaceBusyError):
        recover_workspace(workspace, robot_name="a")
    steps_before = committed("a")
    wait_for(lambda: committed("a") > steps_before, 60, "robot a still recording")
    # ...until it is killed too.
    live_a.kill()
    [result] = recover_workspace(workspace)
    assert result.action == "recovered" and result.final == final_path_of(partial_a)
    assert read_info(result.final).robot_name == "a"
    assert verify_workspace(workspace).ok and not find_leftovers(workspace)


def test_a_reserved_number_is_skipped_by_every_robot(workspace: Path) -> None:
    """A number reserved (its .init made) by one robot is never taken by another."""
    rd = workspace / "rounds" / "r000"
    number, final = reserve_episode(rd, "a")
    assert (number, final.name) == (1, "ep_0001_a.hdf5")
    assert (rd / "ep_0001_a.hdf5.init").exists()
    with EpisodeWriter(workspace, fsync=False, recover_on_start=False) as unnamed:
        path = record_episode(unnamed, list(sim_records(1, 3, images=False)))
    assert path.name == "ep_0002.hdf5"
