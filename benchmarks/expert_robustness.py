"""How well the scripted expert docks when the pose it steers by is wrong.

    python benchmarks/expert_robustness.py LATERAL_M HEADING_DEG {bias,white,ar} [EPISODES]
                                           [EXPERT_PARAMS_JSON]

A policy cloned from the expert perceives the dock's pose only to some precision, so the expert's
law must still dock with that much error (docs/simulator.md). The error added to the expert's
dock-frame pose: `bias` a constant per episode, `white` independent per tick, `ar` an AR(1)
process (coefficient 0.8 per tick) of that standard deviation. Seeds 5000.. in lockstep through
the real loop and Arbiter. EXPERT_PARAMS_JSON overrides ExpertParams, e.g.
'{"min_lookahead_m": 0.06}'.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np

from takeover.config import Config
from takeover.control.arbiter import Arbiter, OperatorEvent
from takeover.control.episodes import EpisodeRunner
from takeover.control.loop import ControlLoop
from takeover.hw.base import LinkOptions, open_link
from takeover.inputs.scripted import ScriptedOperator
from takeover.sim.expert import DockFrame, DockingExpert, ExpertParams
from takeover.types import Odometry, Pose2D


class MisinformedExpert(DockingExpert):
    """The expert, steering by its dock-frame pose plus an error."""

    def __init__(self, dock: Pose2D, params: ExpertParams, lateral_sd_m: float,
                 heading_sd_rad: float, kind: str, seed: int = 0) -> None:
        super().__init__(dock, params)
        self.sd = np.array([lateral_sd_m, heading_sd_rad])
        self.kind = kind
        self.rng = np.random.default_rng(seed)
        self.error = np.zeros(2)

    def new_episode(self, dock: Pose2D) -> None:
        self.reset(dock)
        self.error = self.rng.normal(0.0, self.sd) if self.kind == "bias" else np.zeros(2)

    def dock_frame(self, odom: Odometry) -> DockFrame:
        f = super().dock_frame(odom)
        if self.kind == "white":
            self.error = self.rng.normal(0.0, self.sd)
        elif self.kind == "ar":
            self.error = 0.8 * self.error + 0.6 * self.rng.normal(0.0, self.sd)
        return DockFrame(f.gap_m, f.lateral_m + self.error[0], f.heading_rad + self.error[1])


def main() -> int:
    lateral_m, heading_deg, kind = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    episodes = int(sys.argv[4]) if len(sys.argv) > 4 else 40
    params = ExpertParams(**json.loads(sys.argv[5])) if len(sys.argv) > 5 else ExpertParams()
    link = open_link("sim://", LinkOptions(fast=True, seed=5000))
    link.connect()
    expert = MisinformedExpert(link.dock_pose(), params, lateral_m, math.radians(heading_deg), kind)
    loop = ControlLoop(link, Arbiter(Config().safety), ScriptedOperator(expert.command))
    runner = EpisodeRunner(loop, max_steps=1200)
    outcomes: dict[str, int] = {}
    try:
        for i in range(episodes):
            result = runner.run(5000 + i, OperatorEvent.MANUAL,
                                prepare=lambda: expert.new_episode(link.dock_pose()))
            outcomes[result.detail] = outcomes.get(result.detail, 0) + 1
    finally:
        link.close()
    print(json.dumps({"lateral_m": lateral_m, "heading_deg": heading_deg, "kind": kind,
                      "episodes": episodes, "outcomes": outcomes,
                      "min_lookahead_m": params.min_lookahead_m}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
