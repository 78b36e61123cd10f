"""A control core on the robot's own computer, reached by the operator's terminal over the
shop-floor network (docs/remote_cores.md).

    operator's terminal                               robot's computer: `takeover core serve`
    NetworkSession("core+wss://robot-07:7443?ca=..")  CoreServer: OperatorSession (link, loop,
      ── WebSocket over TLS, Authorization: Bearer ──>    recorder, policy), one holder at a time
      heartbeat every 200 ms; post / key (casts); calls
      <── SessionSnapshot at tui.refresh_hz, LoopTiming once a second, replies

Why WebSocket over TLS: `websockets` is already a dependency (the rosbridge link), TLS is what
every shop-floor IT department knows how to issue certificates for, and a bearer token in the
HTTP handshake is checked before the connection becomes a WebSocket: a client without a valid
token gets HTTP 401 and never reaches a line of the session. Messages are JSON built by
session/wire.py, which builds only registered types (never pickles: unpickling network data runs
code).

Messages (JSON objects; values in wire.py's encoding):

    client -> core   {"k": "hb"}                                   every HEARTBEAT_S
                     {"k": "cast", "m": "post" | "key", "a": [...]}  at once, no answer
                     {"k": "call", "id": N, "m": NAME, "a": [...]}   in order, one worker thread
    core -> client   {"k": "hello", "operator", "robot", "url"}      once, first
                     {"k": "snap", "v": SessionSnapshot} / {"k": "timing", "v": LoopTiming}
                     {"k": "reply", "id", "ok", "v", "ep": EpisodeState, "model": ModelRef}
                     {"k": "error", "v": line}                       a message it could not read

Safety. One operator holds the robot at a time: a second authenticated connection gets HTTP 409
naming who holds it since when. When the holder's connection closes, or nothing arrives from it
for HEARTBEAT_TIMEOUT_S, the core latches the e-stop at once (nothing moves until an operator
acknowledges), saves an open episode as aborted, and then takes the next operator. Key presses
are stamped on arrival with the core's clock, so a key held on a slow network stops the robot by
the keyboard's own timeout. A gamepad on the operator's computer is not forwarded (a pad reaches
the core as a ROS joy topic on the robot, ros2://...?joy=...).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import inspect
import ipaddress
import itertools
import json
import os
import secrets
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.http11 import Request, Response
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import Server, ServerConnection
from websockets.sync.server import serve as ws_serve

from takeover.config import Config
from takeover.control.arbiter import OperatorEvent
from takeover.control.loop import LoopTiming
from takeover.errors import ConfigError, TakeoverError, UsageError
from takeover.hw.base import LinkHealth, LinkOptions, open_link
from takeover.hw.url_options import UrlOptions
from takeover.session import wire
from takeover.session.core_process import CoreError, CoreLostError
from takeover.session.core_url import LOCAL_SCHEME, SECURE_SCHEME
from takeover.session.operator import (
    EpisodeState,
    ModelRef,
    OpenResult,
    OperatorSession,
    Session,
    SessionSnapshot,
    round_for_model,
)
from takeover.session.training import TrainingJob
from takeover.types import Mode, Pose2D, StepRecord
from takeover.workspace.atomic import atomic_write_bytes

TOKEN_ENV = "TAKEOVER_CORE_TOKEN"
HEARTBEAT_S = 0.2  # the client says it is there this often
HEARTBEAT_TIMEOUT_S = 1.0  # the core stops the robot after this long without a word
CLIENT_SILENCE_S = 3.0  # the terminal calls the core lost after this long without a message
CALL_TIMEOUT_S = 5.0
OPEN_TIMEOUT_S = 15.0
DEPLOY_TIMEOUT_S = 120.0
TOKEN_PREFIX = "sha256:"
# websockets 17 warns unless a directly returned connection is asked for by name (older ones
# have no such flag and always return it directly).
_DIRECT = {"legacy": True} if "legacy" in inspect.signature(ws_connect).parameters else {}
_connect_direct = cast(Callable[..., ClientConnection], ws_connect)
CLOSE_HELD = 4409  # a race lost between two operators' handshakes: the other one holds it

# The calls a client may make: argument annotations and the annotation of the answer. Nothing
# else is dispatched (there is no `run_in_core` over the network: that would run code).
CALLS: dict[str, tuple[tuple[Any, ...], Any]] = {
    "open": ((bool,), OpenResult),
    "close": ((), type(None)),
    "loop_timing": ((int,), LoopTiming),
    "begin_episode": ((), str),
    "end_episode": ((str, str), str),
    "label": ((str,), str),
    "set_notes": ((str,), str),
    "wait_saved": ((float,), Path | None),
    "reset_world": ((int,), str),
    "dock_pose": ((), Pose2D | None),
    "deploy": ((ModelRef,), str),
}
CASTS: dict[str, tuple[Any, ...]] = {"post": (OperatorEvent,), "key": (str,)}


# --- operators' tokens ---------------------------------------------------------------------


def hash_token(token: str) -> str:
    return TOKEN_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def load_tokens(path: Path) -> dict[str, str]:
    """The tokens file: {"operator name": "sha256:<hex of the token's sha256>"}."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--tokens {path}: no such file; add an operator with "
                          f"`takeover core token NAME --tokens {path}`") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"--tokens {path}: not a tokens file ({err})") from None
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.startswith(TOKEN_PREFIX)
            and len(v) == len(TOKEN_PREFIX) + 64 for k, v in data.items()):
        raise ConfigError(f"--tokens {path}: expected {{\"operator\": \"sha256:<64 hex>\"}}")
    return data


