"""Training the next model from the operator's terminal, in a background process.

The TUI never imports torch: it runs `takeover dagger train --workspace DIR --json` as a child
process (at a lower CPU priority, so the control loop keeps its timing) and follows its
progress. `dagger train` trains the first model from scratch and every later one warm-started
from the deployed model ([train] warm_epochs), on all rounds; it registers the model without
deploying it: the operator deploys it from the Rounds screen (the human gate).

The progress protocol is takeover/policy/progress.py (torch-free, imported by both ends): the
child is started with `TAKEOVER_PROGRESS=jsonl`, writes one `encode(report)` line per report on
stderr and the result (the model card, naming the model by its `model_id`) as the last line of
stdout; any other line is log text. Exit status 0 means a model was registered.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from takeover.policy.progress import PROGRESS_ENV, PROGRESS_FORMAT, TrainProgress, decode


def default_train_command(workspace: Path) -> list[str]:
    return [sys.executable, "-m", "takeover.cli", "dagger", "train", "--workspace", str(workspace),
            "--json"]


@dataclass
class TrainingState:
    """A snapshot for the UI (copied under the job's lock)."""

    status: str = "idle"  # idle | running | cancelling | done | failed | cancelled
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0  # 0: the trainer reports epoch ends only
    epochs_done: int = 0
    train_loss: float | None = None
    val_loss: float | None = None
    images_per_s: float | None = None
    elapsed_s: float = 0.0
    # (epoch, train_loss, val_loss) per finished epoch, for the loss curve.
    curve: list[tuple[int, float, float | None]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    returncode: int | None = None
    message: str = ""

    @property
    def fraction(self) -> float:
        if self.status == "done":
            return 1.0
        if not self.epochs:
            return 0.0
        within = self.step / self.steps if self.steps else 0.0
        running = ((self.epoch - 1) + within) / self.epochs if self.epoch else 0.0
        return min(1.0, max(running, self.epochs_done / self.epochs))

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled")


class TrainingJob:
    """One training run in a child process; `state()` is safe to call from any thread."""

    MAX_LOG_LINES = 200

    def __init__(self, command: Sequence[str], cwd: Path | None = None, nice: int = 10,
                 env: dict[str, str] | None = None) -> None:
        self.command = list(command)
        self.cwd = cwd
        self.nice = nice
        self.env = env
        self._lock = threading.Lock()
        self._state = TrainingState()
        self._process: subprocess.Popen[str] | None = None
        self._readers: list[threading.Thread] = []
        self._stdout_last: str = ""
        self._t0 = 0.0

    def start(self) -> None:
        env = {**os.environ, **(self.env or {}), PROGRESS_ENV: PROGRESS_FORMAT,
               "PYTHONUNBUFFERED": "1"}
        nice = self.nice

        def lower_priority() -> None:  # in the child, before exec
            if nice:
                with contextlib.suppress(OSError):
                    os.nice(nice)

        self._t0 = time.monotonic()
        try:
            self._process = subprocess.Popen(
                self.command, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                preexec_fn=lower_priority, start_new_session=True)
        except OSError as err:
            with self._lock:
                self._state.status = "failed"
                self._state.message = f"could not start training: {err.strerror or err}"
            return
        with self._lock:
            self._state.status = "running"
            self._state.message = "training started"
        assert self._process.stdout is not None and self._process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self._process.stdout, True), daemon=True,
                             name="train-stdout"),
            threading.Thread(target=self._read, args=(self._process.stderr, False), daemon=True,
                             name="train-stderr"),
        ]
        for t in self._readers:
            t.start()
        threading.Thread(target=self._wait, daemon=True, name="train-wait").start()

    def cancel(self) -> None:
        """Ask the trainer to stop (SIGINT to its process group, then SIGKILL after 10 s)."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        with self._lock:
            self._state.status = "cancelling"
            self._state.message = "cancelling training..."
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)

        def escalate() -> None:
            try:
                process.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)

        threading.Thread(target=escalate, daemon=True, name="train-cancel").start()

    def wait(self, timeout_s: float | None = None) -> bool:
        """For tests and shutdown: wait until the job has finished. False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.state().finished:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def state(self) -> TrainingState:
        with self._lock:
            s = self._state
            return TrainingState(
                status=s.status, epoch=s.epoch, epochs=s.epochs, step=s.step, steps=s.steps,
                epochs_done=s.epochs_done, train_loss=s.train_loss, val_loss=s.val_loss,
                images_per_s=s.images_per_s,
                elapsed_s=time.monotonic() - self._t0 if s.status in ("running", "cancelling")
                else s.elapsed_s,
                curve=list(s.curve), log=list(s.log), result=s.result, returncode=s.returncode,
                message=s.message)

    # --- reader threads -------------------------------------------------------------------

    def _read(self, stream: IO[str], is_stdout: bool) -> None:
        for raw in stream:
            line = raw.rstrip("\n")
            if not line.strip():
                continue
            report = decode(line)
            with self._lock:
                if report is not None:
                    self._progress(report)
                    continue
                result = _json_object(line) if is_stdout else None
                if result is not None:
                    self._state.result = result
                    continue
                self._state.log.append(line)
                del self._state.log[:-self.MAX_LOG_LINES]

    def _progress(self, p: TrainProgress) -> None:
        s = self._state
        s.epoch, s.epochs, s.step, s.steps = p.epoch, p.epochs, p.step, p.steps
        if p.train_loss is not None:
            s.train_loss = p.train_loss
        if p.images_per_s is not None:
            s.images_per_s = p.images_per_s
        if p.epoch_end:
            s.epochs_done = p.epoch
            s.val_loss = p.val_loss
            s.curve.append((p.epoch, s.train_loss if s.train_loss is not None else math.nan,
                            s.val_loss))

    def _wait(self) -> None:
        process = self._process
        assert process is not None
        code = process.wait()
        for t in self._readers:
            t.join(timeout=5.0)
        with self._lock:
            s = self._state
            s.returncode = code
            s.elapsed_s = time.monotonic() - self._t0
            if s.status == "cancelling":
                s.status, s.message = "cancelled", "training cancelled; no model registered"
            elif code == 0:
                s.status = "done"
                model = (s.result or {}).get("model_id", "")
                s.message = f"training finished: model {model}" if model else "training finished"
            else:
                s.status = "failed"
                last = s.log[-1] if s.log else f"exit status {code}"
                s.message = f"training failed: {last}"


def _json_object(line: str) -> dict[str, Any] | None:
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None
