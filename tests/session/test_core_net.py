"""The control core over the network (session/core_net.py): a real core on 127.0.0.1 behind
real TLS with a certificate made here, a real simulated robot behind it, real WebSocket
clients. Who may drive (token, one holder), what happens when the holder goes (the robot
stops, the e-stop latches, the episode is saved as aborted), and what a hostile frame does
(nothing)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import random
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from core_hooks import StepLog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tui_support import wait_for as tui_wait_for
from waiting import wait_for
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from takeover.config import Config, KeyboardConfig, SafetyConfig
from takeover.control.arbiter import OperatorEvent
from takeover.errors import UsageError
from takeover.recorder.store import EpisodeStore
from takeover.session.core_net import (
    TOKEN_ENV,
    CoreServer,
    NetworkSession,
    ServeSpec,
    add_operator,
    load_tokens,
    parse_core_url,
)
from takeover.session.core_process import CoreError
from takeover.session.operator import ModelRef
from takeover.tui.app import TakeoverApp
from takeover.types import CommandSource, Mode, StepRecord
from takeover.workspace.layout import init_workspace

WAIT_S = 30.0  # a bound on each wait, never a figure under test


def make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Site:
    """A robot's computer: its certificate, its operators' tokens, its workspace."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cert, self.key = make_cert(root, "robot-07")
        self.tokens = root / "tokens.json"
        self.token_files: dict[str, Path] = {}
        for name in ("alice", "bob"):
            path = root / f"{name}.token"
            path.write_text(add_operator(self.tokens, name) + "\n")
            self.token_files[name] = path
        self.workspace = init_workspace(root / "ws")

    def url(self, port: int, operator: str = "alice", ca: Path | None = None) -> str:
        return (f"core+wss://127.0.0.1:{port}?token_file={self.token_files[operator]}"
                f"&ca={ca or self.cert}")


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


@pytest.fixture
def net_config() -> Config:
    # A loaded 2-core machine delays key presses and observations: hold keys longer, and
    # allow a late observation (freshness is the Arbiter's rule, tested in tests/control).
    return Config(keyboard=KeyboardConfig(initial_hold_ms=1500.0, repeat_hold_ms=1000.0),
                  safety=SafetyConfig(obs_freshness_ms=2000.0))


@pytest.fixture
def core(site: Site, net_config: Config) -> Iterator[CoreServer]:
    server = CoreServer(ServeSpec(config=net_config, robot_url="sim://?seed=3", host="127.0.0.1",
                                  port=0, tokens=site.tokens, tls_cert=site.cert,
                                  tls_key=site.key, workspace=site.workspace, name="robot-07"))
    server.start()
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture
def wire_log(core: CoreServer) -> ModeLog:
    """Every command the core's loop sent to the robot, and its mode, by step."""
    log = ModeLog()
    core.session.loop.sinks.append(log)
    return log


class ModeLog(StepLog):
    """StepLog with each tick's mode."""

    def __init__(self) -> None:
        super().__init__()
        self.modes: list[Mode] = []

    def offer(self, record: StepRecord) -> bool:
        with self.lock:
            self.rows.append((record.step, record.command))
            self.modes.append(record.mode)
        return True


def sent(log: StepLog) -> list[tuple[int, float, float]]:
    with log.lock:
        return [(step, c.v_mps, c.w_radps) for step, c in log.rows]


def connect(config: Config, url: str) -> NetworkSession:
    session = NetworkSession(config, url)
    session.open()
    return session


def drive_forward(session: NetworkSession) -> None:
    """MANUAL, then the up arrow until the robot's own loop sends a forward command."""
    session.post(OperatorEvent.MANUAL)

    def moving() -> bool:
        session.press_key("up")
        rec = session.poll().record
        return rec is not None and rec.command.v_mps > 0 and rec.source is CommandSource.HUMAN

    wait_for(moving, WAIT_S, "the robot driven forward over the network")


def latched_and_still(log: ModeLog, after_step: int) -> bool:
    """From the first tick latched after `after_step` on: every command zero, still latched
    (at least 3 ticks of it)."""
    with log.lock:
        rows = [(s, c, m) for (s, c), m in zip(log.rows, log.modes, strict=True) if s > after_step]
    first = next((i for i, (_, _, m) in enumerate(rows) if m is Mode.ESTOP), None)
    if first is None or len(rows) - first < 3:
        return False
    return all(c.is_zero and m is Mode.ESTOP for _, c, m in rows[first:])


