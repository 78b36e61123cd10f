"""The takeover serial protocol, version 2: framing, CRC and messages (see docs/serial-protocol.md).

Version 2 adds the battery's current and power_supply_status to STATE (charge detection,
control/docking_outcome.py); a version-1 STATE (`StateV1`) still decodes, and a base may speak
version 1 to a host that asks for it.

Wire format of one frame::

    COBS( msg_id:u8 | seq:u16 | payload:0..1024 bytes | crc:u16 ) 0x00

- COBS (Cheshire & Baker, canonical form) removes every 0x00 from the frame, so 0x00 only ever
  delimits frames; a receiver that starts mid-stream resynchronises at the next 0x00.
- CRC-16/IBM-3740 (also known as CRC-16/CCITT-FALSE): poly 0x1021, init 0xFFFF, not reflected,
  xorout 0x0000, check value 0x29B1 for b"123456789". It covers msg_id, seq and payload. This is
  `binascii.crc_hqx(data, 0xFFFF)`.
- All multi-byte fields are little-endian. Physical values travel as fixed-point integers with
  the unit in the field name (`v_mmps`, `yaw_urad`), so that the C codec in firmware/ and this
  module agree byte for byte, with no float rounding in between.
- Message ids: bit 7 gives the direction (0: host -> base, 1: base -> host); ids with bits 6
  and 5 set (0x60-0x7F, 0xE0-0xFF) are simulator-only and never sent to or by a real base.

This module is pure: no I/O, no threads. `FrameDecoder` turns a byte stream into frames and
counts what it had to throw away; the message classes pack and unpack payloads.
"""

from __future__ import annotations

import binascii
import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

PROTOCOL_VERSION = 2
#: The versions this host speaks, newest first: it asks for the newest and falls back.
SUPPORTED_VERSIONS = (2, 1)
#: STATE's current_ma when the base does not measure its battery current.
CURRENT_UNKNOWN_MA = -(2**31)

MAX_PAYLOAD = 1024
HEADER_SIZE = 3  # msg_id:u8 + seq:u16
CRC_SIZE = 2
MIN_FRAME = HEADER_SIZE + CRC_SIZE
MAX_FRAME = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE
# COBS adds one byte per started block of 254, plus the leading code byte.
MAX_ENCODED = MAX_FRAME + (MAX_FRAME + 253) // 254
CRC16_CHECK = 0x29B1  # CRC-16/IBM-3740 of b"123456789"


class ProtocolError(ValueError):
    """A frame or payload that does not follow the protocol."""


def crc16(data: bytes) -> int:
    """CRC-16/IBM-3740 (CCITT-FALSE): poly 0x1021, init 0xFFFF, no reflection, xorout 0."""
    return binascii.crc_hqx(data, 0xFFFF)


# --- COBS -------------------------------------------------------------------------------------


def cobs_encode(data: bytes) -> bytes:
    """Canonical COBS: no 0x00 in the output; a trailing full 254-byte block gets no 0x01."""
    out = bytearray()
    blocks = data.split(b"\x00")
    last = len(blocks) - 1
    for index, block in enumerate(blocks):
        start = 0
        while len(block) - start >= 254:
            out.append(0xFF)
            out += block[start : start + 254]
            start += 254
        remainder = len(block) - start
        if index == last and remainder == 0 and len(block) > 0:
            break  # the block ended exactly on a 254 boundary at the end of the data
        out.append(remainder + 1)
        out += block[start:]
    return bytes(out)


def cobs_decode(encoded: bytes) -> bytes:
    """Inverse of `cobs_encode`; raises ProtocolError on a zero byte or a truncated block."""
    out = bytearray()
    i, n = 0, len(encoded)
    while i < n:
        code = encoded[i]
        if code == 0:
            raise ProtocolError("COBS: zero byte inside a frame")
        end = i + code
        if end > n:
            raise ProtocolError("COBS: block runs past the end of the frame")
        chunk = encoded[i + 1 : end]
        if 0 in chunk:
            raise ProtocolError("COBS: zero byte inside a frame")
        out += chunk
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# --- frames -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    msg_id: int
    seq: int
    payload: bytes


def encode_frame(msg_id: int, seq: int, payload: bytes) -> bytes:
    """One frame on the wire, COBS-encoded and followed by its 0x00 delimiter."""
    if not 0 <= msg_id <= 0xFF:
        raise ProtocolError(f"message id {msg_id} does not fit in a byte")
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = struct.pack("<BH", msg_id, seq & 0xFFFF) + payload
    body += struct.pack("<H", crc16(body))
    return cobs_encode(body) + b"\x00"


