"""The simulator's docking expert as a PolicyDriver: a policy that approaches steadily, for tests
of what the control loop does around a policy (help requests, holds, hand-backs)."""

from __future__ import annotations

from takeover.hw.base import RobotLink
from takeover.sim.expert import DockingExpert
from takeover.types import Command, Observation


class ExpertDriver:
    """Proposes the docking expert's command for the link's dock pose every tick."""

    def __init__(self, link: RobotLink) -> None:
        self.expert = DockingExpert(link.dock_pose())

    def propose(self, obs: Observation) -> Command | None:
        return self.expert.command(obs.odom)

    def drop_queued_actions(self) -> None:
        pass

    def reset(self) -> None:
        self.expert.reset()
