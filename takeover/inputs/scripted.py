"""Scripted operators: automatic stand-ins for the human at the gamepad.

`ScriptedOperator` holds the deadman and steers with any function of the observation; with the
simulator's docking expert it records demonstrations exactly as a human's would be (MANUAL,
source HUMAN, action_mode -1). `DeadmanHolder` only holds the deadman, for running a policy in
AUTO headless (hold-to-run supervision by a script).
"""

from __future__ import annotations

from collections.abc import Callable

from takeover.control.arbiter import OperatorInput
from takeover.types import ZERO_COMMAND, Command, Observation, Odometry


class ScriptedOperator:
    """Holds the deadman and drives with `steer(odom)`; stands still without an observation."""

    def __init__(self, steer: Callable[[Odometry], Command]) -> None:
        self.steer = steer

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        if obs is None:
            return OperatorInput(deadman=True, command=ZERO_COMMAND)
        return OperatorInput(deadman=True, command=self.steer(obs.odom))


class DeadmanHolder:
    """Holds the enable button and never touches the sticks."""

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        return OperatorInput(deadman=True)