def decode_frame(encoded: bytes) -> Frame:
    """Decode one frame given without its 0x00 delimiter; raise ProtocolError if it is bad."""
    if len(encoded) > MAX_ENCODED:
        raise ProtocolError("frame too long")
    body = cobs_decode(encoded)
    if len(body) < MIN_FRAME:
        raise ProtocolError("frame too short")
    if len(body) > MAX_FRAME:
        raise ProtocolError("frame too long")
    (crc,) = struct.unpack_from("<H", body, len(body) - CRC_SIZE)
    if crc16(body[:-CRC_SIZE]) != crc:
        raise ProtocolError("CRC mismatch")
    msg_id, seq = struct.unpack_from("<BH", body)
    return Frame(msg_id, seq, bytes(body[HEADER_SIZE:-CRC_SIZE]))


@dataclass
class DecoderStats:
    """What a FrameDecoder accepted and what it threw away (totals)."""

    frames_ok: int = 0
    crc_errors: int = 0
    cobs_errors: int = 0
    short_frames: int = 0
    oversized: int = 0

    @property
    def frames_bad(self) -> int:
        return self.crc_errors + self.cobs_errors + self.short_frames + self.oversized


class FrameDecoder:
    """Splits a byte stream at 0x00 delimiters and decodes frames; never raises on bad input.

    Memory is bounded: bytes beyond MAX_ENCODED without a delimiter are dropped (counted once
    as an oversized frame) until the next 0x00 resynchronises the stream.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._overflow = False
        self.stats = DecoderStats()

    def feed(self, data: bytes) -> Iterator[Frame]:
        """Decode every frame completed by `data`, in order."""
        start = 0
        while True:
            zero = data.find(0, start)
            if zero < 0:
                self._append(data[start:])
                return
            self._append(data[start:zero])
            start = zero + 1
            frame = self._finish()
            if frame is not None:
                yield frame

    def _append(self, chunk: bytes) -> None:
        if self._overflow or not chunk:
            return
        if len(self._buffer) + len(chunk) > MAX_ENCODED:
            self._buffer.clear()
            self._overflow = True
            self.stats.oversized += 1
            return
        self._buffer += chunk

    def _finish(self) -> Frame | None:
        if self._overflow:
            self._overflow = False
            return None
        if not self._buffer:
            return None  # idle delimiter: a sender may send 0x00 to flush a partial frame
        encoded = bytes(self._buffer)
        self._buffer.clear()
        try:
            body = cobs_decode(encoded)
        except ProtocolError:
            self.stats.cobs_errors += 1
            return None
        if len(body) < MIN_FRAME:
            self.stats.short_frames += 1
            return None
        if len(body) > MAX_FRAME:
            self.stats.oversized += 1
            return None
        (crc,) = struct.unpack_from("<H", body, len(body) - CRC_SIZE)
        if crc16(body[:-CRC_SIZE]) != crc:
            self.stats.crc_errors += 1
            return None
        msg_id, seq = struct.unpack_from("<BH", body)
        self.stats.frames_ok += 1
        return Frame(msg_id, seq, bytes(body[HEADER_SIZE:-CRC_SIZE]))


class SequenceCounter:
    """Counts frames lost in one direction from the 16-bit sequence numbers.

    A forward jump of up to 0x7FFF counts as that many lost frames; anything else (a repeat or
    a jump backwards, as after the sender restarts) only resynchronises.
    """

    def __init__(self) -> None:
        self.expected: int | None = None
        self.lost = 0
        self.resyncs = 0

    def reset(self) -> None:
        self.expected = None

    def observe(self, seq: int) -> None:
        if self.expected is not None:
            gap = (seq - self.expected) & 0xFFFF
            if 0 < gap < 0x8000:
                self.lost += gap
            elif gap != 0:
                self.resyncs += 1
        self.expected = (seq + 1) & 0xFFFF


# --- messages ---------------------------------------------------------------------------------


class MsgId(enum.IntEnum):
    # host -> base
    HELLO = 0x01
    CMD_VEL = 0x02
    HEARTBEAT = 0x03
    SET_ESTOP = 0x04
    SIM_RESET = 0x60  # simulator only
    SIM_GET_DOCK_POSE = 0x61  # simulator only
    # base -> host
    HELLO_ACK = 0x81
    STATE = 0x82
    SCAN = 0x83
    HEARTBEAT_ACK = 0x84
    ERROR = 0x85
    SIM_DOCK_POSE = 0xE0  # simulator only
    SIM_IMAGE = 0xE1  # simulator only


def is_sim_only(msg_id: int) -> bool:
    return msg_id & 0x60 == 0x60


def is_from_base(msg_id: int) -> bool:
    return bool(msg_id & 0x80)


class HelloFlags(enum.IntFlag):
    WANT_SIM_IMAGES = 0x0001  # a simulator should stream SIM_IMAGE frames to this host


class Capability(enum.IntFlag):
    LIDAR = 0x0001
    BATTERY = 0x0002
    BUMPER = 0x0004
    DOCK_CONTACT = 0x0008
    ESTOP = 0x0010
    SIM = 0x0080  # the base is a simulator and accepts the SIM_* messages


class StateFlags(enum.IntFlag):
    ESTOP_LATCHED = 0x0001
    DOCKED = 0x0002  # charging contacts closed
    BUMPER = 0x0004
    WATCHDOG_STOPPED = 0x0008  # the base stopped because commands stopped arriving
    READY = 0x0010  # a host completed the HELLO handshake; CMD_VEL is obeyed


class ErrorCode(enum.IntEnum):
    UNKNOWN_MESSAGE = 1
    BAD_LENGTH = 2
    NOT_READY = 3
    BAD_VALUE = 4
    VERSION_MISMATCH = 5


M = TypeVar("M", bound="Message")


def _fixed(name: bytes, size: int) -> bytes:
    return name[:size].ljust(size, b"\x00")


class Message:
    """Base of the message classes: fixed layout `FORMAT` (+ an optional variable tail)."""

    MSG_ID: ClassVar[MsgId]
    FORMAT: ClassVar[struct.Struct]

    def pack(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def unpack(cls: type[M], payload: bytes) -> M:
        raise NotImplementedError

    @classmethod
    def _check_fixed(cls, payload: bytes) -> None:
        if len(payload) != cls.FORMAT.size:
            raise ProtocolError(
                f"{cls.MSG_ID.name}: payload of {len(payload)} bytes, expected {cls.FORMAT.size}"
            )


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """Host -> base: opens a session. The host starts its sequence numbers at 0."""

    MSG_ID: ClassVar[MsgId] = MsgId.HELLO
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<HHI")
    version: int = PROTOCOL_VERSION
    flags: int = 0
    nonce: int = 0

    def pack(self) -> bytes:
        return self.FORMAT.pack(self.version, self.flags, self.nonce)

    @classmethod
    def unpack(cls, payload: bytes) -> Hello:
        cls._check_fixed(payload)
        return cls(*cls.FORMAT.unpack(payload))


@dataclass(frozen=True, slots=True)
class CmdVel(Message):
    """Host -> base: velocity command; feeds the base's command watchdog."""

    MSG_ID: ClassVar[MsgId] = MsgId.CMD_VEL
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<hh")
    v_mmps: int = 0
    w_mradps: int = 0

    def pack(self) -> bytes:
        return self.FORMAT.pack(self.v_mmps, self.w_mradps)

    @classmethod
    def unpack(cls, payload: bytes) -> CmdVel:
        cls._check_fixed(payload)
        return cls(*cls.FORMAT.unpack(payload))


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    """Host -> base: echoed at once as HEARTBEAT_ACK (round-trip time). Not a command."""

    MSG_ID: ClassVar[MsgId] = MsgId.HEARTBEAT
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<I")
    host_us: int = 0

    def pack(self) -> bytes:
        return self.FORMAT.pack(self.host_us)

    @classmethod
    def unpack(cls, payload: bytes) -> Heartbeat:
        cls._check_fixed(payload)
        return cls(*cls.FORMAT.unpack(payload))


