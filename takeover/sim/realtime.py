"""The simulator run in real time as a robot base, for the firmware and rosbridge servers.

`RealTimeBase` owns a `Simulator` and a physics thread that steps it on absolute deadlines
(100 Hz), like a base's control loop, and hands telemetry to a sink at the base's rates: state
(odometry, battery, flags) at 50 Hz, LiDAR scans at 10 Hz, camera frames at 20 Hz. The servers
put their protocol around it; the sink must not block (it runs on the physics thread), so the
servers only queue what they will send.

Commands arrive from the servers' I/O threads through a lock-free queue and reach the base at
its next physics tick, as they would reach a motor controller.

With `SimConfig.real_base` (`takeover sim serve --reset drive`) the servers present the base as
a real robot: no simulator capability, reset or dock pose, and a docked flag that stays clear.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from takeover.sim.simulator import SimConfig, SimOutcome, Simulator
from takeover.types import Command, Odometry, Pose2D


@dataclass(frozen=True, slots=True)
class BaseState:
    """What the base reports at state rate. t_ns: sim time since the last reset."""

    t_ns: int
    odom: Odometry
    battery_frac: float
    docked: bool
    estop: bool
    bumper: bool
    watchdog_stopped: bool
    # BatteryState's current (A, positive while charging) and power_supply_status.
    battery_current_a: float = 0.0
    power_supply_status: int = 0


class TelemetrySink(Protocol):
    """Receives telemetry on the physics thread; must return at once (queue, never block)."""

    def on_state(self, state: BaseState) -> None: ...

    def on_scan(self, t_ns: int, ranges_m: npt.NDArray[np.float32]) -> None: ...

    def on_image(self, t_ns: int, image: npt.NDArray[np.uint8]) -> None: ...


class _NullSink:
    def on_state(self, state: BaseState) -> None:
        pass

    def on_scan(self, t_ns: int, ranges_m: npt.NDArray[np.float32]) -> None:
        pass

    def on_image(self, t_ns: int, image: npt.NDArray[np.uint8]) -> None:
        pass


@dataclass(frozen=True, slots=True)
class DriveSnapshot:
    """The base's drive as the tests see it: what the wheels are told and what they do."""

    target_v_mps: float
    target_w_radps: float
    v_mps: float
    w_radps: float
    watchdog_stopped: bool
    estop: bool
    host_stops: int  # how often the base stopped because its host went away
    t_ns: int  # the base's clock (sim time since reset)
    last_command_t_ns: int | None  # when the last velocity command reached the wheels
    watchdog_tripped_t_ns: int | None  # the first tick the watchdog held the base after it


