"""The serial link over real transports (a pty, a TCP socket) against the simulated firmware.

Timing figures (stop after SIGKILL, reconnect after replug) are deadlines on events that the
issue sets as safety requirements; every wait polls for the event with a deadline.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from _budget import FAST, count
from hypothesis import given, settings
from hypothesis import strategies as st

from takeover.bench.links import run_expert_episode
from takeover.config import SafetyConfig
from takeover.control.arbiter import Arbiter, OperatorEvent, OperatorInput
from takeover.errors import LinkError, UsageError
from takeover.hw.base import LinkOptions, open_link
from takeover.hw.serial import protocol as sp
from takeover.hw.serial.link import SerialLink, parse_serial_url
from takeover.sim.serial_server import SimSerialServer
from takeover.types import Command, Mode


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> float:
    """Poll until predicate() is true; returns the seconds it took. Fails after timeout_s."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.002)
    return time.monotonic() - start


@pytest.fixture
def tcp_server() -> Iterator[SimSerialServer]:
    server = SimSerialServer("tcp", seed=4)
    yield server
    server.close()


@pytest.fixture
def link(tcp_server: SimSerialServer) -> Iterator[SerialLink]:
    link = open_link(tcp_server.url)
    assert isinstance(link, SerialLink)
    link.connect()
    yield link
    link.close()


@pytest.mark.slow
def test_expert_docks_over_socket(link: SerialLink) -> None:
    result = run_expert_episode(link, seed=4)
    assert result.outcome == "docked", result
    health = link.health()
    assert health.connected and health.frames_bad == 0 and health.lost == 0


def test_pty_session_telemetry_heartbeat_and_sim_control() -> None:
    with SimSerialServer("pty", seed=2) as server:
        link = open_link(f"serial://{server.url}?baud=115200")
        assert isinstance(link, SerialLink)
        link.connect()
        try:
            assert link.supports_sim_control
            obs = link.latest()
            assert obs is not None and obs.image is not None and obs.scan_m is not None
            assert obs.image.shape == (96, 96, 3) and obs.scan_m.shape == (180,)
            wait_for(lambda: link.health().rtt_ms is not None, 2.0, "a heartbeat echo")
            link.reset(9)
            got, want = link.dock_pose(), server.base.dock_pose()
            assert (got.x_m, got.y_m, got.yaw_rad) == pytest.approx(
                (want.x_m, want.y_m, want.yaw_rad), abs=1e-3)
            assert server.base.seed == 9
            sent = link.send(Command(0.1234, -0.5))
            assert sent == Command(0.123, -0.5)  # quantised to the wire's mm/s and mrad/s
            wait_for(lambda: server.base.snapshot().target_v_mps == pytest.approx(0.123),
                     2.0, "the command at the base")
            health = link.health()
            assert health.connected and health.frames_ok > 10 and health.frames_bad == 0
            assert "takeover-sim" in health.detail
        finally:
            link.close()
        # close() stopped the base before letting go (its zero, applied at the base's next
        # physics tick; a bounded wait, not a time)
        wait_for(lambda: server.base.snapshot().target_v_mps == 0.0, 10.0, "the zero of close()")


def test_wrong_hello_version_is_one_clear_error_naming_both() -> None:
    with SimSerialServer("tcp", version=3, oldest_version=3) as server:
        link = open_link(server.url)
        with pytest.raises(LinkError) as info:
            link.connect(timeout_s=3.0)
    message = str(info.value)
    assert "v3" in message and f"v{sp.PROTOCOL_VERSION}" in message and "\n" not in message


