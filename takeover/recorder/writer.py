"""The recorder: a StepSink that writes episodes on its own thread, never blocking the loop.

    writer = EpisodeWriter(workspace, rate_hz=20)
    writer.start()                      # takes the workspace lock, recovers leftovers
    loop.sinks.append(writer)           # the loop calls writer.offer(record) every tick
    writer.begin_episode(EpisodeMeta(round=1, rate_hz=20, model_id="r001"))
    ...
    saved = writer.end_episode("success")   # a Future: the final Path, or None
    writer.stop()

`offer` (loop thread) only appends to a bounded in-memory queue, sized for `queue_s` seconds of
steps: when it is full the step is dropped, counted, and `offer` returns False. The writer
thread turns steps into HDF5 rows, compresses frames with the GIL released (see codec.py), and
commits at least every `flush_interval_s` (0.5 s), so a crash loses at most that much plus
what was queued. Problems (a full disk, a write error, a queue filling up) stop or warn as
`RecorderAlert`s, delivered to `on_alert` on the writer thread and kept in `stats()`; the
control loop is never touched by them.

`begin_episode`, `end_episode` and `stop` are meant for one controlling thread (the app's);
`offer` for the loop's thread.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from takeover.recorder.codec import Compression
from takeover.recorder.episode_file import EpisodeFileWriter, EpisodeMeta, ObsSpec, StepColumns
from takeover.recorder.layout import (
    WorkspaceLock,
    check_robot_name,
    check_workspace,
    make_dirs,
    reserve_episode,
    round_dir,
)
from takeover.recorder.recover import RecoveryResult, recover_workspace
from takeover.types import Observation, Outcome, StepRecord

log = logging.getLogger("takeover.recorder")

DEFAULT_QUEUE_S = 5.0
DEFAULT_FLUSH_INTERVAL_S = 0.5
DEFAULT_MIN_FREE_BYTES = 256 * 1024 * 1024
#: Steps buffered before the first observation fixes the episode's shapes (then: no sensors),
#: or before every input the link expects has arrived (then: the episode lacks it, and says so).
MAX_STEPS_BEFORE_FIRST_OBSERVATION = 40
WARN_EVERY_S = 5.0


@dataclass(frozen=True)
class RecorderAlert:
    """Something the operator should know. level: 'info' | 'warning' | 'error'.

    code: 'episode_saved', 'recovered', 'recovery_failed', 'falling_behind', 'steps_dropped',
    'disk_full', 'disk_slow', 'write_failed', 'shape_changed', 'episode_replaced'.
    """

    level: str
    code: str
    message: str
    t_mono_ns: int = field(default_factory=time.monotonic_ns)


@dataclass(frozen=True)
class WriterStats:
    """A snapshot of the writer, safe to take from any thread (the UI polls it)."""

    state: str  # "starting", "recovering", "idle", "recording", "failed", "stopped"
    episode: str | None  # key of the open episode, e.g. "r001/ep_0004"
    queue_depth: int  # steps waiting
    queue_capacity: int
    queue_high_water: int  # the most steps ever waiting at once
    dropped_steps: int  # steps dropped because the queue was full (total)
    refused_steps: int  # steps offered while recording had stopped on an error
    steps_written: int  # steps written to files (total)
    episodes_saved: int
    last_saved: Path | None
    last_alert: RecorderAlert | None
    busy_s: float  # time the writer thread spent working (not waiting)
    frames_raw: int  # frames stored uncompressed because the writer was behind (total)
    commit_s_max: float  # the longest commit (flush + fsync): how far behind a crash could be


@dataclass
class _Begin:
    meta: EpisodeMeta
    generation: int


@dataclass
class _End:
    outcome: Outcome
    end_reason: str
    future: Future[Path | None]
    generation: int
    detected_outcome: str = ""
    outcome_evidence: dict[str, Any] | None = None


@dataclass
class _Sync:
    done: threading.Event


class _Stop:
    pass


_Control = _Begin | _End | _Sync | _Stop


class _Inbox:
    """A queue whose step items are bounded and whose control items are not (they are few and
    must never be lost). `put_step` never waits unless `block` is set (lockstep recording)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[StepRecord | _Control] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self.steps = 0
        self.high_water = 0
        self.dropped = 0

    def put_step(self, record: StepRecord, block: bool = False) -> bool:
        with self._lock:
            if self.steps >= self.capacity:
                if not block:
                    self.dropped += 1
                    return False
                while self.steps >= self.capacity:
                    self._not_full.wait()
            self._items.append(record)
            self.steps += 1
            if self.steps > self.high_water:
                self.high_water = self.steps
            self._not_empty.notify()
        return True

    def put_control(self, item: _Control) -> None:
        with self._lock:
            self._items.append(item)
            self._not_empty.notify()

    def get(self, timeout_s: float) -> StepRecord | _Control | None:
        with self._lock:
            if not self._items and timeout_s > 0:
                self._not_empty.wait(timeout_s)
            if not self._items:
                return None
            item = self._items.popleft()
            if isinstance(item, StepRecord):
                self.steps -= 1
                self._not_full.notify()
            return item


