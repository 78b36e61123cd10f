"""Keyboard driving, the fallback when no gamepad is at hand.

Terminals send key presses and auto-repeats but never a key release. So a driving key holds its
command only while presses keep arriving: after the first press for `initial_hold_ms` (long
enough to bridge the terminal's auto-repeat delay, typically 250-600 ms), and once repeats
arrive for `repeat_hold_ms` after the last one (default 150 ms; repeats come every 30-40 ms).
Letting go of the key therefore stops the robot within `repeat_hold_ms`.

The linear and angular axes hold independently (up/down, left/right). A terminal repeats only
the most recently pressed key, so holding two keys at once drives the last one only; the
diagonal keys drive an arc forward (`q`: left, `e`: right) as one key.

While a driving key is held the deadman counts as held. The hold-to-run key (default Enter)
holds the deadman without moving, to supervise the policy in AUTO.

Thread safety: `press` is called from the UI thread (or, with the control core in its own
process, from the thread that receives the UI's key events, with the press's timestamp), `read`
from the control loop's thread; the state is a handful of floats replaced under a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from takeover.config import KeyboardConfig
from takeover.control.arbiter import OperatorInput
from takeover.types import ZERO_COMMAND, Command, Observation

# key name -> (linear sign, angular sign); None leaves that axis alone.
DRIVE_KEYS: dict[str, tuple[int | None, int | None]] = {
    "up": (1, None),
    "down": (-1, None),
    "left": (None, 1),
    "right": (None, -1),
    "q": (1, 1),
    "e": (1, -1),
}
HOLD_KEY = "enter"


@dataclass
class _Axis:
    sign: int = 0
    first_ns: int = 0  # first press of the current hold
    last_ns: int = 0  # most recent press (or repeat)
    repeats: int = 0  # presses since first_ns

    def held_until_ns(self, cfg: KeyboardConfig) -> int:
        hold_ms = cfg.repeat_hold_ms if self.repeats > 0 else cfg.initial_hold_ms
        return self.last_ns + int(hold_ms * 1e6)

    def press(self, sign: int, now_ns: int, cfg: KeyboardConfig) -> None:
        if sign != self.sign or now_ns > self.held_until_ns(cfg):
            self.sign, self.first_ns, self.repeats = sign, now_ns, 0
        else:
            self.repeats += 1
        self.last_ns = now_ns

    def value(self, now_ns: int, cfg: KeyboardConfig) -> int:
        if self.sign and now_ns <= self.held_until_ns(cfg):
            return self.sign
        return 0

    def release(self) -> None:
        self.sign = 0


class KeyboardInput:
    """An OperatorSource fed with key presses by the UI (`press`), read by the loop (`read`)."""

    def __init__(self, config: KeyboardConfig | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.config = config or KeyboardConfig()
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._linear = _Axis()
        self._angular = _Axis()
        self._hold = _Axis()
        self._diagonal = False

    def press(self, key: str, t_ns: int | None = None) -> bool:
        """A key press or auto-repeat from the terminal. True if it is a driving key.

        t_ns: when the press arrived, on this input's clock (`time.monotonic_ns`, one clock for
        every process on the machine), where it was seen in another process; default now."""
        now = self._clock_ns() if t_ns is None else t_ns
        cfg = self.config
        with self._lock:
            if key == HOLD_KEY:
                self._hold.press(1, now, cfg)
                return True
            signs = DRIVE_KEYS.get(key)
            if signs is None:
                return False
            lin, ang = signs
            if lin is not None:
                self._linear.press(lin, now, cfg)
            if ang is not None:
                self._angular.press(ang, now, cfg)
            diagonal = lin is not None and ang is not None
            if self._diagonal and not diagonal:
                # From an arc back to a single-axis key: the arc's other axis stops at once
                # instead of lingering for a hold time.
                (self._angular if ang is None else self._linear).release()
            self._diagonal = diagonal
            return True

    def release_all(self) -> None:
        """Forget every held key (e-stop, focus lost, screen change)."""
        with self._lock:
            self._linear.release()
            self._angular.release()
            self._hold.release()

    def active(self, now_ns: int | None = None) -> bool:
        """A driving or hold key is held right now."""
        now = self._clock_ns() if now_ns is None else now_ns
        cfg = self.config
        with self._lock:
            return bool(self._linear.value(now, cfg) or self._angular.value(now, cfg)
                        or self._hold.value(now, cfg))

    def read(self, obs: Observation | None, now_ns: int) -> OperatorInput:
        # The loop passes the link's clock (simulated time in lockstep); key presses are on
        # this machine's clock, so the hold is judged on that.
        now = self._clock_ns()
        cfg = self.config
        with self._lock:
            lin = self._linear.value(now, cfg)
            ang = self._angular.value(now, cfg)
            hold = self._hold.value(now, cfg)
        if not (lin or ang):
            return OperatorInput(deadman=bool(hold), command=ZERO_COMMAND, deflection=0.0)
        command = Command(lin * cfg.scale_linear, ang * cfg.scale_angular)
        return OperatorInput(deadman=True, command=command, deflection=1.0)
