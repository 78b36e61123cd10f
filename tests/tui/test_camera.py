"""The camera view: how `tui.camera` and the terminal's answers choose the renderer, and the
app drawing live frames headless with each renderer (half-block cells, Kitty graphics, Sixel,
off). A real terminal's answers are covered by the tmux smoke test (test_tmux_smoke.py)."""

from __future__ import annotations

import base64
import io
import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from textual.geometry import Region
from tui_support import wait_for

from takeover.config import CAMERA_MODES, Config, KeyboardConfig, TuiConfig, config_from_dict
from takeover.errors import ConfigError
from takeover.hw.base import open_link
from takeover.tui.app import make_app
from takeover.tui.camera import (
    SIXEL_MAX_PX,
    CameraChoice,
    CameraView,
    TerminalGraphics,
    choose_camera,
    halfblock_rows,
    probe_terminal_graphics,
)

SIZE = (140, 44)

KITTY = TerminalGraphics("kitty", True, "the terminal supports Kitty graphics")
SIXEL = TerminalGraphics("sixel", True, "the terminal supports Sixel")
NEITHER = TerminalGraphics(None, True, "the terminal answered neither Kitty graphics nor Sixel")
BROKEN = TerminalGraphics(None, False, "stdin is not a terminal, so it cannot answer")


# --- choosing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "graphics", "renderer"), [
    # auto: what the terminal said; not asked (headless) or no answer: half-block
    ("auto", None, "halfblock"),
    ("auto", KITTY, "kitty"),
    ("auto", SIXEL, "sixel"),
    ("auto", NEITHER, "halfblock"),
    ("auto", BROKEN, "halfblock"),
    # forced: whatever the terminal said, unless textual-image cannot be loaded at all
    ("kitty", None, "kitty"),
    ("kitty", NEITHER, "kitty"),
    ("kitty", SIXEL, "kitty"),
    ("kitty", BROKEN, "halfblock"),
    ("sixel", None, "sixel"),
    ("sixel", KITTY, "sixel"),
    ("sixel", BROKEN, "halfblock"),
    # never graphics
    ("halfblock", KITTY, "halfblock"),
    ("halfblock", None, "halfblock"),
    ("off", KITTY, "off"),
    ("off", None, "off"),
])
def test_choose_camera(setting: str, graphics: TerminalGraphics | None, renderer: str) -> None:
    choice = choose_camera(setting, graphics)
    assert choice.renderer == renderer
    assert choice.reason and choice.label
    if graphics is not None and not graphics.usable and setting not in ("halfblock", "off"):
        assert graphics.detail in choice.reason  # the operator is told why


def test_choose_camera_rejects_unknown_settings() -> None:
    with pytest.raises(ValueError, match=r"tui\.camera"):
        choose_camera("iterm", None)


@pytest.mark.parametrize("setting", CAMERA_MODES)
def test_config_accepts_every_camera_setting(setting: str) -> None:
    assert config_from_dict({"tui": {"camera": setting}}).tui.camera == setting


def test_config_rejects_an_unknown_camera_setting() -> None:
    with pytest.raises(ConfigError, match=r"tui\.camera = 'kity': use auto, kitty, sixel, halfblock or off"):
        config_from_dict({"tui": {"camera": "kity"}})


class FakeStream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_probe_without_a_terminal_asks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    out = FakeStream(tty=False)
    monkeypatch.setattr(sys, "__stdout__", out)
    monkeypatch.setattr(sys, "__stdin__", FakeStream(tty=False))
    graphics = probe_terminal_graphics()
    assert graphics == TerminalGraphics(None, True, "stdout is not a terminal")
    assert out.getvalue() == ""  # no query written
    assert choose_camera("auto", graphics).renderer == "halfblock"