def test_an_operator_drives_and_records_over_tls(core: CoreServer, site: Site,
                                                 net_config: Config, wire_log: ModeLog) -> None:
    alice = connect(net_config, site.url(core.port))
    try:
        assert alice.operator == "alice" and alice.robot == "robot-07"
        assert core.holder == "alice"
        wait_for(lambda: alice.poll().record is not None, WAIT_S, "a snapshot")
        assert alice.dock_pose() is not None  # a call with an answer
        assert alice.begin_episode().startswith("recording")
        assert alice.episode.recording  # the reply carries the episode state
        drive_forward(alice)
        assert any(v > 0 for _, v, _ in sent(wire_log)), "the robot's loop never sent motion"
        wait_for(lambda: alice.recent_timing() is not None, WAIT_S, "the loop timing")
        assert alice.end_episode("success").startswith("episode ended")
        path = alice.wait_saved()
        assert path is not None and path.parent.name == "r000"
        assert path.is_file()  # here the robot's computer is this one
        info = EpisodeStore(site.workspace).episodes()[0]
        assert info.outcome == "success" and info.demo_steps > 0
    finally:
        alice.close()
    # Leaving is a lost operator too: the robot stops and the e-stop latches.
    wait_for(lambda: core.holder is None and core.session.mode is Mode.ESTOP, WAIT_S,
             "the core to stop the robot after the operator left")


def test_an_unauthenticated_or_wrong_token_client_is_refused(core: CoreServer, site: Site,
                                                            net_config: Config,
                                                            wire_log: ModeLog) -> None:
    context = ssl.create_default_context(cafile=str(site.cert))
    uri = f"wss://127.0.0.1:{core.port}/"
    for headers in (None, Headers(Authorization="Bearer not-a-token"),
                    Headers(Authorization="Basic YWxpY2U6cHc=")):
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(uri, ssl=context, proxy=None, additional_headers=headers,
                       open_timeout=WAIT_S)  # a bound for a busy machine, not a figure
        assert refused.value.response.status_code == 401
    wrong = site.root / "wrong.token"
    wrong.write_text("x" * 43)
    session = NetworkSession(net_config, f"core+wss://127.0.0.1:{core.port}?token_file={wrong}"
                             f"&ca={site.cert}")
    with pytest.raises(CoreError, match="HTTP 401"):
        session.open()
    session.post(OperatorEvent.MANUAL)  # not connected: goes nowhere
    assert core.holder is None
    wait_for(lambda: len(sent(wire_log)) > 10, WAIT_S, "ticks")
    assert all(v == 0.0 and w == 0.0 for _, v, w in sent(wire_log)), "the robot moved"
    assert core.session.mode is Mode.IDLE and not core.session.episode.recording


def test_the_client_refuses_a_core_whose_certificate_it_does_not_trust(
        core: CoreServer, site: Site, net_config: Config, tmp_path: Path) -> None:
    other, _ = make_cert(tmp_path, "someone-else")
    for url in (site.url(core.port, ca=other),
                f"core+wss://127.0.0.1:{core.port}?token_file={site.token_files['alice']}"):
        session = NetworkSession(net_config, url)  # the second: the system's CAs only
        with pytest.raises(CoreError, match="not trusted"):
            session.open()
    assert core.holder is None


def test_a_second_operator_is_refused_and_takes_over_once_the_first_is_gone(
        core: CoreServer, site: Site, net_config: Config, wire_log: ModeLog) -> None:
    alice = connect(net_config, site.url(core.port, "alice"))
    bob = NetworkSession(net_config, site.url(core.port, "bob"))
    try:
        with pytest.raises(CoreError, match=r"held by operator alice since .* \(HTTP 409\)"):
            bob.open()
        assert alice.begin_episode().startswith("recording")
        drive_forward(alice)
        # The terminal dies with the robot moving: the TCP connection drops without a word.
        assert alice._conn is not None
        cut_at = sent(wire_log)[-1][0]
        alice._conn.socket.shutdown(2)
        wait_for(lambda: latched_and_still(wire_log, cut_at), WAIT_S,
                 "the robot stopped and latched after the operator's connection dropped")
        wait_for(lambda: core.holder is None, WAIT_S, "the robot released")
        (info,) = EpisodeStore(site.workspace).episodes()
        assert info.outcome == "aborted" and not info.partial
        bob.open()
        assert core.holder == "bob"
        wait_for(lambda: bob.poll().mode is Mode.ESTOP, WAIT_S, "bob sees the latched stop")
        bob.post(OperatorEvent.MANUAL)  # refused while latched: nothing moves
        bob.post(OperatorEvent.ACKNOWLEDGE)
        wait_for(lambda: bob.poll().mode is Mode.IDLE, WAIT_S, "acknowledged")
    finally:
        alice.close()
        bob.close()


