"""An AV1 export leaves no thread real-time: SVT-AV1 raises the thread that opens it (and the
encoder threads it starts) to SCHED_FIFO 99 where it may, which on a robot's computer starves
the control loop (SCHED_FIFO 10) for as long as the export runs, and for good on the caller."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from takeover.recorder.video import VideoWriter, _thread_scheduling


def _realtime_threads() -> dict[int, tuple[int, int]]:
    return {tid: s for tid, s in _thread_scheduling().items()
            if s[0] in (os.SCHED_FIFO, os.SCHED_RR)}


@pytest.mark.skipif(not hasattr(os, "sched_getscheduler"), reason="Linux scheduling")
def test_an_av1_export_leaves_every_thread_as_it_was(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    before = _realtime_threads()
    with VideoWriter(tmp_path / "v.mp4", fps=20, width=32, height=32) as video:
        for _ in range(6):
            video.write(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
            # While it encodes, too: the encoder's own threads are back to normal.
            assert _realtime_threads() == before
    assert _realtime_threads() == before
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
