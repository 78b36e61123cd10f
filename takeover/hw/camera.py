"""Host cameras for bases that have none on the wire (serial bases): USB/V4L2 through OpenCV.

OpenCV is an optional extra (`pip install 'takeover[camera]'`, which brings
opencv-python-headless); it is imported only when a camera is opened, so a machine without it
runs everything else. Configure a camera alongside the serial link::

    serial:///dev/ttyUSB0?baud=115200&camera=/dev/video0&camera_fps=30

`camera` is a V4L2 device path (/dev/video0, /dev/v4l/by-id/...), a device index (0), or a
video file (for replaying a recording). A grab thread keeps only the newest frame, cropped to
the requested aspect ratio around the centre and resized, as RGB uint8, with the host's
monotonic time of capture; a stalled camera shows as an old timestamp, not as a blocked loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from takeover.errors import LinkError, UsageError

Frame = tuple[int, npt.NDArray[np.uint8]]  # (t_ns on the host's monotonic clock, RGB image)


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise UsageError(
            "a host camera needs OpenCV: pip install 'takeover[camera]' "
            "(or drop camera= from the robot URL)"
        ) from None
    return cv2


def crop_resize(bgr: npt.NDArray[np.uint8], width: int, height: int, cv2: Any) -> npt.NDArray[np.uint8]:
    """Centre-crop a BGR frame to width:height and resize it; returns RGB."""
    h, w = bgr.shape[:2]
    target = width / height
    if w / h > target:  # too wide: crop the sides
        new_w = max(1, round(h * target))
        x0 = (w - new_w) // 2
        bgr = bgr[:, x0 : x0 + new_w]
    elif w / h < target:  # too tall: crop top and bottom
        new_h = max(1, round(w / target))
        y0 = (h - new_h) // 2
        bgr = bgr[y0 : y0 + new_h]
    if bgr.shape[:2] != (height, width):
        bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
    rgb: npt.NDArray[np.uint8] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return rgb


class OpenCVCamera:
    """A camera read by OpenCV on its own thread. `latest()` never blocks."""

    def __init__(self, source: str, width: int = 96, height: int = 96, fps: float = 30.0,
                 capture_factory: Callable[[Any], Any] | None = None) -> None:
        self.source = source
        self.width = width
        self.height = height
        self.fps = fps
        self._cv2 = _import_cv2()
        self._factory = capture_factory
        self._capture: Any = None
        self._latest: Frame | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.frames = 0
        self.failures = 0
        # A live device paces read() itself; a file (or a test's fake capture) would not.
        self._is_file = capture_factory is not None or not (
            source.isdigit() or source.startswith("/dev/")
        )

    def _open(self) -> Any:
        cv2 = self._cv2
        target: Any = int(self.source) if self.source.isdigit() else self.source
        if self._factory is not None:
            capture = self._factory(target)
        elif isinstance(target, int) or str(target).startswith("/dev/"):
            capture = cv2.VideoCapture(target, cv2.CAP_V4L2)
        else:
            capture = cv2.VideoCapture(target)
        if not capture.isOpened():
            raise LinkError(
                f"camera {self.source!r} could not be opened; check the device path, that no "
                "other program holds it, and that you may read it (video group)"
            )
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queue of old ones
        capture.set(cv2.CAP_PROP_FPS, self.fps)
        return capture

    def start(self) -> None:
        if self._thread is not None:
            return
        self._capture = self._open()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)
        self._thread.start()

    def latest(self) -> Frame | None:
        return self._latest

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _run(self) -> None:
        period = 1.0 / self.fps
        while not self._stop.is_set():
            ok, frame = self._capture.read()
            t_ns = time.monotonic_ns()
            if not ok or frame is None:
                self.failures += 1
                self._stop.wait(min(0.5, period))  # unplugged or end of file: try again
                continue
            if frame.ndim == 2:
                frame = self._cv2.cvtColor(frame, self._cv2.COLOR_GRAY2BGR)
            self._latest = (t_ns, crop_resize(frame, self.width, self.height, self._cv2))
            self.frames += 1
            if self._is_file:
                self._stop.wait(period)  # a file plays at its frame rate, not at disk speed


def open_camera(source: str, width: int, height: int, fps: float = 30.0) -> OpenCVCamera:
    """A host camera for a link; UsageError with the fix when OpenCV is missing."""
    return OpenCVCamera(source, width, height, fps)
