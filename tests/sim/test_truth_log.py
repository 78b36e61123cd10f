"""The truth log's pure readers: read_truth_log (a torn last line), truth_at, contacts_between."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from takeover.sim.truth_log import (
    append_truth_event,
    contacts_between,
    read_truth_log,
    truth_at,
    truth_event,
)


def ev(wall_ns: int, event: str, outcome: str, with_: str = "") -> dict[str, Any]:
    return {"wall_ns": wall_ns, "t_ns": wall_ns - 100, "event": event, "outcome": outcome,
            "with": with_}


EVENTS = [
    ev(100, "start", "running"),
    ev(200, "contact", "collision", "wall"),
    ev(250, "release", "running", "wall"),
    ev(400, "contact", "docked", "dock"),
    ev(500, "release", "running", "dock"),
    ev(600, "contact", "misaligned", "dock"),
    ev(700, "contact", "collision", "person"),
]


def test_truth_at_is_the_outcome_of_the_last_event_at_or_before() -> None:
    assert truth_at(EVENTS, 99) == ""
    assert truth_at(EVENTS, 100) == "running"
    assert truth_at(EVENTS, 199) == "running"
    assert truth_at(EVENTS, 200) == "collision"
    assert truth_at(EVENTS, 300) == "running"
    assert truth_at(EVENTS, 450) == "docked"
    assert truth_at(EVENTS, 10**20) == "collision"
    assert truth_at([], 5) == ""


def test_contacts_between_counts_a_half_open_window_by_outcome_or_thing() -> None:
    assert contacts_between(EVENTS, 0, 10**20) == 4
    assert contacts_between(EVENTS, 200, 400) == 1  # 400 is outside [200, 400)
    assert contacts_between(EVENTS, 0, 10**20, ("collision",)) == 2
    assert contacts_between(EVENTS, 0, 10**20, ("wall", "clutter")) == 1
    assert contacts_between(EVENTS, 0, 10**20, ("dock",)) == 2
    assert contacts_between(EVENTS, 0, 10**20, ("docked",)) == 1
    assert contacts_between(EVENTS, 450, 650, ["misaligned", "collision"]) == 1
    assert contacts_between(EVENTS, 0, 10**20, ()) == 0


def test_read_back_what_was_appended_and_leave_out_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    for e in EVENTS[:3]:
        append_truth_event(path, e)
    assert read_truth_log(path) == EVENTS[:3]
    whole = json.dumps(EVENTS[3]) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(whole[:17])  # the simulator is writing its next line
    assert read_truth_log(path) == EVENTS[:3]
    with open(path, "a", encoding="utf-8") as f:
        f.write(whole[17:])
    assert read_truth_log(path) == EVENTS[:4]


def test_a_bad_line_in_the_middle_is_named(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    path.write_text(json.dumps(EVENTS[0]) + "\nnot json\n" + json.dumps(EVENTS[1]) + "\n")
    with pytest.raises(ValueError, match="line 2"):
        read_truth_log(path)
    with pytest.raises(FileNotFoundError):
        read_truth_log(tmp_path / "none.jsonl")


def test_an_event_is_stamped_with_the_wall_clock() -> None:
    import time

    before = time.time_ns()
    e = truth_event("contact", "collision", "box", 123, extra=1)
    assert before <= e["wall_ns"] <= time.time_ns()
    assert e == {"wall_ns": e["wall_ns"], "t_ns": 123, "event": "contact",
                 "outcome": "collision", "with": "box", "extra": 1}
