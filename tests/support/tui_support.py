from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from takeover.config import Config, KeyboardConfig, SafetyConfig
from takeover.types import Command, Observation
from takeover.workspace.layout import init_workspace

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


class ConstantPolicy:
    """A PolicyDriver that always proposes the same command (a real driver, no model)."""

    def __init__(self, command: Command | None = None) -> None:
        self.command = command or Command(0.2, 0.0)
        self.dropped = 0
        self.resets = 0

    def propose(self, obs: Observation) -> Command | None:
        return self.command

    def drop_queued_actions(self) -> None:
        self.dropped += 1

    def reset(self) -> None:
        self.resets += 1


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return init_workspace(tmp_path / "ws")


#: These tests are about the screens. Their robot is the real-time simulator in the same
#: interpreter as Textual, and on a loaded 2-core machine (a CPU hog, other test processes) its
#: observation has come more than the default 250 ms late, latching LINK_LOST, so a request
#: ("p" for AUTO, "a" to acknowledge) was refused and the test timed out. Freshness is the
#: Arbiter's rule, tested on its own in tests/control; here it allows 2 s.
SCREEN_TEST_SAFETY = SafetyConfig(obs_freshness_ms=2000.0)


@pytest.fixture
def config() -> Config:
    # Pilot key presses on a loaded 2-core machine can be 100-200 ms apart: hold keys longer.
    return Config(keyboard=KeyboardConfig(initial_hold_ms=1500.0, repeat_hold_ms=1000.0),
                  safety=SCREEN_TEST_SAFETY)


async def wait_for(pilot: object, condition: Callable[[], bool], timeout_s: float = 20.0,
                   what: str = "condition") -> None:
    """Poll with a deadline (never a bare sleep standing in for synchronisation). A timeout
    names the Arbiter's mode and reason when the app has a session: why a request was refused."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}{_arbiter_state(pilot)}")
        await asyncio.sleep(0.02)


def _arbiter_state(pilot: object) -> str:
    loop = getattr(getattr(getattr(pilot, "app", None), "session", None), "loop", None)
    arbiter = getattr(loop, "arbiter", None)
    if arbiter is None:
        return ""
    return f" (the Arbiter: {arbiter.mode.value}, {arbiter.reason!r})"


def fake_train_command(workspace: Path, *extra: str) -> list[str]:
    return [sys.executable, str(HERE / "fake_trainer.py"), str(workspace), *extra]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests in a fresh event loop (no async plugin needed)."""
    if not asyncio.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{n: pyfuncitem.funcargs[n] for n in names}))
    return True


def tiny_onnx_model(path: Path, camera_hw: int = 96, model_id: str = "r001",
                    seed: int | None = None) -> Path:
    """A real, untrained ONNX policy (resnet10t at 8 channels) exported with the project's own
    exporter: what a deployed model is, in a second of CPU. seed: its initial weights (None:
    whatever torch's generator holds), for a test that needs one particular untrained
    behaviour."""
    import torch

    from takeover.policy.export import export_onnx
    from takeover.policy.model import DockingPolicy, ModelConfig

    if seed is not None:
        torch.manual_seed(seed)

    model = DockingPolicy(ModelConfig(
        backbone_args={"channels": [8, 8, 8, 8], "stem_width": 8}, image_height=camera_hw,
        image_width=camera_hw, chunk_size=5, image_channels=8, lidar_hidden=32,
        lidar_features=16, head_hidden=32))
    export_onnx(model, path, model.spec(model_id=model_id))
    return path
