"""The control loop with the real simulator link, on its own thread and in lockstep."""

from __future__ import annotations

import threading
import time

import pytest

from takeover.config import SafetyConfig
from takeover.control.arbiter import Arbiter, OperatorEvent
from takeover.control.loop import ControlLoop, SinkQueue
from takeover.inputs.scripted import DeadmanHolder, ScriptedOperator
from takeover.sim.expert import DockingExpert
from takeover.sim.link import RealtimeSimLink, SimLink
from takeover.types import Command, CommandSource, Mode, Observation


def wait_for(pred, timeout_s: float = 3.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return False


def speed(link: RealtimeSimLink) -> float:
    """Measured forward speed from the base's odometry (noise ~3 mm/s)."""
    obs = link.latest()
    return 0.0 if obs is None else abs(obs.odom.v_mps)


def moving(link: RealtimeSimLink) -> bool:
    obs = link.latest()
    return obs is not None and (abs(obs.odom.v_mps) > 0.05 or abs(obs.odom.w_radps) > 0.1)


@pytest.fixture
def realtime_link():  # type: ignore[no-untyped-def]
    link = RealtimeSimLink("sim://", seed=3)
    link.connect()
    yield link
    link.close()


def test_realtime_loop_drives_and_records(realtime_link: RealtimeSimLink) -> None:
    expert = DockingExpert(realtime_link.dock_pose())
    sink = SinkQueue()
    loop = ControlLoop(realtime_link, Arbiter(SafetyConfig()), ScriptedOperator(expert.command),
                       rate_hz=50, sinks=[sink])
    loop.start()
    loop.post(OperatorEvent.MANUAL)
    try:
        assert wait_for(lambda: moving(realtime_link))
    finally:
        loop.stop()
    records = []
    while (r := sink.get(timeout_s=0)) is not None:
        records.append(r)
    assert [r.step for r in records] == list(range(len(records)))
    manual = [r for r in records if r.mode is Mode.MANUAL]
    assert manual and all(r.source is CommandSource.HUMAN and r.action_mode == -1 for r in manual)
    assert all(r.observation is not None and r.observation.image is not None for r in manual)
    assert loop.stats.ticks == len(records)


def test_estop_from_another_thread_stops_base_and_latches(realtime_link: RealtimeSimLink) -> None:
    loop = ControlLoop(realtime_link, Arbiter(SafetyConfig()),
                       ScriptedOperator(lambda odom: Command(0.3, 0.0)), rate_hz=50)
    loop.start()
    loop.post(OperatorEvent.MANUAL)
    try:
        assert wait_for(lambda: speed(realtime_link) > 0.2)
        threading.Thread(target=loop.post, args=(OperatorEvent.ESTOP,)).start()
        assert wait_for(lambda: speed(realtime_link) < 0.02)
        assert loop.latest is not None and loop.latest.mode is Mode.ESTOP
        loop.post(OperatorEvent.MANUAL)  # refused while latched
        time.sleep(0.2)  # let several ticks pass: nothing may restart motion
        assert speed(realtime_link) < 0.02 and loop.arbiter.mode is Mode.ESTOP
        loop.post(OperatorEvent.ACKNOWLEDGE)
        assert wait_for(lambda: loop.arbiter.mode is Mode.IDLE)
        assert speed(realtime_link) < 0.02
    finally:
        loop.stop()


def test_link_loss_latches_link_lost(realtime_link: RealtimeSimLink) -> None:
    loop = ControlLoop(realtime_link, Arbiter(SafetyConfig()),
                       ScriptedOperator(lambda odom: Command(0.2, 0.0)), rate_hz=50)
    loop.start()
    loop.post(OperatorEvent.MANUAL)
    try:
        assert wait_for(lambda: loop.arbiter.mode is Mode.MANUAL)
        realtime_link.close()  # the simulator process ends: the link is down
        assert wait_for(lambda: loop.arbiter.mode is Mode.LINK_LOST)
        assert loop.latest is not None and loop.latest.command == Command(0, 0)
    finally:
        loop.stop(send_zero=False)


def test_subscriber_that_never_reads_cannot_stall_the_loop(realtime_link: RealtimeSimLink) -> None:
    sink = SinkQueue(maxsize=4)  # nobody ever reads it: it fills, then drops
    loop = ControlLoop(realtime_link, Arbiter(SafetyConfig()), rate_hz=50, sinks=[sink])
    loop.start()
    try:
        assert wait_for(lambda: loop.stats.ticks >= 25)
    finally:
        loop.stop()
    assert sink.dropped >= 20 and sink.dropped == loop.stats.ticks - 4


class ExplodingPolicy:
    def propose(self, obs: Observation) -> Command | None:
        raise RuntimeError("model crashed")

    def drop_queued_actions(self) -> None: ...

    def reset(self) -> None: ...


def test_fault_inside_a_tick_stops_the_robot(realtime_link: RealtimeSimLink) -> None:
    loop = ControlLoop(realtime_link, Arbiter(SafetyConfig()), DeadmanHolder(),
                       policy=ExplodingPolicy(), rate_hz=50)
    loop.start()
    assert wait_for(lambda: not loop.running)
    assert isinstance(loop.loop_error, RuntimeError)
    assert loop.arbiter.mode is Mode.ESTOP and "model crashed" in loop.arbiter.reason


class ConstantPolicy:
    def __init__(self) -> None:
        self.dropped = 0

    def propose(self, obs: Observation) -> Command | None:
        return Command(0.2, 0.0)

    def drop_queued_actions(self) -> None:
        self.dropped += 1

    def reset(self) -> None: ...


def test_lockstep_takeover_drops_the_policy_queue() -> None:
    link = SimLink("sim://?fast=1", seed=4)
    link.connect()
    policy = ConstantPolicy()

    class Grab:
        def __init__(self) -> None:
            self.deflection = 0.0

        def read(self, obs: Observation | None, now_ns: int):  # type: ignore[no-untyped-def]
            from takeover.control.arbiter import OperatorInput
            return OperatorInput(deadman=True, command=Command(0.0, 0.4),
                                 deflection=self.deflection)

    grab = Grab()
    loop = ControlLoop(link, Arbiter(SafetyConfig(), policy_available=True), grab, policy)
    loop.post(OperatorEvent.AUTO)
    recs = [loop.tick() for _ in range(10)]
    assert all(r.mode is Mode.AUTO and r.source is CommandSource.POLICY for r in recs[1:])
    grab.deflection = 0.8
    r = loop.tick()
    assert r.mode is Mode.TAKEOVER and policy.dropped == 1
    assert r.policy_action == Command(0.2, 0.0), "the proposal is recorded while the human drives"
    assert r.human_action == Command(0.0, 0.4) and r.action_mode == 1
    assert link.sim.t_ns == 11 * 50_000_000, "lockstep: one period per tick"
    link.close()
