"""`takeover core serve | token`: a control core on the robot's own computer, for a terminal on
another one (session/core_net.py, docs/remote_cores.md).

    takeover core serve --robot URL --listen HOST:PORT --tls-cert F --tls-key F --tokens F
                        [--workspace DIR] [--policy PATH] [--name ROBOT] [--insecure-localhost]
    takeover core token NAME --tokens F [--replace]

`serve` prints one line saying where it listens, then serves until SIGTERM, SIGINT or SIGHUP,
when it stops the robot, saves an open episode as aborted and closes the recorder.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from takeover.cli.common import add_workspace_option
from takeover.cli.sim import parse_host_port
from takeover.errors import UsageError


def add_core_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    core = subparsers.add_parser("core", help="a control core on the robot's computer, "
                                 "served to an operator's terminal over TLS")
    core_sub = core.add_subparsers(dest="core_command", metavar="{serve,token}")
    core_sub.required = True
    serve = core_sub.add_parser(
        "serve", help="serve this robot's control core on wss://HOST:PORT",
        description="Run the control core (link, loop, recorder, policy) here and serve it to "
        "one authenticated operator at a time over WebSocket+TLS. The operator's terminal "
        "connects with `takeover run --robot core+wss://HOST:PORT?ca=CERT&token_file=F`. "
        "A lost operator stops the robot (e-stop latched).")
    serve.add_argument("--robot", metavar="URL", default=None,
                       help="the robot's URL on this computer (default: config, else sim://)")
    serve.add_argument("--listen", metavar="HOST:PORT", required=True,
                       help="address to listen on, e.g. 0.0.0.0:7443")
    serve.add_argument("--tls-cert", type=Path, metavar="F", help="server certificate (PEM)")
    serve.add_argument("--tls-key", type=Path, metavar="F", help="its private key (PEM)")
    serve.add_argument("--tokens", type=Path, metavar="F", required=True,
                       help="operators' token hashes (`takeover core token NAME --tokens F`)")
    add_workspace_option(serve, required=False, help="workspace for episodes and models "
                         "(default: the current directory if it holds a takeover.toml; "
                         "without one, recording is off)")
    serve.add_argument("--policy", type=Path, default=None, metavar="PATH",
                       help="ONNX policy for AUTO (default: the workspace's current model)")
    serve.add_argument("--name", default="", metavar="ROBOT",
                       help="the robot's name, shown to operators (default: its URL)")
    serve.add_argument("--insecure-localhost", action="store_true",
                       help="plain ws:// without TLS, only on a loopback address (tests and "
                       "tools on one computer; the token is still required)")
    serve.set_defaults(func=cmd_serve)
    token = core_sub.add_parser(
        "token", help="issue an operator's token (printed once; only its hash is kept)")
    token.add_argument("name", metavar="NAME", help="the operator's name")
    token.add_argument("--tokens", type=Path, metavar="F", required=True,
                       help="the tokens file (created with mode 0600 if missing)")
    token.add_argument("--replace", action="store_true",
                       help="issue a new token for an operator who has one (the old one stops "
                       "working)")
    token.set_defaults(func=cmd_token)


def cmd_token(args: argparse.Namespace) -> int:
    from takeover.session.core_net import add_operator

    if args.tokens.exists() and args.tokens.is_dir():
        raise UsageError(f"--tokens {args.tokens} is a directory")
    if not args.tokens.parent.is_dir():
        raise UsageError(f"--tokens {args.tokens}: no directory {args.tokens.parent}")
    token = add_operator(args.tokens, args.name, replace_existing=args.replace)
    print(token)
    print(f"token for operator {args.name} (shown once; {args.tokens} keeps only its sha256). "
          "Give it to the operator as a file: ?token_file=PATH", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Serve until a signal (or `stop`, for tests); exit 0 after an orderly stop."""
    from takeover.config import Config, workspace_config
    from takeover.session.core_net import CoreServer, ServeSpec
    from takeover.session.operator import ModelRef, current_model

    host, port = parse_host_port(args.listen, "--listen")
    if not args.insecure_localhost and (args.tls_cert is None or args.tls_key is None):
        raise UsageError("the core serves only over TLS: give --tls-cert and --tls-key "
                         "(or --insecure-localhost on 127.0.0.1 for a test on one computer)")
    workspace = args.workspace
    if workspace is not None and not workspace.is_dir():
        raise UsageError(f"workspace {workspace} does not exist; create it with "
                         f"`takeover init {workspace}`")
    config = workspace_config(workspace) if workspace is not None else Config()
    if args.policy is not None:
        if not args.policy.is_file():
            raise UsageError(f"--policy {args.policy}: no such model file")
        model: ModelRef | None = ModelRef(args.policy.parent.name or args.policy.stem,
                                          args.policy.resolve())
    else:
        model = current_model(workspace)
    spec = ServeSpec(config=config, robot_url=args.robot or config.robot.url, host=host,
                     port=port, tokens=args.tokens, tls_cert=args.tls_cert, tls_key=args.tls_key,
                     workspace=None if workspace is None else workspace.resolve(), model=model,
                     name=args.name, insecure_localhost=args.insecure_localhost, pace_gc=True)
    stop = stop or threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, _on_signal)
    server = CoreServer(spec)
    try:
        server.start()
        scheme = "ws" if args.insecure_localhost else "wss"
        note = f" ({server.note})" if server.note else ""
        print(f"core for {server.name} on {scheme}://{host}:{server.port} "
              f"({len(server.tokens)} operator(s)){note}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown("the core was stopped")
    return 0
