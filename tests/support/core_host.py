"""Stands in for the operator's terminal in a process of its own, to be killed by a test:
starts the control core, records an episode while driving, then keeps driving until killed.

    python core_host.py WORKSPACE WIRE_LOG   -> prints {"core_pid": N} once the robot moves
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from core_hooks import install_wire_log

from takeover.config import Config, KeyboardConfig
from takeover.control.arbiter import OperatorEvent
from takeover.session.core_process import CoreSpec, RemoteSession


def main() -> None:
    workspace, wire_log = Path(sys.argv[1]), sys.argv[2]
    config = Config(keyboard=KeyboardConfig(initial_hold_ms=1500.0, repeat_hold_ms=1000.0))
    session = RemoteSession(CoreSpec(config, "sim://?seed=4", workspace, use_gamepad=False))
    session.open()
    session.run_in_core(install_wire_log, wire_log)
    session.post(OperatorEvent.MANUAL)
    session.begin_episode()
    deadline = time.monotonic() + 30
    announced = False
    while time.monotonic() < deadline:
        session.press_key("up")
        snap = session.poll()
        if (not announced and snap.record is not None and snap.record.command.v_mps > 0
                and snap.episode.steps > 5):
            print(json.dumps({"core_pid": session.pid}), flush=True)
            announced = True
        time.sleep(0.03)


if __name__ == "__main__":
    main()
