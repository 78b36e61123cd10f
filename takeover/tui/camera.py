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

Attention overlay: `i` (with the camera focused, which it is on the drive and replay screens,
where nothing else takes focus) or `CameraView.toggle_attention()` tints each frame by the
policy's `attention` map (policy/model.py: where in the frame the image features the actions
depend on come from), upsampled from the feature map's few cells to the frame. The map comes
from `show(frame, attention=...)` when the caller has one, else from `attention_source` (a
function of the frame: the map depends on the image alone), else from the model the app drives
with: the in-process loop's own runtime, or the session's deployed model loaded here, torch-free.
Every renderer shows it (the tint is applied to the frame's pixels).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
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


# --- the attention overlay -----------------------------------------------------------------

AttentionSource = Callable[[npt.NDArray[np.uint8]], "npt.NDArray[np.float32] | None"]
# The tint: attended pixels move towards this colour, the rest are dimmed.
ATTENTION_HEAT = np.array([255.0, 72.0, 0.0], dtype=np.float32)
ATTENTION_TINT = 0.5  # how far the most attended pixel moves towards ATTENTION_HEAT
ATTENTION_FLOOR = 0.4  # brightness left to the least attended pixel


def upsample_map(attention: npt.NDArray[np.floating[Any]], height: int, width: int
                 ) -> npt.NDArray[np.float32]:
    """A (h, w) map -> (height, width), bilinear, cell centres on pixel centres (as
    `torch.nn.functional.interpolate(..., align_corners=False)`), edges held."""
    a = np.asarray(attention, dtype=np.float32)
    h, w = a.shape

    def axis(n_in: int, n_out: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp],
                                              npt.NDArray[np.float32]]:
        x = np.clip((np.arange(n_out, dtype=np.float32) + 0.5) * n_in / n_out - 0.5, 0,
                    n_in - 1)
        lo = np.floor(x).astype(np.intp)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (x - lo).astype(np.float32)

    y0, y1, fy = axis(h, height)
    x0, x1, fx = axis(w, width)
    rows = a[y0] * (1 - fy)[:, None] + a[y1] * fy[:, None]  # (height, w)
    return (rows[:, x0] * (1 - fx)[None] + rows[:, x1] * fx[None]).astype(np.float32)


def overlay_attention(image: npt.NDArray[np.uint8], attention: npt.NDArray[np.floating[Any]]
                      ) -> npt.NDArray[np.uint8]:
    """The frame (H, W, 3) uint8 tinted by a map (h, w) in 0..1: unattended pixels dimmed to
    ATTENTION_FLOOR, attended ones pulled towards ATTENTION_HEAT. A new array."""
    h, w = image.shape[:2]
    a = np.clip(np.nan_to_num(upsample_map(attention, h, w)), 0.0, 1.0)[..., None]
    base = image.astype(np.float32) * (ATTENTION_FLOOR + (1 - ATTENTION_FLOOR) * a)
    tinted = base * (1 - ATTENTION_TINT * a) + ATTENTION_HEAT * (ATTENTION_TINT * a)
    return np.clip(tinted + 0.5, 0, 255).astype(np.uint8)


def runtime_attention_source(onnx: Path | str) -> tuple[AttentionSource | None, str]:
    """The attention map of the model at `onnx`, as a function of a frame, loaded here (one
    inference thread, onnxruntime, no torch); (None, why) if it cannot give one."""
    from takeover.policy.runtime import PolicyRuntime
    from takeover.policy.spec import PolicyError

    try:
        runtime = PolicyRuntime(onnx, intra_op_threads=1)
    except PolicyError as e:
        return None, str(e)
    if not runtime.has_attention:
        return None, (f"model {runtime.model_id} has no attention output (exported before it; "
                      "re-export it with `takeover export`)")
    return runtime.attention_map, f"attention of model {runtime.model_id}"


def _app_policy_runtime(app: Any) -> Any:
    """The in-process control loop's policy runtime, or None (a core in its own process)."""
    policy = getattr(getattr(getattr(app, "session", None), "loop", None), "policy", None)
    runtime = getattr(policy, "runtime", None)
    return runtime if runtime is not None and hasattr(runtime, "attention_map") else None


def app_attention_key(app: Any) -> Any:
    """What the app's attention would come from (changes with a deploy), found without loading
    anything: the in-process runtime, or the session's model file."""
    runtime = _app_policy_runtime(app)
    if runtime is not None:
        return ("runtime", id(runtime))
    onnx = getattr(getattr(getattr(app, "session", None), "model", None), "onnx", None)
    return None if onnx is None else ("file", str(onnx))


def app_attention_source(app: Any) -> tuple[AttentionSource | None, str]:
    """Where the app's model can give attention maps: the in-process loop's policy runtime, or
    the session's deployed model loaded here. (source, whose map or why none)."""
    runtime = _app_policy_runtime(app)
    if runtime is not None:
        if not getattr(runtime, "has_attention", False):
            return None, "the policy has no attention output (re-export it)"
        return runtime.attention_map, "attention of the driving policy"
    onnx = getattr(getattr(getattr(app, "session", None), "model", None), "onnx", None)
    if onnx is None:
        return None, "no model loaded: no attention to show"
    return runtime_attention_source(onnx)


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


