"""The attention overlay on the camera view: the policy's `attention` map (a real ONNX model run
by onnxruntime) tints the live drive camera and the replayed episode's frames when the camera's
key (`i`) is pressed, and the drawn cells change.

TAKEOVER_SAVE_SVG=docs/img saves the screenshot for the docs (docs/img/attention_overlay.svg);
otherwise it goes to tmp. TAKEOVER_ATTENTION_ONNX=PATH draws a trained model's map instead of the
tiny untrained one (the docs' screenshot: docs/tui.md says which).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from textual.strip import Strip
from tui_support import tiny_onnx_model, wait_for

from takeover.config import Config
from takeover.hw.base import open_link
from takeover.policy.runtime import load_policy
from takeover.tui import camera as camera_module
from takeover.tui.app import make_app
from takeover.tui.camera import CameraView, halfblock_rows, overlay_attention, upsample_map
from takeover.tui.episodes import EpisodesScreen, ReplayScreen
from takeover.types import Mode

SIZE = (140, 44)
SVG_DIR = os.environ.get("TAKEOVER_SAVE_SVG")
TRAINED_ONNX = os.environ.get("TAKEOVER_ATTENTION_ONNX")


def cells(camera: CameraView) -> list[Strip]:
    return [camera.render_line(y) for y in range(camera.size.height)]


def styles(strips: list[Strip]) -> list[tuple[object, ...]]:
    return [tuple(s.style for s in strip) for strip in strips]


# --- the tint --------------------------------------------------------------------------------


def test_upsample_map_is_bilinear_on_cell_centres() -> None:
    a = np.array([[0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    up = upsample_map(a, 4, 8)
    assert up.shape == (4, 8)
    assert up[0, 0] == 0.0 and up[0, -1] == 1.0  # edges held
    assert np.all(np.diff(up[0]) >= 0) and np.allclose(up[0], up[-1])
    assert np.allclose(upsample_map(np.full((3, 3), 0.5), 96, 96), 0.5)


def test_overlay_tints_where_the_map_is_high_and_dims_elsewhere() -> None:
    image = np.full((96, 96, 3), 120, dtype=np.uint8)
    attention = np.zeros((3, 3), dtype=np.float32)
    attention[1, 2] = 1.0  # the middle right cell
    out = overlay_attention(image, attention)
    assert out.shape == image.shape and out.dtype == np.uint8
    hot, cold = out[48, 80].astype(int), out[48, 10].astype(int)
    assert hot[0] > 150 and hot[0] > hot[2] + 80  # towards the heat colour
    assert np.all(cold < 60)  # dimmed to the floor
    assert np.array_equal(image, np.full((96, 96, 3), 120, dtype=np.uint8))  # not in place


# --- the live drive camera -------------------------------------------------------------------


async def test_drive_camera_overlay_toggles_and_changes_the_cells(config: Config,
                                                                  tmp_path: Path) -> None:
    onnx = Path(TRAINED_ONNX) if TRAINED_ONNX else tiny_onnx_model(tmp_path / "policy.onnx")
    policy = load_policy(onnx, config)
    assert policy.runtime.has_attention
    app = make_app(config, open_link("sim://?seed=3"), policy, None, use_gamepad=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connected and app.session.loop.latest is not None,
                       what="the link")
        camera = app.screen.query_one(CameraView)
        assert app.focused is camera  # nothing else on the drive screen takes focus
        await wait_for(pilot, lambda: camera._image is not None, what="a frame")
        assert camera._frame is camera._image and camera.attention is None
        plain = styles(cells(camera))
        await pilot.press("i")
        assert camera.attention_on
        await wait_for(pilot, lambda: camera.attention is not None, what="an attention map")
        h, w = policy.runtime.spec.attention_height, policy.runtime.spec.attention_width
        assert camera.attention is not None and camera.attention.shape == (h, w)
        assert camera.attention.min() >= 0.0 and camera.attention.max() <= 1.0
        # The cells drawn are the tinted frame's, not the camera frame's.
        frame, image = camera._frame, camera._image
        assert frame is not None and image is not None
        size = (camera.size.width, camera.size.height)
        expected = styles(halfblock_rows(frame, *size))
        tinted = styles(cells(camera))[:len(expected)]
        assert tinted == expected
        assert tinted != styles(halfblock_rows(image, *size))
        assert tinted != plain[:len(expected)]
        directory = Path(SVG_DIR) if SVG_DIR else tmp_path
        directory.mkdir(parents=True, exist_ok=True)
        app.save_screenshot("attention_overlay.svg", path=str(directory))
        await pilot.press("i")
        assert not camera.attention_on
        await wait_for(pilot, lambda: camera._frame is camera._image, what="the plain frame")
        # Driving keys still reach the drive screen with the camera focused.
        await pilot.press("m")
        await wait_for(pilot, lambda: app.session.loop.latest is not None
                       and app.session.loop.latest.mode is Mode.MANUAL, what="MANUAL")


async def test_overlay_without_a_model_says_why(config: Config,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []
    real = camera_module.app_attention_source
    monkeypatch.setattr(camera_module, "app_attention_source",
                        lambda app: asked.append(1) or real(app))
    app = make_app(config, open_link("sim://?seed=3"), None, None, use_gamepad=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connected and app.session.loop.latest is not None,
                       what="the link")
        camera = app.screen.query_one(CameraView)
        await wait_for(pilot, lambda: camera._image is not None, what="a frame")
        await pilot.press("i")
        assert camera.attention_on and camera.attention is None
        assert camera._frame is camera._image  # drawn as it is
        assert "no model" in camera.attention_note
        first = camera._image
        await wait_for(pilot, lambda: camera._image is not first, what="the next frame")
        assert camera.attention is None and len(asked) == 1  # asked once, not every frame


# --- episode replay --------------------------------------------------------------------------


async def test_replay_overlay_runs_the_model_over_the_recorded_frames(
        config: Config, workspace: Path) -> None:
    from takeover.policy.runtime import PolicyRuntime
    from takeover.recorder.reader import EpisodeReader
    from takeover.session.drive import DriveRequest, run_drive
    from takeover.workspace.registry import set_current

    run_drive(DriveRequest(robot_url="sim://", driver="expert", episodes=1, seed=11,
                           workspace=workspace, record=True, fast=True, max_steps=30))
    onnx = tiny_onnx_model(workspace / "models" / "r001" / "policy.onnx")
    set_current(workspace, "r001")
    app = make_app(config, open_link("sim://?seed=3"), None, workspace, use_gamepad=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connected, what="the link")
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, EpisodesScreen)
        await wait_for(pilot, lambda: len(screen.infos) == 1, what="the episode list")
        screen.action_replay()
        await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen), what="replay")
        replay = app.screen
        assert isinstance(replay, ReplayScreen)
        await wait_for(pilot, lambda: bool(replay.query(CameraView)), what="the replay camera")
        camera = replay.query_one(CameraView)
        await wait_for(pilot, lambda: app.focused is camera, what="the camera focused")
        await pilot.press("right", "right", "i")
        assert camera.attention_on and camera.attention is not None
        expected = PolicyRuntime(onnx).attention_map(EpisodeReader(replay.info.path).frames(2))
        assert expected is not None
        np.testing.assert_allclose(camera.attention, expected, atol=1e-6)
        assert camera._frame is not None and camera._image is not None
        assert not np.array_equal(camera._frame, camera._image)
        await pilot.press("right")  # the next step's frame gets its own map
        assert replay.index == 3 and sorted(replay._attention) == [2, 3]
