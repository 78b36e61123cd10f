"""The operator's input as the loop sees it: the gamepad, with the keyboard as a fallback.

Per tick, the device the operator is using wins: the gamepad while its deadman is held or its
sticks are deflected, else the keyboard while a driving or hold key is held, else the gamepad's
(or the keyboard's) idle input. If the gamepad disappears after it was the device in use, the
answer is `connected=False` (the Arbiter stops the robot and says why) until a gamepad comes back
or the operator turns to the keyboard; nothing then moves until the operator engages again.
"""

from __future__ import annotations

from takeover.control.arbiter import NO_INPUT, OperatorInput
from takeover.inputs.gamepad import GamepadInput
from takeover.inputs.keyboard import KeyboardInput
from takeover.types import Observation


class CombinedOperator:
    def __init__(self, gamepad: GamepadInput | None, keyboard: KeyboardInput | None) -> None:
        self.gamepad = gamepad
        self.keyboard = keyboard
        self._gamepad_in_use = False
        self.last_device = ""  # "gamepad" | "keyboard" | "": for the UI

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        pad = self.gamepad.read(obs, now_ns) if self.gamepad is not None else None
        keys = self.keyboard.read(obs, now_ns) if self.keyboard is not None else None
        if pad is not None and pad.connected and (pad.deadman or pad.deflection > 0.0):
            self._gamepad_in_use = True
            self.last_device = "gamepad"
            return pad
        if keys is not None and (keys.deadman or keys.deflection > 0.0):
            self._gamepad_in_use = False
            self.last_device = "keyboard"
            return keys
        if pad is not None and not pad.connected and self._gamepad_in_use:
            return OperatorInput(deadman=False, connected=False)
        if pad is not None and pad.connected:
            return pad
        return keys if keys is not None else NO_INPUT
