"""Smoke test as a user would: `takeover run` in a real terminal (tmux), keys, an episode file.
The keys go through the TUI to the control core in its own process (the default)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ci_needs import need

from takeover.workspace.layout import init_workspace


@pytest.fixture(autouse=True)
def _tmux_installed() -> None:
    need(shutil.which("tmux") is not None, "tmux is not installed")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def wait_screen(session: str, text: str, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        shown = screen(session)
        if text in shown:
            return shown
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never appeared; the screen:\n{shown}")
        time.sleep(0.1)


def test_takeover_run_in_tmux_records_an_episode(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    session = f"takeover-smoke-{os.getpid()}"
    takeover = str(Path(sys.executable).with_name("takeover"))
    env = f"TERM=xterm-256color PYTHONPATH={Path(__file__).parents[2]}"
    tmux("new-session", "-d", "-s", session, "-x", "140", "-y", "44",
         f"env {env} {takeover} run --workspace {ws} --no-gamepad; sleep 30")
    try:
        wait_screen(session, "link    up")
        wait_screen(session, "I D L E")
        # tui.camera = auto asked this terminal (tmux without Sixel) before the app started
        # and chose half-block cells; the answers did not reach the app as keys.
        wait_screen(session, "camera (half-")  # the title is cut short in a narrow pane
        assert "▀" in screen(session)
        tmux("send-keys", "-t", session, "m")
        wait_screen(session, "M A N U A L")
        tmux("send-keys", "-t", session, "r")
        wait_screen(session, "REC")
        for _ in range(20):  # like a held key's auto-repeat
            tmux("send-keys", "-t", session, "Up")
            time.sleep(0.03)  # the repeat rate of a terminal, not synchronisation
        tmux("send-keys", "-t", session, "r")
        wait_screen(session, "End the episode")
        tmux("send-keys", "-t", session, "s")
        episode = ws / "rounds" / "r000" / "ep_0001.hdf5"
        deadline = time.monotonic() + 30
        while not episode.is_file():
            assert time.monotonic() < deadline, f"no episode file; the screen:\n{screen(session)}"
            time.sleep(0.1)
        wait_screen(session, "episodes 1")
        tmux("send-keys", "-t", session, "Space")
        wait_screen(session, "E - S T O P")
        tmux("send-keys", "-t", session, "C-q")
        deadline = time.monotonic() + 20
        while "takeover" in screen(session) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
