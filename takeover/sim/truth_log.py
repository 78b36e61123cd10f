"""The simulator's ground-truth log: what really happened, for evaluation only.

A real base has no ground-truth docked flag, so a simulator that plays one (`SimConfig.real_base`,
`sim://?reset=drive`) keeps the truth to itself: every change of its outcome is an event, kept
in `Simulator.truth_events` and, where `SimConfig.truth_log` names a file, appended to it as one
JSON line, written in one call and closed at once (so a reader may read the file while the
simulator runs, and sees at most a torn last line):

    {"wall_ns": 1718000000000000000, "t_ns": 0, "event": "start", "outcome": "running",
     "with": "", "seed": 7}
    {"wall_ns": ..., "t_ns": 41235000000, "event": "contact", "outcome": "docked", "with": "dock"}
    {"wall_ns": ..., "t_ns": 43100000000, "event": "release", "outcome": "running", "with": "dock"}

wall_ns: `time.time_ns()` when it happened (the host joins its attempts to the log by this clock,
on the same machine); t_ns: the simulator's own clock. event: start (a world placed, with its
seed), contact or release. outcome: running, docked, misaligned or collision (after the event).
with: dock, wall, clutter, box or person (what was touched or released; "" at start).

This module is the format and its pure readers; it imports nothing of the simulator.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

EVENT_START, EVENT_CONTACT, EVENT_RELEASE = "start", "contact", "release"


def truth_event(event: str, outcome: str, with_: str, t_ns: int, **extra: Any) -> dict[str, Any]:
    """One event as it is kept and written, stamped with the wall clock now."""
    return {"wall_ns": time.time_ns(), "t_ns": int(t_ns), "event": event, "outcome": outcome,
            "with": with_, **extra}


def append_truth_event(path: str | Path, event: dict[str, Any]) -> None:
    """Append one event as one JSON line (one write, closed at once: flushed for readers)."""
    line = json.dumps(event, separators=(",", ":")) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


def read_truth_log(path: str | Path) -> list[dict[str, Any]]:
    """The events of a truth log, in order. A torn last line (the simulator writing it as this
    reads) is left out; a malformed line anywhere else is a ValueError naming it. A missing
    file raises FileNotFoundError."""
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    events: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        last = i == len(lines) - 1  # no newline after it: possibly still being written
        try:
            event = json.loads(line)
        except ValueError:
            if last:
                break
            raise ValueError(f"{path}: line {i + 1} is not a JSON event") from None
        if not isinstance(event, dict) or "wall_ns" not in event or "outcome" not in event:
            if last:
                break
            raise ValueError(f"{path}: line {i + 1} is not a truth event")
        events.append(event)
    return events


def truth_at(events: Iterable[dict[str, Any]], wall_ns: int) -> str:
    """The outcome in effect at wall-clock time wall_ns (that of the last event at or before
    it); "" when the log starts after it."""
    outcome = ""
    for event in events:
        if int(event["wall_ns"]) > wall_ns:
            break
        outcome = str(event["outcome"])
    return outcome


def contacts_between(events: Iterable[dict[str, Any]], start_wall_ns: int, end_wall_ns: int,
                     kinds: Iterable[str] | None = None) -> int:
    """How many contact events fall in [start_wall_ns, end_wall_ns). kinds, when given, keeps
    those whose outcome (docked, misaligned, collision) or whose `with` (dock, wall, clutter,
    box, person) is among them: ("collision",) counts every collision, ("wall",) wall hits."""
    wanted = None if kinds is None else frozenset(kinds)
    count = 0
    for event in events:
        if event.get("event") != EVENT_CONTACT:
            continue
        if not start_wall_ns <= int(event["wall_ns"]) < end_wall_ns:
            continue
        if wanted is None or event.get("outcome") in wanted or event.get("with") in wanted:
            count += 1
    return count
