"""The simulator exposed as robot-base firmware speaking the serial protocol, over a pty or TCP.

`SimFirmware` is the base side of docs/serial-protocol.md, written the way real firmware is: it
obeys CMD_VEL only after a HELLO handshake of a version it speaks (2, or 1 for an older host:
then STATE goes out without the battery current), stops when its host hangs up,
goes silent for a second or stops commanding for 250 ms (the simulator's own watchdog), keeps
its e-stop latched until SET_ESTOP 0, answers heartbeats, and streams STATE (50 Hz), SCAN
(10 Hz) and, for hosts that ask, the simulator-only SIM_IMAGE frames (20 Hz). A base whose
simulator plays a real one (`RealTimeBase.real_base`) leaves SIM and DOCK_CONTACT out of its
capabilities and refuses the SIM_* requests as a real base does (it still streams SIM_IMAGE to
a host that asks: the camera a real robot would have).

Transports: `PtyServer` (a pseudo-terminal, as a USB-CDC port would appear: the host opens the
printed /dev/pts/N path) and `TcpServer` (one host at a time on HOST:PORT, reached with the host
URL socket://HOST:PORT). Both can be unplugged and replugged, for the fault tests.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import socket
import threading
import time
import tty
from collections import deque
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from takeover.hw.serial import protocol as sp
from takeover.sim.realtime import BaseState, RealTimeBase
from takeover.types import Command

SIM_CAPABILITIES = (
    sp.Capability.LIDAR | sp.Capability.BATTERY | sp.Capability.BUMPER
    | sp.Capability.DOCK_CONTACT | sp.Capability.ESTOP | sp.Capability.SIM
)
# A simulator playing a real base (`--reset drive`): no SIM (no reset, no dock pose) and no
# DOCK_CONTACT (its DOCKED flag is never set: the battery's current tells a dock).
REAL_BASE_CAPABILITIES = SIM_CAPABILITIES & ~(sp.Capability.SIM | sp.Capability.DOCK_CONTACT)
HOST_SILENCE_TIMEOUT_S = 1.0  # no frame from the host this long: it is gone, stop and unready
FIRMWARE_NAME = b"takeover-sim"


class SimFirmware:
    """The protocol endpoint of the simulated base. Thread-safe.

    `receive` takes bytes from the transport (its reader thread); frames to send are queued in
    a bounded outbox that the transport's writer drains with `next_frame`. Telemetry comes from
    the physics thread through the TelemetrySink methods.
    """

    def __init__(self, base: RealTimeBase, version: int = sp.PROTOCOL_VERSION,
                 oldest_version: int = 1) -> None:
        """version: the newest protocol version this base speaks; it also speaks every one
        down to oldest_version (the one the host asks for, as the protocol allows)."""
        self.base = base
        self.version = version
        self.oldest_version = oldest_version
        self._session_version = version
        self._decoder = sp.FrameDecoder()
        self._rx_seq = sp.SequenceCounter()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # Control frames are small and few; camera rows are many and the first to be dropped
        # when the host cannot keep up (the newest two frames' worth are kept).
        self._control: deque[sp.Message] = deque(maxlen=256)
        self._images: deque[sp.Message] = deque(maxlen=80)
        self._tx_seq = 0
        self._ready = False
        self._want_images = False
        self._last_host_rx = 0.0
        self._last_cmd_seq = 0
        self.commands_received = 0  # velocity commands from the host (tests wait on the count)
        self._frame_id = 0
        self._scan_id = 0
        self.errors_sent = 0
        self.frames_dropped = 0
        base.set_sink(self)

    # --- transport side ------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready

    def receive(self, data: bytes) -> None:
        for frame in self._decoder.feed(data):
            self._handle(frame)

    def host_hung_up(self) -> None:
        """The transport says the host is gone (EOF, EIO): stop and forget the session."""
        with self._lock:
            was_ready = self._ready
            self._ready = False
            self._control.clear()
            self._images.clear()
        if was_ready:
            self.base.host_gone()

    def check_host_alive(self) -> None:
        """Called periodically by the transport: a silent host is a gone host."""
        if self._ready and time.monotonic() - self._last_host_rx > HOST_SILENCE_TIMEOUT_S:
            self.host_hung_up()

    def next_frame(self, timeout_s: float) -> bytes | None:
        """The next frame to write, control frames first; None after timeout_s.

        Sequence numbers are given here, in the order frames go out, so that a host counts
        only frames that never left as lost (camera rows dropped for a slow host).
        """
        with self._wake:
            if not self._control and not self._images:
                self._wake.wait(timeout_s)
            if self._control:
                message = self._control.popleft()
            elif self._images:
                message = self._images.popleft()
            else:
                return None
            frame = sp.encode_message(message, self._tx_seq)
            self._tx_seq = (self._tx_seq + 1) & 0xFFFF
            return frame

    def _queue(self, message: sp.Message, image: bool = False) -> None:
        with self._wake:
            box = self._images if image else self._control
            if len(box) == box.maxlen:
                self.frames_dropped += 1
                self._tx_seq = (self._tx_seq + 1) & 0xFFFF  # the dropped frame's number
            box.append(message)
            self._wake.notify()

    def _error(self, code: sp.ErrorCode, about_id: int, text: str) -> None:
        self.errors_sent += 1
        self._queue(sp.Error(int(code), about_id, text.encode("ascii", "replace")))

    # --- protocol ------------------------------------------------------------------------------

    def _handle(self, frame: sp.Frame) -> None:
        self._last_host_rx = time.monotonic()
        self._rx_seq.observe(frame.seq)
        msg_cls = sp.MESSAGE_TYPES.get(frame.msg_id)
        if msg_cls is None or sp.is_from_base(frame.msg_id):
            self._error(sp.ErrorCode.UNKNOWN_MESSAGE, frame.msg_id, "unknown message id")
            return
        try:
            message = msg_cls.unpack(frame.payload)
        except sp.ProtocolError as exc:
            self._error(sp.ErrorCode.BAD_LENGTH, frame.msg_id, str(exc))
            return
        if isinstance(message, sp.SetEstop):
            # Engaging works with or without a session: an e-stop must never be refused.
            if message.engage or self._ready:
                self.base.set_estop(bool(message.engage))
            else:
                self._error(sp.ErrorCode.NOT_READY, frame.msg_id, "release needs a HELLO first")
        elif isinstance(message, sp.Hello):
            self._hello(message)
        elif isinstance(message, sp.Heartbeat):
            self._queue(sp.HeartbeatAck(message.host_us, self._t_ms()))
        elif not self._ready:
            self._error(sp.ErrorCode.NOT_READY, frame.msg_id, "send HELLO first")
        elif isinstance(message, sp.CmdVel):
            self._last_cmd_seq = frame.seq
            self.commands_received += 1
            self.base.command(Command(message.v_mmps / 1000.0, message.w_mradps / 1000.0))
        elif isinstance(message, sp.SimReset | sp.SimGetDockPose) and self.base.real_base:
            self._error(sp.ErrorCode.UNKNOWN_MESSAGE, frame.msg_id, "sim-only message")
        elif isinstance(message, sp.SimReset):
            with self._lock:
                self._images.clear()  # rows of the old world's frames
            self.base.reset(message.seed)
            self._queue(self._dock_pose_message())
        elif isinstance(message, sp.SimGetDockPose):
            self._queue(self._dock_pose_message())
        else:
            self._error(sp.ErrorCode.UNKNOWN_MESSAGE, frame.msg_id, "not accepted by a base")

    def _hello(self, hello: sp.Hello) -> None:
        ok = self.oldest_version <= hello.version <= self.version
        with self._lock:
            # The host starts a new session: its sequence numbers restart, the base's go on.
            self._rx_seq.reset()
            self._ready = ok
            if ok:
                self._session_version = hello.version
            self._want_images = ok and bool(hello.flags & sp.HelloFlags.WANT_SIM_IMAGES)
            self._images.clear()
        self._queue(
            sp.HelloAck(
                version=hello.version if ok else self.version, nonce=hello.nonce,
                capabilities=int(REAL_BASE_CAPABILITIES if self.base.real_base
                                 else SIM_CAPABILITIES),
                watchdog_ms=self.base.watchdog_timeout_ms,
                state_rate_hz=round(self.base.state_rate_hz),
                scan_rate_hz=round(self.base.scan_rate_hz), name=FIRMWARE_NAME,
            )
        )
        if not ok:
            self._error(
                sp.ErrorCode.VERSION_MISMATCH, hello.MSG_ID,
                f"base speaks v{self.version}, host v{hello.version}",
            )

    def _dock_pose_message(self) -> sp.SimDockPose:
        dock = self.base.dock_pose()
        return sp.SimDockPose(
            self.base.seed & 0xFFFFFFFF, sp.to_i32(dock.x_m, 1000), sp.to_i32(dock.y_m, 1000),
            sp.to_i32(dock.yaw_rad, 1e6),
        )

    def _t_ms(self) -> int:
        return (self.base.sim.t_ns // 1_000_000) & 0xFFFFFFFF

    # --- telemetry (physics thread) ------------------------------------------------------------

    def on_state(self, state: BaseState) -> None:
        if not self._ready:
            return
        flags = sp.StateFlags.READY
        if state.estop:
            flags |= sp.StateFlags.ESTOP_LATCHED
        if state.docked:
            flags |= sp.StateFlags.DOCKED
        if state.bumper:
            flags |= sp.StateFlags.BUMPER
        if state.watchdog_stopped:
            flags |= sp.StateFlags.WATCHDOG_STOPPED
        odom = state.odom
        message = sp.State(
            t_ms=(state.t_ns // 1_000_000) & 0xFFFFFFFF,
            x_mm=sp.to_i32(odom.x_m, 1000), y_mm=sp.to_i32(odom.y_m, 1000),
            yaw_urad=sp.to_i32(odom.yaw_rad, 1e6),
            v_mmps=sp.to_i16(odom.v_mps, 1000), w_mradps=sp.to_i16(odom.w_radps, 1000),
            battery_permille=max(0, min(1000, round(state.battery_frac * 1000))),
            flags=int(flags), last_cmd_seq=self._last_cmd_seq,
            current_ma=sp.to_i32(state.battery_current_a, 1000),
            power_supply_status=state.power_supply_status,
        )
        self._queue(message if self._session_version >= 2 else message.v1())

    def on_scan(self, t_ns: int, ranges_m: npt.NDArray[np.float32]) -> None:
        if not self._ready:
            return
        mm = np.nan_to_num(ranges_m.astype(np.float64) * 1000.0, nan=0.0, posinf=0.0)
        mm = np.clip(np.rint(mm), 0, 65535).astype(np.uint16)
        self._scan_id = (self._scan_id + 1) & 0xFFFF
        total = len(mm)
        for first in range(0, total, sp.MAX_SCAN_BEAMS_PER_FRAME):
            chunk = mm[first : first + sp.MAX_SCAN_BEAMS_PER_FRAME]
            self._queue(sp.Scan(self._scan_id, total, first, tuple(int(r) for r in chunk)))

    def on_image(self, t_ns: int, image: npt.NDArray[np.uint8]) -> None:
        if not (self._ready and self._want_images):
            return
        height, width = image.shape[:2]
        rows_per_frame = max(1, (sp.MAX_PAYLOAD - sp.IMAGE_HEADER.size) // (3 * width))
        self._frame_id = (self._frame_id + 1) & 0xFFFF
        data = np.ascontiguousarray(image, dtype=np.uint8)
        for row in range(0, height, rows_per_frame):
            rows = min(rows_per_frame, height - row)
            self._queue(
                sp.SimImage(self._frame_id, width, height, row, rows, sp.IMAGE_ENCODING_RGB8,
                            data[row : row + rows].tobytes()),
                image=True,
            )


class _Transport:
    """Shared plumbing: a writer thread draining the firmware's outbox, and unplug/replug."""

    def __init__(self, firmware: SimFirmware) -> None:
        self.firmware = firmware
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._plugged = threading.Event()
        self._plugged.set()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _write_all(self, data: bytes) -> bool:
        raise NotImplementedError

    def _writer(self) -> None:
        while not self._stop.is_set():
            frame = self.firmware.next_frame(0.1)
            self.firmware.check_host_alive()
            if frame is not None and not self._write_all(frame):
                self.firmware.host_hung_up()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2.0)
        self._threads.clear()


