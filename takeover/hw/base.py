"""The robot link ABC and the URL registry.

A link is chosen by URL (pyserial's habit). The device packages of `hw` (serial, rosbridge, ros2) are
in the table below; links that live elsewhere register a factory under the `takeover.links`
entry-point group of their distribution (pyproject.toml): the simulator's `sim://` does, so `hw`
never imports `sim`, and a third-party base can ship its own scheme the same way. Links must be
safe to call from two threads at once: the control loop (`latest`, `send`) and the UI
(`health`, `estop`).
"""

from __future__ import annotations

import abc
import importlib
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from takeover.errors import UsageError
from takeover.types import Command, Observation, Pose2D


@dataclass(frozen=True)
class LinkHealth:
    """Figures about a link's state, for the UI and the Arbiter.

    connected: the transport is up and the base answered. Counters are totals since connect.
    last_rx_age_ms: time since the last frame or message from the base (inf before any).
    rtt_ms: round-trip time from the heartbeat echo, where the link measures one.
    """

    connected: bool
    frames_ok: int = 0
    frames_bad: int = 0
    lost: int = 0
    last_rx_age_ms: float = float("inf")
    rtt_ms: float | None = None
    detail: str = ""
    extra: dict[str, float] = field(default_factory=dict)


class RobotLink(abc.ABC):
    """One robot base, reached over some transport.

    Required: `connect`, `send`, `latest`, `health`, `close`. Optional capabilities are
    documented no-ops here and advertised by properties (`supports_sim_control`, `lockstep`),
    so callers can ask before they use them (harlequin's adapter habit).
    """


    def __init__(self, url: str) -> None:
        self.url = url

    @abc.abstractmethod
    def connect(self, timeout_s: float = 5.0) -> None:
        """Open the transport and wait until the base answers; raise LinkError otherwise."""

    @abc.abstractmethod
    def send(self, command: Command) -> Command:
        """Send a velocity command; return the command actually sent (after any clamping)."""

    @abc.abstractmethod
    def latest(self) -> Observation | None:
        """The newest observation, or None before the first. Never blocks."""

    @abc.abstractmethod
    def health(self) -> LinkHealth:
        """Current link figures. Never blocks."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the base (zero command) and release the transport. Idempotent."""

    @property
    def supports_sim_control(self) -> bool:
        """The link can reset the world with a seed and tell the dock pose (simulators only)."""
        return False

    @property
    def lockstep(self) -> bool:
        """True when the caller steps the world (`advance`) instead of it running in real time."""
        return False

    def estop(self) -> None:
        """Latch the base's own e-stop where it has one; by default, send a zero command."""
        self.send(Command(0.0, 0.0))

    def clear_estop(self) -> None:
        """Release the base's latched e-stop (operator acknowledgement). Default: no-op."""
        return None

    def now_ns(self) -> int:
        """The clock that observation timestamps use. Default: the host's monotonic clock."""
        return time.monotonic_ns()

    # --- simulator-only capabilities (supports_sim_control) ---------------------------------

    def reset(self, seed: int) -> None:
        """Reset the simulated world with a seed. Real robots raise."""
        raise UsageError(f"{self.url}: reset is only available on a simulator link")

    def dock_pose(self) -> Pose2D:
        """The dock's pose in the map frame, as a map server would tell it."""
        raise UsageError(f"{self.url}: the dock pose is the simulator's privileged state, and "
                         "this robot is not a simulator (sim://, `takeover sim serve`)")

    def advance(self, dt_s: float) -> None:
        """Step the world by dt_s (lockstep links only)."""
        raise UsageError(f"{self.url}: this link runs in real time and cannot be stepped")

    # --- context manager -----------------------------------------------------------------------

    def __enter__(self) -> RobotLink:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


LinkFactory = Callable[[str, "LinkOptions"], RobotLink]


@dataclass(frozen=True)
class LinkOptions:
    """Options that come from the command line or config rather than the URL."""

    fast: bool = False  # sim only: step as fast as possible (lockstep) instead of real time
    seed: int = 0
    camera_width: int = 96
    camera_height: int = 96


LINK_ENTRY_POINTS = "takeover.links"  # entry-point group: scheme = "module:function"

# scheme -> "module:attribute" of the factory, imported on first use so that opening a
# sim:// link does not import websockets, and so on.
_REGISTRY: dict[str, str] = {
    "serial": "takeover.hw.serial.link:open_serial_link",
    "socket": "takeover.hw.serial.link:open_serial_link",
    "loop": "takeover.hw.serial.link:open_serial_link",
    "rfc2217": "takeover.hw.serial.link:open_serial_link",
    "ws": "takeover.hw.rosbridge.link:open_rosbridge_link",
    "wss": "takeover.hw.rosbridge.link:open_rosbridge_link",
    "ros2": "takeover.hw.ros2.link:open_ros2_link",
}
_ACCEPTED_FORMS = ("sim://, serial:///dev/ttyUSB0?baud=115200, socket://HOST:PORT, ws://HOST:9090, "
                   "ros2://[NAMESPACE]")


def register_scheme(scheme: str, factory_path: str) -> None:
    """Register a link factory, given as 'module:function', for a URL scheme."""
    _REGISTRY[scheme] = factory_path


def _entry_point_factories() -> dict[str, str]:
    """The schemes other packages register (`takeover.links` entry points)."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=LINK_ENTRY_POINTS)}


def registered_schemes() -> list[str]:
    return sorted({**_entry_point_factories(), **_REGISTRY})


def open_link(url: str, options: LinkOptions | None = None) -> RobotLink:
    """Build (not connect) the link for a robot URL; a bad URL raises UsageError with one line."""
    options = options or LinkOptions()
    parsed = urllib.parse.urlsplit(url)
    scheme = parsed.scheme.lower()
    if not scheme:
        raise UsageError(f"robot URL {url!r} has no scheme; accepted forms: {_ACCEPTED_FORMS}")
    target = _REGISTRY.get(scheme) or _entry_point_factories().get(scheme)
    if target is None:
        raise UsageError(
            f"unknown robot URL scheme {scheme!r} in {url!r}; accepted forms: {_ACCEPTED_FORMS}"
        )
    module_name, _, attr = target.partition(":")
    factory: LinkFactory = getattr(importlib.import_module(module_name), attr)
    return factory(url, options)
