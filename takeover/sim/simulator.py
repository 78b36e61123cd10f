"""The simulated differential-drive AMR in its docking room.

`Simulator` is the robot base: it takes velocity commands, runs a command watchdog and a
latched e-stop like real firmware, integrates the kinematics with actuation delay, acceleration
limits and noise, checks collisions and docking contact, and produces observations (camera,
LiDAR, odometry). It is deterministic for a given seed and sequence of commands and time steps.
It has no clock of its own: callers step it (`step(dt_s)`); `SimLink` runs it in real time or in
lockstep, and the serial and rosbridge servers wrap it the same way.

By default a contact ends the episode: the robot is frozen where it touched until the next
`reset` (a teleport). With `SimConfig.real_base` it behaves like a real base instead: a contact
stops the robot but a motion away from what it touches is allowed, the contact releases once the
body is clear, and the observation carries no ground-truth docked flag; the truth goes to the
truth log (`truth_events`, sim/truth_log.py) for evaluation only.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from takeover.sim.obstacles import DynamicObstacles
from takeover.sim.perturb import attach_perturbation
from takeover.sim.render import CameraModel, Renderer
from takeover.sim.truth_log import (
    EVENT_CONTACT,
    EVENT_RELEASE,
    EVENT_START,
    append_truth_event,
    truth_event,
)
from takeover.sim.world import (
    DOCK_WIDTH_M,
    KIND_CLUTTER,
    KIND_DOCK,
    ROBOT_RADIUS_M,
    World,
    generate_world,
    segment_distance,
)
from takeover.types import (
    POWER_SUPPLY_STATUS_CHARGING,
    POWER_SUPPLY_STATUS_DISCHARGING,
    POWER_SUPPLY_STATUS_FULL,
    Command,
    Observation,
    Odometry,
    Pose2D,
)


class SimOutcome(enum.Enum):
    RUNNING = "running"
    DOCKED = "docked"
    COLLISION = "collision"
    MISALIGNED = "misaligned"  # touched the dock outside the docking tolerance


@dataclass(frozen=True)
class DockingTolerance:
    lateral_m: float = 0.02
    heading_deg: float = 3.0
    contact_speed_mps: float = 0.15


@dataclass(frozen=True)
class SimConfig:
    """The simulated base. Defaults model a small AMR; all figures are per-seed randomised
    around these where noted."""

    camera: CameraModel = field(default_factory=CameraModel)
    lidar_beams: int = 180
    max_v_mps: float = 0.6  # the base's own hard limits
    max_w_radps: float = 2.0
    accel_v_mps2: float = 1.0
    accel_w_radps2: float = 4.0
    actuation_delay_s: float = 0.04  # per seed: +-50%
    slip_frac: float = 0.03  # per seed: a constant scale error in [-slip, +slip]
    noise_v_mps: float = 0.004
    noise_w_radps: float = 0.01
    odom_noise_m: float = 0.002
    odom_noise_rad: float = 0.0015
    watchdog_timeout_s: float = 0.25
    physics_dt_s: float = 0.005
    tolerance: DockingTolerance = field(default_factory=DockingTolerance)
    battery_drain_per_s: float = 1.0 / 7200
    # The battery's current as a BatteryState reports it, REP 145's sign: positive while
    # charging (on a good dock contact only), negative while discharging (the electronics,
    # plus the motors in proportion to speed). Gaussian noise on every reading.
    charge_current_a: float = 1.5
    idle_current_a: float = -0.8
    drive_current_a_per_mps: float = -2.0
    current_noise_a: float = 0.05
    # Dynamic obstacles (sim/obstacles.py): none | box | person | walk-in, drawn per seed.
    obstacles: str = "none"
    # Perturbation families (sim/perturb.py), e.g. "lighting=0.5,lidar_dropout=1"; "" for none.
    perturb: str = ""
    # Behave like a real base (`sim://?reset=drive`): a contact stops the robot without freezing
    # it (motion away from what it touches is allowed, motion into it is blocked), the contact
    # releases once the body is release_margin_m clear, and the observation's docked flag is
    # always False (the host must tell a dock from the battery, as on a real base). Off: a
    # contact freezes the robot until the next reset, and every seed's episode is as before.
    real_base: bool = False
    release_margin_m: float = 0.005
    # Append every ground-truth outcome change to this JSON-lines file (sim/truth_log.py);
    # "" keeps them in memory only (Simulator.truth_events).
    truth_log: str = ""


def _clamp(x: float, limit: float) -> float:
    return -limit if x < -limit else (limit if x > limit else x)


def wrap_angle(a: float) -> float:
    return math.atan2(math.sin(a), math.cos(a))


class Simulator:
    """One simulated robot base. Not thread-safe: the owner serialises calls."""

    def __init__(self, seed: int = 0, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        # Ground truth for evaluation (sim/truth_log.py): kept across resets, like the file.
        self.truth_events: list[dict[str, object]] = []
        self.reset(seed)

    # --- world -------------------------------------------------------------------------------

    def reset(self, seed: int) -> None:
        cfg = self.config
        self.seed = seed
        self.world: World = generate_world(seed)
        self.renderer = Renderer(self.world, cfg.camera, lidar_beams=cfg.lidar_beams)
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
        self._render_rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCA3]))
        # A stream of its own, so that the battery's readings leave every other draw (and so
        # every seed's episode) as it was before the simulator had a current to report.
        self._battery_rng = np.random.default_rng(np.random.SeedSequence([seed, 0xBA7]))
        start = self.world.start
        self.x, self.y, self.yaw = start.x_m, start.y_m, start.yaw_rad
        self.v, self.w = 0.0, 0.0
        self.t_ns = 0
        self.delay_s = cfg.actuation_delay_s * float(self._rng.uniform(0.5, 1.5))
        self.slip = 1.0 + float(self._rng.uniform(-cfg.slip_frac, cfg.slip_frac))
        self._pending: deque[tuple[int, Command]] = deque()  # (apply at t_ns, command)
        self._target = Command()
        self._last_cmd_t_ns: int | None = None
        self.estop = False
        self.outcome = SimOutcome.RUNNING
        self.battery = float(self._rng.uniform(0.2, 0.6))
        self.contact_report: dict[str, float] = {}
        self.collided_with = ""  # after a collision: wall | clutter | box | person
        self._touching = ""  # real_base: what the robot is in contact with (dock|solid|obstacle)
        self.obstacles = DynamicObstacles(cfg.obstacles, seed, (self.world.dock.x_m,
                                          self.world.dock.y_m), ROBOT_RADIUS_M)
        self._dock_segments = np.flatnonzero(self.world.seg_kind == KIND_DOCK)
        self._solid_segments = np.flatnonzero(self.world.seg_kind != KIND_DOCK)
        self.perturbation = attach_perturbation(self)  # None unless config.perturb asks
        self._log_truth(EVENT_START, "", seed=seed)

    @property
    def dock_pose(self) -> Pose2D:
        return self.world.dock

    @property
    def pose(self) -> Pose2D:
        return Pose2D(self.x, self.y, self.yaw)

    # --- firmware-like inputs --------------------------------------------------------------

    def command(self, cmd: Command) -> None:
        """A velocity command arrives at the base (feeds the watchdog)."""
        if not cmd.is_finite:
            cmd = Command()
        self._last_cmd_t_ns = self.t_ns
        if self.perturbation is not None:
            cmd = self.perturbation.command(cmd)
        self._pending.append((self.t_ns + int(self.delay_s * 1e9), cmd))

    def set_estop(self, engaged: bool) -> None:
        """Latch or release the base's e-stop; while latched the wheels are held at zero."""
        self.estop = engaged
        if engaged:
            self._pending.clear()
            self._target = Command()

    # --- physics -----------------------------------------------------------------------------

    def step(self, dt_s: float) -> None:
        """Advance the world by dt_s seconds (in physics sub-steps)."""
        cfg = self.config
        n = max(1, round(dt_s / cfg.physics_dt_s))
        h = dt_s / n
        # Contact checks cost more than the kinematics: skip them on sub-steps where the robot
        # cannot reach anything yet (its travel this step is bounded by its speed limits).
        reach = (max(cfg.max_v_mps, abs(self.v)) + 0.05) * dt_s
        check_every_substep = self._world_clearance_m() <= reach
        for _ in range(n):
            self._substep(h, check_every_substep)
        # Far from every wall (the only case that skips the per-substep checks) a robot that
        # is in contact touches a dynamic obstacle, which this check does not see anyway.
        if not check_every_substep and self.outcome is SimOutcome.RUNNING:
            self._check_contacts()

    def clearance_m(self) -> float:
        """Distance from the robot's body to the nearest surface (dock and dynamic obstacles
        included)."""
        return min(self._world_clearance_m(),
                   self.obstacles.distance_m(self.x, self.y) - ROBOT_RADIUS_M)

    def _world_clearance_m(self) -> float:
        w = self.world
        d = segment_distance(np.array([self.x, self.y]), w.seg_a, w.seg_b)
        return float(d.min()) - ROBOT_RADIUS_M

    def _substep(self, h: float, check_contacts: bool = True) -> None:
        cfg = self.config
        self.t_ns += round(h * 1e9)
        self.battery = min(1.0, self.battery + h / 1800) if self.outcome is SimOutcome.DOCKED \
            else max(0.0, self.battery - h * cfg.battery_drain_per_s)
        if self.outcome is not SimOutcome.RUNNING:
            if cfg.real_base:
                self._substep_in_contact(h)
            else:
                self.v = self.w = 0.0
            return
        self._update_speeds(h)
        self._integrate(h)
        if self.obstacles.plan is not None:
            self.obstacles.step(self.t_ns / 1e9, h, self.x, self.y, self.yaw, self.v, self.w)
            if self.obstacles.distance_m(self.x, self.y) <= ROBOT_RADIUS_M:
                self.collided_with = self.obstacles.kind
                self.contact_report = {"speed_mps": abs(self.v)}
                self._contact(SimOutcome.COLLISION, "obstacle", self.collided_with)
                self.v = self.w = 0.0
                return
        if check_contacts:
            self._check_contacts()

    def _update_speeds(self, h: float) -> None:
        """Commands due now reach the wheels (watchdog, e-stop, speed and acceleration limits)."""
        cfg = self.config
        while self._pending and self._pending[0][0] <= self.t_ns:
            self._target = self._pending.popleft()[1]
        watchdog_expired = (
            self._last_cmd_t_ns is None
            or (self.t_ns - self._last_cmd_t_ns) > cfg.watchdog_timeout_s * 1e9
        )
        target = Command() if (self.estop or watchdog_expired) else self._target
        v_t = _clamp(target.v_mps, cfg.max_v_mps)
        w_t = _clamp(target.w_radps, cfg.max_w_radps)
        self.v += _clamp(v_t - self.v, cfg.accel_v_mps2 * h)
        self.w += _clamp(w_t - self.w, cfg.accel_w_radps2 * h)

    def _integrate(self, h: float) -> None:
        """Move the body over one sub-step at the wheels' speeds (slip and noise included)."""
        cfg = self.config
        moving = abs(self.v) > 1e-4 or abs(self.w) > 1e-4
        v_act = self.v * self.slip + (self._rng.normal(0, cfg.noise_v_mps) if moving else 0.0)
        w_act = self.w * self.slip + (self._rng.normal(0, cfg.noise_w_radps) if moving else 0.0)
        # Exact unicycle integration over the sub-step.
        if abs(w_act) < 1e-6:
            self.x += v_act * h * math.cos(self.yaw)
            self.y += v_act * h * math.sin(self.yaw)
        else:
            r = v_act / w_act
            new_yaw = self.yaw + w_act * h
            self.x += r * (math.sin(new_yaw) - math.sin(self.yaw))
            self.y -= r * (math.cos(new_yaw) - math.cos(self.yaw))
            self.yaw = wrap_angle(new_yaw)

    def _substep_in_contact(self, h: float) -> None:
        """real_base: one sub-step while touching something. The step is integrated tentatively
        and kept only if it takes the body no closer to what it touches (nor into anything
        else); otherwise the base is held where it is, as a bumper or a dock's end stop holds a
        real one. Clear of it by release_margin_m, the contact releases."""
        self._update_speeds(h)
        before = self._distances()
        saved = (self.x, self.y, self.yaw)
        self._integrate(h)
        after = self._distances()
        touching = self._touching
        eps = 1e-12
        blocked = after[touching] < before[touching] - eps or any(
            after[k] <= ROBOT_RADIUS_M and after[k] < before[k] - eps
            for k in after if k != touching)
        if blocked:
            self.x, self.y, self.yaw = saved
            self.v = self.w = 0.0
        if self.obstacles.plan is not None:  # the world goes on (a person waits, a box goes)
            self.obstacles.step(self.t_ns / 1e9, h, self.x, self.y, self.yaw, self.v, self.w)
            after["obstacle"] = self.obstacles.distance_m(self.x, self.y)
        if after[touching] > ROBOT_RADIUS_M + self.config.release_margin_m:
            self._release()

    def _distances(self) -> dict[str, float]:
        """From the robot's centre to the dock, to the solid world (walls, clutter) and to the
        dynamic obstacle: what a contact can be with."""
        w = self.world
        p = np.array([self.x, self.y])
        dock, solid = self._dock_segments, self._solid_segments
        return {
            "dock": float(segment_distance(p, w.seg_a[dock], w.seg_b[dock]).min()),
            "solid": float(segment_distance(p, w.seg_a[solid], w.seg_b[solid]).min()),
            "obstacle": self.obstacles.distance_m(self.x, self.y),
        }

    # --- ground truth ----------------------------------------------------------------------------

    def _contact(self, outcome: SimOutcome, touching: str, with_: str) -> None:
        """The robot touched something (touching: dock | solid | obstacle; with_: the truth
        log's name for it)."""
        self.outcome = outcome
        self._touching = touching
        self._log_truth(EVENT_CONTACT, with_)

    def _release(self) -> None:
        """real_base: the body is clear of what it touched; the bumper (or the charging
        contacts) open again."""
        with_ = "dock" if self._touching == "dock" else self.collided_with
        self.outcome = SimOutcome.RUNNING
        self._touching = ""
        self.collided_with = ""
        self.contact_report = {}
        self._log_truth(EVENT_RELEASE, with_)

    def _log_truth(self, event: str, with_: str, **extra: object) -> None:
        record = truth_event(event, self.outcome.value, with_, self.t_ns, **extra)
        self.truth_events.append(record)
        if self.config.truth_log:
            append_truth_event(self.config.truth_log, record)

    def _check_contacts(self) -> None:
        w = self.world
        p = np.array([self.x, self.y])
        d_dock = segment_distance(p, w.seg_a[self._dock_segments], w.seg_b[self._dock_segments])
        if d_dock.min() <= ROBOT_RADIUS_M:
            self._evaluate_dock_contact()
            return
        d_solid = segment_distance(p, w.seg_a[self._solid_segments], w.seg_b[self._solid_segments])
        if d_solid.min() <= ROBOT_RADIUS_M:
            kind = w.seg_kind[self._solid_segments[int(np.argmin(d_solid))]]
            self.collided_with = "clutter" if kind == KIND_CLUTTER else "wall"
            self.contact_report = {"speed_mps": abs(self.v)}
            self._contact(SimOutcome.COLLISION, "solid", self.collided_with)
            self.v = self.w = 0.0

    def dock_errors(self) -> tuple[float, float]:
        """(lateral error m, heading error rad) of the robot relative to the docked pose."""
        dock = self.world.dock
        tangent = (-math.sin(dock.yaw_rad), math.cos(dock.yaw_rad))
        lateral = (self.x - dock.x_m) * tangent[0] + (self.y - dock.y_m) * tangent[1]
        heading = wrap_angle(self.yaw - (dock.yaw_rad + math.pi))
        return lateral, heading

    def _evaluate_dock_contact(self) -> None:
        tol = self.config.tolerance
        lateral, heading = self.dock_errors()
        speed = abs(self.v)
        self.contact_report = {
            "lateral_m": lateral,
            "heading_deg": math.degrees(heading),
            "speed_mps": speed,
        }
        ok = (
            abs(lateral) < tol.lateral_m
            and abs(math.degrees(heading)) < tol.heading_deg
            and speed < tol.contact_speed_mps
            and abs(lateral) < DOCK_WIDTH_M / 2
        )
        self._contact(SimOutcome.DOCKED if ok else SimOutcome.MISALIGNED, "dock", "dock")
        self.v = self.w = 0.0

    # --- sensors ------------------------------------------------------------------------------

    def odometry(self) -> Odometry:
        cfg = self.config
        moving = self.outcome is SimOutcome.RUNNING
        return Odometry(
            x_m=self.x + float(self._rng.normal(0, cfg.odom_noise_m)),
            y_m=self.y + float(self._rng.normal(0, cfg.odom_noise_m)),
            yaw_rad=wrap_angle(self.yaw + float(self._rng.normal(0, cfg.odom_noise_rad))),
            v_mps=self.v + (float(self._rng.normal(0, 0.003)) if moving else 0.0),
            w_radps=self.w + (float(self._rng.normal(0, 0.005)) if moving else 0.0),
        )

    def docked_flag(self) -> bool:
        """The docked flag the base reports: the ground truth, except on a real base
        (`real_base`), which has no such flag (the battery's current tells a dock there)."""
        return self.outcome is SimOutcome.DOCKED and not self.config.real_base

    def battery_reading(self) -> tuple[float, int]:
        """(current A, power_supply_status) as the base's BatteryState would report them now:
        charging (FULL once the battery is) only while docked on a good contact; a misaligned
        contact closes no circuit."""
        cfg = self.config
        noise = float(self._battery_rng.normal(0.0, cfg.current_noise_a))
        if self.outcome is SimOutcome.DOCKED:
            if self.battery >= 1.0:  # a full battery takes only a trickle
                return 0.05 * cfg.charge_current_a + noise, POWER_SUPPLY_STATUS_FULL
            return cfg.charge_current_a + noise, POWER_SUPPLY_STATUS_CHARGING
        current = cfg.idle_current_a + cfg.drive_current_a_per_mps * abs(self.v)
        return current + noise, POWER_SUPPLY_STATUS_DISCHARGING

    def observe(self, t_ns: int | None = None, with_image: bool = True,
                with_scan: bool = True) -> Observation:
        """Sense the world now. t_ns stamps the observation (default: sim time)."""
        extra = self.obstacles.segments()
        image = self.renderer.render(self.x, self.y, self.yaw, self._render_rng,
                                     extra) if with_image else None
        scan = self.renderer.scan(self.x, self.y, self.yaw, self._render_rng,
                                  extra) if with_scan else None
        current_a, status = self.battery_reading()
        return Observation(
            t_ns=self.t_ns if t_ns is None else t_ns,
            odom=self.odometry(),
            image=image,
            scan_m=scan,
            battery_frac=self.battery,
            docked=self.docked_flag(),
            estop=self.estop,
            bumper=self.outcome in (SimOutcome.COLLISION, SimOutcome.MISALIGNED),
            battery_current_a=current_a,
            power_supply_status=status,
        )