def add_operator(path: Path, name: str, *, replace_existing: bool = False) -> str:
    """Issue a token for `name`; store only its hash (atomic write, mode 0600). Returns the
    token: the one time it is ever shown."""
    if not name or not name.isprintable() or len(name) > 64 or name != name.strip():
        raise UsageError(f"operator name {name!r}: 1-64 printable characters, no outer spaces")
    tokens = load_tokens(path) if path.exists() else {}
    if name in tokens and not replace_existing:
        raise UsageError(f"operator {name!r} already has a token in {path}; "
                         "--replace issues a new one (the old one stops working)")
    token = secrets.token_urlsafe(32)
    tokens[name] = hash_token(token)
    atomic_write_bytes(path, (json.dumps(tokens, indent=1, sort_keys=True) + "\n").encode())
    os.chmod(path, 0o600)  # mkstemp made it 0600 already; an old file may have been wider
    return token


def operator_for(tokens: dict[str, str], header: str | None) -> str | None:
    """The operator whose token `header` ("Bearer <token>") carries, or None. Compares with
    every stored hash in constant time, so the answer's timing says nothing about the token."""
    if header is None or not header.startswith("Bearer "):
        return None
    presented = hash_token(header[len("Bearer "):].strip())
    found = None
    for name, stored in tokens.items():
        if hmac.compare_digest(presented.encode(), stored.encode()):
            found = name
    return found


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- the robot's side ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServeSpec:
    """What `takeover core serve` serves. tls_cert/tls_key: None only with insecure_localhost
    (plain ws:// on a loopback address, for tests and tools on one machine)."""

    config: Config
    robot_url: str
    host: str
    port: int
    tokens: Path
    tls_cert: Path | None = None
    tls_key: Path | None = None
    workspace: Path | None = None
    model: ModelRef | None = None
    name: str = ""
    insecure_localhost: bool = False
    pace_gc: bool = False  # a core in a process of its own (the CLI): see gc_pacing.py


@dataclass
class _Holder:
    operator: str
    since: float  # time.time()
    peer: str
    conn: ServerConnection