def test_the_state_carries_the_charge_and_a_version_1_base_still_works() -> None:
    """Version 2's STATE brings the battery current (mA) and power_supply_status; a base that
    speaks only version 1 answers the host's HELLO v2 with v1, and the host falls back to it:
    odometry and flags as before, the charging signals unknown (None)."""
    from dock_support import creep_until_docked, place_at_dock

    with SimSerialServer("tcp", seed=4) as server:
        link = open_link(server.url)
        try:
            link.connect(timeout_s=5.0)
            wait_for(lambda: link.latest() is not None, 5.0, "a STATE")
            obs = link.latest()
            assert obs is not None and obs.battery_current_a is not None
            assert obs.battery_current_a < 0 and obs.power_supply_status == 2  # discharging
            with server.base._lock:
                place_at_dock(server.base.sim)

            creep_until_docked(link)
            wait_for(lambda: link.latest().power_supply_status == 1,  # type: ignore[union-attr]
                     5.0, "power_supply_status CHARGING")
            current = link.latest().battery_current_a  # type: ignore[union-attr]
            assert current is not None and current > 1.0
        finally:
            link.close()
    with SimSerialServer("tcp", seed=4, version=1, oldest_version=1) as old:
        link = open_link(old.url)
        try:
            link.connect(timeout_s=5.0)
            wait_for(lambda: link.latest() is not None, 5.0, "a version-1 STATE")
            obs = link.latest()
            assert obs is not None and "protocol v1" in link.health().detail
            assert obs.battery_current_a is None and obs.power_supply_status is None
            assert link.health().extra.get("malformed", 0) == 0
        finally:
            link.close()


def test_loopback_without_a_base_is_a_clear_error() -> None:
    link = open_link("loop://")
    with pytest.raises(LinkError, match="loopback"):
        link.connect(timeout_s=1.5)