class RealTimeBase:
    """A simulated base running in real time. Thread-safe."""

    def __init__(
        self,
        seed: int = 0,
        config: SimConfig | None = None,
        physics_rate_hz: float = 100.0,
        state_rate_hz: float = 50.0,
        scan_rate_hz: float = 10.0,
        camera_rate_hz: float = 20.0,
    ) -> None:
        self.sim = Simulator(seed, config)
        self.physics_rate_hz = physics_rate_hz
        self.state_rate_hz = state_rate_hz
        self.scan_rate_hz = scan_rate_hz
        self.camera_rate_hz = camera_rate_hz
        self.watchdog_timeout_ms = int(self.sim.config.watchdog_timeout_s * 1000)
        self._lock = threading.Lock()
        self._inbox: deque[Command] = deque(maxlen=64)
        self._sink: TelemetrySink = _NullSink()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._target = Command()
        self._last_cmd_sim_ns: int | None = None
        self._host_stops = 0
        self._tripped_sim_ns: int | None = None
        self._next_state_ns = 0
        self._next_scan_ns = 0
        self._next_image_ns = 0

    # --- lifecycle -----------------------------------------------------------------------------

    def set_sink(self, sink: TelemetrySink | None) -> None:
        self._sink = sink if sink is not None else _NullSink()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sim-base-physics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    # --- firmware inputs -----------------------------------------------------------------------

    def command(self, cmd: Command) -> None:
        """A velocity command from the host; it feeds the base's watchdog."""
        self._inbox.append(cmd)

    def host_gone(self) -> None:
        """The host hung up or went silent: stop now rather than wait for the watchdog."""
        with self._lock:
            self._inbox.clear()
            self.sim.command(Command())
            self._target = Command()
            self._host_stops += 1

    def set_estop(self, engaged: bool) -> None:
        with self._lock:
            self._inbox.clear()
            self.sim.set_estop(engaged)

    @property
    def estop(self) -> bool:
        return self.sim.estop

    def reset(self, seed: int) -> Pose2D:
        """Reset the world (keeps a latched e-stop latched: only the operator releases it)."""
        with self._lock:
            estop = self.sim.estop
            self._inbox.clear()
            self.sim.reset(seed)
            self.sim.set_estop(estop)
            self._target = Command()
            self._last_cmd_sim_ns = self._tripped_sim_ns = None
            self._next_state_ns = self._next_scan_ns = self._next_image_ns = 0
            return self.sim.dock_pose

    def dock_pose(self) -> Pose2D:
        with self._lock:
            return self.sim.dock_pose

    @property
    def seed(self) -> int:
        return self.sim.seed

    @property
    def real_base(self) -> bool:
        """The simulator plays a real base (`SimConfig.real_base`, `sim serve --reset drive`):
        the servers then offer no simulator control and no dock pose, as a real robot's."""
        return self.sim.config.real_base

    @property
    def outcome(self) -> SimOutcome:
        return self.sim.outcome

    def snapshot(self) -> DriveSnapshot:
        with self._lock:
            stopped = self._watchdog_stopped()
            target = Command() if (stopped or self.sim.estop) else self._target
            return DriveSnapshot(
                target.v_mps, target.w_radps, self.sim.v, self.sim.w, stopped, self.sim.estop,
                self._host_stops, self.sim.t_ns, self._last_cmd_sim_ns, self._tripped_sim_ns,
            )

    # --- physics thread ------------------------------------------------------------------------

    def _watchdog_stopped(self) -> bool:
        last = self._last_cmd_sim_ns
        return last is None or self.sim.t_ns - last > self.watchdog_timeout_ms * 1_000_000

    def _tick(self, dt_s: float) -> None:
        sim = self.sim
        with self._lock:
            while self._inbox:
                cmd = self._inbox.popleft()
                sim.command(cmd)
                self._target = cmd if cmd.is_finite else Command()
                self._last_cmd_sim_ns = sim.t_ns
                self._tripped_sim_ns = None
            sim.step(dt_s)
            now = sim.t_ns
            if self._tripped_sim_ns is None and self._last_cmd_sim_ns is not None \
                    and self._watchdog_stopped():
                self._tripped_sim_ns = now
            state = scan = image = None
            if now >= self._next_state_ns:
                self._next_state_ns = now + int(1e9 / self.state_rate_hz)
                current_a, status = sim.battery_reading()
                state = BaseState(
                    t_ns=now, odom=sim.odometry(), battery_frac=sim.battery,
                    docked=sim.docked_flag(), estop=sim.estop,
                    bumper=sim.outcome in (SimOutcome.COLLISION, SimOutcome.MISALIGNED),
                    watchdog_stopped=self._watchdog_stopped(),
                    battery_current_a=current_a, power_supply_status=status,
                )
            if now >= self._next_scan_ns:
                self._next_scan_ns = now + int(1e9 / self.scan_rate_hz)
                scan = sim.observe(with_image=False, with_scan=True).scan_m
            if now >= self._next_image_ns:
                self._next_image_ns = now + int(1e9 / self.camera_rate_hz)
                image = sim.observe(with_image=True, with_scan=False).image
        sink = self._sink
        if state is not None:
            sink.on_state(state)
        if scan is not None:
            sink.on_scan(now, scan)
        if image is not None:
            sink.on_image(now, image)

    def _run(self) -> None:
        period_s = 1.0 / self.physics_rate_hz
        period_ns = int(period_s * 1e9)
        deadline = time.monotonic_ns() + period_ns
        while not self._stop.is_set():
            delay = deadline - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
            self._tick(period_s)
            deadline += period_ns
            now = time.monotonic_ns()
            if now - deadline > 5 * period_ns:  # fell far behind (suspended?): resynchronise
                deadline = now + period_ns
