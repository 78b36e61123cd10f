"""Link benchmarks over real transports on loopback, against `takeover sim serve` processes.

- `run_link_latency_bench`: the ROS 2, rosbridge and serial links side by side in one run:
  command-to-wire latency (the `send` call until the frame is written to the port / handed to
  the socket / published by rclpy), p50/p99, with a control loop ticking at `rate_hz`; for ROS 2
  also command-to-robot (the command's stamp until the simulated base's node has it); and the
  camera frames per second the ROS 2 link (raw and compressed) and the rosbridge link (and
  roslibpy beside it) receive from a 640x480 camera at 30 Hz.
- `run_expert_docking`: the scripted expert driving N episodes over any link URL in real time
  (what `takeover drive --driver expert` does), for the docking figures of each link.

The servers run in their own processes (`python -m takeover.cli.sim`), as a robot would
be another machine, so their rendering does not compete with the measured process for its GIL.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from takeover.errors import LinkError
from takeover.hw.base import LinkOptions, RobotLink, open_link
from takeover.types import ZERO_COMMAND


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_sim(kind: str, seed: int = 0, port: int | None = None,
              extra: list[str] | None = None) -> Iterator[str]:
    """Run `takeover sim serve` in a child process; yields the robot URL to open.

    kind: "serial-tcp", "rosbridge", "serial-pty", or "ros2" / "ros2:NAMESPACE" (on the
    environment's ROS_DOMAIN_ID; `port` is unused).
    """
    args = [sys.executable, "-m", "takeover.cli.sim", "serve", "--seed", str(seed)]
    if kind == "serial-pty":
        args.append("--serial-pty")
    elif kind.startswith("ros2"):
        namespace = kind.partition(":")[2]
        args += ["--ros2", namespace] if namespace else ["--ros2"]
    else:
        port = port or free_port()
        args += [f"--{kind}", f"127.0.0.1:{port}"]
    args += extra or []
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            raise LinkError(f"sim serve {kind} did not start: {err.strip()[-300:]}")
        if kind == "serial-pty":
            yield f"serial://{line}"
        else:
            yield line
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass
class EpisodeResult:
    seed: int
    outcome: str
    steps: int
    duration_s: float
    stale_ticks: int


def run_expert_episode(link: RobotLink, seed: int, rate_hz: float = 20.0,
                       max_s: float = 90.0, freshness_ms: float = 250.0) -> EpisodeResult:
    """One episode: reset the sim through the link, drive the expert until docked or contact.

    Ticks on absolute deadlines like the control loop. A tick whose observation is older than
    `freshness_ms` sends zero and counts as stale (the control loop would latch LINK_LOST).
    """
    from takeover.sim.expert import DockingExpert

    link.reset(seed)
    expert = DockingExpert(link.dock_pose())
    period_ns = int(1e9 / rate_hz)
    start = time.monotonic_ns()
    deadline = start
    steps = stale = 0
    outcome = "timeout"
    while time.monotonic_ns() - start < max_s * 1e9:
        deadline += period_ns
        obs = link.latest()
        if obs is None or (link.now_ns() - obs.t_ns) / 1e6 > freshness_ms \
                or not link.health().connected:
            stale += 1
            link.send(ZERO_COMMAND)
        else:
            if obs.docked:
                outcome = "docked"
                break
            if obs.bumper:
                outcome = "contact"
                break
            link.send(expert.command(obs.odom))
        steps += 1
        delay = deadline - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
    link.send(ZERO_COMMAND)
    return EpisodeResult(seed, outcome, steps, (time.monotonic_ns() - start) / 1e9, stale)


def run_expert_docking(url: str, episodes: int = 20, seed: int = 0,
                       rate_hz: float = 20.0) -> dict[str, Any]:
    """The expert over `url` for `episodes` episodes (seeds seed, seed+1, ...)."""
    link = open_link(url)
    link.connect()
    results: list[EpisodeResult] = []
    try:
        for k in range(episodes):
            results.append(run_expert_episode(link, seed + k, rate_hz))
        health = link.health()
    finally:
        link.close()
    successes = sum(r.outcome == "docked" for r in results)
    return {
        "url": url,
        "episodes": episodes,
        "successes": successes,
        "success_rate": successes / episodes if episodes else float("nan"),
        "stale_ticks": sum(r.stale_ticks for r in results),
        "per_episode": [r.__dict__ for r in results],
        "health": {"frames_ok": health.frames_ok, "frames_bad": health.frames_bad,
                   "lost": health.lost, "rtt_ms": health.rtt_ms},
    }


def _latency_run(url: str, duration_s: float, rate_hz: float,
                 realtime_priority: int = 10) -> tuple[list[int], str, dict[str, Any] | None]:
    """Drive a link at rate_hz for duration_s with small varying commands, from a thread
    scheduled like the control loop's (SCHED_FIFO `realtime_priority` where permitted, as
    takeover.control.loop asks for); returns the command-to-wire samples, the scheduling it
    got, and the command-to-robot figures where the robot measures them (the ROS 2 simulator:
    stamp to arrival at its base)."""
    from takeover.types import Command

    link = open_link(url)
    link.connect()
    robot_side = getattr(link, "sim_command_latency", None)
    if robot_side is not None:
        robot_side()  # forget what arrived before the measured window
    outcome: dict[str, Any] = {"scheduling": "normal"}

    def loop() -> None:
        if realtime_priority > 0 and hasattr(os, "sched_setscheduler"):
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(realtime_priority))
                outcome["scheduling"] = f"SCHED_FIFO {realtime_priority}"
            except (PermissionError, OSError):
                outcome["scheduling"] = "normal (no permission for SCHED_FIFO)"
        period_ns = int(1e9 / rate_hz)
        deadline = time.monotonic_ns()
        end = deadline + int(duration_s * 1e9)
        k = 0
        while time.monotonic_ns() < end:
            # Alternate tiny turns in place: the robot stays put, every command differs.
            link.send(Command(0.0, 0.05 if k % 2 else -0.05))
            k += 1
            deadline += period_ns
            delay = deadline - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
        link.send(ZERO_COMMAND)

    try:
        thread = threading.Thread(target=loop, name="bench-loop")
        thread.start()
        thread.join()
        samples: list[int] = link.tx_latency_samples_ns()  # type: ignore[attr-defined]
        arrived = None
        if robot_side is not None:
            time.sleep(0.2)  # the last commands are in flight; this waits for them, no more
            arrived = robot_side()
        return samples, str(outcome["scheduling"]), arrived
    finally:
        link.close()


def _summary_ms(samples_ns: list[int]) -> dict[str, Any]:
    ordered = sorted(s / 1e6 for s in samples_ns)
    return {
        "samples": float(len(ordered)),
        "p50_ms": _percentile(ordered, 0.50),
        "p99_ms": _percentile(ordered, 0.99),
        "max_ms": ordered[-1] if ordered else float("nan"),
    }


def _link_image_rate(url: str, duration_s: float, width: int, height: int) -> dict[str, Any]:
    """Camera frames per second a link receives (messages) and turns into observations'
    images (converted to the policy's camera size), over a window of `duration_s`."""
    link = open_link(url, LinkOptions(camera_width=96, camera_height=96))
    link.connect()
    try:
        before = link.health().extra
        time.sleep(duration_s)  # counting messages over a fixed window: the sleep is the window
        after = link.health().extra
    finally:
        link.close()
    frames_key = "image_frames" if "image_frames" in after else "images"
    return {
        "received_hz": (after.get(frames_key, 0.0) - before.get(frames_key, 0.0)) / duration_s,
        "converted_hz": (after.get("images", 0.0) - before.get("images", 0.0)) / duration_s,
        "dropped_by_converter": after.get("images_dropped", 0.0)
        - before.get("images_dropped", 0.0),
        "size": f"{width}x{height}",
    }


def _image_rates(url: str, duration_s: float) -> dict[str, Any]:
    """Camera frames per second received by our client and by roslibpy, side by side."""
    counts = {"roslibpy": 0}
    roslibpy_error = ""
    ros: Any = None
    try:
        import roslibpy

        host, port = url.removeprefix("ws://").split(":")
        ros = roslibpy.Ros(host=host, port=int(port))
        ros.run(timeout=10)
        topic = roslibpy.Topic(ros, "/camera/image_raw/compressed",
                               "sensor_msgs/msg/CompressedImage", queue_length=1)

        def on_image(message: dict[str, Any]) -> None:
            counts["roslibpy"] += 1

        topic.subscribe(on_image)
    except Exception as exc:  # roslibpy is a dev dependency; report rather than fail
        roslibpy_error = f"{type(exc).__name__}: {exc}"
    link = open_link(url, LinkOptions(camera_width=96, camera_height=96))
    assert isinstance(link, RobotLink)
    link.connect()
    try:
        before_ours = link.health().extra.get("images", 0.0)
        before_theirs = counts["roslibpy"]
        time.sleep(duration_s)  # counting messages over a fixed window: the sleep is the window
        ours = link.health().extra.get("images", 0.0) - before_ours
        theirs = counts["roslibpy"] - before_theirs
    finally:
        link.close()
        if ros is not None:
            with contextlib.suppress(Exception):
                ros.close()
    result: dict[str, Any] = {"ours_hz": ours / duration_s, "roslibpy_hz": theirs / duration_s}
    if roslibpy_error:
        result["roslibpy_error"] = roslibpy_error
    return result


@contextlib.contextmanager
def _ros2_receiver(namespace: str, priority: int) -> Iterator[Any]:
    """A bare command receiver (takeover.bench.ros2_receiver) in its own process; yields a
    function that ends its window and returns its figures (None if it said nothing)."""
    proc = subprocess.Popen([sys.executable, "-m", "takeover.bench.ros2_receiver", namespace,
                             str(priority)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if proc.stdout.readline().strip() != "ready":
            raise LinkError("the ROS 2 bench receiver did not start")

        def finish() -> dict[str, Any] | None:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("stop\n")
            proc.stdin.flush()
            line = proc.stdout.readline().strip()
            return dict(json.loads(line)) if line else None

        yield finish
    finally:
        with contextlib.suppress(Exception):
            proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def private_dds() -> int:
    """Keep this process's DDS (and its children's) on this host, on a domain of its own (1-100
    from the process id), before rclpy starts: a benchmark that publishes /cmd_vel must never
    reach a robot on the network."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    domain = 1 + os.getpid() % 100
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    return domain


LINKS = ("ros2", "rosbridge", "serial")


def run_link_latency_bench(duration_s: float = 10.0, rate_hz: float = 50.0,
                           image_window_s: float | None = None, realtime_priority: int = 10,
                           camera: str = "640x480@30",
                           links: tuple[str, ...] = LINKS) -> dict[str, Any]:
    """Command latency of the ROS 2, rosbridge and serial links on loopback, side by side in one
    run, and the camera frames per second the ROS 2 and rosbridge links receive from a camera
    of `camera` (WxH@HZ).

    Returns {"ros2": {p50_ms, p99_ms, max_ms, samples, scheduling, to_receiver: {p50_ms,
    p99_ms, max_ms, samples}, to_robot: {...}, camera_raw: {received_hz, converted_hz, ...},
    camera_compressed: {...}},
    "rosbridge": {..., camera: {...}}, "serial": {...}, "images": {"ours_hz", "roslibpy_hz"},
    "camera", "rate_hz", "duration_s", "cpu_count", "load_avg"}. p50/p99 are command-to-wire
    (send() until the frame is handed to the transport); ros2's to_receiver is command-to-robot
    (the stamp set in send() until a bare receiving node in another process has it: the
    link's and DDS's part) and to_robot the same until the simulated base's node has it (with
    the simulator's physics and camera competing for that process's interpreter). Each link's server
    runs in its own process. `realtime_priority` 0 measures from a normally scheduled thread.
    """
    from takeover.sim.camera_feed import parse_camera

    width, height, camera_hz = parse_camera(camera)
    window = image_window_s if image_window_s is not None else min(5.0, max(1.0, duration_s / 2))
    result: dict[str, Any] = {"rate_hz": rate_hz, "duration_s": duration_s, "camera": camera,
                              "camera_hz": camera_hz, "image_window_s": window,
                              "cpu_count": os.cpu_count(),
                              "load_avg": round(os.getloadavg()[0], 2)}
    for name in links:
        if name == "ros2":
            result["ros2_domain"] = private_dds()
            with serve_sim("ros2:takeover_bench", extra=["--camera", camera]) as url, \
                    _ros2_receiver("takeover_bench", realtime_priority) as received:
                samples, scheduling, arrived = _latency_run(url, duration_s, rate_hz,
                                                            realtime_priority)
                result["ros2"] = {**_summary_ms(samples), "scheduling": scheduling,
                                  "to_receiver": received(), "to_robot": arrived,
                                  "camera_raw": _link_image_rate(url, window, width, height),
                                  "camera_compressed": _link_image_rate(
                                      url + "?image=camera/image_raw/compressed", window,
                                      width, height)}
        elif name == "rosbridge":
            with serve_sim("rosbridge", extra=["--camera", camera]) as url:
                samples, scheduling, _ = _latency_run(url, duration_s, rate_hz,
                                                      realtime_priority)
                result["rosbridge"] = {**_summary_ms(samples), "scheduling": scheduling,
                                       "camera": _link_image_rate(url, window, width, height)}
                result["images"] = _image_rates(url, window)
        elif name == "serial":
            with serve_sim("serial-tcp") as url:
                samples, scheduling, _ = _latency_run(url, duration_s, rate_hz,
                                                      realtime_priority)
                result["serial"] = {**_summary_ms(samples), "scheduling": scheduling}
        else:
            raise ValueError(f"unknown link {name!r}; use {', '.join(LINKS)}")
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m takeover.bench.links [latency|docking URL-KIND EPISODES]` prints JSON."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "docking":
        kind = args[1] if len(args) > 1 else "serial-tcp"
        episodes = int(args[2]) if len(args) > 2 else 20
        with serve_sim(kind) as url:
            print(json.dumps(run_expert_docking(url, episodes)))
        return 0
    print(json.dumps(run_link_latency_bench()))
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    raise SystemExit(main())
