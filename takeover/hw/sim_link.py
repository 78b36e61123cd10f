"""`sim://`: the in-process simulator as a RobotLink.

Two ways to run:
- real time (default): a physics thread steps the simulator on absolute deadlines
  (`physics_rate_hz`, default 100 Hz) and renders camera frames at `camera_rate_hz` (default
  20 Hz) and scans at `scan_rate_hz` (10 Hz), like a real base with its sensors;
- lockstep (`fast=True` or `sim://?fast=1`): the caller steps the world with `advance(dt_s)`,
  as fast as the machine allows, with a fresh frame and scan after every step. Observation
  timestamps are then on the simulator's clock, which `now_ns()` returns.

URL options: `sim://?seed=7&fast=1&width=96&height=96`.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from takeover.errors import UsageError
from takeover.hw.base import LinkHealth, LinkOptions, RobotLink, query_params
from takeover.sim.render import CameraModel
from takeover.sim.simulator import SimConfig, Simulator
from takeover.types import Command, Observation, Pose2D


def _int_param(params: dict[str, str], key: str, default: int, url: str) -> int:
    raw = params.get(key)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"robot URL {url!r}: {key}={raw!r} is not an integer") from None


def open_sim_link(url: str, options: LinkOptions) -> SimLink:
    params = query_params(url)
    known = {"seed", "fast", "width", "height"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise UsageError(
            f"robot URL {url!r}: unknown option {unknown[0]!r}; sim:// accepts {sorted(known)}"
        )
    fast = options.fast or params.get("fast", "0") in ("1", "true", "yes")
    camera = CameraModel(
        width_px=_int_param(params, "width", options.camera_width, url),
        height_px=_int_param(params, "height", options.camera_height, url),
    )
    seed = _int_param(params, "seed", options.seed, url)
    return SimLink(url, seed=seed, fast=fast, config=SimConfig(camera=camera))


class SimLink(RobotLink):
    supports_sim_control = True

    def __init__(
        self,
        url: str = "sim://",
        seed: int = 0,
        fast: bool = False,
        config: SimConfig | None = None,
        physics_rate_hz: float = 100.0,
        camera_rate_hz: float = 20.0,
        scan_rate_hz: float = 10.0,
    ) -> None:
        super().__init__(url)
        self.lockstep = fast
        self.sim = Simulator(seed, config)
        self._lock = threading.Lock()
        self._inbox: deque[Command] = deque(maxlen=64)
        self._latest: Observation | None = None
        self._physics_period_s = 1.0 / physics_rate_hz
        self._camera_period_ns = int(1e9 / camera_rate_hz)
        self._scan_period_ns = int(1e9 / scan_rate_hz)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = False
        self._frames = 0
        self._last_image_ns = -(10**18)
        self._last_scan_ns = -(10**18)
        self._t0_ns = 0  # host monotonic time that corresponds to sim time 0 (real time)

    # --- RobotLink -----------------------------------------------------------------------------

    def connect(self, timeout_s: float = 5.0) -> None:
        if self._connected:
            return
        self._connected = True
        with self._lock:
            self._t0_ns = time.monotonic_ns() - self.sim.t_ns
            self._publish(force=True)
        if not self.lockstep:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sim-physics", daemon=True)
            self._thread.start()

    def send(self, command: Command) -> Command:
        # Lock-free hand-over, so the control loop never waits for a frame being rendered: the
        # physics thread (or `advance`) delivers it to the base, like a transport would.
        self._inbox.append(command)
        return command

    def latest(self) -> Observation | None:
        return self._latest

    def health(self) -> LinkHealth:
        obs = self._latest
        age_ms = float("inf") if obs is None else (self.now_ns() - obs.t_ns) / 1e6
        return LinkHealth(
            connected=self._connected, frames_ok=self._frames, last_rx_age_ms=age_ms,
            detail="simulator (lockstep)" if self.lockstep else "simulator (real time)",
        )

    def close(self) -> None:
        if not self._connected:
            return
        with self._lock:
            self._inbox.clear()
            self.sim.command(Command())
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self._connected = False

    def estop(self) -> None:
        with self._lock:
            self.sim.set_estop(True)
            self._publish(force=False)

    def clear_estop(self) -> None:
        with self._lock:
            self.sim.set_estop(False)

    def now_ns(self) -> int:
        if self.lockstep:
            return self.sim.t_ns
        return time.monotonic_ns()

    # --- simulator control ---------------------------------------------------------------------

    def reset(self, seed: int) -> None:
        with self._lock:
            self.sim.reset(seed)
            self._t0_ns = time.monotonic_ns()
            self._last_image_ns = self._last_scan_ns = -(10**18)
            self._publish(force=True)

    def dock_pose(self) -> Pose2D:
        return self.sim.dock_pose

    def advance(self, dt_s: float) -> None:
        if not self.lockstep:
            raise UsageError("sim:// runs in real time; open it with fast=True to step it")
        with self._lock:
            self._deliver()
            self.sim.step(dt_s)
            self._publish(force=True)

    # --- internals -----------------------------------------------------------------------------

    def _deliver(self) -> None:
        """Hand queued commands to the base, oldest first; caller holds the lock."""
        while self._inbox:
            self.sim.command(self._inbox.popleft())

    def _publish(self, force: bool) -> None:
        """Sense and publish an observation; caller holds the lock.

        In real time, frames and scans are rendered at their own rates; in between, the newest
        odometry goes out with the last frame and scan.
        """
        sim = self.sim
        stamp = sim.t_ns if self.lockstep else self._t0_ns + sim.t_ns
        need_image = force or stamp - self._last_image_ns >= self._camera_period_ns
        need_scan = force or stamp - self._last_scan_ns >= self._scan_period_ns
        obs = sim.observe(t_ns=stamp, with_image=need_image, with_scan=need_scan)
        prev = self._latest
        if not need_image or not need_scan:
            # Keep the previous sensor data, but stamp the observation by its oldest part so
            # that freshness checks see how old the frame really is.
            image = obs.image if need_image else (prev.image if prev else None)
            scan = obs.scan_m if need_scan else (prev.scan_m if prev else None)
            t_ns = min(
                stamp if need_image else self._last_image_ns,
                stamp if need_scan else self._last_scan_ns,
            )
            obs = Observation(
                t_ns=t_ns, odom=obs.odom, image=image, scan_m=scan,
                battery_frac=obs.battery_frac, docked=obs.docked, estop=obs.estop,
                bumper=obs.bumper,
            )
        if need_image:
            self._last_image_ns = stamp
        if need_scan:
            self._last_scan_ns = stamp
        self._latest = obs
        self._frames += 1

    def _run(self) -> None:
        period_ns = int(self._physics_period_s * 1e9)
        with self._lock:
            self._t0_ns = time.monotonic_ns() - self.sim.t_ns
        deadline = time.monotonic_ns() + period_ns
        while not self._stop.is_set():
            delay = deadline - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
            with self._lock:
                self._deliver()
                self.sim.step(self._physics_period_s)
                self._publish(force=False)
            deadline += period_ns
            now = time.monotonic_ns()
            if now - deadline > 5 * period_ns:  # fell far behind (suspended?): resynchronise
                deadline = now + period_ns
