"""`sim://`: the built-in simulator as a RobotLink.

Two ways to run:
- real time (default): the simulator runs in its own process (`takeover.sim.process`), like a
  robot's own computer, stepping its physics on absolute deadlines (100 Hz) and rendering the
  camera at 20 Hz and the LiDAR at 10 Hz. Observations and commands cross through shared memory
  guarded by sequence counters (a seqlock), so `latest()` and `send()` never block and the
  simulator's rendering never competes with the control loop for the interpreter lock; resets
  and e-stops go over a socket. The child exits when its parent dies.
- lockstep (`fast=True` or `sim://?fast=1`): the simulator lives in this process and the caller
  steps it with `advance(dt_s)` as fast as the machine allows, with a fresh frame and scan after
  every step. Observation timestamps are then on the simulator's clock, which `now_ns()` returns.

URL options: `sim://?seed=7&fast=1&width=96&height=96&obstacles=walk-in` (dynamic obstacles,
sim/obstacles.py: none, box, person or walk-in), `perturb=lighting=0.5,lidar_dropout=1`
(perturbation families, sim/perturb.py; `:` may stand for `=`), `reset=teleport|drive` and
`truth_log=PATH`.

`reset=teleport` (the default): the simulator's own reset between attempts (`reset(seed)`
places a new world; `supports_sim_control`). `reset=drive`: the simulator plays a real base
(`SimConfig.real_base`): the world is placed once, at the URL's seed's start pose, and the robot
stays wherever the attempts leave it; contacts release when it drives away; the docked flag is
always clear; `reset` and `dock_pose` refuse as on a real robot. `truth_log=PATH` appends the
simulator's ground truth (sim/truth_log.py) to PATH, for evaluation only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import mmap
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import numpy.typing as npt

from takeover.errors import LinkError, UsageError
from takeover.hw.base import LinkHealth, LinkOptions, RobotLink
from takeover.hw.url_options import UrlOptions
from takeover.sim.obstacles import OBSTACLE_FAMILIES
from takeover.sim.perturb import parse_perturb
from takeover.sim.process import FLAG_BUMPER, FLAG_DOCKED, FLAG_ESTOP, SharedLayout, SharedViews
from takeover.sim.render import CameraModel
from takeover.sim.simulator import SimConfig, Simulator
from takeover.types import Command, Observation, Odometry, Pose2D

RESET_MODES = ("teleport", "drive")  # sim://?reset=...


def open_sim_link(url: str, options: LinkOptions) -> RobotLink:
    """Build (not connect) the simulator link a sim:// URL asks for; bad options are one-line
    UsageErrors."""
    opts = UrlOptions(url, ("seed", "fast", "width", "height", "obstacles", "perturb", "reset",
                            "truth_log"), "sim://")
    opts.check_unknown()
    fast = opts.flag("fast", options.fast) or options.fast
    camera = CameraModel(
        width_px=opts.integer("width", options.camera_width),
        height_px=opts.integer("height", options.camera_height),
    )
    if not (8 <= camera.width_px <= 1024 and 8 <= camera.height_px <= 1024):
        raise UsageError(f"robot URL {url!r}: camera size must be 8..1024 pixels a side")
    seed = opts.integer("seed", options.seed)
    obstacles = opts.choice("obstacles", OBSTACLE_FAMILIES, "none")
    perturb = str(parse_perturb(opts.text("perturb", ""), f"robot URL {url!r}: perturb"))
    real_base = opts.choice("reset", RESET_MODES, "teleport") == "drive"
    truth_log = opts.text("truth_log", "")
    if opts.has("truth_log") and not truth_log:
        raise UsageError(f"robot URL {url!r}: truth_log needs a file path")
    # Absolute: the real-time simulator's process writes it, whatever its working directory.
    config = SimConfig(camera=camera, obstacles=obstacles, perturb=perturb, real_base=real_base,
                       truth_log=os.path.abspath(truth_log) if truth_log else "")
    if fast:
        return SimLink(url, seed=seed, config=config)
    return RealtimeSimLink(url, seed=seed, config=config)


class SimLink(RobotLink):
    """The simulator in this process, stepped by the caller (lockstep)."""

    @property
    def supports_sim_control(self) -> bool:
        """True, unless the simulator plays a real base (`reset=drive`)."""
        return not self.sim.config.real_base

    @property
    def lockstep(self) -> bool:
        return True

    def __init__(self, url: str = "sim://?fast=1", seed: int = 0, config: SimConfig | None = None,
                 with_image: bool = True) -> None:
        """with_image: render the camera (False: LiDAR and odometry only, for drivers that do
        not look, such as the scripted expert in `takeover bench safety`)."""
        super().__init__(url)
        self.sim = Simulator(seed, config)
        self.with_image = with_image
        # A LiDAR fault to inject: "" (working), "off" (no scans at all), "frozen" (the last
        # scan again and again, stamped when it was taken: input_t_ns["scan"]).
        self.lidar_fault = ""
        self._lidar_last: tuple[int, npt.NDArray[np.float32] | None] | None = None
        self._lock = threading.Lock()
        self._latest: Observation | None = None
        self._connected = False
        self._frames = 0

    def connect(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            self._connected = True
            self._publish()

    def send(self, command: Command) -> Command:
        with self._lock:
            self.sim.command(command)
        return command

    def latest(self) -> Observation | None:
        return self._latest

    def health(self) -> LinkHealth:
        return LinkHealth(connected=self._connected, frames_ok=self._frames, last_rx_age_ms=0.0,
                          detail="simulator (lockstep)")

    def close(self) -> None:
        with self._lock:
            self.sim.command(Command())
            self._connected = False

    def estop(self) -> None:
        with self._lock:
            self.sim.set_estop(True)
            self._publish()

    def clear_estop(self) -> None:
        with self._lock:
            self.sim.set_estop(False)

    def now_ns(self) -> int:
        return self.sim.t_ns

    def reset(self, seed: int) -> None:
        if not self.supports_sim_control:
            super().reset(seed)  # refuses, as on a real robot
        with self._lock:
            self.sim.reset(seed)
            self._publish()

    def dock_pose(self) -> Pose2D:
        if not self.supports_sim_control:
            return super().dock_pose()  # refuses, as on a real robot
        return self.sim.dock_pose

    def advance(self, dt_s: float) -> None:
        with self._lock:
            self.sim.step(dt_s)
            self._publish()

    def _publish(self) -> None:
        obs = self.sim.observe(with_image=self.with_image)
        if self.lidar_fault == "off":
            obs = dataclasses.replace(obs, scan_m=None)
        elif self.lidar_fault == "frozen" and self._lidar_last is not None:
            scan_t_ns, scan = self._lidar_last
            # t_ns is the oldest input's stamp (takeover.types.Observation.input_t_ns).
            obs = dataclasses.replace(obs, scan_m=scan, t_ns=min(obs.t_ns, scan_t_ns),
                                      input_t_ns={"scan": scan_t_ns, "odom": obs.t_ns})
        else:
            self._lidar_last = (obs.t_ns, obs.scan_m)
        self._latest = obs
        self._frames += 1


class RealtimeSimLink(RobotLink):
    """The simulator in a child process (`takeover.sim.process`), running in real time."""

    @property
    def supports_sim_control(self) -> bool:
        """True, unless the simulator plays a real base (`reset=drive`)."""
        return not self.config.real_base

    def __init__(self, url: str = "sim://", seed: int = 0, config: SimConfig | None = None,
                 physics_rate_hz: float = 100.0, camera_rate_hz: float = 20.0,
                 scan_rate_hz: float = 10.0) -> None:
        super().__init__(url)
        self.config = config or SimConfig()
        self.seed = seed
        self._rates = (physics_rate_hz, camera_rate_hz, scan_rate_hz)
        cam = self.config.camera
        self._layout = SharedLayout(cam.height_px, cam.width_px, self.config.lidar_beams)
        self._send_lock = threading.Lock()
        self._rpc_lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._block: mmap.mmap | None = None
        self._views: SharedViews | None = None
        self._dock: Pose2D | None = None
        self._cache: Observation | None = None
        self._cache_seq = -1
        self._torn_reads = 0

    def connect(self, timeout_s: float = 20.0) -> None:
        if self._process is not None:
            return
        fd = _shared_fd(self._layout.size)
        self._block = mmap.mmap(fd, self._layout.size)
        self._views = self._layout.views(self._block)
        host_sock, child_sock = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "takeover.sim.process", "--obs-fd", str(fd),
                 "--ctl-fd", str(child_sock.fileno())],
                pass_fds=(fd, child_sock.fileno()), stdin=subprocess.DEVNULL,
            )
        finally:
            child_sock.close()
            os.close(fd)  # the mapping and the child keep the memory alive
        self._conn = Connection(host_sock.detach())
        self._conn.send((self.seed, self.config, self._layout, os.getpid(), self._rates))
        try:
            ready = self._conn.poll(timeout_s)
            msg = self._conn.recv() if ready else None
        except (EOFError, OSError):
            msg = None
        if msg is None or msg[0] != "ready":
            self.close()
            raise LinkError(f"{self.url}: the simulator process did not start "
                            f"(within {timeout_s:.0f} s); run `python -m takeover.sim.process -h` "
                            "to check the installation")
        self._dock = Pose2D(*msg[1])

    def send(self, command: Command) -> Command:
        if not command.is_finite:
            command = Command()
        views = self._views
        if views is None:
            return command
        with self._send_lock:
            cmd = views.cmd
            cmd[0] += 1
            cmd[1], cmd[2] = command.v_mps, command.w_radps
            cmd[0] += 1
        return command

    def latest(self) -> Observation | None:
        views = self._views
        if views is None:
            return self._cache
        h = views.header
        for _ in range(1000):
            seq = int(h[0])
            if seq % 2:
                continue
            if seq == self._cache_seq:
                return self._cache
            t_ns, flags = int(h[1]), int(h[2])
            state = views.state.copy()
            image = views.image.copy()
            scan = views.scan.copy()
            if int(h[0]) != seq:
                self._torn_reads += 1
                continue
            obs = Observation(
                t_ns=t_ns,
                odom=Odometry(*(float(x) for x in state[:5])),
                image=image, scan_m=scan, battery_frac=float(state[5]),
                docked=bool(flags & FLAG_DOCKED), estop=bool(flags & FLAG_ESTOP),
                bumper=bool(flags & FLAG_BUMPER),
                battery_current_a=float(state[6]), power_supply_status=int(state[7]),
            )
            self._cache, self._cache_seq = obs, seq
            return obs
        return self._cache

    def health(self) -> LinkHealth:
        alive = self._process is not None and self._process.poll() is None
        obs = self._cache
        age = float("inf") if obs is None else (time.monotonic_ns() - obs.t_ns) / 1e6
        frames = int(self._views.header[3]) if self._views is not None else 0
        return LinkHealth(connected=alive, frames_ok=frames, frames_bad=self._torn_reads,
                          last_rx_age_ms=age, detail="simulator process (real time)")

    def _rpc(self, *request: Any, timeout_s: float = 10.0) -> tuple[Any, ...]:
        with self._rpc_lock:
            conn = self._conn
            if conn is None:
                raise LinkError(f"{self.url}: not connected")
            try:
                conn.send(request)
                if not conn.poll(timeout_s):
                    raise LinkError(f"{self.url}: the simulator did not answer {request[0]!r}")
                reply: tuple[Any, ...] = conn.recv()
            except (EOFError, OSError):
                raise LinkError(f"{self.url}: the simulator process is gone") from None
            return reply

    def estop(self) -> None:
        self.send(Command())
        self._rpc("estop", True)

    def clear_estop(self) -> None:
        self._rpc("estop", False)

    def reset(self, seed: int) -> None:
        if not self.supports_sim_control:
            super().reset(seed)  # refuses, as on a real robot
        self.seed = seed
        reply = self._rpc("reset", seed)
        self._dock = Pose2D(*reply[1])

    def dock_pose(self) -> Pose2D:
        if not self.supports_sim_control:
            return super().dock_pose()  # refuses, as on a real robot
        if self._dock is None:
            raise LinkError(f"{self.url}: not connected")
        return self._dock

    def sim_outcome(self) -> tuple[str, dict[str, float]]:
        """The simulator's own verdict (running, docked, collision, misaligned) and contact.
        With reset=drive the verdict is evaluation-only ground truth: read the truth log."""
        if not self.supports_sim_control:
            raise UsageError(f"{self.url}: the simulator plays a real base (reset=drive); its "
                             "ground truth is in the truth log (sim://?truth_log=PATH)")
        reply = self._rpc("outcome")
        return reply[1], reply[2]

    def close(self) -> None:
        process = self._process
        if process is None:
            return
        self.send(Command())
        if process.poll() is None:
            with contextlib.suppress(LinkError):
                self._rpc("close", timeout_s=2.0)
        try:
            process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=2.0)
        if self._conn is not None:
            self._conn.close()
        self._process = None
        self._conn = None


def _shared_fd(size: int) -> int:
    """An anonymous shared-memory file of `size` bytes (memfd on Linux, else a temp file)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("takeover-sim", 0)
    else:  # pragma: no cover - non-Linux
        with tempfile.TemporaryFile() as f:
            fd = os.dup(f.fileno())
    os.ftruncate(fd, size)
    return fd