@dataclass
class _OpenEpisode:
    meta: EpisodeMeta
    generation: int
    key: str = ""
    file: EpisodeFileWriter | None = None
    columns: StepColumns | None = None
    waiting: list[StepRecord] = field(default_factory=list)
    dropped_at_start: int = 0
    failed: bool = False
    shape_warned: bool = False


def missing_inputs(obs: Observation) -> tuple[tuple[str, float], ...]:
    """The inputs the link expects (it stamps them in `input_t_ns`) that this observation
    lacks, each with how long the link had been waiting for it (s) at the newest input."""
    stamps = obs.input_t_ns
    if not stamps:
        return ()
    newest = max(stamps.values())
    absent = {"scan": obs.scan_m is None, "image": obs.image is None}
    return tuple((name, (newest - stamps[name]) / 1e9)
                 for name in sorted(stamps) if absent.get(name, False))


def spec_from_observation(obs: Observation | None) -> ObsSpec:
    if obs is None:
        return ObsSpec()
    image_shape = None
    if obs.image is not None and obs.image.ndim == 3 and obs.image.shape[2] == 3:
        h, w, _ = obs.image.shape
        image_shape = (h, w, 3)
    scan_beams = int(obs.scan_m.shape[0]) if obs.scan_m is not None else None
    return ObsSpec(image_shape=image_shape, scan_beams=scan_beams,
                   missing_inputs=missing_inputs(obs))