class TcpServer(_Transport):
    """The firmware on a TCP port: one host at a time; a new connection replaces the old one.

    `unplug()` closes the connection and the listening socket (the host sees the cable go);
    `replug()` listens again on the same port.
    """

    def __init__(self, firmware: SimFirmware, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(firmware)
        self.host = host
        self._listener = self._listen(port)
        self.port: int = self._listener.getsockname()[1]
        self._conn: socket.socket | None = None
        self._conn_lock = threading.Lock()
        self._spawn(self._accept_loop, "sim-fw-accept")
        self._spawn(self._writer, "sim-fw-tx")

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, port))
        listener.listen(2)
        listener.settimeout(0.1)
        return listener

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            if not self._plugged.is_set():
                self._stop.wait(0.02)
                continue
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._conn_lock:
                old, self._conn = self._conn, conn
            if old is not None:
                _close_quietly(old)
                self.firmware.host_hung_up()
            self._spawn(functools.partial(self._reader, conn), "sim-fw-rx")

    def _reader(self, conn: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([conn], [], [], 0.1)
                if not ready:
                    continue
                data = conn.recv(65536)
            except (OSError, ValueError):
                data = b""
            if not data:
                break
            self.firmware.receive(data)
        with self._conn_lock:
            if self._conn is conn:
                self._conn = None
                self.firmware.host_hung_up()
        _close_quietly(conn)

    def _write_all(self, data: bytes) -> bool:
        with self._conn_lock:
            conn = self._conn
        if conn is None:
            return True  # nobody to tell; the firmware stops streaming once unready
        try:
            conn.settimeout(0.5)
            conn.sendall(data)
            return True
        except OSError:
            return False

    def unplug(self) -> None:
        self._plugged.clear()
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            _close_quietly(conn)
        # shutdown() wakes the accept thread's poll; close() alone would leave the socket
        # listening until that poll times out, and a quick replug could not bind the port.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        _close_quietly(self._listener)
        self.firmware.host_hung_up()

    def replug(self) -> None:
        deadline = time.monotonic() + 2.0
        while True:
            try:
                self._listener = self._listen(self.port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # the old socket is still going away
        self._plugged.set()

    def close(self) -> None:
        self.unplug()
        super().close()


class PtyServer(_Transport):
    """The firmware on a pseudo-terminal: the host opens `path` like a USB-CDC port.

    The host hanging up shows as EIO on the master side. `unplug()` closes the pty (the path
    disappears, like a USB device); `replug()` opens a new one and, when a `link_path` was given,
    points that symlink at it (as udev does for /dev/serial/by-id/...).
    """

    def __init__(self, firmware: SimFirmware, link_path: str | None = None) -> None:
        super().__init__(firmware)
        self.link_path = link_path
        self._master = -1
        self.path = ""
        self._open_pty()
        self._spawn(self._reader, "sim-fw-rx")
        self._spawn(self._writer, "sim-fw-tx")

    @property
    def url(self) -> str:
        return self.link_path or self.path

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: a byte pipe like a USB-CDC port
        self.path = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        if self.link_path:
            tmp = f"{self.link_path}.tmp"
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            os.symlink(self.path, tmp)
            os.replace(tmp, self.link_path)

    def _reader(self) -> None:
        while not self._stop.is_set():
            master = self._master
            if master < 0:
                self._stop.wait(0.02)
                continue
            try:
                ready, _, _ = select.select([master], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(master, 65536)
            except BlockingIOError:
                continue
            except OSError:
                # EIO: no host has the port open (it hung up, or has not opened it yet);
                # EBADF: unplugged under us. Anything else is treated the same: no host.
                self.firmware.host_hung_up()
                self._stop.wait(0.02)
                continue
            self.firmware.receive(data)

    def _write_all(self, data: bytes) -> bool:
        view = memoryview(data)
        deadline = time.monotonic() + 0.5
        while view:
            master = self._master
            if master < 0 or not self.firmware.ready:
                return True
            try:
                view = view[os.write(master, view) :]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False  # the host stopped reading
                select.select([], [master], [], 0.05)
            except OSError:
                return False
        return True

    def unplug(self) -> None:
        master, self._master = self._master, -1
        if master >= 0:
            _close_fd_quietly(master)
        self.firmware.host_hung_up()

    def replug(self) -> None:
        self._open_pty()

    def close(self) -> None:
        self.unplug()
        super().close()
        if self.link_path:
            with contextlib.suppress(OSError):
                os.unlink(self.link_path)


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def _close_fd_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


class SimSerialServer:
    """A simulated base behind a serial transport: what `takeover sim serve --serial-*` runs."""

    def __init__(
        self,
        transport: str = "tcp",
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        link_path: str | None = None,
        version: int = sp.PROTOCOL_VERSION,
        base: RealTimeBase | None = None,
        oldest_version: int = 1,
    ) -> None:
        self.base = base or RealTimeBase(seed)
        self.firmware = SimFirmware(self.base, version=version, oldest_version=oldest_version)
        self.transport: TcpServer | PtyServer
        if transport == "tcp":
            self.transport = TcpServer(self.firmware, host, port)
        elif transport == "pty":
            self.transport = PtyServer(self.firmware, link_path)
        else:
            raise ValueError(f"unknown transport {transport!r}")
        self.base.start()

    @property
    def url(self) -> str:
        """What a host opens: socket://HOST:PORT, or the pty's path."""
        return self.transport.url

    def unplug(self) -> None:
        self.transport.unplug()

    def replug(self) -> None:
        self.transport.replug()

    def close(self) -> None:
        self.transport.close()
        self.base.stop()

    def __enter__(self) -> SimSerialServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
