"""The real-time simulator as a separate process: the robot's own computer.

Started by `RealtimeSimLink` as `python -m takeover.sim.process --obs-fd N --ctl-fd M`. It
inherits two file descriptors: a shared memory block (memfd) holding the newest observation and
the newest command, and a socket for requests (reset, e-stop, outcome, close). Observations and
commands cross through the shared block guarded by sequence counters (a seqlock: odd while
being written), so neither side ever waits for the other. The process steps its physics on
absolute deadlines (100 Hz), renders the camera at 20 Hz and the LiDAR at 10 Hz, and exits when
its parent dies or the socket closes.
"""

from __future__ import annotations

import argparse
import mmap
import os
import socket
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import numpy.typing as npt

from takeover.sim.simulator import SimConfig, Simulator
from takeover.types import Command, Pose2D

FLAG_DOCKED, FLAG_ESTOP, FLAG_BUMPER = 1, 2, 4

_HEADER_BYTES = 8 * 4  # int64 [seq, t_ns, flags, frames]
_STATE_BYTES = 8 * 8  # float64 [x, y, yaw, v, w, battery, current_a, power_supply_status]
_CMD_BYTES = 8 * 3  # float64 [seq, v, w]


@dataclass(frozen=True)
class SharedLayout:
    """Byte layout of the shared block: header, odometry state, image, scan, command."""

    height: int
    width: int
    beams: int

    @property
    def image_offset(self) -> int:
        return _HEADER_BYTES + _STATE_BYTES

    @property
    def scan_offset(self) -> int:
        return _align8(self.image_offset + self.height * self.width * 3)

    @property
    def cmd_offset(self) -> int:
        return _align8(self.scan_offset + 4 * self.beams)

    @property
    def size(self) -> int:
        return self.cmd_offset + _CMD_BYTES

    def views(self, buf: Any) -> SharedViews:
        raw = np.frombuffer(buf, dtype=np.uint8)
        n_img = self.height * self.width * 3
        return SharedViews(
            header=raw[:_HEADER_BYTES].view(np.int64),
            state=raw[_HEADER_BYTES:self.image_offset].view(np.float64),
            image=raw[self.image_offset:self.image_offset + n_img].reshape(self.height, self.width, 3),
            scan=raw[self.scan_offset:self.scan_offset + 4 * self.beams].view(np.float32),
            cmd=raw[self.cmd_offset:self.cmd_offset + _CMD_BYTES].view(np.float64),
        )


@dataclass(frozen=True)
class SharedViews:
    header: npt.NDArray[np.int64]
    state: npt.NDArray[np.float64]
    image: npt.NDArray[np.uint8]
    scan: npt.NDArray[np.float32]
    cmd: npt.NDArray[np.float64]


def _align8(n: int) -> int:
    return (n + 7) // 8 * 8


def pose_tuple(p: Pose2D) -> tuple[float, float, float]:
    return (p.x_m, p.y_m, p.yaw_rad)


def run_robot(conn: Connection, shared: SharedViews, seed: int, config: SimConfig,
              parent_pid: int, physics_rate_hz: float = 100.0, camera_rate_hz: float = 20.0,
              scan_rate_hz: float = 10.0) -> None:
    """Step the simulator in real time and serve requests until told to close."""
    header, state, image, scan, cmd = (shared.header, shared.state, shared.image, shared.scan,
                                       shared.cmd)
    sim = Simulator(seed, config)
    period_ns = int(1e9 / physics_rate_hz)
    camera_ns, scan_ns = int(1e9 / camera_rate_hz), int(1e9 / scan_rate_hz)
    t0 = time.monotonic_ns()
    last_image = last_scan = -(10**18)
    last_cmd_seq = 0.0
    frames = 0

    def publish(force: bool) -> None:
        nonlocal last_image, last_scan, frames
        stamp = t0 + sim.t_ns
        do_image = force or stamp - last_image >= camera_ns
        do_scan = force or stamp - last_scan >= scan_ns
        o = sim.observe(t_ns=stamp, with_image=do_image, with_scan=do_scan)
        if do_image:
            last_image = stamp
        if do_scan:
            last_scan = stamp
        frames += 1
        header[0] += 1  # odd: being written
        if o.image is not None:
            image[...] = o.image
        if o.scan_m is not None:
            scan[...] = o.scan_m
        # Stamped by its camera frame, the sensor the policy depends on (the scan runs at half
        # the rate), so freshness checks see how old the frame really is.
        header[1] = last_image
        header[2] = ((FLAG_DOCKED if o.docked else 0) | (FLAG_ESTOP if o.estop else 0)
                     | (FLAG_BUMPER if o.bumper else 0))
        header[3] = frames
        od = o.odom
        state[:] = (od.x_m, od.y_m, od.yaw_rad, od.v_mps, od.w_radps, o.battery_frac,
                    o.battery_current_a, o.power_supply_status)
        header[0] += 1  # even: consistent

    publish(force=True)
    conn.send(("ready", pose_tuple(sim.dock_pose)))
    deadline = time.monotonic_ns() + period_ns
    while True:
        if os.getppid() != parent_pid:
            return  # the host died; the base's watchdog has stopped the wheels
        try:
            while conn.poll(0):
                request = conn.recv()
                name = request[0]
                if name == "close":
                    conn.send(("ok",))
                    return
                if name == "reset":
                    sim.reset(int(request[1]))
                    t0 = time.monotonic_ns()
                    last_image = last_scan = -(10**18)
                    publish(force=True)
                    conn.send(("ok", pose_tuple(sim.dock_pose)))
                elif name == "estop":
                    sim.set_estop(bool(request[1]))
                    publish(force=False)
                    conn.send(("ok",))
                elif name == "outcome":
                    conn.send(("ok", sim.outcome.value, dict(sim.contact_report)))
                else:
                    conn.send(("error", f"unknown request {name!r}"))
        except (EOFError, OSError):
            return
        seq = float(cmd[0])
        if seq != last_cmd_seq and int(seq) % 2 == 0:
            v, w = float(cmd[1]), float(cmd[2])
            if float(cmd[0]) == seq:  # not torn by a concurrent write
                last_cmd_seq = seq
                sim.command(Command(v, w))
        delay = deadline - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
        sim.step(period_ns / 1e9)
        publish(force=False)
        deadline += period_ns
        now = time.monotonic_ns()
        if now - deadline > 5 * period_ns:  # suspended or starved: resynchronise
            deadline = now + period_ns


def _raise_priority(priority: int = 5) -> str:
    """The simulated robot must keep real time even when the host is busy, as a real robot's
    own computer would: ask for SCHED_FIFO below the control loop's priority, else a better
    nice value, else carry on as is."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return f"SCHED_FIFO {priority}"
    except (AttributeError, PermissionError, OSError):
        pass
    try:
        os.nice(-5)
        return "nice -5"
    except (AttributeError, PermissionError, OSError):
        return "normal"


def main() -> None:
    ap = argparse.ArgumentParser(description="the real-time simulator process (internal)")
    ap.add_argument("--obs-fd", type=int, required=True)
    ap.add_argument("--ctl-fd", type=int, required=True)
    args = ap.parse_args()
    sock = socket.socket(fileno=args.ctl_fd)
    conn = Connection(sock.detach())
    setup = conn.recv()  # (seed, config, layout, parent_pid, rates)
    seed, config, layout, parent_pid, rates = setup
    _raise_priority()
    block = mmap.mmap(args.obs_fd, layout.size)
    run_robot(conn, layout.views(block), seed, config, parent_pid, *rates)


if __name__ == "__main__":
    main()
