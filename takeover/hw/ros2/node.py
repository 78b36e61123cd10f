"""One rclpy node on a thread of its own: its own Context (so several links, a probe and the
simulator's server can live in one process without sharing rclpy's global state), its own
executor, spun on a daemon thread and never on the caller's.

What rclpy needs from the process (docs/ros2.md, "What rclpy needs"): the PyPI wheels of ROS 2
Kilted find their shared libraries through `ros-wheels-bootstrapper`, a `.pth` file that
re-executes the interpreter once with LD_LIBRARY_PATH set, so a plain `python` (no ROS setup
script sourced, no AMENT_PREFIX_PATH, no RMW_IMPLEMENTATION) imports rclpy. The middleware is
Fast DDS (`ros-rmw-fastrtps-cpp`, the default RMW; it is not a dependency of `ros-rclpy`, so the
`ros2` extra names it). ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE are read from the
environment when the context initialises; a domain id given here overrides the environment's.

Large frames: unless FASTDDS_DEFAULT_PROFILES_FILE is set already, it is set to
`fastdds_large_data.xml` beside this module before the first node starts (Fast DDS reads it
once per process): a shared-memory segment of 16 MB instead of 512 KB, so a raw 640x480 frame
crosses between processes on one computer whole instead of as UDP fragments that a loaded
machine drops (docs/ros2.md, "Large images").
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from pathlib import Path
from typing import Any

from takeover.errors import LinkError, UsageError

SPIN_PERIOD_S = 0.05  # how often the spin thread looks at its stop flag while idle
INSTALL_HINT = "pip install 'takeover[ros2]'"
_names = itertools.count(1)


def import_rclpy() -> Any:
    """rclpy, or one line saying how to get it (a missing wheel, or a missing middleware
    library: `ImportError: librmw_fastrtps_cpp.so`)."""
    try:
        import rclpy
        from rclpy.context import Context  # noqa: F401 - loads the C extension
    except ModuleNotFoundError as exc:
        raise UsageError(f"ros2:// needs rclpy ({exc.name} is not installed): {INSTALL_HINT}"
                         ) from None
    except ImportError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"ros2:// cannot load rclpy ({first}); reinstall the ros2 extra: "
                         f"{INSTALL_HINT}") from None
    return rclpy


def domain_id_from_env(default: int = 0) -> int:
    text = os.environ.get("ROS_DOMAIN_ID", "").strip()
    try:
        return int(text) if text else default
    except ValueError:
        raise UsageError(f"ROS_DOMAIN_ID={text!r} is not a number (0-232)") from None


LARGE_DATA_PROFILE = Path(__file__).with_name("fastdds_large_data.xml")


def use_large_data_profile() -> None:
    """Point Fast DDS at takeover's profile, unless the user points it somewhere already."""
    if LARGE_DATA_PROFILE.is_file():
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(LARGE_DATA_PROFILE))


class NodeThread:
    """A node with its own Context and executor, spun on a thread of its own.

    Build the node's entities in `setup(node)` before `start()` or from any thread after it
    (rclpy's entities are safe to create and to publish on from another thread than the
    executor's). `stop()` destroys everything and is idempotent.
    """

    def __init__(self, name: str, namespace: str = "", domain_id: int | None = None,
                 parameter_services: bool = False) -> None:
        use_large_data_profile()
        rclpy = import_rclpy()
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.context = Context()
        try:
            self.context.init(domain_id=domain_id if domain_id is not None else
                              domain_id_from_env())
        except Exception as exc:
            raise LinkError(f"ROS 2 could not start: {_one_line(exc)}") from None
        try:
            self.node = rclpy.create_node(
                name, namespace=namespace or None, context=self.context,
                start_parameter_services=parameter_services, enable_rosout=False,
                use_global_arguments=False,
            )
        except Exception as exc:
            self.context.try_shutdown()
            raise UsageError(f"ROS 2 node {name!r} in namespace {namespace!r}: "
                             f"{_one_line(exc)}") from None
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.spin_error: str = ""

    @staticmethod
    def unique_name(prefix: str) -> str:
        """A node name no other process or link of this one uses at the same time."""
        return f"{prefix}_{os.getpid()}_{next(_names)}"

    def start(self, thread_name: str = "ros2-spin") -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._spin, name=thread_name, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.spin_once(timeout_sec=SPIN_PERIOD_S)
            except Exception as exc:  # a shut-down context, or a callback that raised
                if self._stop.is_set() or not self.context.ok():
                    return
                self.spin_error = _one_line(exc)

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self._thread = None
        with contextlib.suppress(Exception):
            self.executor.shutdown(timeout_sec=1.0)
        with contextlib.suppress(Exception):
            self.node.destroy_node()
        with contextlib.suppress(Exception):
            self.context.try_shutdown()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
