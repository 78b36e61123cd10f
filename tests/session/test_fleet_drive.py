"""`takeover drive --robots N` (session/fleet_drive.py): N lockstep simulators and one simulated
operator. Real simulators, real control loops and Arbiters, the real simulated operator; a
policy that loses its way (so that the robots really ask and the operator really answers), the
docking expert as a policy, and a real ONNX model in onnxruntime with recording."""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from pathlib import Path

import pytest
from expert_driver import ExpertDriver
from tui_support import tiny_onnx_model

from takeover.cli import main
from takeover.dagger.metrics import episode_help_counts
from takeover.hw.base import RobotLink
from takeover.session.drive import DriveRequest
from takeover.session.fleet_drive import FleetRun, TickTrace, run_fleet_drive, seed_shares
from takeover.types import Command, CommandSource, Mode, Observation
from takeover.workspace.layout import init_workspace

RATE_HZ = 20.0
PER_ROBOT = {"robot", "episodes", "successes", "success_rate", "help_requests", "idle_s"}
DRIVE_FIELDS = {"episodes", "successes", "success_rate", "loop", "per_episode"}


class LostPolicy:
    """Circles where it starts: it never comes closer to the dock, so each robot asks for help
    (no approach) after [supervision.risk] no_approach_s, at about the same moment."""

    def __init__(self, link: RobotLink) -> None:
        pass

    def propose(self, obs: object) -> Command:
        return Command(0.15, 0.6)

    def drop_queued_actions(self) -> None:
        pass

    def reset(self) -> None:
        pass


class DockingPolicy(ExpertDriver):
    """The docking expert as the policy, told each episode's dock (it moves with the seed)."""

    def __init__(self, link: RobotLink) -> None:
        super().__init__(link)
        self.link = link

    def reset(self) -> None:
        self.expert.reset(self.link.dock_pose())


def _by_tick(trace: list[TickTrace]) -> dict[int, list[TickTrace]]:
    out: dict[int, list[TickTrace]] = defaultdict(list)
    for t in trace:
        out[t.fleet_tick].append(t)
    return out


def _finite(obj: object) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    return True


def test_seed_shares_cover_the_seeds_once_in_blocks() -> None:
    assert seed_shares(5000, 5, 2) == [[5000, 5001, 5002], [5003, 5004]]
    assert list(itertools.chain(*seed_shares(7, 40, 8))) == list(range(7, 47))


def test_robot_gated_one_operator_serves_one_robot_at_a_time_and_the_others_hold() -> None:
    trace: list[TickTrace] = []
    out = run_fleet_drive(
        DriveRequest(robot_url="sim://", driver="operator-sim", episodes=2, seed=5000,
                     fast=True, max_steps=500, supervision="robot"),
        FleetRun(robots=2, policy_factory=LostPolicy), count_help=episode_help_counts,
        trace=trace)
    ticks = _by_tick(trace)
    # Both robots advance one tick per fleet tick while both run.
    assert all(len(rows) <= 2 for rows in ticks.values())
    assert {t.robot for t in trace} == {"robot1", "robot2"}
    for rows in ticks.values():
        # The operator's attention clock runs for one robot at most, and only the attended
        # robot is ever driven by a person.
        assert sum(t.looked for t in rows) <= 1
        assert sum(t.attended for t in rows) <= 1
        for t in rows:
            if t.source is CommandSource.HUMAN:
                assert t.attended and t.mode is Mode.TAKEOVER
    queued = [t for t in trace if t.queued]
    looked = [t for t in trace if t.looked]
    assert queued and looked, "the robots must really ask, wait and be answered"
    # A robot waiting in the queue holds still: its command only ramps down, to zero within
    # half a second (the Arbiter's braking), and stays zero while it waits.
    for robot in ("robot1", "robot2"):
        mine = [t for t in trace if t.robot == robot]
        for is_queued, run in itertools.groupby(mine, key=lambda t: t.queued):
            if not is_queued:
                continue
            speeds = [abs(t.v_mps) + abs(t.w_radps) for t in run]
            assert all(b <= a + 1e-9 for a, b in itertools.pairwise(speeds)), speeds
            assert all(s == 0.0 for s in speeds[10:]), speeds
    # The JSON: drive's fields pooled, the fleet's added, all finite.
    assert set(out) >= DRIVE_FIELDS | {"robots", "per_robot", "operator"}
    assert out["robots"] == 2 and out["episodes"] == 2
    assert [r["robot"] for r in out["per_robot"]] == ["robot1", "robot2"]
    assert all(set(r) >= PER_ROBOT for r in out["per_robot"])
    assert sum(r["help_requests"] for r in out["per_robot"]) == out["requests"] > 0
    op = out["operator"]
    assert set(op) == {"on_duty_s", "attention_s", "driving_s"}
    assert 0 < op["driving_s"] <= op["attention_s"] <= op["on_duty_s"]
    # The operator's clock is the ticks it was seen looking, less those after an episode's
    # last record (stopping the robot, waiting for a charge: the tally stops at the last one).
    assert 0.5 * len(looked) / RATE_HZ <= op["attention_s"] <= len(looked) / RATE_HZ + 1e-6
    idle = sum(r["idle_s"] for r in out["per_robot"])
    assert idle == pytest.approx(sum(t.requested for t in trace) / RATE_HZ, abs=1e-6)
    assert _finite(out)
    assert [e["seed"] for e in out["per_episode"]] == [5000, 5001]
    assert [e["robot"] for e in out["per_episode"]] == ["robot1", "robot2"]


