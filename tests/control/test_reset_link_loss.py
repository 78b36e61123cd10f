"""A lost link during a reset, over a real serial link (TCP) to the simulated firmware playing a
real base: the loop latches LINK_LOST, the robot stops, and it stays stopped when the cable is
back until the operator acknowledges."""

from __future__ import annotations

import math

from waiting import wait_for

from takeover.config import Config
from takeover.control.reset_driver import ResetDriver
from takeover.hw.base import open_link
from takeover.inputs.scripted import DeadmanHolder
from takeover.session.stack import build_control_loop
from takeover.sim.realtime import RealTimeBase
from takeover.sim.serial_server import SimSerialServer
from takeover.sim.simulator import SimConfig
from takeover.types import Mode, Pose2D


def test_pulling_the_cable_during_a_reset_latches_and_stops_the_robot() -> None:
    base = RealTimeBase(4, SimConfig(real_base=True))
    with SimSerialServer("tcp", base=base) as server:
        link = open_link(server.url)
        link.connect(timeout_s=5.0)
        config = Config()
        loop = build_control_loop(config, link, DeadmanHolder(), None)
        loop.set_reset_driver(ResetDriver(config.docking.reset))
        loop.start()
        try:
            wait_for(lambda: loop.latest is not None and loop.latest.mode is Mode.IDLE, 10.0,
                     "the loop in IDLE")
            sim = base.sim
            with base._lock:
                x, y, yaw = sim.x, sim.y, sim.yaw
            # Half a metre towards the dock, from the start pose (open space ahead).
            target = Pose2D(x + 0.5 * math.cos(yaw), y + 0.5 * math.sin(yaw), yaw)
            loop.request_reset(target, undock=False)
            wait_for(lambda: abs(sim.v) > 0.02, 10.0, "the robot moving in RESET")
            assert loop.arbiter.mode is Mode.RESET
            server.unplug()
            wait_for(lambda: loop.arbiter.mode is Mode.LINK_LOST, 5.0, "LINK_LOST")
            # The base's own watchdog stops the wheels once commands stop arriving.
            wait_for(lambda: abs(sim.v) < 1e-6 and abs(sim.w) < 1e-6, 5.0, "the wheels stopped")
            server.replug()
            wait_for(lambda: link.health().connected, 10.0, "the link back")
            with base._lock:
                still = (sim.x, sim.y)
            # Back, fresh and flowing: still latched and still, until acknowledged.
            wait_for(lambda: link.latest() is not None and link.health().frames_ok > 0, 5.0,
                     "observations again")
            ticks = loop.stats.ticks
            wait_for(lambda: loop.stats.ticks >= ticks + 20, 10.0, "20 more ticks")
            assert loop.arbiter.mode is Mode.LINK_LOST
            with base._lock:
                assert (sim.x, sim.y) == still
        finally:
            loop.stop()
            link.close()
