"""Functions run inside fleet robots' control cores (`RemoteSession.run_in_core`, and a policy
loader pickled by name into `CoreSpec`): a policy that keeps a robot moving in place, and a
probe of what each tick sent around an e-stop. Module-level, so they pickle by name."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from takeover.config import Config
from takeover.control.arbiter import OperatorEvent
from takeover.session.operator import OperatorSession
from takeover.types import Command, Observation, StepRecord

SPIN = Command(0.0, 0.5)  # turning in place: always a non-zero command, never a collision

_state: dict[str, Any] = {}


class SpinPolicy:
    """A real PolicyDriver that turns in place: AUTO sends a non-zero command every tick."""

    def propose(self, obs: Observation) -> Command | None:
        return SPIN

    def drop_queued_actions(self) -> None:
        pass

    def reset(self) -> None:
        pass


def spin_loader(path: Path, config: Config) -> SpinPolicy:
    return SpinPolicy()


class TickLog:
    """A loop sink: (step, v, w, mode) of every tick, and the last step done when the e-stop
    was posted to the core (the tick after that one is the first that may not have seen it)."""

    def __init__(self, session: OperatorSession) -> None:
        self.rows: list[tuple[int, float, float, str]] = []
        self.estop_after_step: int | None = None
        self.lock = threading.Lock()
        self.session = session
        self._post = session.post
        session.post = self.post  # type: ignore[method-assign]

    def offer(self, record: StepRecord) -> bool:
        with self.lock:
            self.rows.append((record.step, record.command.v_mps, record.command.w_radps,
                              record.mode.value))
        return True

    def post(self, event: OperatorEvent) -> None:
        if event is OperatorEvent.ESTOP and self.estop_after_step is None:
            latest = self.session.loop.latest
            with self.lock:
                self.estop_after_step = latest.step if latest is not None else -1
        self._post(event)


def install_tick_log(session: OperatorSession) -> bool:
    log = TickLog(session)
    _state["log"] = log
    session.loop.sinks.append(log)
    return True


def tick_log(session: OperatorSession) -> tuple[int | None, list[tuple[int, float, float, str]]]:
    """(the step done when the e-stop arrived, every tick logged so far)."""
    log: TickLog = _state["log"]
    with log.lock:
        return log.estop_after_step, list(log.rows)
