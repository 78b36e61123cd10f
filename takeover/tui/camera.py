"""The camera view: half-block cells, or the terminal's own graphics (Kitty, Sixel).

`tui.camera` (takeover.toml) picks how frames are drawn:

- `auto`: Kitty graphics or Sixel where the terminal answers that it supports them, else
  half-block cells;
- `kitty` / `sixel`: that protocol, without asking the terminal (forced);
- `halfblock`: two pixels per character cell, coloured upper half blocks (any truecolor
  terminal, tmux, SSH, the tests' headless driver);
- `off`: no pictures (a caption says so).

Graphics come from textual-image. It asks the terminal what it supports *when it is imported*
(a Device Attributes query for Sixel, a Kitty graphics query, the cell size in pixels), reading
the answers from stdin with a 0.1 s timeout. That only works before Textual starts its own
reader of stdin, and it raises (termios.error) if stdout is a terminal but stdin is not. So
textual-image is imported in one place, `probe_terminal_graphics()`, which `takeover run` calls
before the app starts and which never raises; an app that was not probed (the tests' headless
Pilot, tools) draws half-block cells for `auto`.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult
from textual.strip import Strip
from textual.widget import Widget

from takeover.config import CAMERA_MODES

GRAPHICS_RENDERERS = ("kitty", "sixel")
RENDERER_LABEL = {"kitty": "Kitty graphics", "sixel": "Sixel", "halfblock": "half-block",
                  "off": "off"}

# --- choosing the renderer -------------------------------------------------------------------


@dataclass(frozen=True)
class TerminalGraphics:
    """What `probe_terminal_graphics()` found.

    protocol: "kitty", "sixel", or None (the terminal answered neither, or is not a terminal).
    usable: textual-image is loaded and its widgets may be created (False: loading it failed,
        or would have failed; then even a forced protocol falls back to half-block cells).
    detail: one line for the operator (why this protocol, or why none).
    """

    protocol: str | None
    usable: bool
    detail: str


@dataclass(frozen=True)
class CameraChoice:
    """The renderer the camera views use: halfblock | kitty | sixel | off, and why."""

    renderer: str
    reason: str

    @property
    def label(self) -> str:
        return RENDERER_LABEL[self.renderer]


def choose_camera(setting: str, graphics: TerminalGraphics | None) -> CameraChoice:
    """The renderer for `tui.camera = setting`, given what the terminal said (None: it was not
    asked, e.g. a headless app; `auto` then means half-block)."""
    if setting not in CAMERA_MODES:
        raise ValueError(f"tui.camera = {setting!r}: use one of {', '.join(CAMERA_MODES)}")
    if setting in ("off", "halfblock"):
        return CameraChoice(setting, f"tui.camera = {setting}")
    if graphics is not None and not graphics.usable:
        return CameraChoice("halfblock", f"no terminal graphics ({graphics.detail})")
    if setting in GRAPHICS_RENDERERS:
        return CameraChoice(setting, f"tui.camera = {setting} (forced)")
    if graphics is None:
        return CameraChoice("halfblock", "terminal not probed for graphics (headless)")
    if graphics.protocol in GRAPHICS_RENDERERS:
        return CameraChoice(graphics.protocol, graphics.detail)
    return CameraChoice("halfblock", graphics.detail)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (ValueError, OSError):  # closed or detached
        return False


def probe_terminal_graphics() -> TerminalGraphics:
    """Load textual-image, which asks the terminal for Kitty graphics and Sixel support and its
    cell size in pixels. Call it before Textual starts (it reads the answers from stdin). Never
    raises."""
    stdout_tty, stdin_tty = _isatty(sys.__stdout__), _isatty(sys.__stdin__)
    if stdout_tty and not stdin_tty:
        # textual-image would write its queries to the terminal and fail reading the answers
        # from a stdin that is not one (termios.error, not caught there).
        return TerminalGraphics(None, False, "stdin is not a terminal, so it cannot answer")
    try:
        import textual_image.renderable as renderables
        import textual_image.widget  # noqa: F401  (caches the cell size while stdin is ours)
    except Exception as err:  # an odd terminal must never keep the operator from driving
        return TerminalGraphics(None, False, f"textual-image failed: {type(err).__name__}: {err}")
    if not stdout_tty:
        return TerminalGraphics(None, True, "stdout is not a terminal")
    # An answer that came after textual-image stopped waiting (0.1 s; a slow SSH link) would
    # reach Textual as key presses: drop whatever is pending now (keys typed during start-up
    # included). One that arrives later still gets through; docs/tui.md says what to set then.
    with contextlib.suppress(Exception):  # no termios, or stdin gone: nothing to drop
        import termios

        termios.tcflush(sys.__stdin__.fileno(), termios.TCIFLUSH)  # type: ignore[union-attr]
    if renderables.Image is renderables.SixelImage:
        return TerminalGraphics("sixel", True, "the terminal supports Sixel")
    if renderables.Image is renderables.TGPImage:
        return TerminalGraphics("kitty", True, "the terminal supports Kitty graphics")
    return TerminalGraphics(None, True, "the terminal answered neither Kitty graphics nor Sixel")


# --- half-block cells ----------------------------------------------------------------------


@lru_cache(maxsize=8192)
def _cell_style(top: int, bottom: int) -> Style:
    """Colours packed as 15-bit RGB (5 bits a channel): few distinct styles, cached."""
    def rgb(c: int) -> Color:
        return Color.from_rgb(((c >> 10) & 31) * 8.2, ((c >> 5) & 31) * 8.2, (c & 31) * 8.2)

    return Style(color=rgb(top), bgcolor=rgb(bottom))


def halfblock_rows(image: npt.NDArray[np.uint8], width: int, height: int) -> list[Strip]:
    """An RGB image as `height` rows of `width` cells, two pixels a cell (upper half block)."""
    h, w, _ = image.shape
    if width <= 0 or height <= 0:
        return []
    # Keep the aspect ratio (a cell is about twice as tall as wide: two pixels fit it).
    scale = min(width / w, 2 * height / h)
    out_w, out_h = max(1, int(w * scale)), max(2, int(h * scale) // 2 * 2)
    ys = np.minimum((np.arange(out_h) * h / out_h).astype(np.intp), h - 1)
    xs = np.minimum((np.arange(out_w) * w / out_w).astype(np.intp), w - 1)
    small = image[ys][:, xs].astype(np.uint16) >> 3
    packed = (small[..., 0] << 10) | (small[..., 1] << 5) | small[..., 2]
    pad_left = (width - out_w) // 2
    strips: list[Strip] = []
    blank = Segment(" " * pad_left) if pad_left else None
    for row in range(0, out_h, 2):
        top, bottom = packed[row].tolist(), packed[row + 1].tolist()
        segments = [blank] if blank else []
        segments.extend(Segment("▀", _cell_style(t, b)) for t, b in zip(top, bottom, strict=True))
        strips.append(Strip(segments, pad_left + out_w))
    return strips


# --- the widget ------------------------------------------------------------------------------


def graphics_widget_class(renderer: str) -> type[Widget]:
    """The textual-image widget for `renderer` (kitty | sixel). Imports textual-image: in
    `takeover run` that happened in `probe_terminal_graphics()`, before the app started."""
    if renderer == "kitty":
        return _kitty_widget_class()
    from textual_image.widget import SixelImage

    return SixelImage


@lru_cache(maxsize=1)
def _kitty_widget_class() -> type[Widget]:
    from PIL import Image as PILImage
    from textual_image.renderable.tgp import Image as TGPRenderable
    from textual_image.widget import TGPImage

    class NativeSizeTGP(TGPRenderable):
        """Sends the frame at its own size and lets the terminal scale it into the
        placement's cells (Kitty scales virtual placements to their rows and columns).
        textual-image would first scale it to the cells' pixels: for a 96x96 frame in 48x24
        cells of 10x20 px, a 480x480 PNG (26 kB, 9 ms to encode) instead of 96x96 (1 kB,
        0.5 ms). Should textual-image rename the hook, its own scaled upload is used."""

        def __init__(self, image: PILImage.Image, width: int | str | None = None,
                     height: int | str | None = None) -> None:
            super().__init__(image, width, height)
            self._source_size = image.size

        def _send_image_to_terminal(self, width: int, height: int) -> None:
            super()._send_image_to_terminal(*self._source_size)

    class KittyCamera(TGPImage, Renderable=NativeSizeTGP):
        """textual-image's Kitty widget, uploading frames at their own size."""

    return KittyCamera