def test_human_gated_the_operator_watches_one_attempt_at_a_time() -> None:
    trace: list[TickTrace] = []
    out = run_fleet_drive(
        DriveRequest(robot_url="sim://", driver="operator-sim", episodes=4, seed=5000,
                     fast=True, max_steps=600, supervision="human"),
        FleetRun(robots=2, policy_factory=DockingPolicy), count_help=episode_help_counts,
        trace=trace)
    ticks = _by_tick(trace)
    # Only the watched robot moves: no fleet tick has two robots engaged (AUTO or TAKEOVER).
    for rows in ticks.values():
        assert sum(t.mode in (Mode.AUTO, Mode.TAKEOVER) for t in rows) <= 1
    # Attempts alternate between the robots: robot1's first, robot2's first, robot1's second..
    order = [e["robot"] for e in sorted(out["per_episode"], key=lambda e: e["seed"])]
    assert order == ["robot1", "robot1", "robot2", "robot2"]  # each its own block of seeds
    assert out["successes"] == 4  # the expert docks: a wiring check, not a measurement
    engaged = [t.robot for t in trace if t.mode is Mode.AUTO]
    switches = [r for r, _ in itertools.groupby(engaged)]
    assert switches[:4] == ["robot1", "robot2", "robot1", "robot2"]
    # Each robot waits while the other is watched: about half the robot time is idle.
    assert 0.3 < out["idle_frac"] < 0.7
    assert all(r["idle_s"] > 0 for r in out["per_robot"])
    assert out["operator"]["attention_s"] <= out["operator"]["on_duty_s"]


def test_onnx_policies_record_into_one_workspace_under_their_names(tmp_path: Path) -> None:
    model = tiny_onnx_model(tmp_path / "policy.onnx")
    ws = init_workspace(tmp_path / "ws")
    out = run_fleet_drive(
        DriveRequest(robot_url="sim://", driver="operator-sim", episodes=2, seed=5000,
                     workspace=ws, policy=model, record=True, fast=True, max_steps=40,
                     supervision="robot"),
        FleetRun(robots=2), count_help=episode_help_counts)
    assert out["policy"]["inferences"] > 0  # both robots ran the model in onnxruntime
    recorded = sorted(Path(p).name for p in out["recorded"])
    assert len(recorded) == 2 and len(set(recorded)) == 2
    # Each robot's episode under its own name; which robot reserved the lower number depends
    # on which got to the numbering lock first (under load robot2 sometimes does).
    assert sorted(name.split("_", 2)[2] for name in recorded) == ["robot1.hdf5", "robot2.hdf5"]
    assert all(Path(p).is_file() for p in out["recorded"])


def test_cli_json_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drive", "--driver", "policy", "--robots", "2", "--episodes", "2",
                 "--max-steps", "5", "--policy", "no/such.onnx", "--json"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no/such.onnx" in err[0] and "Traceback" not in err[0]
    for argv, flag in ((["--robots", "0"], "--robots"),
                       (["--robots", "3", "--episodes", "2"], "--episodes"),
                       (["--robots", "2", "--episodes", "2", "--supervision", "both"], "both"),
                       (["--robots", "2", "--episodes", "2", "--driver", "expert"], "expert"),
                       (["--robots", "2", "--episodes", "2", "--robot", "ws://localhost:1"],
                        "sim://")):
        driver = [] if "--driver" in argv else ["--driver", "operator-sim"]
        assert main(["drive", *driver, *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and flag in err[0] and "Traceback" not in err[0], (argv, err)


def test_json_line_is_strict(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = tiny_onnx_model(tmp_path / "policy.onnx")
    assert main(["drive", "--driver", "operator-sim", "--robots", "2", "--episodes", "2",
                 "--max-steps", "10", "--policy", str(model), "--supervision", "robot",
                 "--json"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "NaN" not in line and "Infinity" not in line
    out = json.loads(line)
    assert out["robots"] == 2 and len(out["per_robot"]) == 2


class FailingPolicy(DockingPolicy):
    """Docks, then fails (an exception in the policy) on its 60th proposal."""

    def __init__(self, link: RobotLink) -> None:
        super().__init__(link)
        self.calls = 0

    def propose(self, obs: Observation) -> Command | None:
        self.calls += 1
        if self.calls == 60:
            raise RuntimeError("policy blew up")
        return super().propose(obs)


def test_a_failing_robot_stops_the_whole_fleet_and_the_error_is_raised() -> None:
    trace: list[TickTrace] = []
    made: list[RobotLink] = []

    def factory(link: RobotLink) -> DockingPolicy:
        made.append(link)
        return FailingPolicy(link) if len(made) == 2 else DockingPolicy(link)

    with pytest.raises(RuntimeError, match="policy blew up"):
        run_fleet_drive(
            DriveRequest(robot_url="sim://", driver="operator-sim", episodes=4, seed=5000,
                         fast=True, max_steps=600, supervision="robot"),
            FleetRun(robots=2, policy_factory=factory), trace=trace)
    # robot1 was e-stopped mid-attempt: its last ticks are latched with a zero command, and
    # it started no further attempt.
    last = [t for t in trace if t.robot == "robot1"][-1]
    assert last.mode is Mode.ESTOP and last.v_mps == last.w_radps == 0.0
    assert sum(1 for t in trace if t.robot == "robot1" and t.mode is Mode.AUTO) < 600
