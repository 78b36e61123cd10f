"""`takeover probe URL`: what a robot offers against what the configuration expects, in words.

One report for every scheme (`ProbeReport.as_json` is `takeover probe --json`'s object):

- offers: what the robot sends, one row per topic or field: its type, rate, QoS (ROS 2), and a
  detail (image size and encoding, scan beams and angles, battery state);
- expects: each input the configuration (URL options, [robot]) expects, where, and whether it
  was found;
- clock: the offset of the robot's stamps from this computer's clock, and whether it publishes
  sim time;
- round_trip_ms: a request to the robot and its answer (a parameter service of the node that
  publishes odometry on ROS 2, a rosapi call through rosbridge, the heartbeat echo on serial);
- problems (it will not work until they are fixed), warnings (it works; look at them), and a
  verdict: "ready", "usable, with warnings" or "not usable", with one line saying why.

ROS 2 reads the graph itself (takeover.hw.ros2.probe); the other schemes open their link and
watch its observations for a window.
"""

from __future__ import annotations

import math
import statistics
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from takeover.errors import TakeoverError
from takeover.hw.base import LinkOptions, open_link
from takeover.types import POWER_SUPPLY_STATUS_NAMES, POWER_SUPPLY_STATUS_UNKNOWN

READY = "ready"
WARNINGS = "usable, with warnings"
NOT_USABLE = "not usable"
MIN_OBSERVATION_HZ = 10.0  # the control loop runs at 20 Hz; slower observations repeat


@dataclass
class Offer:
    """One thing the robot sends: a topic (ROS) or a field of its observations."""

    name: str
    type: str
    rate_hz: float | None = None
    qos: str = ""
    publishers: int | None = None
    detail: str = ""


@dataclass
class Expectation:
    """One input the configuration expects."""

    input: str
    where: str
    type: str
    found: bool
    why: str = ""
    need: str = "expected"  # "required", "expected" (missing is a problem) or "optional"


@dataclass
class ProbeReport:
    url: str
    scheme: str
    connected: bool = False
    connect_s: float | None = None
    offers: list[Offer] = field(default_factory=list)
    expects: list[Expectation] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    clock: dict[str, Any] = field(default_factory=dict)
    round_trip_ms: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.problems or not self.connected:
            return NOT_USABLE
        return WARNINGS if self.warnings else READY

    @property
    def summary(self) -> str:
        """The verdict in one line of words."""
        if self.problems:
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            return f"{NOT_USABLE}: {self.problems[0]}{more}"
        found = [e for e in self.expects if e.found and e.input in ("odom", "scan", "image")]
        rates = ", ".join(
            f"{e.input} {o.rate_hz:.0f} Hz" for e in found for o in self.offers
            if o.name == e.where and o.rate_hz is not None)
        head = f"{self.verdict}: takeover can drive this robot"
        if rates:
            head += f" ({rates})"
        if self.warnings:
            head += f"; {len(self.warnings)} warning{'s' if len(self.warnings) > 1 else ''}: " \
                    f"{self.warnings[0]}"
        return head

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url, "scheme": self.scheme, "verdict": self.verdict,
            "summary": self.summary, "connected": self.connected, "connect_s": self.connect_s,
            "offers": [o.__dict__ for o in self.offers],
            "expects": [e.__dict__ for e in self.expects],
            "services": self.services, "clock": self.clock,
            "round_trip_ms": self.round_trip_ms, "problems": self.problems,
            "warnings": self.warnings, "notes": self.notes,
        }


def latency_summary(samples_ms: list[float], how: str) -> dict[str, Any] | None:
    if not samples_ms:
        return None
    ordered = sorted(samples_ms)
    return {"p50": statistics.median(ordered), "max": ordered[-1], "samples": len(ordered),
            "how": how}


def probe(url: str, options: LinkOptions | None = None, window_s: float = 2.0) -> ProbeReport:
    """Probe the robot at `url` (a bad URL raises UsageError; an unreachable robot is a report
    that says so)."""
    options = options or LinkOptions()
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "ros2":
        from takeover.hw.ros2.probe import probe_ros2

        return probe_ros2(url, options, window_s)
    return _probe_link(url, scheme, options, window_s)


def _probe_link(url: str, scheme: str, options: LinkOptions, window_s: float) -> ProbeReport:
    """Any other scheme: connect its link and watch its observations for `window_s`."""
    report = ProbeReport(url, scheme)
    link = open_link(url, options)  # a bad URL: UsageError, one line, before anything opens
    start = time.monotonic()
    try:
        link.connect()
    except TakeoverError as exc:
        report.problems.append(str(exc))
        return report
    report.connected = True
    report.connect_s = time.monotonic() - start
    try:
        if scheme in ("ws", "wss"):
            _rosapi(url, report)
        seen: list[tuple[int, Any]] = []
        last: Any = None
        end = time.monotonic() + window_s
        while time.monotonic() < end:  # the observation window (a sampling loop, 200 Hz)
            obs = link.latest()
            if obs is not None and obs is not last:
                seen.append((time.monotonic_ns(), obs))
                last = obs
            time.sleep(0.005)
        health = link.health()
    finally:
        link.close()
    _observations(report, seen, health, options, window_s)
    return report