@dataclass(frozen=True, slots=True)
class SetEstop(Message):
    """Host -> base: 1 latches the e-stop; 0 releases it (the operator's acknowledgement)."""

    MSG_ID: ClassVar[MsgId] = MsgId.SET_ESTOP
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<B")
    engage: int = 1

    def pack(self) -> bytes:
        return self.FORMAT.pack(self.engage)

    @classmethod
    def unpack(cls, payload: bytes) -> SetEstop:
        cls._check_fixed(payload)
        return cls(*cls.FORMAT.unpack(payload))


@dataclass(frozen=True, slots=True)
class SimReset(Message):
    """Host -> simulator only: reset the world with a seed; answered with SIM_DOCK_POSE."""

    MSG_ID: ClassVar[MsgId] = MsgId.SIM_RESET
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<I")
    seed: int = 0

    def pack(self) -> bytes:
        return self.FORMAT.pack(self.seed)

    @classmethod
    def unpack(cls, payload: bytes) -> SimReset:
        cls._check_fixed(payload)
        return cls(*cls.FORMAT.unpack(payload))


@dataclass(frozen=True, slots=True)
class SimGetDockPose(Message):
    """Host -> simulator only: ask for the dock pose; answered with SIM_DOCK_POSE."""

    MSG_ID: ClassVar[MsgId] = MsgId.SIM_GET_DOCK_POSE
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<")

    def pack(self) -> bytes:
        return b""

    @classmethod
    def unpack(cls, payload: bytes) -> SimGetDockPose:
        cls._check_fixed(payload)
        return cls()