def test_unreachable_port_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    link = open_link(f"socket://127.0.0.1:{port}")
    with pytest.raises(LinkError, match="no answer from the base") as info:
        link.connect(timeout_s=0.5)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("serial://", "names no port"),
        ("serial:///dev/ttyUSB0?baud=fast", "not a number"),
        ("serial:///dev/ttyUSB0?parity=E", "unknown option"),
        ("serial:///dev/ttyUSB0?images=maybe", "yes/no"),
        ("serial:///dev/ttyUSB0?timeout_ms=-5", "positive"),
    ],
)
def test_bad_urls_are_usage_errors(url: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        open_link(url)


def test_sim_control_is_possible_before_connecting_and_known_after(
        tcp_server: SimSerialServer) -> None:
    link = open_link(tcp_server.url)
    assert link.supports_sim_control  # the protocol can carry it; `drive` may plan for it
    link.connect()
    try:
        assert link.supports_sim_control  # and this base said it is a simulator
    finally:
        link.close()


def test_pyserial_urls_keep_their_own_options() -> None:
    config = parse_serial_url("socket://127.0.0.1:5760?logging=debug&timeout_ms=300&images=0")
    assert config.port == "socket://127.0.0.1:5760?logging=debug"
    assert config.rx_timeout_ms == 300 and not config.sim_images


HOST_SCRIPT = """
import sys, time
from takeover.hw.base import open_link
from takeover.types import Command
link = open_link(sys.argv[1]); link.connect()
print("driving", flush=True)
while True:
    link.send(Command(0.3, 0.0)); time.sleep(0.05)
"""


def _start_host(url: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOST_SCRIPT, url], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "driving"
    return proc


def test_sigkill_of_the_host_stops_the_base_on_the_hang_up(tcp_server: SimSerialServer) -> None:
    """The base stops because it saw its host hang up (host_stops), not only through its
    command watchdog: the cause, not a time."""
    base = tcp_server.base
    proc = _start_host(tcp_server.url)
    try:
        wait_for(lambda: base.snapshot().v_mps > 0.2, 10.0, "the base to drive")
        assert base.snapshot().host_stops == 0
        os.kill(proc.pid, signal.SIGKILL)
        wait_for(lambda: base.snapshot().host_stops >= 1, 10.0, "the base to see the hang-up")
        assert base.snapshot().target_v_mps == 0.0
        wait_for(lambda: base.snapshot().v_mps == 0.0, 10.0, "standstill")
    finally:
        proc.kill()
        proc.wait()


def test_frozen_host_is_stopped_by_the_base_watchdog() -> None:
    # SIGSTOP keeps the port open: no hang-up to see, only the command watchdog can act.
    with SimSerialServer("pty", seed=4) as server:
        base = server.base
        proc = _start_host(f"serial://{server.url}")
        try:
            wait_for(lambda: base.snapshot().v_mps > 0.2, 10.0, "the base to drive")
            os.kill(proc.pid, signal.SIGSTOP)
            wait_for(lambda: base.snapshot().watchdog_stopped, 10.0, "the watchdog")
            snap = base.snapshot()
        finally:
            proc.kill()
            proc.wait()
    assert snap.last_command_t_ns is not None and snap.watchdog_tripped_t_ns is not None
    # On the base's own (simulated, fixed-step) clock, so not a wall-clock threshold: the
    # watchdog trips at its first physics tick past 250 ms of silence, never before.
    silence_ms = (snap.watchdog_tripped_t_ns - snap.last_command_t_ns) / 1e6
    assert 250 <= silence_ms <= 300, silence_ms


def _tick(link: SerialLink, arbiter: Arbiter, driving: OperatorInput) -> Mode:
    decision = arbiter.decide(link.now_ns(), link.latest(), link.health().connected, driving,
                              None, 0.05)
    link.send(decision.command)
    return decision.mode


def test_unplug_latches_link_lost_and_motion_resumes_only_after_acknowledge(
        tcp_server: SimSerialServer, link: SerialLink) -> None:
    base = tcp_server.base
    arbiter = Arbiter(SafetyConfig())
    driving = OperatorInput(deadman=True, command=Command(0.2, 0.0), deflection=0.5)
    arbiter.handle(OperatorEvent.MANUAL)

    def drive_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
        def tick_and_check() -> bool:
            _tick(link, arbiter, driving)
            time.sleep(0.02)
            return predicate()
        return wait_for(tick_and_check, timeout_s, what)

    drive_until(lambda: base.snapshot().target_v_mps > 0.1, 5.0, "manual driving")
    tcp_server.unplug()
    drive_until(lambda: arbiter.mode is Mode.LINK_LOST, 10.0, "LINK_LOST")
    assert not link.health().connected
    for _ in range(10):  # the operator keeps pushing the stick: nothing moves
        assert _tick(link, arbiter, driving) is Mode.LINK_LOST
        time.sleep(0.02)
    assert base.snapshot().target_v_mps == 0.0
    tcp_server.replug()
    wait_for(lambda: link.health().connected, 10.0, "reconnection")
    received = tcp_server.firmware.commands_received
    for _ in range(5):  # reconnected, but still latched until the operator acknowledges
        assert _tick(link, arbiter, driving) is Mode.LINK_LOST
        time.sleep(0.02)
    # Those ticks' commands reached the base and its wheels: all of them zero.
    wait_for(lambda: tcp_server.firmware.commands_received >= received + 5, 10.0, "the commands")
    t_ns = base.snapshot().t_ns
    wait_for(lambda: base.snapshot().t_ns > t_ns + 20_000_000, 10.0, "two physics ticks")
    assert base.snapshot().target_v_mps == 0.0
    arbiter.handle(OperatorEvent.ACKNOWLEDGE)
    drive_until(lambda: arbiter.mode is Mode.IDLE, 10.0, "acknowledged")
    arbiter.handle(OperatorEvent.MANUAL)
    drive_until(lambda: base.snapshot().target_v_mps > 0.1, 5.0, "motion after acknowledge")
    assert link.health().extra["reconnects"] >= 1


def test_estop_stays_latched_across_unplug_and_base_reboot(tcp_server: SimSerialServer,
                                                           link: SerialLink) -> None:
    link.estop()
    wait_for(lambda: tcp_server.base.estop, 2.0, "the base's e-stop")
    tcp_server.unplug()
    wait_for(lambda: not link.health().connected, 1.0, "disconnection")
    tcp_server.replug()
    wait_for(lambda: link.health().connected, 3.0, "reconnection")
    assert tcp_server.base.estop
    received = tcp_server.firmware.commands_received
    assert link.send(Command(0.3, 0.0)) == Command()  # the link itself sends zero while latched
    wait_for(lambda: tcp_server.firmware.commands_received > received, 10.0, "the command")
    t_ns = tcp_server.base.snapshot().t_ns
    wait_for(lambda: tcp_server.base.snapshot().t_ns > t_ns + 20_000_000, 10.0, "two physics ticks")
    assert tcp_server.base.snapshot().target_v_mps == 0.0
    obs = link.latest()
    assert obs is not None and obs.estop
    # The base reboots (a new firmware with no latch): the link latches it again at once.
    port = tcp_server.transport.port
    tcp_server.close()
    with SimSerialServer("tcp", port=port, seed=4) as rebooted:
        assert not rebooted.base.estop
        wait_for(lambda: rebooted.base.estop, 3.0, "the link to re-latch the new base")
        link.clear_estop()
        wait_for(lambda: not rebooted.base.estop, 2.0, "release after acknowledgement")

        def moving() -> bool:
            link.send(Command(0.2, 0.0))
            time.sleep(0.02)
            return rebooted.base.snapshot().target_v_mps > 0.1

        wait_for(moving, 3.0, "motion after release")


def test_pty_unplug_and_replug_behind_a_stable_path(tmp_path: Path) -> None:
    # Like a USB adapter behind /dev/serial/by-id/...: the device goes away and comes back
    # under a new /dev/pts/N, and the symlink follows it.
    stable = tmp_path / "robot-tty"
    with SimSerialServer("pty", seed=4, link_path=str(stable)) as server:
        link = open_link(f"serial://{stable}")
        link.connect()
        try:
            link.estop()
            wait_for(lambda: server.base.estop, 2.0, "the base's e-stop")
            server.unplug()
            wait_for(lambda: not link.health().connected, 10.0, "disconnection")
            server.replug()  # a new pty (the kernel may give it the same number)
            wait_for(lambda: link.health().connected, 10.0, "reconnection")
            assert server.base.estop  # the base kept its latch; the host did not clear it
            wait_for(lambda: (obs := link.latest()) is not None and obs.estop
                     and obs.t_ns > time.monotonic_ns() - 100_000_000, 2.0, "a fresh e-stopped state")
            assert link.health().extra["reconnects"] >= 1
        finally:
            link.close()


def _hostile_base(listener: socket.socket, stop: threading.Event) -> None:
    """A 'base' that answers HELLO and then mixes valid STATE frames with every kind of junk."""
    conn, _ = listener.accept()
    rng = random.Random(7)
    decoder = sp.FrameDecoder()
    with conn:
        conn.settimeout(2.0)
        while True:  # wait for the HELLO
            frames = list(decoder.feed(conn.recv(4096)))
            hello = next((f for f in frames if f.msg_id == sp.MsgId.HELLO), None)
            if hello is not None:
                break
        nonce = sp.Hello.unpack(hello.payload).nonce
        conn.sendall(sp.encode_message(sp.HelloAck(nonce=nonce, name=b"hostile"), 0))
        seq = 1
        while not stop.is_set():
            good = sp.encode_message(sp.State(t_ms=seq, x_mm=seq), seq)
            seq += 1
            kind = rng.randrange(6)
            if kind == 0:
                junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
            elif kind == 1:  # truncated
                junk = good[: rng.randrange(1, len(good) - 1)] + b"\x00"
            elif kind == 2:  # corrupted
                bad = bytearray(good)
                bad[rng.randrange(len(bad) - 1)] ^= 1 + rng.randrange(255)
                junk = bytes(bad)
            elif kind == 3:  # oversized
                junk = bytes([0x41]) * (sp.MAX_ENCODED + rng.randrange(1, 500)) + b"\x00"
            elif kind == 4:  # valid frame, nonsense message
                junk = sp.encode_frame(rng.choice([0x82, 0x83, 0xE1, 0x99, 0x02]), seq,
                                       bytes(rng.randrange(256) for _ in range(rng.randrange(40))))
            else:
                junk = b""
            try:
                conn.sendall(junk + good)
            except OSError:
                return
            time.sleep(0.002)


def test_hostile_base_over_tcp_is_counted_and_the_link_keeps_working() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()
    thread = threading.Thread(target=_hostile_base, args=(listener, stop), daemon=True)
    thread.start()
    link = open_link(f"socket://127.0.0.1:{listener.getsockname()[1]}?images=0")
    try:
        link.connect(timeout_s=3.0)
        # Both counted, whatever the junk's mix (one junk burst can hold several bad frames).
        wait_for(lambda: link.health().frames_bad > 200 and link.health().frames_ok > 200,
                 20.0, "junk and good frames to be counted")
        health = link.health()
        obs = link.latest()
        assert health.connected and obs is not None
        assert health.extra["crc_errors"] > 0 and health.extra["oversized"] > 0
        assert health.extra["malformed"] + health.extra["unknown_messages"] > 0
        assert not link.supports_sim_control
        with pytest.raises(UsageError, match="not a simulator"):
            link.reset(1)
    finally:
        stop.set()
        link.close()
        listener.close()
        thread.join(2.0)


# --- property test on the link's own receive path --------------------------------------------

u16 = st.integers(0, 0xFFFF)
i16 = st.integers(-0x8000, 0x7FFF)
u32 = st.integers(0, 0xFFFFFFFF)
i32 = st.integers(-(2**31), 2**31 - 1)


@st.composite
def sim_images(draw: st.DrawFn) -> sp.SimImage:
    width = draw(st.integers(0, 40))
    rows = draw(st.integers(0, 8)) if width else draw(st.integers(0, 3))
    data = draw(st.binary(min_size=width * rows * 3, max_size=width * rows * 3))
    return sp.SimImage(draw(u16), width, draw(st.integers(0, 3000)), draw(st.integers(0, 100)),
                       rows, 0, data)


base_messages = st.one_of(
    st.builds(sp.State, u32, i32, i32, i32, i16, i16, u16, u16, u16, i32, st.integers(0, 255)),
    st.builds(sp.StateV1, u32, i32, i32, i32, i16, i16, u16, u16, u16),
    st.builds(sp.Scan, st.integers(0, 3), st.integers(0, 1200), st.integers(0, 1200),
              st.lists(u16, max_size=200).map(tuple)),
    sim_images(),
    st.builds(sp.HelloAck, u16, u32, u16, u16, st.integers(0, 255), st.integers(0, 255),
              st.binary(max_size=16)),
    st.builds(sp.HeartbeatAck, u32, u32),
    st.builds(sp.Error, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=64)),
    st.builds(sp.SimDockPose, u32, i32, i32, i32),
    st.builds(sp.CmdVel, i16, i16),  # a host message coming back: a loopback
)


