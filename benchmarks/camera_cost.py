"""What one camera update costs the TUI's process: half-block cells against the terminal
graphics renderables (Kitty, Sixel). A measurement script, not a test (nothing is asserted).

    .venv/bin/python benchmarks/camera_cost.py [--updates 200] [--size 48x26] [--cell 10x20] [--json]

A headless Textual app holds one `CameraView` with the drive screen's camera area at 140x44
(48x26 cells) and is shown `--updates` different frames of the simulator's 96x96 camera (the
scripted expert driving to the dock), one at a time. For each update the script times
`show(frame)` and then Textual's whole frame: layout (textual-image's widgets re-lay out, the
Sixel one recomposes its child), the widget's render (half-block strips; a scaled PNG sent to
the terminal for Kitty; a Sixel encoding) and the terminal bytes of the screen update, which
the headless driver would otherwise skip (`_display` is wrapped to format them, and the bytes
are counted: Kitty's upload goes to stdout, here into a counter). Wall and main-thread CPU
time, medians over the updates, 5 warm-up updates left out. `--cell` is the terminal's cell
size in pixels that graphics are scaled to (textual-image's default when a terminal does not
say: 10x20).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import time
from typing import Any

import numpy as np
import numpy.typing as npt
from textual.app import App, ComposeResult

from takeover.sim.expert import DockingExpert
from takeover.sim.render import CameraModel
from takeover.sim.simulator import SimConfig, SimOutcome, Simulator
from takeover.tui import camera as camera_module
from takeover.tui.camera import CameraView

WARMUP = 5


def camera_frames(n: int, seed: int = 1) -> list[npt.NDArray[np.uint8]]:
    """n consecutive 96x96 frames of the expert docking (the picture changes every frame)."""
    sim = Simulator(seed, SimConfig(camera=CameraModel(96, 96)))
    expert = DockingExpert(sim.dock_pose)
    frames = []
    while len(frames) < n:
        frames.append(sim.renderer.render(sim.x, sim.y, sim.yaw).copy())
        sim.command(expert.command(sim.odometry()))
        sim.step(0.1)  # 10 Hz: IMAGE_HZ
        if sim.outcome is not SimOutcome.RUNNING:
            seed += 1
            sim.reset(seed)
            expert.reset(sim.dock_pose)
    return frames


class CountingStdout(io.TextIOBase):
    """Stands in for sys.__stdout__, where textual-image sends Kitty uploads."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, s: str) -> int:
        self.bytes += len(s.encode())
        return len(s)

    def isatty(self) -> bool:
        return False


class CameraApp(App[None]):
    def __init__(self, renderer: str) -> None:
        super().__init__()
        self.renderer = renderer
        self.screen_bytes = 0

    def compose(self) -> ComposeResult:
        yield CameraView(renderer=self.renderer, id="camera")

    def _display(self, screen: Any, renderable: Any) -> None:
        # The headless driver formats nothing; format the update as a terminal would get it.
        if renderable is not None and hasattr(renderable, "render_segments"):
            self.screen_bytes += len(renderable.render_segments(self.console).encode())


async def measure(renderer: str, frames: list[npt.NDArray[np.uint8]], size: tuple[int, int]
                  ) -> dict[str, Any]:
    stock = renderer == "kitty-scaled"
    if stock:  # textual-image's own Kitty widget: it uploads the frame scaled to the cells' pixels
        from textual_image.widget import TGPImage

        camera_module._kitty_widget_class.cache_clear()
        real_class = camera_module._kitty_widget_class
        camera_module._kitty_widget_class = lambda: TGPImage  # type: ignore[assignment]
        renderer = "kitty"
    app = CameraApp(renderer)
    upload = CountingStdout()
    real_stdout = sys.__stdout__
    sys.__stdout__ = upload  # type: ignore[misc]
    try:
        async with app.run_test(size=size) as pilot:
            camera = app.query_one(CameraView)
            await pilot.pause()
            wall, cpu, sent = [], [], []
            for i, frame in enumerate(frames):
                before = app.screen_bytes + upload.bytes
                t0, c0 = time.perf_counter(), time.thread_time()
                camera.show(frame)
                await pilot.pause()
                t1, c1 = time.perf_counter(), time.thread_time()
                if i >= WARMUP:
                    wall.append((t1 - t0) * 1e3)
                    cpu.append((c1 - c0) * 1e3)
                    sent.append(app.screen_bytes + upload.bytes - before)
            # A frame in which nothing changes: what the measurement itself costs.
            idle_wall, idle_cpu = [], []
            for _ in range(50):
                t0, c0 = time.perf_counter(), time.thread_time()
                await pilot.pause()
                idle_wall.append((time.perf_counter() - t0) * 1e3)
                idle_cpu.append((time.thread_time() - c0) * 1e3)
    finally:
        sys.__stdout__ = real_stdout  # type: ignore[misc]
        if stock:
            camera_module._kitty_widget_class = real_class  # type: ignore[assignment]
            renderer = "kitty-scaled"
    return {"renderer": renderer, "updates": len(wall),
            "wall_ms_p50": round(statistics.median(wall), 3),
            "wall_ms_p90": round(float(np.percentile(wall, 90)), 3),
            "cpu_ms_p50": round(statistics.median(cpu), 3),
            "bytes_p50": int(statistics.median(sent)),
            "idle_wall_ms_p50": round(statistics.median(idle_wall), 3),
            "idle_cpu_ms_p50": round(statistics.median(idle_cpu), 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--updates", type=int, default=200)
    p.add_argument("--size", default="48x26", help="the camera area in cells (default 48x26)")
    p.add_argument("--cell", default="10x20", help="terminal cell size in pixels (default 10x20)")
    p.add_argument("--renderers", default="halfblock,kitty,sixel,kitty-scaled",
                   help="kitty-scaled: textual-image's own Kitty widget (uploads scaled frames)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    cols, rows = (int(v) for v in args.size.split("x"))
    cell_w, cell_h = (int(v) for v in args.cell.split("x"))
    from textual_image._terminal import CellSize, get_cell_size

    # textual-image asks the terminal once and caches the answer on the function: set it.
    get_cell_size._result = CellSize(cell_w, cell_h)  # type: ignore[attr-defined]
    frames = camera_frames(args.updates + WARMUP)
    rows_out = []
    for renderer in args.renderers.split(","):
        row = asyncio.run(measure(renderer, frames, (cols, rows)))
        rows_out.append(row)
        if not args.json:
            print(f"{row['renderer']:>12}: wall p50 {row['wall_ms_p50']:.2f} ms (p90 "
                  f"{row['wall_ms_p90']:.2f}), main-thread CPU p50 {row['cpu_ms_p50']:.2f} ms, "
                  f"{row['bytes_p50'] / 1000:.1f} kB to the terminal; a frame with no change: "
                  f"wall {row['idle_wall_ms_p50']:.2f} ms, CPU {row['idle_cpu_ms_p50']:.2f} ms",
                  flush=True)
    if args.json:
        print(json.dumps({"size": [cols, rows], "cell_px": [cell_w, cell_h], "rows": rows_out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
