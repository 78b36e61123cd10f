"""ROS 2 messages <-> takeover's values, in one place (no rclpy calls; message objects in).

Conventions:
- Scans: `Observation.scan_m` is N beams over 360 degrees counter-clockwise from the robot's
  forward axis, beam i at 2*pi*i/N, NaN where nothing returned. A LaserScan's beam k looks at
  angle_min + k * angle_increment in the scan's frame (REP 103: x forward, counter-clockwise
  positive), so any angle_min (a LiDAR's -pi, a front sensor's -2.0) and either sign of the
  increment map onto it; N = 2*pi / |angle_increment|; a scan that covers less than a full turn
  leaves NaN where it does not look. The laser frame is taken as aligned with base_link (the
  usual mounting; a rotated mounting is a TF matter this link does not read).
- Images: `Observation.image` is RGB uint8 (H, W, 3) at the configured camera size; raw rgb8,
  bgr8, mono8, rgba8 and bgra8 (any row padding: `step`) and CompressedImage JPEG/PNG are
  converted and resized to it.
- Stamps: builtin_interfaces/Time -> integer nanoseconds on the robot's clock.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from takeover.types import Command, Odometry

RAW_ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8")
_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}


def stamp_ns(stamp: Any) -> int:
    """A builtin_interfaces/msg/Time as integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def time_msg(t_ns: int) -> Any:
    from builtin_interfaces.msg import Time

    return Time(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def odometry_from_msg(msg: Any) -> Odometry:
    """nav_msgs/msg/Odometry -> pose in its frame and body velocities."""
    pose, twist = msg.pose.pose, msg.twist.twist
    q = pose.orientation
    return Odometry(float(pose.position.x), float(pose.position.y),
                    yaw_from_quaternion(q.x, q.y, q.z, q.w),
                    float(twist.linear.x), float(twist.angular.z))


def scan_to_robot_frame(ranges: Any, angle_min: float, angle_increment: float,
                        range_min: float = 0.0, range_max: float = math.inf
                        ) -> npt.NDArray[np.float32]:
    """LaserScan fields -> takeover's scan (see the module's conventions); ValueError when the
    angles cannot be used."""
    r = np.asarray(ranges, dtype=np.float32)
    if r.ndim != 1:
        raise ValueError("ranges is not a list of numbers")
    if not math.isfinite(angle_increment) or abs(angle_increment) < 1e-5 \
            or not math.isfinite(angle_min):
        raise ValueError("angle_increment/angle_min are not usable")
    n = round(2 * math.pi / abs(angle_increment))
    if not 0 < n <= 100_000 or len(r) > 100_000:
        raise ValueError("implausible scan size")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(r)
        if math.isfinite(range_min):
            valid &= r >= range_min
        if math.isfinite(range_max):
            valid &= r <= range_max
    angles = angle_min + angle_increment * np.arange(len(r))
    index = np.rint(angles / abs(angle_increment)).astype(np.int64) % n
    out = np.full(n, np.nan, dtype=np.float32)
    out[index[valid]] = r[valid]
    return out


def scan_from_msg(msg: Any) -> npt.NDArray[np.float32]:
    return scan_to_robot_frame(msg.ranges, float(msg.angle_min), float(msg.angle_increment),
                               float(msg.range_min), float(msg.range_max))


def _resize(image: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    from PIL import Image

    pil = Image.fromarray(image, "RGB")
    factor = min(pil.width // width, pil.height // height)
    if factor >= 2:  # a box filter by a whole factor first: a fifth of the cost, no aliasing
        pil = pil.reduce(factor)
    pil = pil.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(pil, dtype=np.uint8)


def raw_image_to_rgb(data: bytes | bytearray | memoryview, encoding: str, width: int,
                     height: int, step: int, out_width: int, out_height: int
                     ) -> npt.NDArray[np.uint8]:
    """A sensor_msgs/msg/Image's fields -> RGB uint8 (out_height, out_width, 3); ValueError for
    an encoding it does not take or a size that does not add up."""
    enc = encoding.strip().lower()
    if enc not in _CHANNELS:
        raise ValueError(f"image encoding {encoding!r} is not one of {', '.join(RAW_ENCODINGS)}")
    channels = _CHANNELS[enc]
    row = width * channels
    if width <= 0 or height <= 0 or step < row or len(data) < step * height:
        raise ValueError(f"image of {width}x{height} {encoding} with step {step} does not fit "
                         f"its {len(data)} bytes")
    flat = np.frombuffer(data, dtype=np.uint8, count=step * height)
    pixels = flat.reshape(height, step)[:, :row].reshape(height, width, channels)
    if enc == "mono8":
        rgb = np.repeat(pixels, 3, axis=2)
    elif enc in ("bgr8", "bgra8"):
        rgb = pixels[:, :, 2::-1]
    else:
        rgb = pixels[:, :, :3]
    return _resize(np.ascontiguousarray(rgb), out_width, out_height)


def compressed_to_rgb(data: bytes | bytearray | memoryview, out_width: int, out_height: int
                      ) -> npt.NDArray[np.uint8]:
    """JPEG or PNG bytes (a CompressedImage's data) -> RGB uint8, resized when it differs."""
    from PIL import Image

    with Image.open(io.BytesIO(bytes(data))) as img:
        img.draft("RGB", (out_width, out_height))  # JPEG: decode at a reduced scale when it can
        rgb = img.convert("RGB")
        if rgb.size != (out_width, out_height):
            rgb = rgb.resize((out_width, out_height), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


def image_msg_from_rgb(image: npt.NDArray[np.uint8], encoding: str, t_ns: int,
                       frame_id: str = "camera") -> Any:
    """RGB uint8 (H, W, 3) -> sensor_msgs/msg/Image in `encoding` (for servers and tests)."""
    from sensor_msgs.msg import Image

    enc = encoding.lower()
    if enc == "mono8":
        pixels = image.mean(axis=2).astype(np.uint8)[:, :, None]
    elif enc == "bgr8":
        pixels = image[:, :, ::-1]
    elif enc in ("rgba8", "bgra8"):
        alpha = np.full((*image.shape[:2], 1), 255, np.uint8)
        pixels = np.concatenate([image if enc == "rgba8" else image[:, :, ::-1], alpha], 2)
    elif enc == "rgb8":
        pixels = image
    else:
        raise ValueError(f"cannot write image encoding {encoding!r}")
    msg = Image()
    msg.header.stamp = time_msg(t_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = enc
    msg.is_bigendian = 0
    msg.step = msg.width * int(pixels.shape[2])
    msg.data = np.ascontiguousarray(pixels).tobytes()  # bytes: rclpy copies them at C speed
    return msg


def twist_msg(command: Command, stamped: bool, t_ns: int = 0, frame_id: str = "base_link"
              ) -> Any:
    """A velocity command as geometry_msgs/msg/TwistStamped (stamped at t_ns on the robot's
    clock) or Twist."""
    from geometry_msgs.msg import Twist, TwistStamped

    twist = Twist()
    twist.linear.x = float(command.v_mps)
    twist.angular.z = float(command.w_radps)
    if not stamped:
        return twist
    msg = TwistStamped()
    msg.header.stamp = time_msg(t_ns)
    msg.header.frame_id = frame_id
    msg.twist = twist
    return msg


def command_from_msg(msg: Any) -> Command:
    """Twist or TwistStamped -> Command."""
    twist = getattr(msg, "twist", msg)
    return Command(float(twist.linear.x), float(twist.angular.z))


# sensor_msgs/msg/BatteryState.power_supply_status
POWER_SUPPLY_STATUS = {0: "unknown", 1: "charging", 2: "discharging", 3: "not charging",
                       4: "full"}