@dataclass(frozen=True, slots=True)
class HelloAck(Message):
    """Base -> host: the version the base will speak (the host's, if it supports it; else its
    own newest) and what the base has. A base answering another version stays not READY."""

    MSG_ID: ClassVar[MsgId] = MsgId.HELLO_ACK
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<HIHHBB16s")
    version: int = PROTOCOL_VERSION
    nonce: int = 0
    capabilities: int = 0
    watchdog_ms: int = 250
    state_rate_hz: int = 50
    scan_rate_hz: int = 10
    name: bytes = b""

    def pack(self) -> bytes:
        return self.FORMAT.pack(
            self.version, self.nonce, self.capabilities, self.watchdog_ms,
            self.state_rate_hz, self.scan_rate_hz, _fixed(self.name, 16),
        )

    @classmethod
    def unpack(cls, payload: bytes) -> HelloAck:
        cls._check_fixed(payload)
        version, nonce, caps, watchdog_ms, state_hz, scan_hz, name = cls.FORMAT.unpack(payload)
        return cls(version, nonce, caps, watchdog_ms, state_hz, scan_hz, name.rstrip(b"\x00"))


@dataclass(frozen=True, slots=True)
class State(Message):
    """Base -> host at state_rate_hz (50 Hz): odometry, battery, flags (version 2).

    x_mm, y_mm, yaw_urad: pose in the odometry frame; v_mmps, w_mradps: measured velocities;
    last_cmd_seq: sequence number of the last CMD_VEL the base applied. current_ma: the
    battery's current as the base measures it (BatteryState's sign convention, REP 145: positive
    while charging; CURRENT_UNKNOWN_MA when it does not measure it); power_supply_status:
    sensor_msgs/BatteryState's constant (0 unknown, 1 charging, 2 discharging, 3 not
    charging, 4 full).
    """

    MSG_ID: ClassVar[MsgId] = MsgId.STATE
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<IiiihhHHHiB")
    t_ms: int = 0
    x_mm: int = 0
    y_mm: int = 0
    yaw_urad: int = 0
    v_mmps: int = 0
    w_mradps: int = 0
    battery_permille: int = 0
    flags: int = 0
    last_cmd_seq: int = 0
    current_ma: int = CURRENT_UNKNOWN_MA
    power_supply_status: int = 0

    def pack(self) -> bytes:
        return self.FORMAT.pack(
            self.t_ms, self.x_mm, self.y_mm, self.yaw_urad, self.v_mmps, self.w_mradps,
            self.battery_permille, self.flags, self.last_cmd_seq, self.current_ma,
            self.power_supply_status,
        )

    @classmethod
    def unpack(cls, payload: bytes) -> State:
        cls._check_fixed(payload)
        return cls(*cls.FORMAT.unpack(payload))

    def v1(self) -> StateV1:
        """The same state in version 1's layout, for a host that speaks version 1."""
        return StateV1(self.t_ms, self.x_mm, self.y_mm, self.yaw_urad, self.v_mmps,
                       self.w_mradps, self.battery_permille, self.flags, self.last_cmd_seq)


@dataclass(frozen=True, slots=True)
class StateV1(Message):
    """STATE as version 1 lays it out (26 bytes, no battery current or status): what a
    version-1 base sends, and what a base sends to a host that asked for version 1."""

    MSG_ID: ClassVar[MsgId] = MsgId.STATE
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<IiiihhHHH")
    t_ms: int = 0
    x_mm: int = 0
    y_mm: int = 0
    yaw_urad: int = 0
    v_mmps: int = 0
    w_mradps: int = 0
    battery_permille: int = 0
    flags: int = 0
    last_cmd_seq: int = 0

    def pack(self) -> bytes:
        return self.FORMAT.pack(
            self.t_ms, self.x_mm, self.y_mm, self.yaw_urad, self.v_mmps, self.w_mradps,
            self.battery_permille, self.flags, self.last_cmd_seq,
        )

    @classmethod
    def unpack(cls, payload: bytes) -> StateV1:
        cls._check_fixed(payload)
        return cls(*cls.FORMAT.unpack(payload))


