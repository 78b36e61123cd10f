"""`takeover sim serve --ros2 --reset drive` (in another process, over real DDS on this run's
own domain) is a real robot to the ROS 2 link: no sim services, so no simulator control, and a
docked flag that stays false while the truth log says where the robot is."""

from __future__ import annotations

from pathlib import Path

import pytest
from ros2_support import isolate_dds, need_rclpy

from takeover.bench.links import serve_sim
from takeover.errors import UsageError
from takeover.hw.base import open_link
from takeover.sim.truth_log import read_truth_log

# End to end through a whole drive or the core process: `make test` runs it, test-fast not.
pytestmark = pytest.mark.slow

DOMAIN = isolate_dds()


@pytest.fixture(scope="module", autouse=True)
def _rclpy() -> None:
    need_rclpy()


def test_served_ros2_drive_mode_offers_no_simulator_control(tmp_path: Path) -> None:
    log = tmp_path / "truth.jsonl"
    with serve_sim("ros2:drivebot", seed=5,
                   extra=["--reset", "drive", "--truth-log", str(log)]) as url:
        link = open_link(url)
        link.connect(timeout_s=10.0)
        try:
            assert not link.supports_sim_control
            with pytest.raises(UsageError):
                link.reset(3)
            with pytest.raises(UsageError):
                link.dock_pose()
            obs = link.latest()
            assert obs is not None and not obs.docked
            assert obs.power_supply_status is not None  # the battery still reports
        finally:
            link.close()
    assert [(e["event"], e["seed"]) for e in read_truth_log(log)] == [("start", 5)]
