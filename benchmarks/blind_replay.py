"""Can a policy that ignores its sensors dock? Replays the expert's mean command sequence.

Records the expert on N training seeds (time-aligned command sequences, padded with zeros),
then replays their mean, open loop, on N held-out seeds, and reports how often it docks
compared with the closed-loop expert on the same held-out seeds.

    python benchmarks/blind_replay.py --episodes 50
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from takeover.sim.expert import DockingExpert
from takeover.sim.simulator import SimOutcome, Simulator
from takeover.types import Command


def expert_episode(seed: int, max_steps: int) -> tuple[SimOutcome, np.ndarray]:
    sim = Simulator(seed)
    expert = DockingExpert(sim.dock_pose)
    cmds = []
    for _ in range(max_steps):
        if sim.outcome is not SimOutcome.RUNNING:
            break
        c = expert.command(sim.odometry())
        cmds.append((c.v_mps, c.w_radps))
        sim.command(c)
        sim.step(0.05)
    return sim.outcome, np.array(cmds)


def replay(seed: int, cmds: np.ndarray) -> tuple[SimOutcome, float]:
    sim = Simulator(seed)
    for v, w in cmds:
        if sim.outcome is not SimOutcome.RUNNING:
            break
        sim.command(Command(float(v), float(w)))
        sim.step(0.05)
    d = sim.dock_pose
    return sim.outcome, float(np.hypot(sim.x - d.x_m, sim.y - d.y_m))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--max-steps", type=int, default=1200)
    args = ap.parse_args()
    train = [expert_episode(1000 + i, args.max_steps)[1] for i in range(args.episodes)]
    n = max(len(s) for s in train)
    mean_cmds = np.stack([np.pad(s, ((0, n - len(s)), (0, 0))) for s in train]).mean(axis=0)
    held_out = [5000 + i for i in range(args.episodes)]
    blind = [replay(s, mean_cmds) for s in held_out]
    expert = [expert_episode(s, args.max_steps)[0] for s in held_out]
    result = {
        "held_out_episodes": args.episodes,
        "expert_docked": sum(o is SimOutcome.DOCKED for o in expert),
        "blind_mean_replay_docked": sum(o is SimOutcome.DOCKED for o, _ in blind),
        "blind_outcomes": {k.value: sum(o is k for o, _ in blind) for k in SimOutcome},
        "blind_final_distance_to_dock_m_median": round(float(np.median([d for _, d in blind])), 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
