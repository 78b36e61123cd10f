"""Keep Python's garbage collector from stalling the control loop in a process with a UI.

A full (generation 2) collection holds the interpreter lock for its whole duration. In the
operator's terminal, where Textual keeps tens of thousands of long-lived objects, one took
50-300 ms on this 2-core machine, and the control loop's thread, which needs the lock to run
its tick, started that late: p99 lateness 180 ms at 20 Hz with the TUI and recording on.

`GcPacer` does what game engines and real-time Python services do:
- `gc.freeze()` once the UI is built: everything alive then (modules, widgets, styles) moves to
  the permanent generation and is never traversed again;
- automatic full collections are turned off (generations 0 and 1 stay automatic: they only
  look at young objects and take well under a millisecond);
- a full collection runs every `interval_s` from this thread, right after a control tick has
  been handed out, so it has nearly a whole period before the next deadline. Its duration is
  measured and reported (`stats()`).
"""

from __future__ import annotations

import gc
import threading
import time
from collections import deque
from dataclasses import dataclass

from takeover.types import StepRecord

# Generation-2 threshold that never triggers: full collections only come from the pacer.
_NEVER = 1 << 30


@dataclass(frozen=True)
class GcStats:
    collections: int
    pause_ms_max: float | None
    pause_ms_last: float | None
    cpu_ms_max: float | None
    frozen: int


class GcPacer(threading.Thread):
    """A StepSink (add it to the loop's sinks) and a thread that paces full collections."""

    def __init__(self, interval_s: float = 2.0) -> None:
        super().__init__(name="gc-pacer", daemon=True)
        self.interval_s = interval_s
        self._tick = threading.Event()
        self._stop_event = threading.Event()
        self._pauses: deque[float] = deque(maxlen=100)  # wall time of each collection
        self._cpu: deque[float] = deque(maxlen=100)  # CPU time of each (less: preempted)
        self._collections = 0
        self._old_threshold = gc.get_threshold()
        self._frozen = 0

    # StepSink: called on the loop's thread right after each tick's command went out.
    def offer(self, record: StepRecord) -> bool:
        self._tick.set()
        return True

    def freeze(self) -> None:
        """Move every object alive now to the permanent generation (call once the UI is up)."""
        gc.collect()
        gc.freeze()
        self._frozen = gc.get_freeze_count()

    def start(self) -> None:
        t0, t1, _ = self._old_threshold
        gc.set_threshold(t0, t1, _NEVER)
        super().start()

    def stop(self) -> None:
        self._stop_event.set()
        self._tick.set()
        if self.is_alive():
            self.join(timeout=2.0)
        gc.set_threshold(*self._old_threshold)

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            self._tick.clear()
            if not self._tick.wait(1.0) or self._stop_event.is_set():
                continue  # no loop running: try again later
            t0, c0 = time.perf_counter(), time.thread_time()
            gc.collect(2)
            self._pauses.append((time.perf_counter() - t0) * 1e3)
            self._cpu.append((time.thread_time() - c0) * 1e3)
            self._collections += 1

    def stats(self) -> GcStats:
        pauses, cpu = list(self._pauses), list(self._cpu)
        return GcStats(self._collections, max(pauses) if pauses else None,
                       pauses[-1] if pauses else None, max(cpu) if cpu else None, self._frozen)
