"""The fleet's help-request queue (control/help_queue.py): C.U.R. order, one ticket per robot."""

from __future__ import annotations

import itertools
import math
import random

from hypothesis import given
from hypothesis import strategies as st

from takeover.control.help_queue import HelpQueue, HelpTicket
from takeover.types import HelpPriority, HelpReason


def _t(robot: str, reason: HelpReason, score: float | None = None, since_ns: int = 0,
       detail: str = "") -> HelpTicket:
    return HelpTicket(robot=robot, reason=reason, score=score, since_ns=since_ns, detail=detail)


def test_constraint_before_uncertainty_before_risk_whatever_the_arrival() -> None:
    q = HelpQueue()
    q.push(_t("r1", HelpReason.NO_PROGRESS, since_ns=1))  # risk, oldest
    q.push(_t("r2", HelpReason.NOVELTY, score=0.9, since_ns=2))  # uncertainty
    q.push(_t("r3", HelpReason.BLOCKED, since_ns=3))  # constraint, newest
    assert [t.robot for t in q.ordered()] == ["r3", "r2", "r1"]
    assert [t.reason.priority for t in q.ordered()] == [
        HelpPriority.CONSTRAINT, HelpPriority.UNCERTAINTY, HelpPriority.RISK]


def test_within_a_priority_higher_score_then_older_first() -> None:
    q = HelpQueue()
    q.push(_t("low", HelpReason.NOVELTY, score=0.2, since_ns=1))
    q.push(_t("high", HelpReason.NOVELTY, score=0.8, since_ns=5))
    q.push(_t("unscored", HelpReason.NOVELTY, score=math.nan, since_ns=0))
    q.push(_t("high_later", HelpReason.NOVELTY, score=0.8, since_ns=9))
    assert [t.robot for t in q.ordered()] == ["high", "high_later", "low", "unscored"]
    q2 = HelpQueue()
    q2.push(_t("b", HelpReason.NO_PROGRESS, since_ns=7))
    q2.push(_t("a", HelpReason.CLEARANCE, since_ns=3))  # same priority (risk), older
    assert [t.robot for t in q2.ordered()] == ["a", "b"]


def test_one_ticket_per_robot_same_reason_keeps_its_place() -> None:
    q = HelpQueue()
    q.push(_t("r1", HelpReason.NO_PROGRESS, since_ns=10))
    q.push(_t("r2", HelpReason.NO_PROGRESS, since_ns=20))
    q.push(_t("r1", HelpReason.NO_PROGRESS, since_ns=30, detail="again"))
    assert len(q) == 2
    first = q.ordered()[0]
    assert (first.robot, first.since_ns, first.detail) == ("r1", 10, "again")
    # A new reason replaces the ticket and starts its wait afresh.
    q.push(_t("r1", HelpReason.SLIP, since_ns=40))
    assert [t.robot for t in q.ordered()] == ["r2", "r1"]
    assert q.get("r1") is not None and q.get("r1").since_ns == 40  # type: ignore[union-attr]


def test_pop_next_and_remove() -> None:
    q = HelpQueue()
    assert q.pop_next() is None
    q.push(_t("r1", HelpReason.NO_PROGRESS, since_ns=1))
    q.push(_t("r2", HelpReason.BLOCKED, since_ns=2))
    q.remove("nobody")
    popped = q.pop_next()
    assert popped is not None and popped.robot == "r2"
    assert "r2" not in q and len(q) == 1
    q.remove("r1")
    assert len(q) == 0 and q.ordered() == [] and q.pop_next() is None


_tickets = st.builds(
    HelpTicket,
    robot=st.sampled_from([f"robot{i}" for i in range(1, 7)]),
    reason=st.sampled_from(list(HelpReason)),
    score=st.one_of(st.none(), st.just(math.nan),
                    st.floats(min_value=0.0, max_value=10.0, allow_nan=False)),
    since_ns=st.integers(min_value=0, max_value=10**12),
)


def _expected_before(a: HelpTicket, b: HelpTicket) -> bool:
    """a is served no later than b, by the documented rules alone."""
    if a.reason.priority != b.reason.priority:
        return a.reason.priority > b.reason.priority
    sa = None if a.score is None or math.isnan(a.score) else a.score
    sb = None if b.score is None or math.isnan(b.score) else b.score
    if sa != sb:
        if sa is None or sb is None:
            return sb is None
        return sa > sb
    return a.since_ns <= b.since_ns


@given(st.lists(_tickets, max_size=30))
def test_property_one_ticket_per_robot_in_cur_order(pushes: list[HelpTicket]) -> None:
    q = HelpQueue()
    for t in pushes:
        q.push(t)
    ordered = q.ordered()
    robots = [t.robot for t in ordered]
    assert len(robots) == len(set(robots)) == len(q) == len({t.robot for t in pushes})
    # Each robot's ticket is its last push (the oldest since_ns of its trailing same-reason run).
    for robot in robots:
        mine = [t for t in pushes if t.robot == robot]
        last = mine[-1]
        run_since = [t.since_ns for t in _trailing_same_reason(mine)]
        got = q.get(robot)
        assert got is not None and got.reason is last.reason and got.detail == last.detail
        assert got.since_ns == min(run_since)
    for a, b in itertools.pairwise(ordered):
        assert _expected_before(a, b)


def _trailing_same_reason(mine: list[HelpTicket]) -> list[HelpTicket]:
    run = [mine[-1]]
    for t in reversed(mine[:-1]):
        if t.reason is not mine[-1].reason:
            break
        run.append(t)
    return run


@given(st.lists(_tickets, max_size=20), st.randoms(use_true_random=False))
def test_property_order_is_total_and_independent_of_arrival(pushes: list[HelpTicket],
                                                            rnd: random.Random) -> None:
    # One ticket per robot, pushed in two different orders: the same order out.
    last = {t.robot: t for t in pushes}
    tickets = list(last.values())
    shuffled = list(tickets)
    rnd.shuffle(shuffled)
    a, b = HelpQueue(), HelpQueue()
    for t in tickets:
        a.push(t)
    for t in shuffled:
        b.push(t)
    assert a.ordered() == b.ordered()
    # pop_next drains in exactly the order `ordered` gives.
    drained = []
    while (popped := a.pop_next()) is not None:
        drained.append(popped)
    assert drained == b.ordered() and len(a) == 0


def test_a_request_that_waited_too_long_goes_first_oldest_first() -> None:
    """Aging: strict C.U.R. would serve the new novelty requests before the old no_progress one
    for ever while they keep coming; past max_wait the old one is served first."""
    s = 1_000_000_000
    q = HelpQueue(max_wait_ns=20 * s)
    q.push(_t("stuck", HelpReason.NO_PROGRESS, since_ns=0))
    q.push(_t("unsure", HelpReason.NOVELTY, score=0.9, since_ns=15 * s))
    q.push(_t("blocked", HelpReason.BLOCKED, since_ns=16 * s))
    assert [t.robot for t in q.ordered(now_ns=19 * s)] == ["blocked", "unsure", "stuck"]
    assert [t.robot for t in q.ordered(now_ns=20 * s)] == ["stuck", "blocked", "unsure"]
    assert [t.robot for t in q.ordered()] == ["blocked", "unsure", "stuck"]  # no clock: C.U.R.
    q.push(_t("older_stuck", HelpReason.CLEARANCE, since_ns=-s))
    assert [t.robot for t in q.ordered(now_ns=40 * s)][:2] == ["older_stuck", "stuck"]
    assert q.pop_next(now_ns=40 * s).robot == "older_stuck"  # type: ignore[union-attr]
