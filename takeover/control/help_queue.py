"""The fleet's help-request queue: which robot the one operator turns to next.

Several robots may ask for help (control/help.py) while the operator can attend to only one.
Requests are served in Fleet-DAgger's C.U.R. order (Hoque et al., CoRL 2022): a constraint
violation (the robot is blocked) before uncertainty (novelty) before risk (no progress,
clearance, slip, misaligned), `HelpReason.priority`; within a priority, the higher score first (the
policy's novelty: the more unsure robot has more to teach and more to lose), then the request
that has waited longest. A robot holds at most one ticket: a robot that asks again, or for a
new reason, replaces its ticket, and keeps its place in the wait (`since_ns`) while the reason
is the same, so that a robot re-raising the same request is not sent to the back of the line.

Aging (`max_wait_ns`, `[supervision] help_max_wait_s`): strict C.U.R. starves the lowest
priority once the operator is saturated. Measured with 8 robots and one operator, both failed
attempts were robots whose `no_progress` request waited in the queue until the 60 s limit while
newer novelty requests went first (docs/fleet.md). A request that has waited `max_wait_ns` is
served before every request that has not, oldest first; below that, C.U.R. as above.

Pure bookkeeping: it never moves a robot (the Arbiter holds a robot that asks still until the
operator answers). Used by the headless fleet (session/fleet_drive.py) and the fleet screen.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from takeover.types import HelpReason


@dataclass(frozen=True)
class HelpTicket:
    """One robot's open request. score: the policy's novelty when it asked (None: none, or
    NaN); since_ns: when the request began, on the clock the caller keeps (the fleet's
    simulated time, or a loop clock); detail: a few words for the operator."""

    robot: str
    reason: HelpReason
    score: float | None
    since_ns: int
    detail: str = ""


def _order_key(ticket: HelpTicket) -> tuple[int, int, float, int, str]:
    """Ascending sort key: priority high first, a score before none and higher first, older
    first; the robot's name last, so that the order is total (ties never depend on history)."""
    score = ticket.score
    if score is None or math.isnan(score):
        return (-int(ticket.reason.priority), 1, 0.0, ticket.since_ns, ticket.robot)
    return (-int(ticket.reason.priority), 0, -score, ticket.since_ns, ticket.robot)


class HelpQueue:
    """The open requests, one ticket per robot, in C.U.R. order (`ordered`, `pop_next`), with
    requests older than `max_wait_ns` (None: no aging) first when the caller gives `now_ns`."""

    def __init__(self, max_wait_ns: int | None = None) -> None:
        if max_wait_ns is not None and max_wait_ns <= 0:
            raise ValueError(f"max_wait_ns must be positive, got {max_wait_ns}")
        self.max_wait_ns = max_wait_ns
        self._tickets: dict[str, HelpTicket] = {}

    def push(self, ticket: HelpTicket) -> None:
        """Open or replace `ticket.robot`'s request. The same reason again keeps the older
        `since_ns` (its place in the wait); a new reason starts its wait afresh."""
        old = self._tickets.get(ticket.robot)
        if old is not None and old.reason is ticket.reason:
            ticket = replace(ticket, since_ns=min(old.since_ns, ticket.since_ns))
        self._tickets[ticket.robot] = ticket

    def remove(self, robot: str) -> None:
        """Close `robot`'s request (answered, withdrawn, or its attempt ended); no-op if none."""
        self._tickets.pop(robot, None)

    def get(self, robot: str) -> HelpTicket | None:
        return self._tickets.get(robot)

    def _key(self, now_ns: int | None) -> Callable[[HelpTicket], tuple[object, ...]]:
        limit = self.max_wait_ns
        if limit is None or now_ns is None:
            return _order_key

        def aged_first(ticket: HelpTicket) -> tuple[object, ...]:
            if now_ns - ticket.since_ns >= limit:
                return (0, ticket.since_ns, ticket.robot)  # waited too long: oldest first
            return (1, *_order_key(ticket))
        return aged_first

    def ordered(self, now_ns: int | None = None) -> list[HelpTicket]:
        """The open requests, the one to serve first first (`now_ns`: on the tickets' clock,
        for aging; None: strict C.U.R.)."""
        return sorted(self._tickets.values(), key=self._key(now_ns))

    def pop_next(self, now_ns: int | None = None) -> HelpTicket | None:
        """Take the request to serve now off the queue (None: nobody asks)."""
        if not self._tickets:
            return None
        first = min(self._tickets.values(), key=self._key(now_ns))
        del self._tickets[first.robot]
        return first

    def __len__(self) -> int:
        return len(self._tickets)

    def __contains__(self, robot: object) -> bool:
        return robot in self._tickets