_NOT_ASKED = object()


class CameraView(Widget):
    """The robot's camera: `show(frame)` with an (H, W, 3) uint8 RGB frame, or None for the
    caption. `renderer` (a `CameraChoice.renderer`) is fixed for the widget's life."""

    DEFAULT_CSS = """
    CameraView { height: 1fr; width: 1fr; align: center middle; }
    CameraView > .camera-graphics { width: auto; height: auto; }
    """
    # Focusable so that its key works; on the drive and replay screens nothing else takes
    # focus, and the keys it does not bind bubble on to the screen as before. Not in the
    # footer (show=False): the screens' footers are the app's (docs/tui.md lists the key).
    can_focus = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("i", "toggle_attention", "Attention", show=False),
    ]

    def __init__(self, *, renderer: str = "halfblock", id: str | None = None,
                 attention_source: AttentionSource | None = None) -> None:
        super().__init__(id=id)
        if renderer not in RENDERER_LABEL:
            raise ValueError(f"unknown camera renderer {renderer!r}")
        self.renderer = renderer
        self._image: npt.NDArray[np.uint8] | None = None
        self._strips: list[Strip] = []
        self._drawn_size = (0, 0)
        self._graphics: Any = None  # textual-image's widget (kitty, sixel)
        self.caption = "camera off (tui.camera = off)" if renderer == "off" else "no camera"
        # The attention overlay: off until toggled. `attention_source` maps a frame to its
        # attention (h, w); None: the app's model is asked when the overlay is turned on.
        self.attention_on = False
        self.attention_source = attention_source
        self.attention_note = ""  # why there is no overlay, or whose map it is
        self.attention: npt.NDArray[np.float32] | None = None  # the map drawn now
        self._given_attention: npt.NDArray[np.float32] | None = None
        self._own_source = attention_source is not None
        self._app_source_key: Any = _NOT_ASKED
        self._frame: npt.NDArray[np.uint8] | None = None  # the frame as drawn (tinted or not)

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

    def show(self, image: npt.NDArray[np.uint8] | None,
             attention: npt.NDArray[np.float32] | None = None) -> None:
        """Draw `image` (H, W, 3) uint8 RGB, or the caption for None. `attention` (h, w) 0..1:
        the map to tint it with while the overlay is on (else `attention_source` is asked)."""
        if self.renderer == "off":
            image = None
        if image is self._image and attention is self._given_attention:
            return
        self._image = image
        self._given_attention = attention
        self._draw()

    def toggle_attention(self) -> bool:
        """Turn the attention overlay on or off; returns whether it is on now."""
        self.attention_on = not self.attention_on
        self._draw()
        if self.attention_on and self.attention is None and self.is_attached:
            self.notify(self.attention_note or "no attention map for this frame",
                        severity="warning")
        return self.attention_on

    def action_toggle_attention(self) -> None:
        self.toggle_attention()

    def _resolve_source(self) -> None:
        """Ask the app for its model's attention (unless one was given), again after a
        deploy."""
        if self._own_source or not self.is_attached:
            return
        key = app_attention_key(self.app)
        if key == self._app_source_key:
            return  # asked already (a model without the output is not loaded again each frame)
        self._app_source_key = key
        self.attention_source, self.attention_note = app_attention_source(self.app)

    def _attention_for(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32] | None:
        if self._given_attention is not None:
            return self._given_attention
        self._resolve_source()
        if self.attention_source is None:
            return None
        try:
            return self.attention_source(image)
        except LookupError as e:  # the source says why it has none
            self.attention_note = str(e)
            self.attention_source = None
            return None
        except Exception as e:  # a model that fails on this frame must not take the view down
            self.attention_note = f"attention failed: {type(e).__name__}: {e}"[:200]
            self.attention_source = None
            return None

    def _draw(self) -> None:
        image = self._image
        self.attention = None
        if image is not None and self.attention_on:
            self.attention = self._attention_for(image)
            if self.attention is not None:
                image = overlay_attention(image, self.attention)
        had_frame = self._frame is not None
        self._frame = image
        self._strips = []
        if self._graphics is not None:
            if image is not None:
                from PIL import Image as PILImage

                self._graphics.image = PILImage.fromarray(image)
            self._graphics.display = image is not None
            if had_frame == (image is not None):
                return  # the picture changed; the caption underneath did not
        self.refresh()

    def render_line(self, y: int) -> Strip:
        size = (self.size.width, self.size.height)
        if self._frame is None:
            if y == self.size.height // 2:
                return Strip([Segment(self.caption.center(self.size.width), Style(dim=True))])
            return Strip.blank(self.size.width)
        if self._graphics is not None:  # drawn by the child
            return Strip.blank(self.size.width)
        if not self._strips or size != self._drawn_size:
            self._drawn_size = size
            self._strips = halfblock_rows(self._frame, *size)
        if y < len(self._strips):
            return self._strips[y]
        return Strip.blank(self.size.width)
