"""How an episode was driven, beyond its outcome: time to dock, path length, command smoothness
and the closest the robot came to anything it must not touch.

For evaluation on the lockstep simulator (`takeover dagger eval`, `dagger compare`): the path
and the clearance come from the simulator's ground truth (the true pose, the room's surfaces and
the dynamic obstacle), not from the noisy odometry (its 2 mm of noise per reading would add
about 3 mm of phantom path per step). On any other link they are None.

- time_to_dock_s: sim time from engaging to docking (steps / rate); None unless docked.
- path_m: distance the robot's centre travelled.
- jerk: RMS jerk of the commanded wheel-rim speeds, m/s^3: the second difference of the left and
  right wheel speeds (v -+ w * track / 2) over dt^2, on the commands actually sent (after the
  Arbiter's limits). One number for both a jerky speed and a wobbling turn rate.
- min_clearance_m: the smallest distance from the robot's body to a wall, clutter or the dynamic
  obstacle during the episode, while its centre is more than `DOCK_ZONE_M` from the centre of the
  dock's face. The dock, which the robot is meant to touch, never counts; nor does the last
  approach, where a docked robot is 8 cm from the dock's wall (the dock's depth) by design.
"""

from __future__ import annotations

import math

import numpy as np

from takeover.hw.base import RobotLink
from takeover.sim.link import SimLink
from takeover.sim.world import KIND_DOCK, ROBOT_RADIUS_M, segment_distance
from takeover.types import StepRecord

TRACK_WIDTH_M = 0.36  # the simulated base's wheel separation (sim/perturb.py TRACK_WIDTH_M)
DOCK_ZONE_M = 0.6  # robot centre this close to the dock face's centre: docking, not clearance


class EpisodeMeter:
    """Fed every record of an episode (`EpisodeRunner(on_record=...)`); `start()` after the
    world was reset for the episode, `summary(docked, steps)` at its end."""

    def __init__(self, link: RobotLink, rate_hz: float) -> None:
        self.sim = link.sim if isinstance(link, SimLink) else None
        self.dt_s = 1.0 / rate_hz
        self.start()

    def start(self) -> None:
        self._path_m = 0.0
        self._clearance_m = math.inf
        self._wheels: list[tuple[float, float]] = []
        self._pose = None if self.sim is None else (self.sim.x, self.sim.y)
        if self.sim is not None:
            w = self.sim.world
            solid = w.seg_kind != KIND_DOCK
            self._seg_a, self._seg_b = w.seg_a[solid], w.seg_b[solid]
            self._face = (w.dock.x_m, w.dock.y_m)

    def on_record(self, rec: StepRecord) -> None:
        half = TRACK_WIDTH_M / 2
        self._wheels.append((rec.command.v_mps - rec.command.w_radps * half,
                             rec.command.v_mps + rec.command.w_radps * half))
        sim = self.sim
        if sim is None or self._pose is None:
            return
        self._path_m += math.hypot(sim.x - self._pose[0], sim.y - self._pose[1])
        self._pose = (sim.x, sim.y)
        if math.hypot(sim.x - self._face[0], sim.y - self._face[1]) <= DOCK_ZONE_M:
            return
        walls = float(segment_distance(np.array([sim.x, sim.y]), self._seg_a, self._seg_b).min())
        nearest = min(walls, sim.obstacles.distance_m(sim.x, sim.y)) - ROBOT_RADIUS_M
        self._clearance_m = min(self._clearance_m, max(0.0, nearest))

    def summary(self, docked: bool, steps: int) -> dict[str, float | None]:
        wheels = np.asarray(self._wheels, dtype=np.float64).reshape(-1, 2)
        jerk = None
        if len(wheels) >= 3:
            jerk = float(np.sqrt(np.mean((np.diff(wheels, n=2, axis=0) / self.dt_s ** 2) ** 2)))
        measured = self.sim is not None
        return {
            "time_to_dock_s": round(steps * self.dt_s, 3) if docked else None,
            "path_m": round(self._path_m, 4) if measured else None,
            "jerk": None if jerk is None else round(jerk, 4),
            "min_clearance_m": (round(self._clearance_m, 4)
                                if measured and math.isfinite(self._clearance_m) else None),
        }