def _observations(report: ProbeReport, seen: list[tuple[int, Any]], health: Any,
                  options: LinkOptions, window_s: float) -> None:
    if not seen:
        report.problems.append(f"no observation in {window_s:g} s")
        return
    rate = len(seen) / window_s
    obs = seen[-1][1]
    report.offers.append(Offer("observation", "odometry + flags", rate, detail=health.detail))
    if rate < MIN_OBSERVATION_HZ:
        report.warnings.append(f"observations at {rate:.1f} Hz, below the loop's "
                               f"{MIN_OBSERVATION_HZ:.0f} Hz")
    camera = f"{options.camera_width}x{options.camera_height}"
    # A new frame or scan is a new array: count the distinct ones over the window.
    image_hz = len({id(o.image) for _, o in seen if o.image is not None}) / window_s
    scan_hz = len({id(o.scan_m) for _, o in seen if o.scan_m is not None}) / window_s
    if obs.image is not None:
        h, w = obs.image.shape[:2]
        report.offers.append(Offer("image", "RGB uint8", image_hz, detail=f"{w}x{h}"))
        report.expects.append(Expectation("image", "image", "camera", True))
    else:
        report.expects.append(Expectation("image", "image", "camera", False,
                                          "the robot sends no camera frames"))
        report.problems.append(f"no camera image (the policy needs {camera})")
    if obs.scan_m is not None:
        beams = int(obs.scan_m.shape[0])
        valid = int(sum(1 for r in obs.scan_m if math.isfinite(r)))
        report.offers.append(Offer("scan", "LiDAR ranges", scan_hz,
                                   detail=f"{beams} beams over 360 degrees, {valid} returns"))
        report.expects.append(Expectation("scan", "scan", "LaserScan", True))
    else:
        report.expects.append(Expectation("scan", "scan", "LaserScan", False,
                                          "the robot sends no LiDAR scan"))
        report.warnings.append("no LiDAR scan: the protective field cannot see obstacles")
    current, status = obs.battery_current_a, obs.power_supply_status
    charge = (f", current {current:+.2f} A" if current is not None else ", no current") + (
        f", {POWER_SUPPLY_STATUS_NAMES.get(status, str(status))}" if status is not None
        else ", no power_supply_status")
    report.offers.append(Offer("battery", "fraction, current, power_supply_status", None,
                               detail=f"{obs.battery_frac:.2f}{charge}"))
    if current is None and status in (None, POWER_SUPPLY_STATUS_UNKNOWN):
        # What the docking outcome detector ([docking]) tells a dock by.
        report.warnings.append("the base reports neither a battery current nor a "
                               "power_supply_status: a dock cannot be detected by charging "
                               "(only by a docked flag, [docking] use_docked_topic = true)")
    report.offers.append(Offer("flags", "estop/docked/bumper", None,
                               detail=f"estop={obs.estop} docked={obs.docked} "
                                      f"bumper={obs.bumper}"))
    if obs.estop:
        report.warnings.append("the base reports its e-stop engaged")
    if health.rtt_ms is not None:
        report.round_trip_ms = {"p50": health.rtt_ms, "max": health.rtt_ms, "samples": 1,
                                "how": "the link's heartbeat echo"}
    report.clock = {"stamp_offset_s": None, "sim_time": False}


def _rosapi(url: str, report: ProbeReport, calls: int = 5) -> None:
    """Through rosbridge: the topics and types rosapi lists, and the round trip of that call."""
    import json

    from websockets.sync.client import connect

    base = urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(query=""))
    samples: list[float] = []
    try:
        with connect(base, open_timeout=2.0, max_size=16 * 1024 * 1024) as ws:
            values: Any = None
            for k in range(calls):
                call_id = f"probe:{k}"
                t0 = time.perf_counter()
                ws.send(json.dumps({"op": "call_service", "id": call_id,
                                    "service": "/rosapi/topics", "args": {}}))
                while True:
                    reply = json.loads(ws.recv(timeout=2.0))
                    if reply.get("op") == "service_response" and reply.get("id") == call_id:
                        break
                samples.append((time.perf_counter() - t0) * 1000)
                if reply.get("result") is False:
                    report.notes.append("rosbridge has no /rosapi/topics (rosapi not running)")
                    return
                values = reply.get("values") or {}
    except Exception as exc:  # no rosapi, or the server went away: say so, keep the rest
        report.notes.append(f"rosapi not reachable: {type(exc).__name__}: {exc}")
        return
    report.round_trip_ms = latency_summary(samples, "rosbridge call_service /rosapi/topics")
    topics, types = values.get("topics", []), values.get("types", [])
    for topic, msg_type in zip(topics, types, strict=False):
        report.offers.append(Offer(str(topic), str(msg_type)))