def test_probe_with_stdin_not_a_terminal_does_not_load_textual_image(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """textual-image would write its queries and raise reading the answers from a pipe."""
    out = FakeStream(tty=True)
    monkeypatch.setattr(sys, "__stdout__", out)
    monkeypatch.setattr(sys, "__stdin__", FakeStream(tty=False))
    graphics = probe_terminal_graphics()
    assert not graphics.usable and "stdin" in graphics.detail
    assert out.getvalue() == ""
    assert choose_camera("kitty", graphics).renderer == "halfblock"


# --- half-block cells -------------------------------------------------------------------------


def test_halfblock_rows_keep_the_aspect_ratio_and_colours() -> None:
    image = np.zeros((96, 96, 3), dtype=np.uint8)
    image[:48] = (255, 0, 0)  # top half red, bottom half blue
    image[48:] = (0, 0, 255)
    strips = halfblock_rows(image, 60, 20)
    assert len(strips) == 20  # 40 pixel rows, two a cell
    first, last = list(strips[0]), list(strips[-1])
    assert first[0].text.strip() == "" and first[0].cell_length == 10  # centred: (60 - 40) / 2
    assert all(s.text == "▀" for s in first[1:]) and len(first) == 41
    assert first[1].style is not None and first[1].style.color is not None
    assert first[1].style.color.get_truecolor().red > 200
    assert last[1].style is not None and last[1].style.bgcolor is not None
    assert last[1].style.bgcolor.get_truecolor().blue > 200


# --- the app, headless --------------------------------------------------------------------------


class UploadRecorder(io.StringIO):
    """sys.__stdout__ for the test: where textual-image sends Kitty uploads."""

    def isatty(self) -> bool:
        return False


def kitty_png_sizes(upload: str) -> list[tuple[int, int]]:
    """(width, height) of each PNG sent with the Kitty graphics protocol (f=100, chunked m=1)."""
    sizes, payload = [], ""
    for control, data in re.findall(r"\x1b_G([^;\x1b]*);?([^\x1b]*)\x1b\\", upload):
        if "f=100" not in control:
            continue
        payload += data
        if "m=0" in control:
            png = base64.b64decode(payload)
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            sizes.append(struct.unpack(">II", png[16:24]))
            payload = ""
    return sizes


@pytest.mark.parametrize("setting", ["auto", "halfblock", "kitty", "sixel", "off"])
async def test_drive_screen_draws_live_frames(setting: str, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    upload = UploadRecorder()
    monkeypatch.setattr(sys, "__stdout__", upload)
    config = Config(keyboard=KeyboardConfig(initial_hold_ms=1500.0, repeat_hold_ms=1000.0),
                    tui=TuiConfig(camera=setting))
    app = make_app(config, open_link("sim://?seed=3"), None, None, use_gamepad=False)
    # Headless, nothing was asked of a terminal: auto draws half-block cells; forced stays forced.
    expected = {"auto": "halfblock"}.get(setting, setting)
    assert app.camera == choose_camera(setting, None)
    assert isinstance(app.camera, CameraChoice) and app.camera.renderer == expected
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connected and app.session.loop.latest is not None,
                       what="the link")
        camera = app.screen.query_one(CameraView)
        assert camera.renderer == expected
        assert camera.parent is not None
        assert camera.parent.border_title == f"camera ({app.camera.label})"
        await wait_for(pilot, lambda: camera._image is not None or setting == "off", what="a frame")
        if expected == "off":
            for _ in range(10):
                await pilot.pause(0.05)
            assert camera._image is None and not camera.children
            assert "camera off" in "".join(s.text for s in camera.render_line(camera.size.height // 2))
        elif expected == "halfblock":
            assert not camera.children
            line = camera.render_line(camera.size.height // 2)
            assert sum(s.text == "▀" for s in line) >= 40  # 96x96 in ~48x24 cells
        elif expected == "kitty":
            (child,) = camera.children
            await wait_for(pilot, lambda: child.display and len(kitty_png_sizes(upload.getvalue())) >= 3,
                           what="Kitty uploads")
            # Sent at the frame's own size; the terminal scales it into the cells.
            assert set(kitty_png_sizes(upload.getvalue())) == {(96, 96)}
            assert "a=p" in upload.getvalue() and "U=1" in upload.getvalue()  # virtual placement
            line = child.render_line(0)
            assert "\U0010eeee" in "".join(s.text for s in line)  # placeholder cells
        else:
            (child,) = camera.children
            cell_w, cell_h = 10, 20  # textual-image's cell size when no terminal says otherwise
            assert child.styles.max_width is not None and child.styles.max_height is not None
            assert child.styles.max_width.value == SIXEL_MAX_PX // cell_w
            assert child.styles.max_height.value == SIXEL_MAX_PX // cell_h

            def sixels() -> str:
                if not child.display or not child.children:
                    return ""
                impl = child.children[0]  # recomposed with each frame: laid out yet?
                if not (impl.size.width and impl.size.height):
                    return ""
                lines = impl.render_lines(Region(0, 0, impl.size.width, impl.size.height))
                return "".join(s.text for line in lines for s in line)

            await wait_for(pilot, lambda: "\x1bP" in sixels(), what="Sixel data")
            assert child.size.width <= SIXEL_MAX_PX // cell_w
            assert upload.getvalue() == ""  # Sixel goes out with Textual's own output
        # No frame: the caption, and the graphics hidden (checked before the next frame comes).
        camera.show(None)
        assert all(not c.display for c in camera.children)
        text = "".join(s.text for s in camera.render_line(camera.size.height // 2))
        assert ("camera off" if expected == "off" else "no camera") in text
        if setting in ("auto", "halfblock"):
            app.save_screenshot(f"camera-{setting}.svg", path=str(tmp_path))
