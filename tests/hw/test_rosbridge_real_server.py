"""The rosbridge link against what the real rosbridge_server (2.x) does to a client (issue 15 B).

The simulator's rosbridge server plays the real server's behaviour as fault modes of its own: QoS
chosen at subscribe time (a subscription made before the LiDAR's best-effort publisher is known
delivers nothing until it is made again), a LiDAR driver that starts late, a restart on the same
port before the robot's publishers are discovered, a robot with no /sim services and no e-stop.
Everything is real: WebSocket servers, the link, the Arbiter and the control loop. Waits are
bounded and judge counted events (ticks, messages, calls), never how fast something happened.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import h5py
import pytest

from takeover.config import Config
from takeover.control.arbiter import Arbiter, OperatorEvent
from takeover.control.loop import ControlLoop
from takeover.hw.base import open_link
from takeover.hw.rosbridge.link import RosbridgeLink
from takeover.inputs.scripted import ScriptedOperator
from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.verify import verify_episode
from takeover.session.stack import start_recorder
from takeover.sim.realtime import RealTimeBase
from takeover.sim.rosbridge_server import SCAN_TOPIC, SimRosbridgeServer
from takeover.types import Command, Mode, Odometry, StepRecord, StepSink
from takeover.workspace.layout import init_workspace

WAIT_S = 15.0  # a bound on each wait, not a figure under test


def wait_for(predicate: Callable[[], object], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.005)


class Ticks:
    """A loop sink that keeps every tick's record, so a test waits for counted ticks."""

    def __init__(self) -> None:
        self.records: list[StepRecord] = []
        self.cond = threading.Condition()

    def offer(self, record: StepRecord) -> bool:
        with self.cond:
            self.records.append(record)
            self.cond.notify_all()
        return True

    def wait(self, predicate: Callable[[StepRecord], bool], what: str, since: int = 0
             ) -> StepRecord:
        """The first record after `since` that satisfies `predicate` (bounded wait)."""
        deadline = time.monotonic() + WAIT_S
        with self.cond:
            while True:
                for rec in self.records[since:]:
                    if predicate(rec):
                        return rec
                if time.monotonic() > deadline:
                    seen = sorted({(r.mode.value, r.reason) for r in self.records[since:]})
                    pytest.fail(f"timed out waiting for {what}; seen {seen[-6:]}")
                self.cond.wait(0.05)

    def __len__(self) -> int:
        with self.cond:
            return len(self.records)


def forward(odom: Odometry) -> Command:
    return Command(0.15, 0.0)  # an operator who would drive the moment the Arbiter lets them


Stack = Callable[..., tuple[SimRosbridgeServer, RosbridgeLink]]


@pytest.fixture
def stack() -> Iterator[Stack]:
    """Builds a server in the given fault modes and a link connected to it; closes both."""
    made: list[SimRosbridgeServer | RosbridgeLink] = []

    def build(connect_timeout_s: float = 5.0, **server_options: object
              ) -> tuple[SimRosbridgeServer, RosbridgeLink]:
        server = SimRosbridgeServer(port=0, seed=4, **server_options)  # type: ignore[arg-type]
        made.append(server)
        link = open_link(server.url)
        assert isinstance(link, RosbridgeLink)
        made.append(link)
        link.connect(timeout_s=connect_timeout_s)
        return server, link

    yield build
    for thing in reversed(made):
        thing.close()


def start_loop(link: RosbridgeLink, ticks: Ticks, sinks: Sequence[StepSink] = ()) -> ControlLoop:
    loop = ControlLoop(link, Arbiter(Config().safety), ScriptedOperator(forward), rate_hz=20.0,
                       sinks=[ticks, *sinks])
    loop.start()
    return loop


def scans_after(link: RosbridgeLink, t_ns: int) -> bool:
    obs = link.latest()
    return obs is not None and obs.scan_m is not None and obs.input_t_ns.get("scan", 0) > t_ns


# --- B.1: subscribed again until data flows --------------------------------------------------


