"""Where a model's attempts end: each held-out seed's final pose in the dock's frame and its
commands over the last 5 s, one JSON line per seed (docs/policy.md, "Why some demonstration sets
fail"). Runs on the simulator in lockstep.

    WS=WORKSPACE [EXEC=receding|ensemble] [NSTEPS=N] python benchmarks/diagnose_attempts.py \\
        MODEL.onnx FIRST_SEED COUNT

WS: the workspace whose takeover.toml sets the safety limits and the policy's execution (else
the defaults); EXEC and NSTEPS override `[policy] execution` and `n_action_steps`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from takeover.config import Config, load_config
from takeover.control.arbiter import OperatorEvent
from takeover.control.episodes import EpisodeRunner
from takeover.inputs.scripted import DeadmanHolder
from takeover.policy.runtime import load_policy
from takeover.session.stack import build_control_loop
from takeover.sim.link import SimLink

LAST_TICKS = 100  # the last 5 s at 20 Hz


def configured() -> Config:
    config = load_config(Path(os.environ["WS"]) / "takeover.toml") if os.environ.get("WS") \
        else Config()
    policy = config.policy
    policy = dataclasses.replace(policy, execution=os.environ.get("EXEC", policy.execution),
                                 n_action_steps=int(os.environ.get("NSTEPS",
                                                                   policy.n_action_steps)))
    return dataclasses.replace(config, policy=policy)


def attempt(model: str, seed: int, config: Config) -> dict[str, object]:
    link = SimLink("sim://?fast=1", seed=seed)
    link.connect()
    loop = build_control_loop(config, link, DeadmanHolder(), load_policy(model, config))
    try:
        result = EpisodeRunner(loop, max_steps=1200, keep_records=True).run(seed, OperatorEvent.AUTO)
        sim, dock = link.sim, link.sim.dock_pose
        dx, dy = sim.x - dock.x_m, sim.y - dock.y_m
        along = dx * math.cos(dock.yaw_rad) + dy * math.sin(dock.yaw_rad)  # out from the face
        lateral = -dx * math.sin(dock.yaw_rad) + dy * math.cos(dock.yaw_rad)
        heading = math.degrees(math.remainder(sim.yaw - (dock.yaw_rad + math.pi), math.tau))
        last = result.records[-LAST_TICKS:]
        v = np.array([r.command.v_mps for r in last])
        w = np.array([r.command.w_radps for r in last])
        xy = np.array([[r.observation.odom.x_m, r.observation.odom.y_m]
                       for r in last if r.observation is not None])
        path = float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum()) if len(xy) > 1 else 0.0
        return {"seed": seed, "outcome": result.outcome, "detail": result.detail,
                "steps": result.steps, "along_m": round(along, 3), "lateral_m": round(lateral, 3),
                "heading_deg": round(heading, 1), "v_mean": round(float(v.mean()), 3),
                "v_absmean": round(float(np.abs(v).mean()), 3),
                "w_absmean": round(float(np.abs(w).mean()), 3),
                "v_sign_changes": int(np.sum(np.diff(np.sign(v)) != 0)),
                "path_last5s_m": round(path, 3)}
    finally:
        loop.stop()
        link.close()


def main() -> None:
    model, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    config = configured()
    for seed in range(first, first + count):
        print(json.dumps(attempt(model, seed, config)), flush=True)


if __name__ == "__main__":
    main()
