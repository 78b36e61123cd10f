"""Gamepad-to-wire latency: from an SDL controller's state change to the command handed to the
robot link, in milliseconds. A measurement script, not a test (nothing is asserted; the tests
check the order, "on the wire by the next tick", tests/inputs/test_gamepad_sdl.py).

    .venv/bin/python benchmarks/gamepad_to_wire.py [--presses 50] [--rate-hz 20] [--json]

An in-process operator session on the real-time simulator (sim://) with the gamepad on; a
virtual SDL game controller (tests/support/_sdlpad.py: SDL_JoystickAttachVirtual, the same SDL
path a USB pad takes) holds the stick forward and presses and releases the deadman at phases
spread over the loop period. For each press the time to the first moving command sent, for each
release the time to the first zero; median, p99 and max over all of them, with the loop period
beside them (the expectation is under one period plus scheduling).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from _sdlpad import VirtualPad

from takeover.config import Config, GamepadConfig, LoopConfig
from takeover.hw.base import open_link
from takeover.session.operator import OperatorSession
from takeover.types import Command


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=50)
    ap.add_argument("--rate-hz", type=float, default=20.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    link = open_link("sim://?seed=5")
    link.connect()
    config = Config(gamepad=GamepadConfig(expo=0.0), loop=LoopConfig(rate_hz=args.rate_hz))
    session = OperatorSession(config, link, None)
    sent: list[tuple[int, Command]] = []
    lock = threading.Lock()
    send = link.send

    def tapped(command: Command) -> Command:
        with lock:
            sent.append((time.perf_counter_ns(), command))
        return send(command)

    link.send = tapped  # type: ignore[method-assign]
    session.start()
    pad = VirtualPad()

    def first_after(t0: int, moving: bool) -> float:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            with lock:
                hit = next((t for t, c in sent if t >= t0 and (c.v_mps > 0) == moving), None)
            if hit is not None:
                return (hit - t0) / 1e6
            time.sleep(0.0005)
        raise SystemExit("no command on the wire within 10 s")

    try:
        assert session.gamepad is not None
        while not session.gamepad.status().connected:
            time.sleep(0.01)
        pad.button("a", True)
        while session.mode.value != "MANUAL":
            time.sleep(0.01)
        pad.button("a", False)
        pad.axis("lefty", -1.0)
        period_s = 1.0 / args.rate_hz
        latencies = []
        for i in range(args.presses):
            t0 = time.perf_counter_ns()
            pad.button("leftshoulder", True)
            latencies.append(first_after(t0, moving=True))
            t1 = time.perf_counter_ns()
            pad.button("leftshoulder", False)
            latencies.append(first_after(t1, moving=False))
            time.sleep(((i * 7) % 10) / 10 * period_s)
    finally:
        pad.unplug()
        session.close()
    arr = np.asarray(latencies)
    result = {"samples": int(arr.size), "period_ms": round(1e3 / args.rate_hz, 3),
              "p50_ms": round(float(np.median(arr)), 3),
              "p99_ms": round(float(np.percentile(arr, 99)), 3),
              "max_ms": round(float(arr.max()), 3)}
    print(json.dumps(result) if args.json else
          " ".join(f"{k} {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
