"""A camera of another size and rate in front of a server's simulated base (`sim serve --camera
640x480@30`): what a real robot's camera sends, for measuring a link's image path.

The simulator renders its own camera (96x96 by default, 20 Hz): rendering 640x480 takes tens of
milliseconds in numpy, too slow for 30 Hz beside the physics. The feed keeps the newest rendered
frame and, on a thread of its own at `rate_hz`, hands the server that frame scaled up to
`width` x `height` (nearest neighbour, no filtering; the newest again when the simulator has
not rendered a new one yet, as a camera faster than its scene would), stamped when it is sent. The
server sees the frames as it would see the base's own (`TelemetrySink.on_image`); state and
scans pass straight through.
"""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import numpy.typing as npt

from takeover.errors import UsageError
from takeover.sim.realtime import BaseState, RealTimeBase, TelemetrySink


def parse_camera(text: str) -> tuple[int, int, float]:
    """'640x480@30' -> (640, 480, 30.0); one line when it is not that."""
    m = re.fullmatch(r"\s*(\d+)x(\d+)@(\d+(?:\.\d+)?)\s*", text)
    if m is None:
        raise UsageError(f"--camera {text!r}: write it as WIDTHxHEIGHT@HZ, e.g. 640x480@30")
    width, height, rate = int(m.group(1)), int(m.group(2)), float(m.group(3))
    if not (8 <= width <= 4096 and 8 <= height <= 4096 and 0.5 <= rate <= 120):
        raise UsageError(f"--camera {text!r}: 8..4096 pixels a side and 0.5..120 Hz")
    return width, height, rate


class CameraFeed:
    """Sits between a RealTimeBase and its server's sink (see the module's docstring)."""

    def __init__(self, base: RealTimeBase, sink: TelemetrySink, width: int, height: int,
                 rate_hz: float) -> None:
        self.base = base
        self.sink = sink
        self.width, self.height, self.rate_hz = width, height, rate_hz
        self._frame: tuple[int, npt.NDArray[np.uint8]] | None = None
        self._index: tuple[tuple[int, int], npt.NDArray[np.intp]] | None = None
        self._cache: tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]] | None = None
        self._stop = threading.Event()
        self.frames_sent = 0
        self._thread = threading.Thread(target=self._run, name="sim-camera-feed", daemon=True)
        base.set_sink(self)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    # --- TelemetrySink (physics thread) ----------------------------------------------------------

    def on_state(self, state: BaseState) -> None:
        self.sink.on_state(state)

    def on_scan(self, t_ns: int, ranges_m: npt.NDArray[np.float32]) -> None:
        self.sink.on_scan(t_ns, ranges_m)

    def on_image(self, t_ns: int, image: npt.NDArray[np.uint8]) -> None:
        self._frame = (t_ns, image)

    # --- the feed --------------------------------------------------------------------------------

    def _scaled(self, frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """The frame at the feed's size, nearest neighbour: one gather of whole pixels through
        a precomputed index (two fancy-index passes cost tens of milliseconds at 640x480), and
        done once per rendered frame (the camera sends the newest again between renders)."""
        cached = self._cache
        if cached is not None and cached[0] is frame:
            return cached[1]
        h, w = frame.shape[:2]
        if self._index is None or self._index[0] != (h, w):
            rows = np.arange(self.height) * h // self.height
            cols = np.arange(self.width) * w // self.width
            self._index = ((h, w), (rows[:, None] * w + cols[None, :]).ravel())
        pixels = frame.reshape(h * w, -1)
        scaled = np.take(pixels, self._index[1], axis=0).reshape(self.height, self.width, -1)
        self._cache = (frame, scaled)
        return scaled

    def _run(self) -> None:
        period_ns = int(1e9 / self.rate_hz)
        deadline = time.monotonic_ns()
        while not self._stop.is_set():
            latest = self._frame
            now_t = self.base.snapshot().t_ns
            if latest is not None and latest[0] > now_t:  # rendered before a reset: drop it
                self._frame = latest = None
            if latest is not None:
                self.sink.on_image(now_t, self._scaled(latest[1]))
                self.frames_sent += 1
            deadline += period_ns
            delay = deadline - time.monotonic_ns()
            if delay > 0:
                self._stop.wait(delay / 1e9)
            elif -delay > 5 * period_ns:  # fell far behind: start again from now
                deadline = time.monotonic_ns()