# Sixel has no scaling: the picture is encoded pixel by pixel in this process, at about
# 0.25 µs a pixel (12 ms for 192x192, 55 ms for 480x480; docs/tui.md), ten times a second.
# Its longest side is capped (twice a 96x96 frame); Kitty graphics and half-block cells cost
# the same at any size.
SIXEL_MAX_PX = 192


class CameraView(Widget):
    """The robot's camera: `show(frame)` with an (H, W, 3) uint8 RGB frame, or None for the
    caption. `renderer` (a `CameraChoice.renderer`) is fixed for the widget's life."""

    DEFAULT_CSS = """
    CameraView { height: 1fr; width: 1fr; align: center middle; }
    CameraView > .camera-graphics { width: auto; height: auto; }
    """

    def __init__(self, *, renderer: str = "halfblock", id: str | None = None) -> None:
        super().__init__(id=id)
        if renderer not in RENDERER_LABEL:
            raise ValueError(f"unknown camera renderer {renderer!r}")
        self.renderer = renderer
        self._image: npt.NDArray[np.uint8] | None = None
        self._strips: list[Strip] = []
        self._drawn_size = (0, 0)
        self._graphics: Any = None  # textual-image's widget (kitty, sixel)
        self.caption = "camera off (tui.camera = off)" if renderer == "off" else "no camera"

    def compose(self) -> ComposeResult:
        if self.renderer in GRAPHICS_RENDERERS:
            self._graphics = graphics_widget_class(self.renderer)(classes="camera-graphics")
            self._graphics.display = False
            yield self._graphics

    def on_mount(self) -> None:
        if self.renderer == "sixel" and self._graphics is not None:
            from textual_image._terminal import get_cell_size

            cell = get_cell_size()  # cached: asked once, before the app started
            self._graphics.styles.max_width = max(1, SIXEL_MAX_PX // max(1, cell.width))
            self._graphics.styles.max_height = max(1, SIXEL_MAX_PX // max(1, cell.height))

    def show(self, image: npt.NDArray[np.uint8] | None) -> None:
        if self.renderer == "off":
            image = None
        if image is self._image:
            return
        had_image = self._image is not None
        self._image = image
        self._strips = []
        if self._graphics is not None:
            if image is not None:
                from PIL import Image as PILImage

                self._graphics.image = PILImage.fromarray(image)
            self._graphics.display = image is not None
            if had_image == (image is not None):
                return  # the picture changed; the caption underneath did not
        self.refresh()

    def render_line(self, y: int) -> Strip:
        size = (self.size.width, self.size.height)
        if self._image is None:
            if y == self.size.height // 2:
                return Strip([Segment(self.caption.center(self.size.width), Style(dim=True))])
            return Strip.blank(self.size.width)
        if self._graphics is not None:  # drawn by the child
            return Strip.blank(self.size.width)
        if not self._strips or size != self._drawn_size:
            self._drawn_size = size
            self._strips = halfblock_rows(self._image, *size)
        if y < len(self._strips):
            return self._strips[y]
        return Strip.blank(self.size.width)