SCAN_HEADER = struct.Struct("<HHHH")
MAX_SCAN_BEAMS_PER_FRAME = (MAX_PAYLOAD - SCAN_HEADER.size) // 2  # 508


@dataclass(frozen=True, slots=True)
class Scan(Message):
    """Base -> host at scan_rate_hz: one chunk of a LiDAR scan.

    A scan of `total` beams covers 360 degrees counter-clockwise from the base's forward axis,
    beam i at 2*pi*i/total; it is sent as chunks (first, count) with the same scan_id.
    ranges_mm: 0 means no return.
    """

    MSG_ID: ClassVar[MsgId] = MsgId.SCAN
    FORMAT: ClassVar[struct.Struct] = SCAN_HEADER
    scan_id: int = 0
    total: int = 0
    first: int = 0
    ranges_mm: tuple[int, ...] = field(default_factory=tuple)

    def pack(self) -> bytes:
        n = len(self.ranges_mm)
        if n > MAX_SCAN_BEAMS_PER_FRAME:
            raise ProtocolError(f"SCAN: {n} beams in one frame, at most {MAX_SCAN_BEAMS_PER_FRAME}")
        return self.FORMAT.pack(self.scan_id, self.total, self.first, n) + struct.pack(
            f"<{n}H", *self.ranges_mm
        )

    @classmethod
    def unpack(cls, payload: bytes) -> Scan:
        if len(payload) < cls.FORMAT.size:
            raise ProtocolError(f"SCAN: payload of {len(payload)} bytes is shorter than its header")
        scan_id, total, first, count = cls.FORMAT.unpack_from(payload)
        if count > MAX_SCAN_BEAMS_PER_FRAME or len(payload) != cls.FORMAT.size + 2 * count:
            raise ProtocolError(f"SCAN: {count} beams announced, {len(payload)} bytes of payload")
        if first + count > total:
            raise ProtocolError(f"SCAN: beams {first}..{first + count} past total {total}")
        ranges = struct.unpack_from(f"<{count}H", payload, cls.FORMAT.size)
        return cls(scan_id, total, first, tuple(ranges))


@dataclass(frozen=True, slots=True)
class HeartbeatAck(Message):
    """Base -> host: echo of a HEARTBEAT, with the base's clock."""

    MSG_ID: ClassVar[MsgId] = MsgId.HEARTBEAT_ACK
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<II")
    host_us: int = 0
    t_ms: int = 0

    def pack(self) -> bytes:
        return self.FORMAT.pack(self.host_us, self.t_ms)

    @classmethod
    def unpack(cls, payload: bytes) -> HeartbeatAck:
        cls._check_fixed(payload)
        return cls(*cls.FORMAT.unpack(payload))


ERROR_HEADER = struct.Struct("<BB")
MAX_ERROR_TEXT = 64


@dataclass(frozen=True, slots=True)
class Error(Message):
    """Base -> host: a frame the base refused (code, the id it refused, ASCII detail)."""

    MSG_ID: ClassVar[MsgId] = MsgId.ERROR
    FORMAT: ClassVar[struct.Struct] = ERROR_HEADER
    code: int = 0
    about_id: int = 0
    text: bytes = b""

    def pack(self) -> bytes:
        return self.FORMAT.pack(self.code, self.about_id) + self.text[:MAX_ERROR_TEXT]

    @classmethod
    def unpack(cls, payload: bytes) -> Error:
        if not cls.FORMAT.size <= len(payload) <= cls.FORMAT.size + MAX_ERROR_TEXT:
            raise ProtocolError(f"ERROR: payload of {len(payload)} bytes")
        code, about = cls.FORMAT.unpack_from(payload)
        return cls(code, about, bytes(payload[cls.FORMAT.size :]))


