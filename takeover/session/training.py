"""Training the next model from the operator's terminal, in a background process.

The TUI never imports torch: it runs `takeover dagger train --workspace DIR --json` as a child
process (at a lower CPU priority, so the control loop keeps its timing) and follows its
progress. `dagger train` trains the first model from scratch and every later one warm-started
from the deployed model ([train] warm_epochs), on all rounds; it registers the model without
deploying it: the operator deploys it from the Rounds screen (the human gate).

Progress protocol (documented in docs/tui.md). The child is started with the environment
variable `TAKEOVER_PROGRESS=jsonl`; a trainer that honours it writes one JSON object per line on
stderr for each progress report:

    {"event": "progress", "epoch": 3, "epochs": 12, "step": 40, "steps": 40,
     "train_loss": 0.031, "val_loss": 0.029, "epoch_end": true, "images_per_s": 410.0,
     "elapsed_s": 61.2}

(the fields of `takeover.policy.train.TrainProgress`), and, as `--json` commands do, one JSON
object as the last line of stdout with the result (`model_id`, `model_dir` or `onnx`, and
whatever validation figures it has, e.g. `val_loss`, `parity_max_abs_err`). Any other line, on
either stream, is shown as log text. Exit status 0 means a model was registered.

`takeover train` and `takeover dagger train` speak it (cli/policy.py `progress_reporter`). A
trainer that does not, with its output on a pipe, may write one plain line per finished epoch,
`epoch 3/12: train 0.0310 val 0.0290 410 img/s 61 s` (cli/policy.py ProgressBar without the
variable), which is read as that epoch's progress report (`EPOCH_LINE`). The result of both is
the model card, whose figures are nested (`metrics`, `export`, `training`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

PROGRESS_ENV = "TAKEOVER_PROGRESS"
PROGRESS_FORMAT = "jsonl"


# `takeover train`'s epoch line on a pipe (cli/policy.py ProgressBar); "val -" without validation.
EPOCH_LINE = re.compile(
    r"epoch (?P<epoch>\d+)/(?P<epochs>\d+): train (?P<train_loss>\S+) val (?P<val_loss>\S+)"
    r" (?P<images_per_s>\S+) img/s (?P<elapsed_s>\S+) s")


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
            obj = _json_object(line)
            if obj is None and not is_stdout:
                obj = _epoch_line(line)
            with self._lock:
                if obj is not None and obj.get("event") == "progress":
                    self._progress(obj)
                    continue
                if is_stdout and obj is not None:
                    self._state.result = obj
                    continue
                self._state.log.append(line)
                del self._state.log[:-self.MAX_LOG_LINES]

    def _progress(self, p: dict[str, Any]) -> None:
        s = self._state
        s.epoch = int(p.get("epoch", s.epoch))
        s.epochs = int(p.get("epochs", s.epochs))
        s.step = int(p.get("step", s.step))
        s.steps = int(p.get("steps", s.steps))
        s.train_loss = _num(p.get("train_loss"), s.train_loss)
        if p.get("images_per_s") is not None:
            s.images_per_s = _num(p.get("images_per_s"), s.images_per_s)
        if p.get("epoch_end"):
            s.epochs_done = s.epoch
            s.val_loss = _num(p.get("val_loss"), None)
            s.curve.append((s.epoch, s.train_loss if s.train_loss is not None else math_nan(),
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


def _epoch_line(line: str) -> dict[str, Any] | None:
    """A plain `epoch N/M: ...` line as the progress report it stands for, or None."""
    match = EPOCH_LINE.search(line.strip().rsplit("\r", 1)[-1])
    if match is None:
        return None
    p = match.groupdict()
    return {"event": "progress", "epoch": int(p["epoch"]), "epochs": int(p["epochs"]),
            "train_loss": _num(p["train_loss"], None), "val_loss": _num(p["val_loss"], None),
            "images_per_s": _num(p["images_per_s"], None), "elapsed_s": _num(p["elapsed_s"], None),
            "epoch_end": True}


def _num(value: Any, default: float | None) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def math_nan() -> float:
    return float("nan")