def test_a_lidar_driver_that_starts_late_is_subscribed_again_until_scans_flow(stack: Stack) -> None:
    """Cold start: rosbridge and takeover are up before the LiDAR driver. The first /scan
    subscription is reliable (no publisher known) and deaf to the best-effort driver."""
    server, link = stack(connect_timeout_s=1.0, absent=(SCAN_TOPIC,))
    assert server.subscriptions_made(SCAN_TOPIC) >= 1
    t_appear = time.monotonic_ns()
    server.appear(SCAN_TOPIC)
    assert server.incompatible_qos == 1  # what the real server logs, and then delivers nothing
    wait_for(lambda: scans_after(link, t_appear), "a scan from the late LiDAR driver")
    assert server.subscriptions_made(SCAN_TOPIC) >= 2  # it was made again
    assert link.health().extra["resubscribes"] >= 1


def test_a_server_restart_before_discovery_recovers_relatches_and_moves_nothing(stack: Stack) -> None:
    """Issue 23: a new rosbridge server on the same port. The link re-subscribes before the new
    server has discovered the robot's /scan publisher; data must flow again all the same, the
    base's e-stop must be latched again, and nothing may move before the operator acts."""
    server, link = stack()
    ticks = Ticks()
    loop = start_loop(link, ticks)
    try:
        loop.post(OperatorEvent.MANUAL)
        wait_for(lambda: server.moving_commands[1] > 0, "the operator driving before the restart")
        mark = len(ticks)
        loop.post(OperatorEvent.ESTOP)
        ticks.wait(lambda r: r.mode is Mode.ESTOP, "the e-stop", since=mark)
        wait_for(lambda: server.base.estop, "the base's e-stop latched")
        server.base.set_estop(False)  # the robot's software restarted with rosbridge: it forgot

        server.restart(discovered=False)
        t_restart = time.monotonic_ns()
        wait_for(lambda: server.subscriptions_made(SCAN_TOPIC) >= 1,
                 "the link to subscribe to /scan on the new server (before discovery)")
        server.discover()
        wait_for(lambda: scans_after(link, t_restart), "scans again after the restart")
        wait_for(lambda: (2, "/estop/set", {"data": True}) in server.service_calls,
                 "the base's e-stop latched again on the new server")
        wait_for(lambda: server.base.estop, "the base to report its e-stop again")
        after = len(ticks)
        ticks.wait(lambda r: r.observation is not None and r.observation.scan_m is not None
                   and r.observation.input_t_ns["scan"] > t_restart, "a tick on the new scans",
                   since=after)
        # Nothing moved: every tick since the e-stop was latched and sent zero, and the new
        # server got no twist but zero.
        since_estop = ticks.records[mark + 1:]
        assert {r.mode for r in since_estop} <= {Mode.ESTOP}, {r.mode for r in since_estop}
        assert all(r.command.is_zero for r in since_estop)
        assert server.moving_commands[2] == 0
        assert server.incompatible_qos == 1

        mark = len(ticks)
        loop.post(OperatorEvent.ACKNOWLEDGE)
        loop.post(OperatorEvent.MANUAL)
        ticks.wait(lambda r: r.mode is Mode.MANUAL, "MANUAL after the acknowledgement",
                   since=mark)
        wait_for(lambda: server.moving_commands[2] > 0, "motion once the operator acted")
    finally:
        loop.stop()


# --- B.2: a missing LiDAR is named, never silently drivable --------------------------------------


