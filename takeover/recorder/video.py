"""Camera frames as MP4 video through PyAV (FFmpeg's encoders), the way LeRobot stores them.

    with VideoWriter(path, fps=20, width=96, height=96) as video:
        for frame in frames:                  # (H, W, 3) uint8 RGB
            video.write(frame)                # frame i is shown at i / fps seconds
    frames = read_frames(path, start_s=0.0, count=len(frames), fps=20)

The defaults are LeRobot's own (`encode_video_frames`): AV1 through SVT-AV1, `yuv420p`,
a key frame every 2 frames (`g=2`, so a random frame decodes after at most one other) and CRF
30. Frame i carries the presentation time i / fps exactly (MP4 time base 1/(512 fps)), which
LeRobot's loader matches against the parquet `timestamp` column within 0.1 ms.

The compression is lossy: besides the codec's quantisation, `yuv420p` halves the colour
resolution, so sharp colour edges lose most. docs/recorder.md states what a round trip keeps.

SVT-AV1 switches the thread that opens an encoder to SCHED_FIFO at the highest priority (99)
where it may (as root, on a robot's computer often), and every encoder thread it then starts
inherits it: an export beside a running control loop (SCHED_FIFO 10) would starve the loop,
and the calling thread stays real-time for good. The writer puts back the scheduling that the
process's threads had before the encoder opened (`_undo_codec_realtime`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from takeover.recorder.errors import ExportError

Scheduling = dict[int, tuple[int, int]]  # thread id -> (policy, priority)


def _thread_scheduling() -> Scheduling:
    """Each thread of this process with its scheduling policy and priority (Linux; empty
    elsewhere)."""
    if not hasattr(os, "sched_getscheduler") or not os.path.isdir("/proc/self/task"):
        return {}
    out: Scheduling = {}
    for name in os.listdir("/proc/self/task"):
        tid = int(name)
        try:
            out[tid] = (os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority)
        except OSError:
            continue  # the thread ended meanwhile
    return out


def _undo_codec_realtime(before: Scheduling) -> None:
    """Threads the codec raised to real-time: those running at the highest SCHED_FIFO or
    SCHED_RR priority that did not before (a new thread: normal scheduling) go back."""
    if not before:
        return
    for tid, (policy, priority) in _thread_scheduling().items():
        if policy not in (os.SCHED_FIFO, os.SCHED_RR):
            continue
        if priority < os.sched_get_priority_max(policy) or before.get(tid) == (policy, priority):
            continue
        want_policy, want_priority = before.get(tid, (os.SCHED_OTHER, 0))
        try:
            os.sched_setscheduler(tid, want_policy, os.sched_param(want_priority))
        except OSError:
            continue


#: Our codec names -> FFmpeg encoder, and the name LeRobot records in info.json.
ENCODERS = {"av1": "libsvtav1", "h264": "libx264"}


@dataclass(frozen=True)
class VideoSettings:
    """codec: av1 (LeRobot's default) or h264 (plays everywhere, Foxglove included).
    crf: constant rate factor, lower = better and bigger (LeRobot: 30). gop: key frame
    interval in frames (LeRobot: 2)."""

    codec: str = "av1"
    crf: int = 30
    gop: int = 2
    pix_fmt: str = "yuv420p"

    def __post_init__(self) -> None:
        if self.codec not in ENCODERS:
            raise ExportError(f"video codec {self.codec!r}: use {' or '.join(ENCODERS)}")
        if not 0 <= self.crf <= 63:
            raise ExportError(f"crf must be in 0..63, got {self.crf}")
        if self.gop < 1:
            raise ExportError(f"key frame interval must be >= 1, got {self.gop}")

    def options(self) -> dict[str, str]:
        opts = {"g": str(self.gop), "crf": str(self.crf)}
        if self.codec == "av1":
            opts["preset"] = "12"  # LeRobot's preset: the fastest
        return opts


class VideoWriter:
    """Encodes RGB frames of one size into one MP4 file, frame i at time i / fps."""

    def __init__(self, path: Path, *, fps: int, width: int, height: int,
                 settings: VideoSettings | None = None) -> None:
        import av

        self.settings = settings or VideoSettings()
        if width % 2 or height % 2:
            raise ExportError(f"camera frames of {width}x{height}: {self.settings.pix_fmt} video "
                              "needs an even width and height")
        # SVT-AV1 prints its banner on stderr unless told otherwise (a user's SVT_LOG wins).
        os.environ.setdefault("SVT_LOG", "1")
        self.path = path
        self.fps = fps
        self.width, self.height = width, height
        self.frames = 0
        self.bytes_encoded = 0  # the packets' sizes so far (the file lags behind, buffered)
        self._scheduling = _thread_scheduling()  # before the encoder opens (at the first frame)
        self._container: Any = av.open(str(path), "w", format="mp4")
        try:
            stream: Any = self._container.add_stream(ENCODERS[self.settings.codec], rate=fps,
                                                options=self.settings.options())
            stream.width, stream.height = width, height
            stream.pix_fmt = self.settings.pix_fmt
            stream.codec_context.time_base = Fraction(1, fps)
        except BaseException:
            self._container.close()
            raise
        self._stream = stream

    def write(self, frame: npt.NDArray[np.uint8]) -> None:
        import av

        if frame.shape != (self.height, self.width, 3):
            raise ExportError(f"{self.path.name}: frame of shape {frame.shape}, expected "
                              f"{(self.height, self.width, 3)}")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self.frames
        video_frame.time_base = Fraction(1, self.fps)
        try:
            for packet in self._stream.encode(video_frame):
                self.bytes_encoded += packet.size
                self._container.mux(packet)
        finally:
            if self.frames == 0:
                _undo_codec_realtime(self._scheduling)  # the first frame opened the encoder
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        try:
            for packet in self._stream.encode(None):  # flush the encoder's delayed frames
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def video_info(path: Path) -> dict[str, Any]:
    """The `info` block LeRobot keeps for a video feature in meta/info.json."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec_context.codec.canonical_name,
            "video.pix_fmt": stream.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(stream.base_rate or stream.average_rate or 0),
            "video.channels": 3,
            "has_audio": False,
        }


def read_frames(path: Path, *, start_s: float, count: int, fps: float
                ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Frames `start_s + k / fps` for k in 0..count-1, as (count, H, W, 3) RGB uint8, and
    which of them the file had (a frame more than half a period from every decoded one is
    missing: zeros)."""
    import av

    tolerance_s = 0.5 / fps
    frames: npt.NDArray[np.uint8] | None = None
    found = np.zeros(count, dtype=bool)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        time_base = stream.time_base
        if start_s > 0 and time_base is not None:
            container.seek(int(start_s / time_base), stream=stream, backward=True,
                           any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is None or frame.time_base is None:
                continue
            t = float(frame.pts * frame.time_base)
            k = round((t - start_s) * fps)
            if k >= count and t - start_s > (count - 0.5) / fps:
                break
            if k < 0 or k >= count or abs(t - (start_s + k / fps)) > tolerance_s:
                continue
            rgb = frame.to_ndarray(format="rgb24")
            if frames is None:
                frames = np.zeros((count, *rgb.shape), dtype=np.uint8)
            frames[k] = rgb
            found[k] = True
    if frames is None:
        frames = np.zeros((count, 0, 0, 3), dtype=np.uint8)
    return frames, found
