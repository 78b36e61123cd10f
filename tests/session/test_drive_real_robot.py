"""Headless `takeover drive` on a robot that is not a simulator (issue 15 B.5): a rosbridge
robot without /sim services. The policy needs no dock pose and drives any robot; the drivers
that need the simulator's privileged state say so in words; a missing model is named for the
driver that needs it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tui_support import tiny_onnx_model

from takeover.errors import TakeoverError
from takeover.session.drive import DriveRequest, run_drive
from takeover.sim.rosbridge_server import SimRosbridgeServer


@pytest.fixture
def robot() -> Iterator[SimRosbridgeServer]:
    with SimRosbridgeServer(port=0, seed=4, real_robot=True) as server:
        yield server


def test_policy_drives_a_robot_that_is_not_a_simulator(robot: SimRosbridgeServer,
                                                       tmp_path: Path) -> None:
    model = tiny_onnx_model(tmp_path / "r001" / "policy.onnx")
    summary = run_drive(DriveRequest(robot_url=robot.url, driver="policy", policy=model,
                                     max_steps=10))
    assert summary["episodes"] == 1
    episode = summary["per_episode"][0]
    assert episode["steps"] >= 1, episode  # it engaged AUTO and ran
    assert summary["policy"]["inferences"] > 0
    assert not any(s == "/sim/reset" or s == "/sim/get_dock_pose"
                   for _, s, _ in robot.service_calls)


@pytest.mark.parametrize("driver", ["expert", "operator-sim"])
def test_drivers_that_need_the_simulator_say_so_in_words(robot: SimRosbridgeServer,
                                                         tmp_path: Path, driver: str) -> None:
    model = tmp_path / "unused.onnx"
    if driver == "operator-sim":
        model = tiny_onnx_model(tmp_path / "r001" / "policy.onnx")
    with pytest.raises(TakeoverError) as caught:
        run_drive(DriveRequest(robot_url=robot.url, driver=driver, policy=model))
    message = str(caught.value)
    assert "\n" not in message
    assert f"--driver {driver}" in message and "simulator" in message, message
    assert "--driver policy" in message  # what works on this robot


def test_operator_sim_without_a_model_names_itself() -> None:
    with pytest.raises(TakeoverError, match="--driver operator-sim needs --policy PATH"):
        run_drive(DriveRequest(robot_url="sim://", driver="operator-sim"))