def test_a_silent_terminal_stops_the_robot(core: CoreServer, site: Site, net_config: Config,
                                           wire_log: ModeLog) -> None:
    """The connection stays open but the terminal hangs: no heartbeat, no message."""
    alice = connect(net_config, site.url(core.port))
    try:
        drive_forward(alice)
        moving_at = sent(wire_log)[-1][0]
        alice._stop.set()  # the heartbeat thread ends; the socket stays up
        wait_for(lambda: latched_and_still(wire_log, moving_at), WAIT_S,
                 "the robot stopped after the heartbeat stopped")
        wait_for(lambda: core.holder is None, WAIT_S, "the robot released")
    finally:
        alice.close()


def test_malformed_frames_from_an_operator_never_crash_the_core(
        core: CoreServer, site: Site, net_config: Config, wire_log: ModeLog) -> None:
    alice = connect(net_config, site.url(core.port))
    try:
        rng = random.Random(18)
        frames: list[str | bytes] = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
                                     for _ in range(30)]
        frames += [
            "", "null", "[]", "{}", '{"k": 5}', '{"k": "shell"}', "NaN", "[" * 5000,
            '{"k": "cast", "m": "post", "a": [{"$e": "OperatorEvent", "n": "__class__"}]}',
            '{"k": "cast", "m": "post", "a": [{"$t": "subprocess.Popen", "args": ["sh"]}]}',
            '{"k": "cast", "m": "post", "a": [{"$e": "Mode", "n": "AUTO"}]}',
            '{"k": "cast", "m": "exec", "a": []}', '{"k": "cast", "m": "key", "a": [1]}',
            '{"k": "call", "id": 9001, "m": "run", "a": ["os.system", "touch /tmp/pwned"]}',
            '{"k": "call", "id": "x", "m": "begin_episode", "a": []}',
            '{"k": "call", "id": 9002, "m": "label", "a": [7]}',
            '{"k": "call", "id": 9003, "m": "deploy", "a": [{"$t": "ModelRef", "model_id": "r9", '
            '"onnx": {"$p": "/etc/passwd"}}]}',
            '{"k": "call", "id": 9004, "m": "reset_world", "a": [true]}',
            '{"k": "hb", "x": {"$a": "AAAA", "dt": "uint8", "sh": [100000, 100000, 3]}}',
            '{"k": "hb", "x": {"$a": "AAAA", "dt": "object", "sh": [1]}}',
            json.dumps({"k": "hb", "pad": "x" * 2_000_000}),
        ]
        for frame in frames:
            alice.send_raw(frame)
        wait_for(lambda: core.bad_messages >= 40, WAIT_S, "the core to answer each bad frame")
        # Still serving, still the same operator, the robot never moved.
        assert alice.begin_episode().startswith("recording")
        assert not alice.lost and core.holder == "alice"
        assert all(v == 0.0 and w == 0.0 for _, v, w in sent(wire_log))
        assert core.session.model is None
        with pytest.raises(CoreError, match="not one of this robot's models"):
            alice.deploy(ModelRef("r9", Path("/etc/passwd")))
    finally:
        alice.close()


def test_core_urls_are_checked_with_one_line(site: Site, tmp_path: Path) -> None:
    token_file = site.token_files["alice"]
    bad = {
        "core+wss://robot-07": "HOST:PORT",
        "core+wss://127.0.0.1:7443?token_file=/nonexistent": "token_file",
        f"core+wss://127.0.0.1:7443?token_file={token_file}&ca=/nonexistent": "no such file",
        f"core+wss://127.0.0.1:7443?token_file={token_file}&cert=x": "cert",
        f"core+ws://10.0.0.7:7443?token_file={token_file}": "127.0.0.1",
        "core+wss://alice:secret@robot-07:7443": "no token in the URL",
        "core+wss://robot-07:7443": TOKEN_ENV,
    }
    for url, words in bad.items():
        with pytest.raises(UsageError, match=words):
            parse_core_url(url, environ={})
    assert parse_core_url("core+wss://robot-07:7443", environ={TOKEN_ENV: "t0k"}).token == "t0k"