@st.composite
def wire_chunks(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=400))
    message = draw(base_messages)
    wire = bytearray(sp.encode_message(message, draw(u16)))
    if kind == 1:  # corrupted
        wire[draw(st.integers(0, len(wire) - 1))] ^= draw(st.integers(1, 255))
    elif kind == 2:  # truncated
        wire = wire[: draw(st.integers(0, len(wire) - 1))] + b"\x00"
    return bytes(wire)


@pytest.mark.slow
@settings(FAST, max_examples=2_000)
@given(st.lists(wire_chunks(), min_size=1, max_size=10))
def test_serial_link_receive_never_raises_and_keeps_working(chunks: list[bytes]) -> None:
    count("serial_link_receive", len(chunks))
    link = SerialLink("socket://x:1", parse_serial_url("socket://x:1"), LinkOptions())
    link._capabilities = int(sp.Capability.LIDAR)
    for chunk in chunks:
        link._receive(chunk)
    frames_ok = link.health().frames_ok
    # Whatever came before, a delimiter and one good frame are decoded as exactly one frame.
    link._receive(b"\x00" + sp.encode_message(sp.State(t_ms=1, x_mm=1234, flags=0x10), 0))
    assert link.health().frames_ok == frames_ok + 1
    obs = link.latest()
    assert obs is not None and obs.odom.x_m == pytest.approx(1.234)
    if obs.image is not None:
        assert obs.image.ndim == 3 and obs.image.dtype == np.uint8


def test_probe_names_the_charging_signals_and_warns_when_a_base_has_none() -> None:
    from takeover.hw.probe import probe

    with SimSerialServer("tcp", seed=4) as server:
        report = probe(server.url, window_s=0.5)
    (battery,) = [o for o in report.offers if o.name == "battery"]
    assert "current" in battery.detail and "discharging" in battery.detail
    assert not any("battery current" in w for w in report.warnings)
    with SimSerialServer("tcp", seed=4, version=1, oldest_version=1) as old:
        report = probe(old.url, window_s=0.5)
    assert any("neither a battery current nor a power_supply_status" in w
               for w in report.warnings), report.warnings
