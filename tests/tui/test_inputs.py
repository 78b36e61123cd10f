"""Keyboard hold/decay on an injected clock, and the training job's progress protocol."""

from __future__ import annotations

from pathlib import Path

from tui_support import fake_train_command

from takeover.config import KeyboardConfig
from takeover.teleop.keyboard import KeyboardInput
from takeover.teleop.training import TrainingJob

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
