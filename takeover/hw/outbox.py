"""The command outbox every link shares: what a link has to send, waiting for its writer thread.

Two kinds of message wait differently:

- **The velocity command** has a slot of its own that holds only the newest: an unsent older
  command is replaced, never queued behind, because a stale command is worse than none (the
  base's watchdog stops it if nothing arrives). `put_command` says when it replaced one, so the
  link can count what never reached the wire.
- **Control messages** (e-stop, heartbeat, service calls) keep their order in a bounded queue
  and go out before the command; an e-stop can jump the queue (`put_control(first=True)`).

The links' fast path writes a command from the caller's thread when the outbox is `empty`, so a
command is never overtaken by one queued before it. `take` hands the writer thread everything
that waits, control messages first. `cond` is the lock for a link that must change the outbox
together with state of its own (a reconnect clears both).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class CommandOutbox(Generic[T]):
    def __init__(self, control_limit: int) -> None:
        self.cond = threading.Condition()
        self._control: deque[T] = deque(maxlen=control_limit)
        self._command: T | None = None

    @property
    def empty(self) -> bool:
        """Nothing waits (read without the lock: two references, for the fast path)."""
        return self._command is None and not self._control

    def put_command(self, item: T) -> bool:
        """Wait in the slot; True when it replaced a command that never went out."""
        with self.cond:
            replaced = self._command is not None
            self._command = item
            self.cond.notify()
        return replaced

    def put_control(self, item: T, first: bool = False) -> bool:
        """Queue a control message (at the head with `first`); True when the queue was full and
        its oldest message was dropped to make room."""
        with self.cond:
            full = len(self._control) == self._control.maxlen
            if first:
                self._control.appendleft(item)
            else:
                self._control.append(item)
            self.cond.notify()
        return full

    def drop_command(self) -> None:
        """Forget the waiting command (an e-stop or a hang-up makes it moot)."""
        with self.cond:
            self._command = None

    def clear(self) -> None:
        """Forget everything (a new connection starts clean)."""
        with self.cond:
            self._control.clear()
            self._command = None

    def take(self, timeout_s: float) -> tuple[list[T], T | None]:
        """Everything that waits, control messages first, after waiting up to `timeout_s` for
        something to arrive; ([], None) if nothing did."""
        with self.cond:
            if self.empty:
                self.cond.wait(timeout_s)
            control = list(self._control)
            self._control.clear()
            command, self._command = self._command, None
        return control, command

    def wake(self) -> None:
        """Wake a writer waiting in `take` (to see a stop flag, or a partial write to finish)."""
        with self.cond:
            self.cond.notify_all()
