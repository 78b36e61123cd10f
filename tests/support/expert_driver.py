"""The simulator's docking expert as a PolicyDriver: a policy that approaches steadily, for tests
of what the control loop does around a policy (help requests, holds, hand-backs)."""

from __future__ import annotations

import math

from takeover.hw.base import RobotLink
from takeover.sim.expert import DockingExpert
from takeover.types import Command, Observation, Pose2D


class ExpertDriver:
    """Proposes the docking expert's command for the link's dock pose every tick. `off_deg`:
    dock to that pose turned this far about its face's centre instead, confidently: the robot
    arrives centred but off the dock's heading (beyond 3 degrees, a contact the simulated
    charger calls misaligned, if nobody stops it)."""

    def __init__(self, link: RobotLink, off_deg: float = 0.0) -> None:
        d = link.dock_pose()
        self.expert = DockingExpert(Pose2D(d.x_m, d.y_m, d.yaw_rad + math.radians(off_deg)))

    def propose(self, obs: Observation) -> Command | None:
        return self.expert.command(obs.odom)

    def drop_queued_actions(self) -> None:
        pass

    def reset(self) -> None:
        self.expert.reset()
