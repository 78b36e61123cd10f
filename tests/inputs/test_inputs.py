"""Keyboard hold/decay on an injected clock, and the training job's progress protocol."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tui_support import fake_train_command

from takeover.config import KeyboardConfig
from takeover.inputs.keyboard import KeyboardInput
from takeover.session.training import TrainingJob

MS = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.t = 1_000 * MS

    def __call__(self) -> int:
        return self.t


def test_keyboard_holds_while_repeats_arrive_and_decays_within_150_ms() -> None:
    clock = Clock()
    kb = KeyboardInput(KeyboardConfig(), clock_ns=clock)
    assert not kb.read(None, 0).deadman
    kb.press("up")
    clock.t += 500 * MS  # the terminal's auto-repeat delay: still held
    assert kb.read(None, 0).command.v_mps > 0
    for _ in range(10):  # repeats every 33 ms
        kb.press("up")
        clock.t += 33 * MS
        assert kb.read(None, 0).command.v_mps > 0
    clock.t += 150 * MS - 33 * MS  # exactly 150 ms after the last repeat: still held
    assert kb.read(None, 0).command.v_mps > 0
    clock.t += 1 * MS  # then zero
    out = kb.read(None, 0)
    assert out.command.is_zero and not out.deadman


def test_keyboard_axes_diagonals_hold_key_and_release() -> None:
    clock = Clock()
    kb = KeyboardInput(KeyboardConfig(), clock_ns=clock)
    kb.press("q")
    out = kb.read(None, 0)
    assert out.command.v_mps > 0 and out.command.w_radps > 0 and out.deflection == 1.0
    kb.press("up")  # from an arc to straight ahead: the turn stops at once
    assert kb.read(None, 0).command.w_radps == 0.0
    kb.release_all()
    kb.press("enter")  # hold-to-run: deadman without motion or deflection
    out = kb.read(None, 0)
    assert out.deadman and out.command.is_zero and out.deflection == 0.0
    assert not kb.press("z")


def test_training_job_parses_progress_and_result(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    job = TrainingJob(fake_train_command(tmp_path, "--epochs", "3"))
    job.start()
    assert job.wait(60)
    state = job.state()
    assert state.status == "done", state.message
    assert state.epochs == 3 and [c[0] for c in state.curve] == [1, 2, 3]
    assert state.result is not None and state.result["model_id"] == "r001"
    assert state.fraction == 1.0 and "loading episodes..." in state.log


def test_training_job_reports_a_failed_trainer(tmp_path: Path) -> None:
    job = TrainingJob(["python3", "-c", "import sys; print('no data', file=sys.stderr); sys.exit(3)"])
    job.start()
    assert job.wait(60)
    state = job.state()
    assert state.status == "failed" and state.returncode == 3 and "no data" in state.message


PROTOCOL_TRAINER = """
import json, os, sys, time
from takeover.policy.progress import TrainProgress, encode
print("reading episodes ...", file=sys.stderr, flush=True)
print(encode(TrainProgress(1, 2, 3, 3, 0.5365, 0.3676, 197.0, 1.0, epoch_end=True)),
      file=sys.stderr, flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
print(encode(TrainProgress(2, 2, 3, 3, 0.25, float("nan"), 201.0, 2.0, epoch_end=True)),
      file=sys.stderr, flush=True)
print("exporting to ONNX and checking parity on real frames ...", file=sys.stderr, flush=True)
card = {"model_id": "r001",
        "metrics": {"best_val_loss": 0.3676, "mae_v_mps": 0.022, "mae_w_radps": 0.1354},
        "export": {"onnx": "policy.onnx", "parity_max_abs_error": 1.2e-07},
        "training": {"epochs_run": 2, "wall_s": 2.1}, "deployed": True, "total_s": 9.9}
print(json.dumps(card), flush=True)
"""


def test_training_job_reads_the_progress_protocol(tmp_path: Path) -> None:
    """A trainer reports through takeover.policy.progress (the module both ends import; a
    non-finite loss travels as null), and its result is the model card with nested figures
    (what the Rounds screen shows)."""
    from takeover.tui.rounds import _model_from_result, _result_text

    go = tmp_path / "go"
    job = TrainingJob([sys.executable, "-c", PROTOCOL_TRAINER, str(go)])
    job.start()
    deadline = time.monotonic() + 30
    while job.state().epochs_done < 1:
        assert time.monotonic() < deadline, job.state()
        time.sleep(0.02)
    state = job.state()
    assert state.status == "running" and (state.epoch, state.epochs, state.steps) == (1, 2, 3)
    assert state.fraction == 0.5 and state.curve == [(1, 0.5365, 0.3676)]
    assert state.train_loss == 0.5365 and state.images_per_s == 197.0
    go.touch()
    assert job.wait(30)
    state = job.state()
    assert state.status == "done" and state.fraction == 1.0
    assert state.curve == [(1, 0.5365, 0.3676), (2, 0.25, None)]
    assert "reading episodes ..." in state.log and not any("epoch" in line for line in state.log)
    assert state.result is not None
    text = _result_text(state.result)
    assert text == ("result: r001  val loss 0.3676  MAE 0.022 m/s 0.135 rad/s  "
                    "ONNX parity 1.2e-07  now models/current"), text
    model = _model_from_result(tmp_path, state.result)
    assert model is not None and model.onnx == tmp_path / "models" / "r001" / "policy.onnx"
