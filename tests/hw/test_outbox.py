"""The command outbox the links share: the newest command only, control messages in order and
first, nothing lost without being counted."""

from __future__ import annotations

import threading

from takeover.hw.outbox import CommandOutbox


def test_newest_command_replaces_and_control_goes_first() -> None:
    box: CommandOutbox[str] = CommandOutbox(control_limit=3)
    assert box.empty and box.take(0.0) == ([], None)
    assert box.put_command("v1") is False
    assert box.put_command("v2") is True  # v1 never went out: the caller counts it
    box.put_control("heartbeat")
    box.put_control("estop", first=True)
    assert not box.empty
    assert box.take(0.0) == (["estop", "heartbeat"], "v2")
    assert box.empty


def test_a_full_control_queue_says_it_dropped_the_oldest() -> None:
    box: CommandOutbox[int] = CommandOutbox(control_limit=2)
    assert [box.put_control(i) for i in range(3)] == [False, False, True]
    assert box.take(0.0) == ([1, 2], None)


def test_drop_and_clear() -> None:
    box: CommandOutbox[str] = CommandOutbox(control_limit=4)
    box.put_command("v")
    box.put_control("c")
    box.drop_command()
    assert box.take(0.0) == (["c"], None)
    box.put_command("v")
    box.put_control("c")
    box.clear()
    assert box.empty


def test_take_wakes_on_a_put_from_another_thread() -> None:
    box: CommandOutbox[str] = CommandOutbox(control_limit=4)
    got: list[tuple[list[str], str | None]] = []
    started = threading.Event()

    def writer() -> None:
        started.set()
        got.append(box.take(30.0))  # a bound only: the put below wakes it

    t = threading.Thread(target=writer)
    t.start()
    started.wait()
    box.put_command("v")
    t.join(30.0)
    assert got == [([], "v")]