@dataclass(frozen=True, slots=True)
class SimDockPose(Message):
    """Simulator only, base -> host: the world's seed and the dock's pose in the odom frame."""

    MSG_ID: ClassVar[MsgId] = MsgId.SIM_DOCK_POSE
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<Iiii")
    seed: int = 0
    x_mm: int = 0
    y_mm: int = 0
    yaw_urad: int = 0

    def pack(self) -> bytes:
        return self.FORMAT.pack(self.seed, self.x_mm, self.y_mm, self.yaw_urad)

    @classmethod
    def unpack(cls, payload: bytes) -> SimDockPose:
        cls._check_fixed(payload)
        return cls(*cls.FORMAT.unpack(payload))


IMAGE_HEADER = struct.Struct("<HHHHHB")
IMAGE_ENCODING_RGB8 = 0


@dataclass(frozen=True, slots=True)
class SimImage(Message):
    """Simulator only, base -> host: rows [first_row, first_row + rows) of camera frame
    frame_id, RGB8, row-major. Real bases have no camera on the wire (the host has one)."""

    MSG_ID: ClassVar[MsgId] = MsgId.SIM_IMAGE
    FORMAT: ClassVar[struct.Struct] = IMAGE_HEADER
    frame_id: int = 0
    width: int = 0
    height: int = 0
    first_row: int = 0
    rows: int = 0
    encoding: int = IMAGE_ENCODING_RGB8
    data: bytes = b""

    def pack(self) -> bytes:
        if len(self.data) != self.width * self.rows * 3:
            raise ProtocolError("SIM_IMAGE: data does not hold width * rows RGB pixels")
        if len(self.data) > MAX_PAYLOAD - self.FORMAT.size:
            raise ProtocolError(f"SIM_IMAGE: {self.rows} rows do not fit in one frame")
        return (
            self.FORMAT.pack(
                self.frame_id, self.width, self.height, self.first_row, self.rows, self.encoding
            )
            + self.data
        )

    @classmethod
    def unpack(cls, payload: bytes) -> SimImage:
        if len(payload) < cls.FORMAT.size:
            raise ProtocolError(f"SIM_IMAGE: payload of {len(payload)} bytes")
        frame_id, width, height, first_row, rows, encoding = cls.FORMAT.unpack_from(payload)
        data = bytes(payload[cls.FORMAT.size :])
        if encoding != IMAGE_ENCODING_RGB8:
            raise ProtocolError(f"SIM_IMAGE: unknown encoding {encoding}")
        if len(data) != width * rows * 3 or first_row + rows > height:
            raise ProtocolError("SIM_IMAGE: rows do not match the announced size")
        return cls(frame_id, width, height, first_row, rows, encoding, data)


MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.MSG_ID: cls
    for cls in (
        Hello, CmdVel, Heartbeat, SetEstop, SimReset, SimGetDockPose,
        HelloAck, State, Scan, HeartbeatAck, Error, SimDockPose, SimImage,
    )
}


#: Layouts of earlier protocol versions a receiver still decodes, by (id, payload size).
OLD_LAYOUTS: dict[tuple[int, int], type[Message]] = {
    (MsgId.STATE, StateV1.FORMAT.size): StateV1,
}


def parse_message(frame: Frame) -> Message:
    """The message in a frame; raises ProtocolError for an unknown id or a bad payload. A
    payload in an earlier version's layout decodes as that layout's class (StateV1)."""
    old = OLD_LAYOUTS.get((frame.msg_id, len(frame.payload)))
    if old is not None:
        return old.unpack(frame.payload)
    cls = MESSAGE_TYPES.get(frame.msg_id)
    if cls is None:
        raise ProtocolError(f"unknown message id 0x{frame.msg_id:02X}")
    return cls.unpack(frame.payload)


def encode_message(message: Message, seq: int) -> bytes:
    return encode_frame(message.MSG_ID, seq, message.pack())


# --- unit conversion (host side) --------------------------------------------------------------

I16_MAX = 0x7FFF
I32_MAX = 0x7FFFFFFF


def _saturate(value: float, scale: float, limit: int) -> int:
    scaled = value * scale
    if scaled != scaled:  # NaN: nothing sensible to send, stop
        return 0
    if scaled >= limit:
        return limit
    if scaled <= -limit:
        return -limit
    return round(scaled)


def to_i16(value: float, scale: float) -> int:
    """Round `value * scale` to the nearest integer, saturated to +-32767; NaN gives 0."""
    return _saturate(value, scale, I16_MAX)


def to_i32(value: float, scale: float) -> int:
    """Round `value * scale` to the nearest integer, saturated to +-(2**31 - 1); NaN gives 0."""
    return _saturate(value, scale, I32_MAX)
