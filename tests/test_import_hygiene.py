"""Layering (DESIGN.md): each module imported alone in a fresh interpreter, then sys.modules
is checked for what it must not pull in."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import takeover

pytestmark = pytest.mark.slow  # `make test-fast` leaves it out; `make test` runs it

ALL_MODULES = sorted(m.name for m in pkgutil.walk_packages(takeover.__path__, "takeover."))
# Everything below tui/ in DESIGN.md's layering.
CORE_PACKAGES = ("hw", "workspace", "sim", "recorder", "control", "inputs", "policy", "session",
                 "dagger", "bench")
NO_TEXTUAL = [m for m in ALL_MODULES
              if m.split(".")[1] in CORE_PACKAGES
              or m in ("takeover.types", "takeover.config", "takeover.errors")]
ROBOT_SIDE_PREFIXES = ("takeover.hw", "takeover.workspace", "takeover.sim", "takeover.recorder",
                       "takeover.control", "takeover.inputs", "takeover.session",
                       "takeover.policy.runtime", "takeover.policy.spec",
                       "takeover.policy.progress", "takeover.tui")
NO_TORCH = [m for m in ALL_MODULES if m.startswith(ROBOT_SIDE_PREFIXES)]


def imported_by(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return {m.split(".")[0] for m in json.loads(out)}


def test_modules_are_discovered() -> None:
    assert "takeover.control.arbiter" in ALL_MODULES and "takeover.sim.simulator" in ALL_MODULES


@pytest.mark.parametrize("module", NO_TEXTUAL)
def test_core_never_imports_textual(module: str) -> None:
    assert not imported_by(module) & {"textual", "textual_image"}


@pytest.mark.parametrize("module", NO_TORCH)
def test_robot_side_never_imports_torch(module: str) -> None:
    leaked = imported_by(module) & {"torch", "timm", "torchvision"}
    assert not leaked, f"{module} imports {leaked}"


def test_cli_entry_imports_neither_torch_nor_textual() -> None:
    assert not imported_by("takeover.cli") & {"torch", "timm", "textual", "textual_image"}


def test_control_core_process_imports_neither_textual_nor_torch() -> None:
    """The child that runs the loop: no UI in it (its garbage would stall the loop), no torch."""
    assert "takeover.session.core_process" in NO_TEXTUAL
    assert not imported_by("takeover.session.core_process") & {"textual", "textual_image", "torch",
                                                              "timm"}


def test_tui_imports_textual_image_only_when_the_terminal_is_asked() -> None:
    """Importing textual-image queries the terminal (tui/camera.py): never as a side
    effect of importing the app, only from `probe_terminal_graphics()` or a forced renderer."""
    assert "textual_image" not in imported_by("takeover.tui.app")