class EpisodeWriter(threading.Thread):
    """Records StepRecords into crash-safe episode files in `workspace/rounds/rNNN/`.

    compression: 'none' | 'lzf' | 'gzip' | 'gzip:N' (default none, see codec.py).
    rate_hz: the loop's rate, used to size the queue (`queue_s` seconds of steps).
    flush_interval_s: the longest time a step waits before it is safely on disk.
    min_free_bytes: recording stops (episode kept, outcome interrupted) when the disk's free
    space falls below this; checked at every commit.
    fsync: fsync at every commit, so a power cut loses no more than a crash does.
    backpressure: `offer` waits for room instead of dropping. Only for lockstep simulation,
    where there is no real-time loop to protect.
    raw_when_behind_s: with a compression, frames are stored raw while this much backlog is
    queued (None: always compress).
    robot_name: the robot this writer records when several share the workspace ("" for the
    one unnamed robot): its lock (`rounds/.recorder.<robot>.lock`, so recorders of other robots
    run beside it and a second one of the same robot is refused), the leftovers it recovers on
    start (its own), its files' names (`ep_NNNN_<robot>.hdf5`) and each episode's
    `robot_name` (a meta without one gets it; a meta naming another robot is refused).
    """

    def __init__(
        self,
        workspace: Path | str,
        *,
        compression: str | Compression | None = None,
        rate_hz: float = 20.0,
        queue_s: float = DEFAULT_QUEUE_S,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        fsync: bool = True,
        recover_on_start: bool = True,
        backpressure: bool = False,
        on_alert: Callable[[RecorderAlert], None] | None = None,
        raw_when_behind_s: float | None = 0.25,
        robot_name: str = "",
    ) -> None:
        self.robot_name = check_robot_name(robot_name)
        super().__init__(name=f"takeover-recorder-{robot_name}" if robot_name
                         else "takeover-recorder", daemon=True)
        self.workspace = check_workspace(workspace)
        self.compression = Compression.parse(compression)
        if not (rate_hz > 0 and math.isfinite(rate_hz)):
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        if flush_interval_s <= 0 or flush_interval_s > 1.0:
            raise ValueError("flush_interval_s must be in (0, 1] (steps are flushed at least "
                             f"once a second), got {flush_interval_s}")
        self.flush_interval_s = flush_interval_s
        self.min_free_bytes = min_free_bytes
        self.fsync = fsync
        self.recover_on_start = recover_on_start
        self.backpressure = backpressure
        self.on_alert = on_alert
        self.recovered: list[RecoveryResult] = []
        self._inbox = _Inbox(max(16, math.ceil(queue_s * rate_hz)))
        self._lock = WorkspaceLock(self.workspace, self.robot_name)
        # Caller-side state (the controlling thread and the loop thread).
        self._generation = 0
        self._failed_generation = -1
        self._open = False
        self._refused = 0
        # Writer-side state.
        self._state = "starting"
        self._episode: _OpenEpisode | None = None
        self._steps_written = 0
        self._episodes_saved = 0
        self._last_saved: Path | None = None
        self._last_alert: RecorderAlert | None = None
        self._busy_ns = 0
        self._next_commit = 0.0
        self._auto_finished: tuple[int, Path | None] = (-1, None)
        self._last_behind_warn = -math.inf
        self._dropped_reported = 0
        self._batch_rows = max(1, math.ceil(rate_hz * min(0.25, flush_interval_s)))
        self._raw_backlog = math.inf if raw_when_behind_s is None \
            else max(2, math.ceil(raw_when_behind_s * rate_hz))
        self._frames_raw = 0
        self._commit_s_max = 0.0
        self._last_slow_warn = -math.inf

    # --- the controlling thread ----------------------------------------------------------

    def start(self) -> None:
        """Take the robot's lock (WorkspaceBusyError if another recorder records this robot
        there) and start the thread, which first recovers the robot's leftover files."""
        self._lock.acquire()
        super().start()

    def begin_episode(self, meta: EpisodeMeta) -> None:
        """Start recording a new episode (an open one is ended as aborted). Never blocks."""
        if not meta.robot_name:
            meta = dataclasses.replace(meta, robot_name=self.robot_name)
        elif meta.robot_name != self.robot_name:
            raise ValueError(f"episode of robot {meta.robot_name!r} given to the recorder of "
                             f"robot {self.robot_name!r}")
        self._generation += 1
        self._inbox.put_control(_Begin(meta, self._generation))
        self._open = True

    def end_episode(self, outcome: Outcome | str, end_reason: str = "operator", *,
                    detected_outcome: Outcome | str = "",
                    outcome_evidence: dict[str, Any] | None = None) -> Future[Path | None]:
        """End the open episode. Never blocks; the Future gives the final path once the file
        is complete (None if nothing was recorded or recording had failed).
        detected_outcome, outcome_evidence: the docking outcome detector's verdict and why
        (control/docking_outcome.py), stored beside `outcome`."""
        result: Future[Path | None] = Future()
        oc = outcome if isinstance(outcome, Outcome) else Outcome.parse(outcome)
        detected = detected_outcome.value if isinstance(detected_outcome, Outcome) else (
            Outcome.parse(detected_outcome).value if detected_outcome else "")
        self._open = False
        self._inbox.put_control(_End(oc, end_reason, result, self._generation, detected,
                                     outcome_evidence))
        return result

    @property
    def recording(self) -> bool:
        return self._open and self._failed_generation != self._generation

    def sync(self, timeout_s: float | None = None) -> bool:
        """Wait until every step offered so far is committed (for tests and tools, never the
        loop). False on timeout."""
        done = threading.Event()
        self._inbox.put_control(_Sync(done))
        return done.wait(timeout_s)

    def stop(self, timeout_s: float | None = 30.0) -> None:
        """End an open episode (outcome aborted), finish writing, release the lock."""
        if self._open:
            self.end_episode(Outcome.ABORTED, "recorder stopped")
        if self.is_alive():
            self._inbox.put_control(_Stop())
            self.join(timeout_s)
        self._lock.release()

    def __enter__(self) -> EpisodeWriter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the loop's thread ---------------------------------------------------------------

    def offer(self, record: StepRecord) -> bool:
        """Queue one step for the open episode. Never blocks (unless backpressure is on).

        True: queued, or nothing to record (no open episode). False: dropped, because the
        queue is full or recording stopped on an error (see `stats()` and the alerts).
        """
        if not self._open:
            return True
        if self._failed_generation == self._generation:
            self._refused += 1
            return False
        return self._inbox.put_step(record, block=self.backpressure)

    # --- anyone ---------------------------------------------------------------------------

    def stats(self) -> WriterStats:
        ep = self._episode
        return WriterStats(
            state=self._state,
            episode=(ep.key or None) if ep is not None else None,
            queue_depth=self._inbox.steps,
            queue_capacity=self._inbox.capacity,
            queue_high_water=self._inbox.high_water,
            dropped_steps=self._inbox.dropped,
            refused_steps=self._refused,
            steps_written=self._steps_written,
            episodes_saved=self._episodes_saved,
            last_saved=self._last_saved,
            last_alert=self._last_alert,
            busy_s=self._busy_ns / 1e9,
            frames_raw=self._frames_raw,
            commit_s_max=self._commit_s_max,
        )

    # --- the writer thread ----------------------------------------------------------------

    def run(self) -> None:
        if self.recover_on_start:
            self._state = "recovering"
            self._recover()
        self._state = "idle"
        while True:
            timeout = self._next_commit - time.monotonic() if self._episode else 1.0
            item = self._inbox.get(max(0.0, timeout))
            t0 = time.perf_counter_ns()
            try:
                if isinstance(item, _Stop):
                    self._state = "stopped"
                    return
                self._handle(item)
                if self._episode is not None and time.monotonic() >= self._next_commit:
                    self._commit()
                self._watch_queue()
            except OSError as err:  # full disk, yanked drive, file size limit...
                log.warning("recorder write failed: %s", err)
                self._write_failed(err)
            except Exception as err:  # never let a bug kill the thread: the loop feeds it
                log.exception("recorder error")
                self._fail(f"recording stopped by an internal error: {type(err).__name__}: "
                           f"{err}", "write_failed")
            finally:
                self._busy_ns += time.perf_counter_ns() - t0

    def _handle(self, item: StepRecord | _Control | None) -> None:
        if item is None:
            return
        if isinstance(item, StepRecord):
            self._on_step(item)
        elif isinstance(item, _Begin):
            if self._episode is not None:
                self._alert("warning", "episode_replaced",
                            f"{self._episode.key or 'episode'} was still open when a new one "
                            "began; saved as aborted")
                self._finish(Outcome.ABORTED, "a new episode began", None)
            self._episode = _OpenEpisode(item.meta, item.generation,
                                         dropped_at_start=self._inbox.dropped)
            self._state = "recording"
            self._next_commit = time.monotonic() + self.flush_interval_s
        elif isinstance(item, _End):
            if self._episode is None and self._auto_finished[0] == item.generation:
                # Recording already stopped it (full disk): report the file it was saved as.
                item.future.set_result(self._auto_finished[1])
            else:
                self._finish(item.outcome, item.end_reason, item.future,
                             item.detected_outcome, item.outcome_evidence)
        elif isinstance(item, _Sync):
            try:
                if self._episode is not None:
                    self._commit()
            finally:  # a failed commit is reported as an alert; the waiter must not hang
                item.done.set()

    def _recover(self) -> None:
        try:
            self.recovered = recover_workspace(self.workspace, take_lock=False,
                                               robot_name=self.robot_name)
        except Exception as err:
            log.exception("recovery failed")
            self._alert("error", "recovery_failed", f"recovery of leftover episodes failed: {err}")
            return
        for result in self.recovered:
            level = "info" if result.ok else "error"
            self._alert(level, "recovered" if result.ok else "recovery_failed", result.message)

    def _on_step(self, record: StepRecord) -> None:
        ep = self._episode
        if ep is None or ep.failed:
            return  # after end_episode, or recording stopped on an error
        if ep.file is None:
            # The first observation fixes which datasets the file has: wait (a little) for one
            # with every input the link expects, rather than lose an input that is just late.
            obs = record.observation
            incomplete = obs is None or bool(missing_inputs(obs))
            if incomplete and len(ep.waiting) < MAX_STEPS_BEFORE_FIRST_OBSERVATION:
                ep.waiting.append(record)
                return
            if not self._open_file(ep, spec_from_observation(record.observation)):
                return
            waiting, ep.waiting = ep.waiting, []
            for r in waiting:
                self._write_step(ep, r)
        self._write_step(ep, record)

    def _open_file(self, ep: _OpenEpisode, spec: ObsSpec) -> bool:
        directory = round_dir(self.workspace, ep.meta.round)
        make_dirs(directory)
        free = shutil.disk_usage(directory).free
        if free < self.min_free_bytes:
            self._fail(f"disk full: {free / 2**20:.0f} MiB free in {self.workspace}; "
                       "recording did not start, free space and begin a new episode", "disk_full")
            return False
        index, final = reserve_episode(directory, self.robot_name)
        ep.file = EpisodeFileWriter(final, ep.meta, spec, self.compression, episode_index=index,
                                    crash_safe=True, fsync=self.fsync, reserved=True)
        ep.columns = StepColumns(spec)
        ep.key = f"r{ep.meta.round:03d}/ep_{index:04d}"
        return True

    def _write_step(self, ep: _OpenEpisode, record: StepRecord) -> None:
        assert ep.file is not None and ep.columns is not None
        obs = record.observation
        # Behind by more than a quarter second: store frames raw until the backlog is gone,
        # rather than let the queue fill (compression costs far more than writing).
        behind = self._inbox.steps >= self._raw_backlog
        frames_raw = ep.file.frames_raw
        frame_ok = ep.file.write_frame(obs.image if obs is not None else None,
                                       compress=not behind)
        self._frames_raw += ep.file.frames_raw - frames_raw
        ep.columns.add_record(record)
        if (not frame_ok or ep.columns.mismatched_scans) and not ep.shape_warned:
            ep.shape_warned = True
            self._alert("warning", "shape_changed",
                        f"{ep.key}: camera or LiDAR shape changed mid-episode; those steps are "
                        "stored without them")
        if len(ep.columns) >= self._batch_rows:
            self._append(ep)

    def _append(self, ep: _OpenEpisode) -> None:
        assert ep.file is not None and ep.columns is not None
        n = len(ep.columns)
        if n:
            ep.file.append_columns(ep.columns.take())
            self._steps_written += n

    def _commit(self) -> None:
        ep = self._episode
        self._next_commit = time.monotonic() + self.flush_interval_s
        if ep is None or ep.file is None or ep.failed:
            return
        self._append(ep)
        t0 = time.perf_counter()
        ep.file.commit()
        took_s = time.perf_counter() - t0
        self._commit_s_max = max(self._commit_s_max, took_s)
        if took_s > self.flush_interval_s and time.monotonic() - self._last_slow_warn > WARN_EVERY_S:
            self._last_slow_warn = time.monotonic()
            self._alert("warning", "disk_slow",
                        f"disk slow: saving the last steps took {took_s:.1f} s; a crash now "
                        "could lose that much")
        free = shutil.disk_usage(ep.file.path.parent).free
        if free < self.min_free_bytes:
            key, steps = ep.key, ep.file.rows
            self._finish(Outcome.INTERRUPTED, "disk full", None)
            self._failed_generation = ep.generation
            self._auto_finished = (ep.generation, self._last_saved)
            self._alert("error", "disk_full",
                        f"disk full: {free / 2**20:.0f} MiB free; recording stopped, {key} "
                        f"saved with {steps} steps (outcome interrupted); free space and begin "
                        "a new episode")

    def _finish(self, outcome: Outcome, end_reason: str, future: Future[Path | None] | None,
                detected_outcome: str = "", outcome_evidence: dict[str, Any] | None = None
                ) -> None:
        ep, self._episode = self._episode, None
        self._state = "idle"
        path: Path | None = None
        try:
            if ep is not None and not ep.failed:
                # No observation ever came: an episode without sensors.
                if ep.file is None and ep.waiting and self._open_file(ep, ObsSpec()):
                    waiting, ep.waiting = ep.waiting, []
                    for r in waiting:
                        self._write_step(ep, r)
                if ep.file is not None:
                    self._append(ep)
                    dropped = self._inbox.dropped - ep.dropped_at_start
                    path = ep.file.finalize(outcome, end_reason=end_reason, dropped_steps=dropped,
                                            detected_outcome=detected_outcome,
                                            outcome_evidence=outcome_evidence)
                    self._episodes_saved += 1
                    self._last_saved = path
                    self._alert("info", "episode_saved",
                                f"{ep.key} saved: {ep.file.rows} steps, {outcome.value}")
        except OSError as err:
            assert ep is not None
            if ep.file is not None:
                ep.file.abandon()
            self._alert("error", "write_failed",
                        f"{ep.key}: could not finish the file ({err.strerror or err}); it is "
                        "kept as .partial and recovered on the next start")
        finally:
            if future is not None and not future.done():
                future.set_result(path)

    def _write_failed(self, err: OSError) -> None:
        ep = self._episode
        what = err.strerror or str(err)
        if ep is None or ep.file is None:
            self._fail(f"recording stopped: could not create the episode file ({what})",
                       "write_failed")
            return
        self._fail(f"{ep.key}: write failed ({what}); recording stopped, the episode is kept up "
                   f"to its last flush ({ep.file.committed} steps) in {ep.file.path.name} and "
                   "recovered on the next start", "write_failed")

    def _fail(self, message: str, code: str) -> None:
        ep = self._episode
        if ep is not None:
            ep.failed = True
            self._failed_generation = ep.generation
            if ep.file is not None:
                ep.file.abandon()
        self._state = "failed"
        self._alert("error", code, message)

    def _watch_queue(self) -> None:
        inbox = self._inbox
        now = time.monotonic()
        if inbox.steps > inbox.capacity // 2 and now - self._last_behind_warn > WARN_EVERY_S:
            self._last_behind_warn = now
            self._alert("warning", "falling_behind",
                        f"recorder falling behind: {inbox.steps} of {inbox.capacity} steps queued")
        if inbox.dropped > self._dropped_reported:
            new = inbox.dropped - self._dropped_reported
            self._dropped_reported = inbox.dropped
            self._alert("error", "steps_dropped",
                        f"recorder queue full: {new} steps dropped ({inbox.dropped} in all)")

    def _alert(self, level: str, code: str, message: str) -> None:
        alert = RecorderAlert(level, code, message)
        self._last_alert = alert
        log.log({"info": logging.INFO, "warning": logging.WARNING}.get(level, logging.ERROR),
                 "%s", message)
        if self.on_alert is not None:
            try:
                self.on_alert(alert)
            except Exception:  # a broken UI callback must not stop recording
                log.exception("recorder alert callback failed")


def writer_options_help() -> dict[str, Any]:
    """Defaults, for `--help` texts and docs."""
    return {
        "compression": str(Compression.parse(None)),
        "queue_s": DEFAULT_QUEUE_S,
        "flush_interval_s": DEFAULT_FLUSH_INTERVAL_S,
        "min_free_bytes": DEFAULT_MIN_FREE_BYTES,
    }
