"""The file object that HDF5 writes episodes through: it turns the first failed write into a
clean stop instead of a damaged library state.

When a write fails (full disk, file-size limit, a drive that went away), HDF5's own error path
leaves its objects half-closed, and h5py can crash the whole process later while freeing them,
taking the control loop with it. So HDF5 writes through this object (h5py's `fileobj` driver):
the first failed write is remembered, and that write and every later one are kept in memory
instead of on disk while HDF5 is told they succeeded (reads see them, so HDF5's view stays
whole). What is on disk is then exactly a prefix of HDF5's writes, the same state a crash at
that moment would leave, which SWMR keeps consistent and recovery salvages. The episode writer
checks `error` after each HDF5 call, stops recording and closes the file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from takeover.recorder.errors import RecorderError

#: After a failure, at most this much of HDF5's later writes is kept in memory (only the
#: closing metadata is expected: recording stops at the failure).
HELD_LIMIT_BYTES = 64 * 1024 * 1024


class WriteFailed(RecorderError, OSError):
    """A write to an episode file failed; carries the errno and text of the first failure."""


class _PositionedFile(io.RawIOBase):
    """A raw file over an OS descriptor with its own position (reads and writes use
    pread/pwrite at `_pos`); subclasses set `fd` and `_pos` in __init__."""

    fd: int
    _pos: int

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = os.fstat(self.fd).st_size + offset
        return self._pos

    def tell(self) -> int:
        return self._pos


class GuardedFile(_PositionedFile):
    """A seekable read/write file on a raw descriptor (pread/pwrite, GIL released in the
    system call) that swallows write failures after recording the first one."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        super().__init__()
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        self.path = path
        self.fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)
        self._pos = 0
        self.error: OSError | None = None
        # Writes after the failure, (offset, bytes), kept so that HDF5 reads back what it wrote.
        self._held: list[tuple[int, bytes]] = []
        self._held_bytes = 0

    # io.RawIOBase protocol used by h5py's fileobj driver: seek, tell, readinto, write,
    # truncate, flush.
    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view):
            chunk = os.pread(self.fd, len(view) - done, self._pos + done)
            if not chunk:  # past the end: HDF5 asked for space it allocated but never wrote
                view[done:] = bytes(len(view) - done)
                break
            view[done:done + len(chunk)] = chunk
            done += len(chunk)
        start, end = self._pos, self._pos + len(view)
        for offset, data in self._held:  # in write order: later writes win
            lo, hi = max(start, offset), min(end, offset + len(data))
            if lo < hi:
                view[lo - start:hi - start] = data[lo - offset:hi - offset]
        self._pos = end
        return len(view)

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        n = len(view)
        if self.error is None:
            done = 0
            try:
                while done < n:
                    done += os.pwrite(self.fd, view[done:], self._pos + done)
            except OSError as err:
                self.error = err
                self._hold(self._pos + done, view[done:])
        else:
            self._hold(self._pos, view)
        self._pos += n
        return n

    def _hold(self, offset: int, data: memoryview) -> None:
        if self._held_bytes < HELD_LIMIT_BYTES:
            self._held.append((offset, bytes(data)))
            self._held_bytes += len(data)

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self.fd, size)
            except OSError as err:
                self.error = err
        return size

    def flush(self) -> None:
        pass

    def fsync(self) -> None:
        if self.error is None:
            try:
                os.fsync(self.fd)
            except OSError as err:
                self.error = err

    def check(self) -> None:
        """Raise WriteFailed if any write has failed."""
        if self.error is not None:
            err = self.error
            raise WriteFailed(err.errno, err.strerror or str(err), str(self.path))

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


# --- reading a partial file whose writer died ---------------------------------------------------

_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 `hashlittle`, the checksum of HDF5's metadata (H5_checksum_lookup3)."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & 0xFFFFFFFF
    m = 0xFFFFFFFF
    i = 0
    while length - i > 12:
        a = (a + int.from_bytes(data[i:i + 4], "little")) & m
        b = (b + int.from_bytes(data[i + 4:i + 8], "little")) & m
        c = (c + int.from_bytes(data[i + 8:i + 12], "little")) & m
        a = (a - c) & m; a ^= _rot(c, 4); c = (c + b) & m  # noqa: E702
        b = (b - a) & m; b ^= _rot(a, 6); a = (a + c) & m  # noqa: E702
        c = (c - b) & m; c ^= _rot(b, 8); b = (b + a) & m  # noqa: E702
        a = (a - c) & m; a ^= _rot(c, 16); c = (c + b) & m  # noqa: E702
        b = (b - a) & m; b ^= _rot(a, 19); a = (a + c) & m  # noqa: E702
        c = (c - b) & m; c ^= _rot(b, 4); b = (b + a) & m  # noqa: E702
        i += 12
    tail = data[i:] + bytes(12 - (length - i))
    if length - i == 0:
        return c
    a = (a + int.from_bytes(tail[0:4], "little")) & m
    b = (b + int.from_bytes(tail[4:8], "little")) & m
    c = (c + int.from_bytes(tail[8:12], "little")) & m
    c ^= b; c = (c - _rot(b, 14)) & m  # noqa: E702
    a ^= c; a = (a - _rot(c, 11)) & m  # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & m  # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & m  # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & m  # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & m  # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & m  # noqa: E702
    return c


def cleared_superblock(head: bytes) -> bytes | None:
    """The first bytes of an HDF5 file with its consistency flags cleared (what `h5clear -s`
    writes), or None if the file does not start with a version 2 or 3 superblock."""
    if len(head) < 12 or head[:8] != _SIGNATURE or head[8] not in (2, 3):
        return None
    size_of_offsets = head[9]
    end = 12 + 4 * size_of_offsets
    if len(head) < end + 4:
        return None
    if int.from_bytes(head[end:end + 4], "little") != lookup3(head[:end]):
        return None  # not a superblock we understand: leave it alone
    patched = bytearray(head[:end])
    patched[11] = 0
    return bytes(patched) + lookup3(bytes(patched)).to_bytes(4, "little")


class ClearedFlagsReader(_PositionedFile):
    """Read-only view of an HDF5 file whose writer died, as if `h5clear -s` had been run:
    the superblock's "open for writing" flags read as clear. The file itself is not changed."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._pos = 0
        head = os.pread(self.fd, 64, 0)
        patched = cleared_superblock(head)
        if patched is None:
            os.close(self.fd)
            raise ValueError(f"{path}: no version 2/3 HDF5 superblock at the start")
        self._head = patched

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        n = len(view)
        data = bytearray()
        while len(data) < n:
            chunk = os.pread(self.fd, n - len(data), self._pos + len(data))
            if not chunk:
                break
            data += chunk
        data += bytes(n - len(data))
        if self._pos < len(self._head):
            k = min(len(self._head) - self._pos, n)
            data[:k] = self._head[self._pos:self._pos + k]
        view[:] = data
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()
