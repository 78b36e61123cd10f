"""Benchmarks of the control core: loop timing on the real-time simulator, simulator speed.

Figures are medians and percentiles measured in one run; nothing here asserts a time.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

import numpy as np

from takeover.config import SafetyConfig
from takeover.control.arbiter import Arbiter, OperatorEvent
from takeover.control.loop import ControlLoop
from takeover.inputs.scripted import ScriptedOperator
from takeover.sim.expert import DockingExpert
from takeover.sim.link import RealtimeSimLink
from takeover.sim.render import CameraModel
from takeover.sim.simulator import SimConfig, SimOutcome, Simulator


def bench_loop(rates_hz: list[float], seconds: float, progress: TextIO | None = None
               ) -> dict[str, Any]:
    """Loop lateness with the expert driving the real-time simulator, per loop rate.

    The simulator runs in its own process, as it does for `takeover drive` in real time.
    """
    rows = []
    for rate in rates_hz:
        link = RealtimeSimLink("sim://", seed=1)
        link.connect()
        expert = DockingExpert(link.dock_pose())
        loop = ControlLoop(link, Arbiter(SafetyConfig()), ScriptedOperator(expert.command),
                           rate_hz=rate)
        seed = 1
        loop.start()
        loop.post(OperatorEvent.MANUAL)
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            time.sleep(0.1)
            obs = link.latest()
            if obs is not None and (obs.docked or obs.bumper):  # keep it driving: next room
                seed += 1
                link.reset(seed)
                expert.reset(link.dock_pose())
        loop.stop()
        link.close()
        timing = loop.timing().as_json()
        timing["nominal_rate_hz"] = rate
        timing["episodes_started"] = seed
        rows.append(timing)
        if progress is not None:
            print(f"{rate:g} Hz: late p50 {timing['late_ms_p50']} ms, p99 {timing['late_ms_p99']}"
                  f" ms, max {timing['late_ms_max']} ms, overruns {timing['overruns']}",
                  file=progress, flush=True)
    return {"loop": rows, "seconds_per_rate": seconds}


def bench_sim(frames: int, width: int, height: int) -> dict[str, Any]:
    """Frames per second of the simulator: render, scan and one 50 ms physics step each."""
    sim = Simulator(0, SimConfig(camera=CameraModel(width, height)))
    expert = DockingExpert(sim.dock_pose)
    render_ms, scan_ms, step_ms = [], [], []
    seed = 0
    t0 = time.perf_counter()
    for _ in range(frames):
        a = time.perf_counter()
        sim.renderer.render(sim.x, sim.y, sim.yaw)
        b = time.perf_counter()
        sim.renderer.scan(sim.x, sim.y, sim.yaw)
        c = time.perf_counter()
        sim.command(expert.command(sim.odometry()))
        sim.step(0.05)
        d = time.perf_counter()
        render_ms.append((b - a) * 1e3)
        scan_ms.append((c - b) * 1e3)
        step_ms.append((d - c) * 1e3)
        if sim.outcome is not SimOutcome.RUNNING:
            seed += 1
            sim.reset(seed)
            expert.reset(sim.dock_pose)
    total = time.perf_counter() - t0

    def pct(xs: list[float]) -> dict[str, float]:
        arr = np.asarray(xs)
        return {"p50": round(float(np.median(arr)), 4), "p99": round(float(np.percentile(arr, 99)), 4)}

    return {
        "frames": frames,
        "image": [height, width],
        "frames_per_s": round(frames / total, 1),
        "realtime_factor_at_20hz": round(frames / total / 20.0, 1),
        "render_ms": pct(render_ms),
        "scan_ms": pct(scan_ms),
        "physics_step_ms": pct(step_ms),
    }
