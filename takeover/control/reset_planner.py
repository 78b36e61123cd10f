"""Where the robot goes between docking attempts: the docked pose, retries and start poses.

After each attempt the planner picks the reset's target ([docking.reset], docs/docking.md):

- a retry (`max_retries` after a failed attempt, as opennav_docking retries): the staging pose,
  straight out from the docked pose, facing the dock;
- else a new start pose drawn from the start region around the dock's axis, one the LiDAR sees
  free (at least `clearance_m` from every return of the scan taken where the attempt ended);
  if no draw is free, the staging pose.

The docked pose comes from odometry: with `dock = "anchor"` it is re-anchored at every
confirmed dock (the odometry pose when the charge was confirmed), so odometry drift between
docks is corrected at each success; before the first dock it is the configured pose
(x_m, y_m, yaw_rad) if any. With `dock = "config"` it is always the configured pose, and drift
moves the start region with it. With no docked pose at all (anchor mode, nothing configured,
no dock yet) the robot is driven back to where the first attempt started, which was a start
pose by definition.

Pure logic: poses in, poses out; the draws come from the configured seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from takeover.config import DockingConfig
from takeover.control.reset_driver import DockFrame, draw_start_pose, staging_pose
from takeover.types import Odometry, Outcome, Pose2D

#: Resets that fail (end short of their target) one after another before the lifecycle stops
#: starting them by itself: the robot needs a person. `takeover drive --reset drive` stops its
#: run there; `takeover run` pauses `[docking] auto_reset` until the operator resets by hand.
MAX_FAILED_RESETS_IN_A_ROW = 3


@dataclass(frozen=True)
class PlannedReset:
    target: Pose2D
    kind: str  # start | staging (a retry) | home (no docked pose yet: the first start pose)
    retry: int  # which retry of the same start this is (0: a new start)


class ResetPlanner:
    def __init__(self, config: DockingConfig) -> None:
        self.config = config
        r = config.reset
        self.frame: DockFrame | None = None
        if r.x_m is not None and r.y_m is not None and r.yaw_rad is not None:
            self.frame = DockFrame(Pose2D(r.x_m, r.y_m, r.yaw_rad))
        self.anchors = 0  # confirmed docks the frame was taken from
        self.home: Pose2D | None = None
        self.retries = 0
        self._rng = np.random.default_rng(np.random.SeedSequence([r.seed, 0x2E5E7]))

    def attempt_started(self, odom: Odometry | None) -> None:
        """The first attempt's start pose is the fallback target (see the module doc)."""
        if self.home is None and odom is not None:
            self.home = Pose2D(odom.x_m, odom.y_m, odom.yaw_rad)

    def attempt_ended(self, outcome: Outcome, end_odom: Odometry | None,
                      obstacles: np.ndarray | None = None) -> PlannedReset | None:
        """The next reset's target, or None when there is nowhere known to go (no docked pose
        and no first start pose). obstacles: (N, 2) points in the odometry frame to keep
        `clearance_m` from (reset_driver.scan_points)."""
        if outcome is Outcome.SUCCESS and end_odom is not None \
                and self.config.reset.dock == "anchor":
            self.frame = DockFrame(Pose2D(end_odom.x_m, end_odom.y_m, end_odom.yaw_rad))
            self.anchors += 1
        if self.frame is None:
            self.retries = 0
            return None if self.home is None else PlannedReset(self.home, "home", 0)
        if outcome is Outcome.FAILURE and self.retries < self.config.max_retries:
            self.retries += 1
            return PlannedReset(staging_pose(self.frame, self.config.reset), "staging",
                                self.retries)
        self.retries = 0
        start = draw_start_pose(self.frame, self.config.reset, self._rng, obstacles)
        if start is None:
            return PlannedReset(staging_pose(self.frame, self.config.reset), "staging", 0)
        return PlannedReset(start, "start", 0)
