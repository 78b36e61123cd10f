"""A bare ROS 2 command receiver in a process of its own, for `takeover bench links`.

    python -m takeover.bench.ros2_receiver NAMESPACE [PRIORITY]

Subscribes to NAMESPACE/cmd_vel (TwistStamped, reliable, as diff_drive_controller does), prints
"ready" once its subscription exists, and when a line (or the end) comes on its standard input
prints one JSON line: how long each
command took from the stamp its sender set (this computer's clock) to this node's callback.
It stands in for a base driver that does nothing else (scheduled SCHED_FIFO PRIORITY, default
10, where permitted, like a ros2_control node), so the figure is the link's and DDS's
part of command-to-robot latency; the simulated base's own node (`sim serve --ros2`) also
measures it, with its physics and camera competing for the interpreter beside it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

from takeover.hw.ros2 import convert
from takeover.hw.ros2.node import NodeThread
from takeover.hw.ros2.qos import reliable_qos

REALTIME_PRIORITY = 10


def percentile_ms(sorted_ns: list[int], q: float) -> float | None:
    if not sorted_ns:
        return None
    return sorted_ns[min(len(sorted_ns) - 1, max(0, math.ceil(q * len(sorted_ns)) - 1))] / 1e6


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    namespace = args[0] if args else ""
    priority = int(args[1]) if len(args) > 1 else REALTIME_PRIORITY
    scheduling = "normal"
    if priority > 0 and hasattr(os, "sched_setscheduler"):
        # Before rclpy starts: the middleware's threads inherit it, as a base driver under
        # ros2_control runs (real-time priority), and as the control loop asks for itself.
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            scheduling = f"SCHED_FIFO {priority}"
        except (PermissionError, OSError):
            scheduling = "normal (no permission for SCHED_FIFO)"
    from geometry_msgs.msg import TwistStamped

    ros = NodeThread(NodeThread.unique_name("bench_receiver"), namespace)
    samples: list[int] = []

    def on_command(msg: Any) -> None:
        sent = convert.stamp_ns(msg.header.stamp)
        if sent:
            samples.append(time.time_ns() - sent)

    ros.node.create_subscription(TwistStamped, "cmd_vel", on_command, reliable_qos())
    ros.start("bench-receiver-spin")
    print("ready", flush=True)
    sys.stdin.readline()  # the bench says when its sending window is over
    ros.stop()
    ordered = sorted(samples)
    print(json.dumps({"samples": len(ordered), "p50_ms": percentile_ms(ordered, 0.5),
                      "p99_ms": percentile_ms(ordered, 0.99),
                      "max_ms": percentile_ms(ordered, 1.0), "scheduling": scheduling}),
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