def _server_tls(spec: ServeSpec) -> ssl.SSLContext | None:
    if spec.insecure_localhost:
        if not is_loopback(spec.host):
            raise UsageError(f"--insecure-localhost serves plain ws:// only on a loopback "
                             f"address (127.0.0.1), not {spec.host}")
        return None
    if spec.tls_cert is None or spec.tls_key is None:
        raise UsageError("the core serves only over TLS: give --tls-cert and --tls-key "
                         "(docs/remote_cores.md shows the openssl command)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(spec.tls_cert, spec.tls_key)
    except FileNotFoundError as err:
        raise UsageError(f"TLS: no such file {err.filename}") from None
    except (ssl.SSLError, OSError) as err:
        raise UsageError(f"TLS: cannot load {spec.tls_cert} with {spec.tls_key}: {err}") from None
    return context


class CoreServer:
    """Serves one OperatorSession to one authenticated operator at a time (module docstring).

    `start()` connects the robot and listens; `shutdown()` stops the robot, closes the
    recorder and the link. Each connection runs in a thread of the WebSocket server; calls run
    in order on one worker thread; snapshots go out from a pump paced by the loop's ticks."""

    def __init__(self, spec: ServeSpec) -> None:
        self.spec = spec
        self.tokens = load_tokens(spec.tokens)
        if not self.tokens:
            raise ConfigError(f"--tokens {spec.tokens}: no operator; add one with "
                              f"`takeover core token NAME --tokens {spec.tokens}`")
        self.tls = _server_tls(spec)
        config = spec.config
        link = open_link(spec.robot_url, LinkOptions(camera_width=config.robot.camera_width,
                                                     camera_height=config.robot.camera_height))
        if link.lockstep:
            raise UsageError(f"{spec.robot_url}: a core drives its robot in real time; "
                             "a lockstep simulator (fast=1) is for `takeover drive --fast`")
        self.session = OperatorSession(config, link, None, spec.workspace, use_gamepad=False,
                                       model=spec.model, pace_gc=spec.pace_gc)
        self.session.model = None  # deployed by start(), where a failure is only a note
        self.session.episode = EpisodeState(round=self.session.round)
        self.name = spec.name or link.url
        self.note = ""
        self._holder: _Holder | None = None
        self._authenticated: dict[int, str] = {}  # id(connection) -> operator, handshake to handler
        self._lock = threading.Lock()
        self._calls = ThreadPoolExecutor(max_workers=1, thread_name_prefix="core-calls")
        self._ticked = threading.Event()
        self._stop = threading.Event()
        self._server: Server | None = None
        self._threads: list[threading.Thread] = []
        self._shutdown_lock = threading.Lock()
        self._closed = False
        self.bad_messages = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.socket.getsockname()[1])

    @property
    def holder(self) -> str | None:
        holder = self._holder
        return None if holder is None else holder.operator

    def start(self) -> None:
        session = self.session
        session.open()
        model = self.spec.model
        if model is not None:
            try:
                session.deploy(model)
            except Exception as err:  # drive by hand anyway: that needs no model
                self.note = f"model {model.model_id} not loaded: {_one_line(err)}"
        if session.gc_pacer is not None:
            session.gc_pacer.freeze()
        session.loop.sinks.append(self)
        try:
            self._server = ws_serve(self._handle, self.spec.host, self.spec.port, ssl=self.tls,
                                    process_request=self._check_request,
                                    max_size=wire.MAX_MESSAGE_BYTES, ping_interval=None)
        except OSError as err:
            session.close(reason="the core could not listen")
            raise UsageError(f"--listen {self.spec.host}:{self.spec.port}: "
                             f"{err.strerror or err}") from None
        for target, name in ((self._pump, "core-telemetry"),
                             (self._server.serve_forever, "core-listen")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def offer(self, record: StepRecord) -> bool:
        """StepSink, on the loop's thread: a tick went out (paces the pump)."""
        self._ticked.set()
        return True

    # --- the handshake: who may connect --------------------------------------------------

    def _check_request(self, conn: ServerConnection, request: Request) -> Response | None:
        """Before the WebSocket opens: a valid token (else 401) and a free robot (else 409).
        Nothing of the session is touched here."""
        operator = operator_for(self.tokens, request.headers.get("Authorization"))
        if operator is None:
            response = conn.respond(401, "unauthorized: this core needs a valid operator token\n")
            response.headers["WWW-Authenticate"] = 'Bearer realm="takeover core"'
            return response
        with self._lock:
            if self._closed:
                return conn.respond(503, "the core is shutting down\n")
            if self._holder is not None:
                return conn.respond(409, self._held_line() + "\n")
            self._authenticated[id(conn)] = operator
        return None

    def _held_line(self) -> str:
        holder = self._holder
        assert holder is not None
        since = time.strftime("%H:%M:%S", time.localtime(holder.since))
        return f"robot {self.name} is held by operator {holder.operator} since {since}"

    # --- one operator's connection --------------------------------------------------------

    def _handle(self, conn: ServerConnection) -> None:
        with self._lock:
            operator = self._authenticated.pop(id(conn), None)
            if operator is None or self._closed:
                conn.close(1008, "not authenticated")
                return
            if self._holder is not None:  # two handshakes raced: the first one holds it
                conn.close(CLOSE_HELD, self._held_line()[:120])
                return
            peer = str(conn.remote_address[0]) if conn.remote_address else "?"
            holder = self._holder = _Holder(operator, time.time(), peer, conn)
        print(f"takeover core: operator {operator} holds {self.name} (from {peer})",
              file=sys.stderr, flush=True)
        why = "the operator's connection closed"
        try:
            self._send(conn, {"k": "hello", "operator": operator, "robot": self.name,
                              "url": self.session.url})
            while not self._stop.is_set():
                try:
                    data = conn.recv(timeout=HEARTBEAT_TIMEOUT_S)
                except TimeoutError:
                    why = f"no word from the operator's terminal for {HEARTBEAT_TIMEOUT_S:.0f} s"
                    break
                self._receive(conn, data)
        except ConnectionClosed:
            pass
        finally:
            self._release(holder, why)
            with contextlib.suppress(Exception):
                conn.close(1001, why[:120])

    def _receive(self, conn: ServerConnection, data: str | bytes) -> None:
        try:
            message = wire.decode(data)
            if not isinstance(message, dict) or not isinstance(message.get("k"), str):
                raise wire.WireError("a message is an object with a kind 'k'")
            kind = message["k"]
            if kind == "hb":
                return
            if kind == "cast":
                self._cast(message)
            elif kind == "call":
                request_id = message.get("id")
                if not isinstance(request_id, int) or isinstance(request_id, bool):
                    raise wire.WireError("a call has an integer id")
                self._calls.submit(self._call, conn, request_id, message.get("m"),
                                   message.get("a"))
            else:
                raise wire.WireError(f"unknown message kind {kind!r}")
        except wire.WireError as err:
            self.bad_messages += 1
            self._send(conn, {"k": "error", "v": str(err)[:300]})

    def _cast(self, message: dict[str, Any]) -> None:
        name = message.get("m")
        if not isinstance(name, str) or name not in CASTS:
            raise wire.WireError(f"unknown cast {name!r}")
        hints = CASTS[name]
        args = _args(message.get("a"), hints, name)
        if name == "post":
            self.session.post(args[0])
        else:
            # Stamped on arrival: the operator's clock means nothing here, and a key that
            # arrives late must not count as held for longer.
            self.session.press_key(args[0], time.monotonic_ns())

    def _call(self, conn: ServerConnection, request_id: int, name: Any, raw_args: Any) -> None:
        try:
            if not isinstance(name, str) or name not in CALLS:
                raise CoreError(f"unknown request {name!r}")
            arg_hints, _ = CALLS[name]
            value = self._dispatch(name, _args(raw_args, arg_hints, name))
            ok = True
        except Exception as err:
            value, ok = _one_line(err), False
        session = self.session
        self._send(conn, {"k": "reply", "id": request_id, "ok": ok, "v": value,
                          "ep": replace(session.episode), "model": session.model})

    def _dispatch(self, name: str, args: tuple[Any, ...]) -> Any:
        session = self.session
        if name == "open":
            return OpenResult(session.dock_pose(), self.note)
        if name == "close":
            return None  # the operator leaves: closing the connection stops the robot
        if name == "loop_timing":
            return session.loop.timing(*args)
        if name == "deploy":
            self._check_model(args[0])
        methods: dict[str, Callable[..., Any]] = {
            "begin_episode": session.begin_episode, "end_episode": session.end_episode,
            "label": session.label, "set_notes": session.set_notes,
            "wait_saved": session.wait_saved, "reset_world": session.reset_world,
            "dock_pose": session.dock_pose, "deploy": session.deploy}
        return methods[name](*args)

    def _check_model(self, model: ModelRef) -> None:
        """A model named over the network must be one this core was given or one of its
        workspace's registered models: an operator loads models, not any file of the robot."""
        onnx = Path(model.onnx).resolve()
        allowed = [] if self.spec.model is None else [Path(self.spec.model.onnx).resolve()]
        if onnx in allowed:
            return
        workspace = self.spec.workspace
        if workspace is not None and onnx.is_relative_to((workspace / "models").resolve()):
            return
        raise CoreError(f"deploy refused: {model.onnx} is not one of this robot's models "
                        "(its workspace's models/ or its --policy)")

    def _release(self, holder: _Holder, why: str) -> None:
        """The holder is gone: e-stop at once (latched), save an open episode as aborted, then
        take the next operator."""
        session = self.session
        session.post(OperatorEvent.ESTOP)
        reason = f"operator {holder.operator} lost: {why}"
        try:  # after the calls already queued, never beside one
            abort = self._calls.submit(self._abort, reason)
        except RuntimeError:  # shutting down: session.close() saves the episode as aborted
            abort = None
        if abort is not None:
            with contextlib.suppress(Exception):
                abort.result(timeout=30.0)
        with self._lock:
            if self._holder is holder:
                self._holder = None
        print(f"takeover core: operator {holder.operator} released {self.name} ({why}); "
              "robot stopped (e-stop latched)", file=sys.stderr, flush=True)

    def _abort(self, reason: str) -> None:
        session = self.session
        if session.episode.recording:
            session.end_episode("aborted", reason=reason)

    # --- telemetry -----------------------------------------------------------------------

    def _pump(self) -> None:
        """Poll the session after each tick (the docking lifecycle and the episode counters run
        there, held or not) and push a snapshot at tui.refresh_hz and the timing once a second
        to the holder. Paced by the ticks, as core_process's pump, so the encoding starts right
        after a tick went out."""
        session = self.session
        every = max(1, round(session.loop.rate_hz / self.spec.config.tui.refresh_hz))
        ticks = 0
        next_timing = time.monotonic()
        while not self._stop.is_set():
            if not self._ticked.wait(1.0):
                continue
            self._ticked.clear()
            ticks += 1
            if ticks % every:
                continue
            snapshot = session.poll()
            holder = self._holder
            if holder is None:
                continue
            self._send(holder.conn, {"k": "snap", "v": snapshot})
            if time.monotonic() >= next_timing:
                next_timing = time.monotonic() + 1.0
                self._send(holder.conn, {"k": "timing", "v": session.recent_timing()})

    def _send(self, conn: ServerConnection, message: dict[str, Any]) -> None:
        try:
            data = wire.encode(message).decode()
        except wire.WireError as err:  # a value the protocol cannot carry: say so, not crash
            data = wire.encode({"k": "error", "v": f"core: {err}"}).decode()
        with contextlib.suppress(ConnectionClosed, OSError, RuntimeError):
            conn.send(data)

    # --- shutdown ------------------------------------------------------------------------

    def shutdown(self, reason: str = "the core was stopped") -> None:
        """Stop listening, stop the robot, save an open episode as aborted, close the recorder
        and the link. Once; a second caller waits for the first."""
        with self._shutdown_lock:
            if self._closed:
                return
            with self._lock:
                self._closed = True
            self.session.post(OperatorEvent.ESTOP)
            self._stop.set()
            if self._server is not None:
                self._server.shutdown()
            for thread in self._threads:
                thread.join(timeout=5.0)
            self._calls.shutdown(wait=True, cancel_futures=True)
            self.session.close(reason=reason)


def _args(raw: Any, hints: tuple[Any, ...], name: str) -> tuple[Any, ...]:
    if not isinstance(raw, list) or len(raw) != len(hints):
        raise wire.WireError(f"{name} takes {len(hints)} argument(s)")
    return tuple(wire.conform(value, hint, f"{name} argument {i + 1}")
                 for i, (value, hint) in enumerate(zip(raw, hints, strict=True)))


def _one_line(err: BaseException) -> str:
    text = str(err) if isinstance(err, TakeoverError) else f"{type(err).__name__}: {err}"
    return " ".join(text.split())


# --- the operator's side -------------------------------------------------------------------


@dataclass(frozen=True)
class CoreUrl:
    """core+wss://HOST:PORT[?token_file=PATH][&ca=PATH] (token else from $TAKEOVER_CORE_TOKEN;
    the server's certificate checked against `ca`, else the system's trusted CAs)."""

    host: str
    port: int
    secure: bool
    token: str
    ca: Path | None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ws_uri(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.secure else 'ws'}://{host}:{self.port}/"


def parse_core_url(url: str, environ: dict[str, str] | None = None) -> CoreUrl:
    """Read a core URL; one line (UsageError) for anything wrong with it."""
    environ = dict(os.environ) if environ is None else environ
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in (SECURE_SCHEME, LOCAL_SCHEME):
        raise UsageError(f"robot URL {url!r}: a network core is {SECURE_SCHEME}://HOST:PORT")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as err:
        raise UsageError(f"robot URL {url!r}: {err}") from None
    if not host or port is None:
        raise UsageError(f"robot URL {url!r}: write it as {SECURE_SCHEME}://HOST:PORT")
    if parts.username or parts.password:
        raise UsageError(f"robot URL {url!r}: no token in the URL (it would show in process "
                         f"lists and logs): use ?token_file=PATH or ${TOKEN_ENV}")
    secure = parts.scheme == SECURE_SCHEME
    if not secure and not is_loopback(host):
        raise UsageError(f"robot URL {url!r}: plain {LOCAL_SCHEME}:// only reaches a core on "
                         f"this computer (127.0.0.1); over a network use {SECURE_SCHEME}://")
    opts = UrlOptions(url, accepted=("token_file", "ca"), scheme=SECURE_SCHEME + "://")
    opts.check_unknown()
    token_file = opts.text("token_file", "")
    if token_file:
        try:
            token = Path(token_file).expanduser().read_text().strip()
        except OSError as err:
            raise UsageError(f"robot URL {url!r}: token_file: {err.strerror or err}") from None
    else:
        token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UsageError(f"robot URL {url!r}: no operator token: ?token_file=PATH or "
                         f"${TOKEN_ENV} (`takeover core token NAME` on the robot issues one)")
    ca_text = opts.text("ca", "")
    ca = Path(ca_text).expanduser() if ca_text else None
    if ca is not None and not ca.is_file():
        raise UsageError(f"robot URL {url!r}: ca={ca_text}: no such file")
    if ca is not None and not secure:
        raise UsageError(f"robot URL {url!r}: ca= is for {SECURE_SCHEME}://")
    return CoreUrl(host, port, secure, token, ca)


def _client_tls(core: CoreUrl) -> ssl.SSLContext | None:
    if not core.secure:
        return None
    # Verification is never off: the server's certificate must chain to `ca` (a CA, or the
    # core's self-signed certificate itself) or to a CA the system trusts, for this host name.
    try:
        return ssl.create_default_context(cafile=str(core.ca) if core.ca else None)
    except (ssl.SSLError, OSError) as err:
        raise UsageError(f"ca={core.ca}: not a PEM certificate ({err})") from None


class NetworkSession:
    """A `Session` (takeover.session.operator) whose OperatorSession runs in a core on another
    computer (`takeover core serve`), in place of a RemoteSession. `open()` connects (blocks:
    a worker thread); `close()` leaves, which stops the robot (the core latches its e-stop)."""

    def __init__(self, config: Config, url: str, *, environ: dict[str, str] | None = None) -> None:
        self.config = config
        self.core = parse_core_url(url, environ)
        self._tls = _client_tls(self.core)
        self._url = f"{SECURE_SCHEME if self.core.secure else LOCAL_SCHEME}://{self.core.address}"
        self.workspace: Path | None = None  # the workspace lives on the robot's computer
        self.training: TrainingJob | None = None
        self.operator = ""
        self.robot = ""
        self._model: ModelRef | None = None
        self._episode = EpisodeState()
        self._snapshot: SessionSnapshot | None = None
        self._timing: LoopTiming | None = None
        self._lost = ""
        self._closed = False
        self._conn: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[Any]] = {}
        self._state_lock = threading.Lock()
        self._last_rx = time.monotonic()
        self._stop = threading.Event()
        self.errors: list[str] = []  # what the core could not read of ours
        # In a fleet, the operator's keys go to the focused robot only (session/fleet.py). The
        # operator's gamepad is not forwarded to a network core, so the gate is the keys'.
        self._focused = True

    @property
    def url(self) -> str:
        return self._url

    @property
    def model(self) -> ModelRef | None:
        return self._model

    @property
    def round(self) -> int:
        return round_for_model(self._model)

    @property
    def episode(self) -> EpisodeState:
        return self._episode

    @property
    def lost(self) -> str:
        return self._lost

    # --- lifecycle -------------------------------------------------------------------------

    def connect(self) -> None:
        """The TLS and token handshake; one line (CoreError) when refused."""
        core = self.core
        try:
            conn = _connect_direct(
                core.ws_uri, ssl=self._tls, proxy=None, open_timeout=OPEN_TIMEOUT_S,
                additional_headers=Headers(Authorization=f"Bearer {core.token}"),
                max_size=wire.MAX_MESSAGE_BYTES, ping_interval=None, **_DIRECT)
        except InvalidStatus as err:
            status = err.response.status_code
            body = err.response.body.decode("utf-8", "replace").strip() if err.response.body else ""
            if status == 401:
                raise CoreError(f"the core at {core.address} refused the operator token "
                                f"(HTTP 401): check token_file= or ${TOKEN_ENV}") from None
            if status == 409:
                raise CoreError(f"{body or 'the robot is held by another operator'} (HTTP 409)"
                                ) from None
            raise CoreError(f"the core at {core.address} refused: HTTP {status} {body}") from None
        except ssl.SSLCertVerificationError as err:
            raise CoreError(f"the core at {core.address} is not trusted: {err.verify_message}; "
                            "give ?ca=PATH with its CA or its certificate") from None
        except ssl.SSLError as err:
            raise CoreError(f"TLS with the core at {core.address} failed: {err.reason}") from None
        except (OSError, TimeoutError, InvalidHandshake) as err:
            raise CoreError(f"cannot reach the core at {core.address}: {err}") from None
        try:
            hello = wire.decode(conn.recv(timeout=OPEN_TIMEOUT_S))
        except ConnectionClosed as err:
            conn.close()
            reason = err.rcvd.reason if err.rcvd is not None else "closed"
            raise CoreError(f"the core at {core.address} closed the connection: {reason}") from None
        except (TimeoutError, wire.WireError) as err:
            conn.close()
            raise CoreError(f"the core at {core.address} did not greet: {err}") from None
        if not isinstance(hello, dict) or hello.get("k") != "hello":
            conn.close()
            raise CoreError(f"the core at {core.address} is not a takeover core")
        self.operator, self.robot = str(hello.get("operator", "")), str(hello.get("robot", ""))
        self._conn = conn
        self._last_rx = time.monotonic()
        for target, name in ((self._read, "core-net-reader"), (self._beat, "core-net-heartbeat")):
            threading.Thread(target=target, name=name, daemon=True).start()

    def open(self, connect: bool = True) -> OpenResult:
        if self._conn is None:
            self.connect()
        result: OpenResult = self._call("open", True)
        return result

    def close(self) -> None:
        """Leave the robot (the core stops it and latches its e-stop). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._conn is not None:
            self._conn.close(1000, "the operator quit")

    # --- telemetry -------------------------------------------------------------------------

    def poll(self) -> SessionSnapshot:
        snap = self._snapshot
        if snap is None:
            snap = SessionSnapshot(record=None, mode=Mode.IDLE, reason="", health=LinkHealth(False),
                                   episode=self._episode, writer=None, model=self._model,
                                   round=self.round)
        if self._lost:
            return replace(snap, mode=Mode.LINK_LOST, reason=self._lost,
                           health=replace(snap.health, connected=False))
        return snap

    def recent_timing(self) -> LoopTiming | None:
        return self._timing

    def loop_timing(self, since_tick: int = 0) -> LoopTiming:
        timing: LoopTiming = self._call("loop_timing", since_tick)
        return timing

    # --- operator requests -----------------------------------------------------------------

    def post(self, event: OperatorEvent) -> None:
        self._cast("post", event)

    def estop(self) -> None:
        self._cast("post", OperatorEvent.ESTOP)

    def focus(self, focused: bool) -> None:
        """Give this robot the operator's keys, or take them away (a fleet's focus). Keys held
        for it stop arriving, and the core releases a key it stops hearing."""
        self._focused = focused

    def press_key(self, key: str, t_ns: int | None = None) -> bool:
        from takeover.inputs.keyboard import DRIVE_KEYS, HOLD_KEY

        if not self._focused or (key not in DRIVE_KEYS and key != HOLD_KEY):
            return False
        self._cast("key", key)  # the core stamps it on arrival, with its own clock
        return True

    def begin_episode(self) -> str:
        return str(self._call("begin_episode"))

    def end_episode(self, outcome: str, reason: str = "operator") -> str:
        return str(self._call("end_episode", outcome, reason))

    def label(self, outcome: str) -> str:
        return str(self._call("label", outcome))

    def set_notes(self, notes: str) -> str:
        return str(self._call("set_notes", notes))

    def wait_saved(self, timeout_s: float = 10.0) -> Path | None:
        path: Path | None = self._call("wait_saved", float(timeout_s),
                                       timeout_s=timeout_s + CALL_TIMEOUT_S)
        return path

    def reset_world(self, seed: int) -> str:
        return str(self._call("reset_world", seed, timeout_s=15.0))

    def dock_pose(self) -> Pose2D | None:
        pose: Pose2D | None = self._call("dock_pose")
        return pose

    def deploy(self, model: ModelRef) -> str:
        return str(self._call("deploy", model, timeout_s=DEPLOY_TIMEOUT_S))

    def start_training(self) -> str:
        return ("training runs where the episodes are: on the robot's computer "
                "(`takeover train --workspace DIR` there)")

    # --- the wire --------------------------------------------------------------------------

    def send_raw(self, data: str | bytes) -> None:
        """For tests: a frame as it is, well-formed or not."""
        assert self._conn is not None
        self._conn.send(data)

    def _send(self, message: dict[str, Any]) -> bool:
        conn = self._conn
        if conn is None or self._lost:
            return False
        try:
            conn.send(wire.encode(message).decode())
            return True
        except (ConnectionClosed, OSError, RuntimeError):
            self._set_lost("the connection to the core closed")
            return False

    def _cast(self, name: str, *args: Any) -> None:
        if not self._closed:
            self._send({"k": "cast", "m": name, "a": list(args)})

    def _call(self, name: str, *args: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        if self._lost:
            raise CoreLostError(self._lost)
        if self._conn is None:
            raise CoreError("not connected to the core: open() first")
        future: Future[Any] = Future()
        request_id = next(self._ids)
        with self._state_lock:
            self._pending[request_id] = future
        try:
            self._send({"k": "call", "id": request_id, "m": name, "a": list(args)})
            value = future.result(timeout=timeout_s)
        except FutureTimeout:
            raise CoreError(f"the core did not answer ({name}) within {timeout_s:.0f} s") from None
        finally:
            with self._state_lock:
                self._pending.pop(request_id, None)
        return wire.conform(value, CALLS[name][1], f"{name} answer")

    def _read(self) -> None:
        conn = self._conn
        assert conn is not None
        why = "the connection to the core closed"
        try:
            while True:
                data = conn.recv()
                self._last_rx = time.monotonic()
                try:
                    self._dispatch(wire.decode(data))
                except wire.WireError as err:
                    why = f"the core sent a message this terminal cannot read: {err}"
                    conn.close(1002, "unreadable message")
                    break
        except ConnectionClosed as err:
            if err.rcvd is not None and err.rcvd.reason:
                why = f"the core closed the connection: {err.rcvd.reason}"
        self._set_lost(why)

    def _dispatch(self, message: Any) -> None:
        if not isinstance(message, dict):
            raise wire.WireError("a message is an object")
        kind = message.get("k")
        if kind == "snap":
            snap = wire.conform(message.get("v"), SessionSnapshot, "snapshot")
            self._snapshot = snap
            self._episode, self._model = snap.episode, snap.model
        elif kind == "timing":
            self._timing = wire.conform(message.get("v"), LoopTiming | None, "timing")
        elif kind == "reply":
            episode = wire.conform(message.get("ep"), EpisodeState, "reply")
            self._model = wire.conform(message.get("model"), ModelRef | None, "reply")
            self._episode = episode
            with self._state_lock:
                future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
            if future is not None and not future.done():
                if message.get("ok") is True:
                    future.set_result(message.get("v"))
                else:
                    future.set_exception(CoreError(str(message.get("v"))))
        elif kind == "error":
            self.errors.append(str(message.get("v")))
        elif kind != "hello":
            raise wire.WireError(f"unknown message kind {kind!r}")

    def _beat(self) -> None:
        """The heartbeat the core's safety needs, and the silence this terminal watches."""
        while not self._stop.wait(HEARTBEAT_S):
            if self._lost:
                return
            if time.monotonic() - self._last_rx > CLIENT_SILENCE_S:
                self._set_lost(f"no word from the core for {CLIENT_SILENCE_S:.0f} s")
                if self._conn is not None:
                    self._conn.close(1001, "the core went silent")
                return
            self._send({"k": "hb"})

    def _set_lost(self, why: str) -> None:
        if self._lost:
            return
        self._lost = ("the connection to the core has closed" if self._closed
                      else f"CONTROL CORE LOST ({self.core.address}): {why}")
        with self._state_lock:
            pending = list(self._pending.values())
        for future in pending:
            if not future.done():
                future.set_exception(CoreLostError(self._lost))


def _a_session(session: NetworkSession) -> Session:
    """mypy checks here that a NetworkSession is a `Session` the TUI can use."""
    return session
