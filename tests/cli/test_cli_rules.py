"""Rules every `takeover` command follows: where the workspace is, what `--json` may print, and
the one line for a missing extra. Real subprocesses, as a user runs them."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from takeover.cli.output import dumps, missing_extra_line
from takeover.workspace.layout import find_workspace, init_workspace


def takeover(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "takeover.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


def test_drive_in_a_workspace_uses_its_config_and_its_models(tmp_path: Path) -> None:
    """`cd ws && takeover drive` is `takeover drive --workspace ws`, as for run and dagger."""
    ws = init_workspace(tmp_path / "ws")
    toml = ws / "takeover.toml"
    toml.write_text(toml.read_text().replace('url = "sim://"', 'url = "sim://?seed=3"'))
    p = takeover("drive", "--driver", "expert", "--fast", "--max-steps", "5", "--json", cwd=ws)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1])["robot"] == "sim://?seed=3"
    p = takeover("drive", "--driver", "policy", "--fast", cwd=ws)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    # It looked for the workspace's deployed model instead of asking for --workspace.
    assert "no deployed model" in p.stderr and str(ws.name) in p.stderr, p.stderr


def test_find_workspace_is_one_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_workspace(None, required=False) is None
    assert find_workspace(None, required=True) == Path(".")
    assert find_workspace(Path("elsewhere"), required=False) == Path("elsewhere")
    init_workspace(tmp_path / "ws")
    monkeypatch.chdir(tmp_path / "ws")
    assert find_workspace(None, required=False) == tmp_path / "ws"
    assert find_workspace(None, required=True) == tmp_path / "ws"


def test_json_never_holds_nan_or_infinity() -> None:
    text = dumps({"a": math.nan, "b": [1.0, math.inf, -math.inf], "c": np.float32(0.5),
                  "d": np.array([1, 2]), "e": Path("x"), "f": None})
    assert json.loads(text) == {"a": None, "b": [1.0, None, None], "c": 0.5, "d": [1, 2],
                                "e": "x", "f": None}
    assert "NaN" not in text and "Infinity" not in text


@pytest.mark.parametrize("argv", [["train"], ["dagger", "train"], ["export", "missing.pt"]])
def test_a_command_that_needs_torch_says_so_in_one_line(argv: list[str], tmp_path: Path) -> None:
    """On the robot-side install (no torch) the training commands name the extra to install.
    torch is made unimportable for the child the way a missing package is."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "torch.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    ws = init_workspace(tmp_path / "ws")
    env = {"PYTHONPATH": str(blocker), "PATH": "/usr/bin:/bin"}
    p = takeover(*argv, cwd=ws, env=env)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "needs torch" in lines[0] and "pip install 'takeover[train]'" in lines[0]


def test_other_missing_modules_are_not_dressed_up() -> None:
    assert missing_extra_line(ModuleNotFoundError("x", name="numpy"), "drive") is None
    line = missing_extra_line(ModuleNotFoundError("x", name="matplotlib.pyplot"), "dagger report")
    assert line is not None and "takeover[report]" in line
