"""Control-loop timing with the real TUI at full refresh and recording on: the control core in
its own process (what `takeover run` does) against the core in the TUI's process, in one run.

    .venv/bin/python benchmarks/tui_loop.py [--seconds 60] [--rounds 1] [--rate 20] [--json]

Each run starts the real app (`make_app`) headless with Textual's `run_test` at 140x44, the
built-in simulator (`sim://`, its own process in both cases) and a fresh workspace; takes
MANUAL, starts recording, and spins the robot in place with the left-arrow key auto-repeating
every 40 ms, so the camera, the map and the telemetry change on every refresh. The loop's
timing is taken over the measured window only (start-up excluded). `--rounds N` alternates
the two setups N times, so load from elsewhere on the machine falls on both alike.

Figures: period p50, lateness p50/p99/max (ms) of the loop's tick starts against their
absolute deadlines, overruns, the first-screen time of the app (command to first paint) and
the time until the screen showed the first tick of the loop. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from takeover.config import Config, KeyboardConfig, LoopConfig
from takeover.hw.base import open_link
from takeover.session.core_process import RemoteSession
from takeover.session.operator import OperatorSession
from takeover.tui.app import TakeoverApp, make_app
from takeover.workspace.layout import init_workspace

SIZE = (140, 44)
KEY_REPEAT_S = 0.04


def loop_timing(app: TakeoverApp, since_tick: int = 0) -> dict[str, Any]:
    session = app.session
    if isinstance(session, RemoteSession):
        timing = session.loop_timing(since_tick)
    else:
        assert isinstance(session, OperatorSession)
        timing = session.loop.timing(since_tick)
    return timing.as_json()


async def measure(setup: str, seconds: float, rate_hz: float, workspace: Path) -> dict[str, Any]:
    config = Config(loop=LoopConfig(rate_hz=rate_hz),
                    keyboard=KeyboardConfig(initial_hold_ms=600.0, repeat_hold_ms=300.0))
    t0 = time.perf_counter()
    if setup == "core process":
        app = make_app(config, "sim://?seed=1", workspace=workspace, use_gamepad=False)
    else:
        app = make_app(config, open_link("sim://?seed=1"), None, workspace, use_gamepad=False)
    app.t_command = t0
    refreshes = 0
    async with app.run_test(size=SIZE) as pilot:
        deadline = time.monotonic() + 60
        while not (app.connected and app.session.poll().record is not None):
            if time.monotonic() > deadline:
                raise SystemExit(f"{setup}: did not connect: {app.connect_error}")
            await asyncio.sleep(0.01)
        connected_s = time.perf_counter() - t0
        await pilot.press("m", "r")
        await asyncio.sleep(1.0)  # settle: the first frames, the episode file opened
        start = loop_timing(app)["ticks"]
        t_end = time.monotonic() + seconds

        async def count_refreshes() -> None:
            # The screen's refreshes that showed a new tick (the app keeps its last snapshot).
            nonlocal refreshes
            last_step = -1
            while time.monotonic() < t_end:
                snap = app.snapshot
                if snap is not None and snap.record is not None and snap.record.step != last_step:
                    last_step = snap.record.step
                    refreshes += 1
                await asyncio.sleep(0.005)

        counter = asyncio.create_task(count_refreshes())
        while time.monotonic() < t_end:
            await pilot.press("left")
            await asyncio.sleep(KEY_REPEAT_S)
        await counter
        timing = loop_timing(app, start)
        episode = app.session.episode
        await pilot.press("ctrl+q")
    row = {"setup": setup, **timing, "first_screen_s": app.first_screen_s,
           "first_tick_shown_s": round(connected_s, 3),
           "ui_updates_per_s": round(refreshes / seconds, 1), "episode_steps": episode.steps}
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured window per run")
    ap.add_argument("--rounds", type=int, default=1, help="alternations of the two setups")
    ap.add_argument("--rate", type=float, default=20.0, help="loop rate (Hz)")
    ap.add_argument("--json", action="store_true", help="one JSON object as the last line")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for setup in ("in-process", "core process"):
                ws = init_workspace(Path(tmp) / f"ws-{r}-{setup.replace(' ', '-')}")
                row = asyncio.run(measure(setup, args.seconds, args.rate, ws))
                rows.append(row)
                print(f"{setup:>12}: period p50 {row['period_ms_p50']} ms, late p50 "
                      f"{row['late_ms_p50']} p99 {row['late_ms_p99']} max {row['late_ms_max']} ms, "
                      f"overruns {row['overruns']}, ticks {row['ticks']}, first screen "
                      f"{row['first_screen_s']:.2f} s, first tick shown {row['first_tick_shown_s']:.2f} s, "
                      f"{row['ui_updates_per_s']} UI updates/s "
                      f"({row['scheduling']})", file=sys.stderr, flush=True)

    def median(setup: str, key: str) -> float:
        return statistics.median(float(r[key]) for r in rows if r["setup"] == setup)

    ratio = {k: round(median("in-process", k) / max(median("core process", k), 1e-9), 1)
             for k in ("late_ms_p99", "late_ms_max")}
    summary = {"rate_hz": args.rate, "seconds": args.seconds, "rounds": args.rounds,
               "runs": rows, "in_process_over_core_process": ratio}
    print(f"in-process / core process: late p99 x{ratio['late_ms_p99']}, "
          f"max x{ratio['late_ms_max']}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
