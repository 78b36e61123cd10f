"""`takeover sim serve`: expose the simulator as a real robot on a real transport.

    takeover sim serve --serial-pty [--seed S]            firmware on a pty; prints its path
    takeover sim serve --serial-tcp HOST:PORT [--seed S]  firmware on TCP (socket://HOST:PORT)
    takeover sim serve --rosbridge HOST:PORT [--seed S]   a rosbridge v2 server (ws://HOST:PORT)
    takeover sim serve --ros2 [NAMESPACE] [--seed S]      a ROS 2 robot (ros2://NAMESPACE)

With `--reset drive [--truth-log PATH]` the simulator plays a real base: contacts release when
it drives away, the docked flag stays clear, and it offers no reset and no dock pose (no SIM
capability, no /sim services); the ground truth goes to PATH, for evaluation only.

It prints one line on stdout saying where to connect (for --serial-pty, the pty path alone,
so scripts can read it), then serves until interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

from takeover.errors import UsageError

if TYPE_CHECKING:
    from takeover.sim.camera_feed import CameraFeed
    from takeover.sim.realtime import RealTimeBase
    from takeover.sim.ros2_server import SimRos2Server
    from takeover.sim.rosbridge_server import SimRosbridgeServer
    from takeover.sim.serial_server import SimSerialServer


def parse_host_port(text: str, flag: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port); one clear line when it is not that."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise UsageError(f"{flag} {text!r}: write it as HOST:PORT, e.g. 127.0.0.1:9090")
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"{flag} {text!r}: port {port} is outside 0-65535")
    return host.strip("[]"), port


def add_sim_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `sim` with its `serve` subcommand on the top-level CLI's subparsers."""
    sim = subparsers.add_parser("sim", help="the simulated robot")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="{serve}")
    sim_sub.required = True
    serve = sim_sub.add_parser(
        "serve",
        help="expose the simulator as a robot over a pty, TCP, rosbridge or ROS 2",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = serve.add_mutually_exclusive_group(required=True)
    where.add_argument("--serial-pty", action="store_true",
                       help="serial firmware on a pseudo-terminal; prints its path")
    where.add_argument("--serial-tcp", metavar="HOST:PORT",
                       help="serial firmware on TCP; connect with socket://HOST:PORT")
    where.add_argument("--rosbridge", metavar="HOST:PORT",
                       help="rosbridge v2 server; connect with ws://HOST:PORT")
    where.add_argument("--ros2", metavar="NAMESPACE", nargs="?", const="",
                       help="a ROS 2 robot (rclpy, Fast DDS); connect with ros2://NAMESPACE")
    serve.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    serve.add_argument("--domain", type=int, default=None, metavar="N",
                       help="with --ros2: ROS_DOMAIN_ID (default: the environment's, else 0)")
    serve.add_argument("--twist", choices=("stamped", "plain"), default="stamped",
                       help="with --ros2: the cmd_vel type the base takes (default stamped, "
                            "as diff_drive_controller on Jazzy and later)")
    serve.add_argument("--sim-time", action="store_true",
                       help="with --ros2: stamp on a simulated clock published on /clock")
    serve.add_argument("--realtime-priority", type=int, default=0, metavar="N",
                       help="run the simulated robot SCHED_FIFO at priority N (1-99) where "
                            "permitted, as a robot's own computer would not share its CPU "
                            "with this one's other work (default 0: normal scheduling)")
    serve.add_argument("--camera", metavar="WxH@HZ",
                       help="with --ros2 or --rosbridge: a camera of this size and rate, e.g. "
                            "640x480@30 (default: the simulator's 96x96 at 20 Hz)")
    serve.add_argument("--pty-link", metavar="PATH",
                       help="with --serial-pty: also make PATH a symlink to the pty")
    serve.add_argument("--reset", choices=("teleport", "drive"), default="teleport",
                       help="teleport (default): a simulator the host resets with a seed; "
                            "drive: it plays a real base (no reset, no dock pose, no docked "
                            "flag; contacts release when it drives away)")
    serve.add_argument("--truth-log", metavar="PATH",
                       help="append the simulator's ground truth (contacts, releases) to PATH "
                            "as JSON lines, for evaluation (docs/simulator.md)")
    serve.add_argument("--protocol-version", type=int, default=None, help=argparse.SUPPRESS)
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Serve until SIGINT/SIGTERM (or until `stop` is set, for tests); returns an exit code."""
    stop = stop or threading.Event()
    _raise_priority(getattr(args, "realtime_priority", 0))
    server: SimRosbridgeServer | SimSerialServer | SimRos2Server
    feed: CameraFeed | None = None
    camera = None
    if getattr(args, "camera", None):
        from takeover.sim.camera_feed import parse_camera

        if args.ros2 is None and not args.rosbridge:
            raise UsageError("--camera works with --ros2 or --rosbridge")
        camera = parse_camera(args.camera)
    base = _make_base(args)
    if args.ros2 is not None:
        from takeover.sim.ros2_server import SimRos2Server

        domain = getattr(args, "domain", None)
        if domain is not None and not 0 <= domain <= 232:
            raise UsageError(f"--domain {domain}: a ROS_DOMAIN_ID is 0-232")
        server = SimRos2Server(namespace=args.ros2, seed=args.seed, domain_id=domain,
                               twist_stamped=getattr(args, "twist", "stamped") == "stamped",
                               sim_time=getattr(args, "sim_time", False), camera=camera,
                               base=base)
        where = server.url + (f"?domain={domain}" if domain is not None else "")
    elif args.rosbridge:
        from takeover.sim.rosbridge_server import SimRosbridgeServer

        host, port = parse_host_port(args.rosbridge, "--rosbridge")
        try:
            server = SimRosbridgeServer(host=host, port=port, seed=args.seed, base=base)
        except OSError as exc:
            raise UsageError(f"--rosbridge {args.rosbridge}: cannot listen: {exc.strerror}") from None
        if camera is not None:
            from takeover.sim.camera_feed import CameraFeed

            feed = CameraFeed(server.base, server, *camera)
        where = server.url
    else:
        from takeover.hw.serial.protocol import PROTOCOL_VERSION
        from takeover.sim.serial_server import SimSerialServer

        version = args.protocol_version or PROTOCOL_VERSION
        # --protocol-version N (hidden, for tests): a base that speaks only version N.
        oldest = args.protocol_version or 1
        if args.serial_tcp:
            host, port = parse_host_port(args.serial_tcp, "--serial-tcp")
            try:
                server = SimSerialServer("tcp", host=host, port=port, seed=args.seed,
                                         version=version, oldest_version=oldest, base=base)
            except OSError as exc:
                raise UsageError(
                    f"--serial-tcp {args.serial_tcp}: cannot listen: {exc.strerror}"
                ) from None
            where = server.url
        else:
            server = SimSerialServer("pty", seed=args.seed, link_path=args.pty_link,
                                     version=version, oldest_version=oldest, base=base)
            where = server.url  # the pty's path (or the --pty-link symlink to it)
    print(where, flush=True)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        if feed is not None:
            feed.close()
        server.close()
    return 0


def _make_base(args: argparse.Namespace) -> RealTimeBase:
    """The simulated base the server wraps: teleport-reset (the default) or, with --reset
    drive, one that plays a real base; --truth-log names its ground-truth file."""
    from takeover.sim.realtime import RealTimeBase
    from takeover.sim.simulator import SimConfig

    truth_log = getattr(args, "truth_log", None) or ""
    config = SimConfig(real_base=getattr(args, "reset", "teleport") == "drive",
                       truth_log=os.path.abspath(truth_log) if truth_log else "")
    return RealTimeBase(args.seed, config)


def _raise_priority(priority: int) -> None:
    """SCHED_FIFO for this process before the server starts, so every thread it starts (the
    physics, the middleware's) inherits it; a line on stderr where it is not permitted."""
    if priority <= 0:
        return
    if not 1 <= priority <= 99:
        raise UsageError(f"--realtime-priority {priority}: between 1 and 99")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, PermissionError, OSError) as exc:
        print(f"takeover: --realtime-priority {priority} not applied ({exc}); running with "
              "normal scheduling", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m takeover.cli.sim serve ...`), until the CLI wires it."""
    parser = argparse.ArgumentParser(prog="takeover")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_sim_parser(subparsers)
    args = parser.parse_args(["sim", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"takeover: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
