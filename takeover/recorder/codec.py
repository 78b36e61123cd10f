"""Image compression for episode files: none, lzf, gzip (deflate) at a chosen level.

Why the writer compresses frames itself: h5py holds the GIL while HDF5 runs a filter, so a
frame compressed inside `dataset[i] = frame` stalls every other Python thread, the control
loop included, for the whole compression (3 to 25 ms for a 640x480 frame). `zlib.compress`
releases the GIL, so the writer deflates each frame outside HDF5 and stores the bytes with
`write_direct_chunk`: the file is exactly what HDF5's own deflate filter would have written,
and any HDF5 reader decompresses it. LZF has no GIL-free encoder in Python, so `lzf` frames go
through HDF5's filter and do cost the loop time (measured by `takeover bench recorder`).

The default is `none`, chosen by `takeover bench recorder` (figures in docs/recorder.md): on
camera-like frames deflate saves only 23 to 30 % of the disk (frames carry sensor noise), for
six times the CPU (at 640x480 and 30 Hz, a whole core of a 2-core laptop, where it can no
longer keep up alone), and the extra load on the machine showed in the control loop's lateness
(p99 1.3 ms against 0.2 ms raw); lzf saves 5 % and holds the GIL while it compresses (p99
2.4 ms). Choose `gzip` where disk matters more than CPU: the writer then stores frames raw
whenever it falls behind, so it still never drops a step.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from takeover.errors import UsageError

DEFAULT_COMPRESSION = "none"
CHOICES = ("none", "lzf", "gzip", "gzip:N")  # N in 1..9; plain "gzip" is level 1


@dataclass(frozen=True)
class Compression:
    """A parsed compression choice. `name` is 'none', 'lzf' or 'gzip'; `level` for gzip."""

    name: str
    level: int = 0

    @classmethod
    def parse(cls, spec: str | Compression | None) -> Compression:
        """'none' | 'lzf' | 'gzip' (level 1) | 'gzip:N' (N in 1..9); None means the default."""
        if isinstance(spec, Compression):
            return spec
        text = (spec or DEFAULT_COMPRESSION).strip().lower()
        if text in ("none", "lzf"):
            return cls(text)
        if text == "gzip":
            return cls("gzip", 1)
        if text.startswith("gzip:"):
            try:
                level = int(text[5:])
            except ValueError:
                level = -1
            if 1 <= level <= 9:
                return cls("gzip", level)
        raise UsageError(
            f"unknown compression {spec!r}; choose none, lzf, gzip or gzip:N with N in 1..9"
        )

    def __str__(self) -> str:
        return f"gzip:{self.level}" if self.name == "gzip" else self.name

    @property
    def encodes_outside_hdf5(self) -> bool:
        """Frames are encoded by `encode` (GIL released) and written as raw chunks."""
        return self.name in ("none", "gzip")

    def h5py_kwargs(self) -> dict[str, Any]:
        """Filter arguments for `create_dataset` of the image dataset."""
        if self.name == "gzip":
            return {"compression": "gzip", "compression_opts": self.level}
        if self.name == "lzf":
            return {"compression": "lzf"}
        return {}

    def encode(self, frame: npt.NDArray[np.uint8]) -> tuple[bytes | memoryview, int]:
        """(chunk bytes, HDF5 filter mask) for one C-contiguous frame.

        When deflate would not make the frame smaller (sensor noise), the raw bytes are stored
        with filter-mask bit 0 set, which tells HDF5 readers that the filter was skipped.
        """
        raw = memoryview(np.ascontiguousarray(frame).data).cast("B")
        if self.name == "none":
            return raw, 0
        if self.name != "gzip":
            raise ValueError(f"{self} frames are encoded by HDF5, not by encode()")
        packed = zlib.compress(raw, self.level)  # releases the GIL while it deflates
        if len(packed) >= raw.nbytes:
            return raw, 0b1
        return packed, 0
