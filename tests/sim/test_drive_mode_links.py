"""reset=drive on every way the simulator is reached: sim:// (lockstep and real time), the
served serial firmware (TCP) and the rosbridge server. In that mode the host's links see a real
base: no simulator control, no docked flag; charging shows in the battery's current."""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import pytest
from dock_support import place_at_dock
from waiting import wait_for

from takeover.errors import UsageError
from takeover.hw.base import LinkOptions, RobotLink, open_link
from takeover.sim.link import RealtimeSimLink, SimLink
from takeover.sim.realtime import RealTimeBase
from takeover.sim.rosbridge_server import SimRosbridgeServer
from takeover.sim.serial_server import SimSerialServer
from takeover.sim.simulator import SimConfig, SimOutcome
from takeover.sim.truth_log import read_truth_log
from takeover.types import POWER_SUPPLY_STATUS_CHARGING, Command


def assert_refuses_like_a_real_robot(link: RobotLink) -> None:
    assert not link.supports_sim_control
    for call in (lambda: link.reset(3), link.dock_pose):
        with pytest.raises(UsageError) as err:
            call()
        assert "\n" not in str(err.value) and "simulator" in str(err.value)


def test_lockstep_drive_mode_is_not_a_simulator_and_keeps_the_robot_where_it_is(
        tmp_path: Path) -> None:
    log = tmp_path / "truth.jsonl"
    link = open_link(f"sim://?reset=drive&fast=1&seed=4&truth_log={log}")
    assert isinstance(link, SimLink)
    link.connect()
    try:
        assert_refuses_like_a_real_robot(link)
        start = link.sim.world.start
        assert (link.sim.x, link.sim.y, link.sim.yaw) == (start.x_m, start.y_m, start.yaw_rad)
        # Dock, then back out: charging on and off again, never a docked flag.
        place_at_dock(link.sim)
        for _ in range(100):
            link.send(Command(0.08, 0.0))
            link.advance(0.05)
            if link.sim.outcome is SimOutcome.DOCKED:
                break
        obs = link.latest()
        assert obs is not None and not obs.docked
        assert obs.power_supply_status == POWER_SUPPLY_STATUS_CHARGING
        for _ in range(100):
            link.send(Command(-0.08, 0.0))
            link.advance(0.05)
            if link.sim.outcome is SimOutcome.RUNNING:
                break
    finally:
        link.close()
    assert [(e["event"], e["with"]) for e in read_truth_log(log)] == [
        ("start", ""), ("contact", "dock"), ("release", "dock")]


def test_teleport_is_the_default_and_a_bad_reset_value_is_one_line() -> None:
    link = open_link("sim://?fast=1")
    assert link.supports_sim_control and not link.sim.config.real_base  # type: ignore[attr-defined]
    assert open_link("sim://?fast=1&reset=teleport").supports_sim_control
    with pytest.raises(UsageError) as err:
        open_link("sim://?fast=1&reset=fly")
    text = str(err.value)
    assert "\n" not in text and "reset='fly'" in text and "teleport or drive" in text
    with pytest.raises(UsageError, match="truth_log"):
        open_link("sim://?fast=1&truth_log=")


def test_realtime_drive_mode_is_not_a_simulator() -> None:
    link = open_link("sim://?reset=drive&seed=2", LinkOptions())
    assert isinstance(link, RealtimeSimLink)
    assert not link.supports_sim_control  # known before connecting, from the URL
    link.connect()
    try:
        assert_refuses_like_a_real_robot(link)
        with pytest.raises(UsageError, match="truth log"):
            link.sim_outcome()
        wait_for(lambda: link.latest() is not None, 5.0, "an observation")
        obs = link.latest()
        assert obs is not None and not obs.docked
    finally:
        link.close()


def real_base(seed: int, truth_log: Path | None = None) -> RealTimeBase:
    return RealTimeBase(seed, SimConfig(real_base=True, truth_log=str(truth_log or "")))


def creep_until_charging(link: RobotLink, timeout_s: float = 10.0) -> None:
    """Creep forward until the base's battery says it charges (its docked flag never will)."""
    deadline = time.monotonic() + timeout_s
    while True:
        link.send(Command(0.08, 0.0))
        time.sleep(0.02)
        obs = link.latest()
        if obs is not None and obs.power_supply_status == POWER_SUPPLY_STATUS_CHARGING:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for the robot to charge")


def test_served_serial_drive_mode_is_a_real_base_to_the_host(tmp_path: Path) -> None:
    log = tmp_path / "truth.jsonl"
    with SimSerialServer("tcp", base=real_base(4, log)) as server:
        link = open_link(server.url)
        try:
            link.connect(timeout_s=5.0)
            assert_refuses_like_a_real_robot(link)
            with server.base._lock:
                place_at_dock(server.base.sim)
            creep_until_charging(link)
            assert server.base.outcome is SimOutcome.DOCKED
            obs = link.latest()
            assert obs is not None and not obs.docked and obs.battery_current_a is not None
            assert obs.battery_current_a > 1.0
        finally:
            link.close()
    assert [e["event"] for e in read_truth_log(log)] == ["start", "contact"]


def test_served_rosbridge_drive_mode_is_a_real_base_to_the_host() -> None:
    with SimRosbridgeServer(port=0, base=real_base(4)) as server:
        link = open_link(server.url)
        try:
            link.connect()
            assert_refuses_like_a_real_robot(link)
            with server.base._lock:
                place_at_dock(server.base.sim)
            creep_until_charging(link)
            assert server.base.outcome is SimOutcome.DOCKED
            time.sleep(0.3)  # /docked goes out on change and at 10 Hz: let one arrive
            obs = link.latest()
            assert obs is not None and not obs.docked
            assert not any(s.startswith("/sim/") for s in server._services())
        finally:
            link.close()


def test_sim_serve_reset_drive_builds_a_real_base(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from takeover.cli.sim import add_sim_parser, run_serve

    parser = argparse.ArgumentParser(prog="takeover")
    add_sim_parser(parser.add_subparsers(dest="command"))
    log = tmp_path / "truth.jsonl"
    args = parser.parse_args(["sim", "serve", "--serial-tcp", "127.0.0.1:0", "--seed", "6",
                              "--reset", "drive", "--truth-log", str(log)])
    stop = threading.Event()
    thread = threading.Thread(target=run_serve, args=(args, stop), daemon=True)
    thread.start()
    try:
        printed: list[str] = []

        def url() -> str:
            printed.append(capsys.readouterr().out)
            return "".join(printed).strip()

        wait_for(url, 10.0, "the served URL")
        link = open_link(url())
        try:
            link.connect(timeout_s=5.0)
            assert not link.supports_sim_control
        finally:
            link.close()
    finally:
        stop.set()
        thread.join(5.0)
    assert read_truth_log(log)[0]["seed"] == 6
    with pytest.raises(SystemExit):
        parser.parse_args(["sim", "serve", "--ros2", "--reset", "fly"])