def test_a_missing_lidar_is_named_on_screen_and_in_the_episode_and_blocks_driving(
        stack: Stack, tmp_path: Path) -> None:
    """Cold start without the LiDAR: the Arbiter's reason (the banner) names it, the robot
    cannot be driven, the episode recorded meanwhile says it has no scan and `data verify`
    reports it; once the driver is up the operator acknowledges and drives."""
    server, link = stack(connect_timeout_s=1.0, absent=(SCAN_TOPIC,))
    ticks = Ticks()
    workspace = init_workspace(tmp_path / "ws")
    writer = start_recorder(workspace, 20.0)
    writer.begin_episode(EpisodeMeta(round=0, rate_hz=20.0, robot_url=link.url))
    loop = start_loop(link, ticks, sinks=[writer])
    try:
        loop.post(OperatorEvent.MANUAL)
        first = ticks.wait(lambda r: r.mode is Mode.LINK_LOST, "LINK_LOST for the missing LiDAR")
        assert re.fullmatch(r"no scan received for \d+ ms \(limit 250\)", first.reason), \
            first.reason
        assert "waiting for /scan" in link.health().detail  # the link says what it waits for
        mark = len(ticks)
        loop.post(OperatorEvent.ACKNOWLEDGE)  # refused: the scan is still missing
        loop.post(OperatorEvent.MANUAL)
        ticks.wait(lambda r: True, "a tick after the requests", since=mark + 2)
        wait_for(lambda: writer.stats().episode is not None, "the episode's file")
        saved = writer.end_episode("aborted").result(WAIT_S)
        assert {r.mode for r in ticks.records} <= {Mode.IDLE, Mode.LINK_LOST}
        assert all(r.command.is_zero for r in ticks.records)
        assert server.moving_commands[1] == 0
        assert saved is not None
        with h5py.File(saved, "r") as f:
            assert "obs/scan" not in f and json.loads(f.attrs["missing_inputs"]).keys() == {"scan"}
        problems = verify_episode(saved)
        assert len(problems) == 1 and "scan never received" in problems[0], problems

        server.appear(SCAN_TOPIC)  # the LiDAR driver comes up: the link subscribes again
        mark = len(ticks)
        ticks.wait(lambda r: r.observation is not None and r.observation.scan_m is not None,
                   "a tick with a scan", since=mark)
        mark = len(ticks)
        loop.post(OperatorEvent.ACKNOWLEDGE)
        loop.post(OperatorEvent.MANUAL)
        ticks.wait(lambda r: r.mode is Mode.MANUAL, "MANUAL once the LiDAR is there", since=mark)
        wait_for(lambda: server.moving_commands[1] > 0, "motion once the operator acted")
    finally:
        loop.stop()
        writer.stop()


# --- B.3: the stale input is named -----------------------------------------------------------


def test_a_slow_lidar_is_named_in_the_link_lost_reason() -> None:
    """A 3 Hz LiDAR (odometry at 50 Hz): the observation goes stale because of the scan, and
    the Arbiter says so, with the scan's age."""
    with SimRosbridgeServer(port=0, base=RealTimeBase(4, scan_rate_hz=3.0)) as server:
        link = open_link(server.url)
        link.connect()
        ticks = Ticks()
        assert isinstance(link, RosbridgeLink)
        loop = start_loop(link, ticks)
        try:
            rec = ticks.wait(lambda r: r.mode is Mode.LINK_LOST, "LINK_LOST on the slow LiDAR")
            assert re.fullmatch(r"scan \d+ ms old \(limit 250\)", rec.reason), rec.reason
        finally:
            loop.stop()
            link.close()


# --- B.6: probe once, stay quiet -------------------------------------------------------------


@pytest.mark.parametrize("rosapi", [True, False], ids=["rosapi", "no-rosapi"])
def test_a_real_robot_is_probed_once_and_not_called_for_services_it_lacks(stack: Stack,
                                                                          rosapi: bool) -> None:
    """A robot without /sim services or /estop/set: with rosapi, not one call to a service it
    lacks; without rosapi, one probe and one e-stop call, whatever the number of presses."""
    server, link = stack(real_robot=True, rosapi=rosapi)
    assert not link.supports_sim_control
    allowed = 0 if rosapi else 1  # the rosapi probe itself
    assert server.errors_logged == allowed, list(server.log)
    ticks = Ticks()
    loop = start_loop(link, ticks)
    try:
        for press in range(3):
            mark = len(ticks)
            loop.post(OperatorEvent.ESTOP)
            ticks.wait(lambda r: r.mode is Mode.ESTOP, "the e-stop", since=mark)
            if press == 0 and not rosapi:  # the one call that finds out
                wait_for(lambda: server.errors_logged == 2, "the e-stop service's absence")
            moving = server.moving_commands[1]
            mark = len(ticks)
            loop.post(OperatorEvent.ACKNOWLEDGE)
            loop.post(OperatorEvent.MANUAL)
            ticks.wait(lambda r: r.mode is Mode.MANUAL, "MANUAL after the acknowledgement",
                       since=mark)
            # a counted event after the release: the base moved again
            wait_for(lambda m=moving: server.moving_commands[1] > m, "motion after release")
        assert server.errors_logged == (0 if rosapi else 2), list(server.log)
        called = [s for _, s, _ in server.service_calls]
        assert "/sim/get_dock_pose" not in called
        assert called.count("/estop/set") == (0 if rosapi else 1)
    finally:
        loop.stop()