def test_token_file_keeps_only_hashes_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = add_operator(path, "carol")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert token not in path.read_text() and load_tokens(path)["carol"].startswith("sha256:")
    with pytest.raises(UsageError, match="already has a token"):
        add_operator(path, "carol")
    assert add_operator(path, "carol", replace_existing=True) != token


def test_core_serve_cli_stops_the_robot_and_saves_the_episode_on_sigterm(
        site: Site, net_config: Config) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "takeover.cli", "core", "serve", "--robot", "sim://?seed=4",
         "--listen", "127.0.0.1:0", "--tls-cert", str(site.cert), "--tls-key", str(site.key),
         "--tokens", str(site.tokens), "--workspace", str(site.workspace), "--name", "robot-07"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    alice: NetworkSession | None = None
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("core for robot-07 on wss://127.0.0.1:"), line
        port = int(line.split("wss://127.0.0.1:")[1].split()[0])
        alice = connect(net_config, site.url(port))
        assert alice.begin_episode().startswith("recording")
        drive_forward(alice)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        wait_for(lambda: bool(alice and alice.lost), WAIT_S, "the terminal to see the core go")
    finally:
        if alice is not None:
            alice.close()
        if server.poll() is None:
            server.kill()
            server.wait()
    (info,) = EpisodeStore(site.workspace).episodes()
    assert info.outcome == "aborted" and not info.partial


def test_core_cli_refuses_bad_input_with_one_line(site: Site, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "takeover.cli", "core", *args],
                              capture_output=True, text=True, timeout=60)

    cases = [
        (("serve", "--listen", "127.0.0.1:0", "--tokens", str(site.tokens)), "TLS"),
        (("serve", "--listen", "0.0.0.0:0", "--tokens", str(site.tokens), "--insecure-localhost"),
         "loopback"),
        (("serve", "--listen", "nohost", "--tokens", str(site.tokens), "--tls-cert",
          str(site.cert), "--tls-key", str(site.key)), "HOST:PORT"),
        (("serve", "--listen", "127.0.0.1:0", "--tokens", str(tmp_path / "none.json"),
          "--tls-cert", str(site.cert), "--tls-key", str(site.key)), "no such file"),
        (("serve", "--listen", "127.0.0.1:0", "--tokens", str(site.tokens),
          "--tls-cert", str(site.key), "--tls-key", str(site.cert)), "TLS"),
        (("token", " ", "--tokens", str(site.tokens)), "operator name"),
    ]
    for args, words in cases:
        done = run(*args)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (args, done.stderr)
    done = run("token", "dave", "--tokens", str(site.tokens))
    assert done.returncode == 0 and len(done.stdout.strip()) >= 40
    assert "dave" in load_tokens(site.tokens)


def test_a_core_on_plain_ws_only_on_loopback(site: Site, net_config: Config) -> None:
    with pytest.raises(UsageError, match="loopback"):
        CoreServer(ServeSpec(config=net_config, robot_url="sim://", host="0.0.0.0", port=0,
                             tokens=site.tokens, insecure_localhost=True))
    server = CoreServer(ServeSpec(config=net_config, robot_url="sim://", host="127.0.0.1",
                                  port=0, tokens=site.tokens, insecure_localhost=True))
    server.start()
    try:
        session = NetworkSession(net_config, f"core+ws://127.0.0.1:{server.port}?token_file="
                                 f"{site.token_files['bob']}")
        session.open()
        assert server.holder == "bob"
        session.close()
        stopped = threading.Event()
        wait_for(lambda: server.holder is None or stopped.is_set(), WAIT_S, "released")
    finally:
        server.shutdown()


