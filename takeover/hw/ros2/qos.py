"""The QoS profiles the link and the simulator's server use, and naming a QoS mismatch.

What real drivers do (docs/ros2.md): LiDAR and camera drivers publish with sensor-data QoS
(best effort); diff_drive_controller publishes odometry reliable and subscribes to its commands
reliable. A best-effort subscription matches every publisher, so the link's subscriptions are
best effort by default and never silently miss a driver; a subscription made reliable
(`scan_qos=reliable`) against a best-effort publisher, or a command publisher that does not
offer what the robot's subscriber asks for, is an incompatible pair: DDS connects nothing and
says so through an event, and the link names the topic, the policy and both sides.
"""

from __future__ import annotations

from typing import Any


def sensor_qos(depth: int = 1) -> Any:
    """Best effort, volatile, keep last `depth`: what LiDAR and camera drivers publish."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def reliable_qos(depth: int = 1) -> Any:
    """Reliable, volatile, keep last `depth`: commands, odometry of ros2_control, state flags."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def qos_for(reliable: bool, depth: int = 1) -> Any:
    return reliable_qos(depth) if reliable else sensor_qos(depth)


def _word(value: Any) -> str:
    name = getattr(value, "name", str(value))
    return str(name).lower().replace("_", " ")


def describe_qos(profile: Any) -> str:
    """'reliable, volatile, depth 1' (history depth only for keep-last)."""
    text = f"{_word(profile.reliability)}, {_word(profile.durability)}"
    if getattr(profile.history, "name", "") == "KEEP_LAST":
        text += f", depth {profile.depth}"
    return text


def policy_name(kind: Any) -> str:
    """A QoS policy kind as a word: 'reliability' (rclpy hands over an enum or rmw's name)."""
    text = str(getattr(kind, "name", kind)).lower()
    for prefix in ("rmw_qos_policy_", "qospolicykind."):
        text = text.removeprefix(prefix)
    return text.replace("_", " ")


def describe_mismatch(topic: str, policy: Any, ours: Any, theirs: list[Any],
                      we_publish: bool) -> str:
    """One line naming an incompatible QoS pair: which topic, which policy, both sides."""
    side = "subscriber" if we_publish else "publisher"
    what = "asks for" if we_publish else "offers"
    their_text = "; ".join(describe_qos(p) for p in theirs) or "(not seen in the graph)"
    ours_text = describe_qos(ours)
    verb = "offers" if we_publish else "asks for"
    return (f"QoS mismatch on {topic} ({policy_name(policy)}): the robot's {side} {what} "
            f"{their_text}; this link {verb} {ours_text}; nothing flows until they match")