async def test_the_operators_terminal_drives_through_a_network_core(
        core: CoreServer, site: Site, net_config: Config, wire_log: ModeLog) -> None:
    """The TUI as it is, with a NetworkSession in place of the local core's RemoteSession."""
    app = TakeoverApp(NetworkSession(net_config, site.url(core.port)))
    async with app.run_test(size=(140, 44)) as pilot:
        await tui_wait_for(pilot, lambda: app.connected and app.session.poll().record is not None,
                           what="the network core")
        assert core.holder == "alice"
        await pilot.press("m")
        for _ in range(200):
            await pilot.press("up")
            rec = app.session.poll().record
            if rec is not None and rec.command.v_mps > 0:
                break
        assert any(v > 0 for _, v, _ in sent(wire_log)), "the robot never moved"
        moving_at = sent(wire_log)[-1][0]
        await pilot.press("space")
        await tui_wait_for(pilot, lambda: latched_and_still(wire_log, moving_at),
                           what="the e-stop on the robot's computer")
        await pilot.press("ctrl+q")
    wait_for(lambda: core.holder is None, WAIT_S, "the robot released when the terminal quit")


async def press_until(pilot: Any, key: str, done: Callable[[], bool]) -> bool:
    """Press `key` (a held arrow repeats) until `done`, for at most WAIT_S: a busy machine
    delays the cores' answers, never a figure under test."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        await pilot.press(key)
        if done():
            return True
        await asyncio.sleep(0.05)
    return done()


async def focus_on(pilot: Any, app: Any, name: str) -> None:
    """On the fleet screen: move the cursor to `name`'s row (rows are ordered by need, which
    changes as the robots do) and press enter (focus it, open its drive screen)."""
    from takeover.tui.fleet import FleetScreen

    screen = app.screen
    assert isinstance(screen, FleetScreen)
    for key in ("down", "up"):  # the cursor does not wrap round
        for _ in range(len(app.fleet.names)):
            if screen.selected() == name:
                break
            await pilot.press(key)
    assert screen.selected() == name
    await pilot.press("enter")
    assert app.fleet.focused == name


async def test_a_fleet_with_a_network_core_moves_only_the_focused_robot(
        core: CoreServer, site: Site, net_config: Config, wire_log: ModeLog) -> None:
    """`takeover run --robot here=sim:// --robot there=core+wss://...`: a local core and a core
    on another computer in one fleet. The driving keys reach the focused robot only, and space
    stops both (the network robot latched and still from its next ticks on)."""
    from takeover.session.core_process import CoreSpec
    from takeover.session.fleet import Fleet, FleetRobot
    from takeover.tui.app import make_app

    fleet = Fleet([FleetRobot("here", CoreSpec(net_config, "sim://?seed=4", use_gamepad=False)),
                   FleetRobot("there", CoreSpec(net_config, site.url(core.port)))])
    here, there = fleet.sessions["here"], fleet.sessions["there"]
    assert isinstance(there, NetworkSession)
    app = make_app(net_config, fleet)
    async with app.run_test(size=(140, 36)) as pilot:
        await tui_wait_for(pilot, lambda: all(s.poll().record is not None
                                              for s in fleet.sessions.values()),
                           what="both robots")
        assert core.holder == "alice" and fleet.focused == "here"
        for session in (here, there):
            session.post(OperatorEvent.MANUAL)
        await tui_wait_for(pilot, lambda: all(s.poll().mode is Mode.MANUAL
                                              for s in fleet.sessions.values()), what="MANUAL")
        await focus_on(pilot, app, "here")

        def here_moving() -> bool:
            rec = here.poll().record
            return rec is not None and rec.command.v_mps > 0

        assert await press_until(pilot, "up", here_moving), "the focused robot never moved"
        assert not any(v or w for _, v, w in sent(wire_log)), "the unfocused network robot moved"
        assert there.press_key("up") is False  # its session keeps keys off it while unfocused
        await pilot.press("0")
        await focus_on(pilot, app, "there")  # the robot on its own computer
        assert fleet.focused == "there"
        assert await press_until(pilot, "up", lambda: any(v > 0 for _, v, _ in sent(wire_log))), \
            "the focused network robot never moved"
        moving_at = sent(wire_log)[-1][0]
        await pilot.press("space")  # every robot
        await tui_wait_for(pilot, lambda: latched_and_still(wire_log, moving_at)
                           and here.poll().mode is Mode.ESTOP, what="both robots e-stopped")
        await pilot.press("ctrl+q")
    wait_for(lambda: core.holder is None, WAIT_S, "the robot released when the terminal quit")
