"""Host camera (OpenCV, optional) and `takeover sim serve`."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from takeover.cli.sim import add_sim_parser, parse_host_port
from takeover.errors import LinkError, UsageError
from takeover.hw.base import LinkOptions, open_link
from takeover.hw.camera import OpenCVCamera, crop_resize
from takeover.sim.serial_server import SimSerialServer


def _write_video(path: Path, frames: int = 12) -> None:
    cv2 = importlib.import_module("cv2")  # a dev dependency: never skipped
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (160, 120))
    assert writer.isOpened()
    for k in range(frames):
        frame = np.zeros((120, 160, 3), dtype=np.uint8)
        frame[:, :, 2] = 200  # red in BGR
        frame[40:80, 60 + k : 100 + k, 1] = 255
        writer.write(frame)
    writer.release()


def wait_for(predicate: object, timeout_s: float) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_crop_resize_keeps_the_centre_and_returns_rgb() -> None:
    cv2 = importlib.import_module("cv2")  # a dev dependency: never skipped
    bgr = np.zeros((120, 160, 3), dtype=np.uint8)
    bgr[:, :20] = (255, 0, 0)  # blue stripe on the left edge: cropped away
    bgr[:, 20:140] = (0, 0, 255)  # red centre
    rgb = crop_resize(bgr, 96, 96, cv2)
    assert rgb.shape == (96, 96, 3)
    assert rgb[48, 48].tolist() == [255, 0, 0] and rgb[:, 0, 2].max() < 40


def test_opencv_camera_reads_a_video_file(tmp_path: Path) -> None:
    video = tmp_path / "cam.avi"
    _write_video(video)
    camera = OpenCVCamera(str(video), 64, 48, fps=100.0)
    camera.start()
    try:
        wait_for(lambda: camera.latest() is not None, 5.0)
        frame = camera.latest()
        assert frame is not None
        t_ns, image = frame
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8
        assert image[..., 0].mean() > 150  # red came through as RGB
        assert 0 < time.monotonic_ns() - t_ns < 5e9
    finally:
        camera.stop()


def test_missing_camera_is_a_clear_error() -> None:
    importlib.import_module("cv2")  # a dev dependency: never skipped
    camera = OpenCVCamera("/nonexistent/video7", 96, 96)
    with pytest.raises(LinkError, match="could not be opened"):
        camera.start()


def test_serial_link_takes_its_images_from_the_host_camera(tmp_path: Path) -> None:
    video = tmp_path / "cam.avi"
    _write_video(video, frames=30)
    with SimSerialServer("tcp", seed=1) as server:
        link = open_link(f"{server.url}?camera={video}&camera_fps=60",
                         LinkOptions(camera_width=32, camera_height=24))
        link.connect()
        try:
            obs = link.latest()
            assert obs is not None and obs.image is not None
            assert obs.image.shape == (24, 32, 3)  # the host camera's, not the sim's 96x96
            assert link.health().extra["images"] == 0  # no SIM_IMAGE frames were asked for
        finally:
            link.close()


def test_camera_module_does_not_import_opencv_until_used() -> None:
    code = "import sys, takeover.hw.camera, takeover.hw.serial.link; print('cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


# --- takeover sim serve --------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="takeover")
    add_sim_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_sim_serve_serial_pty_prints_its_path_and_serves_a_host() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "takeover.cli.sim", "serve", "--serial-pty", "--seed", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        assert path.startswith("/dev/pts/")
        link = open_link(f"serial://{path}")
        link.connect()
        try:
            assert link.supports_sim_control and link.latest() is not None
        finally:
            link.close()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


@pytest.mark.parametrize("flag", ["--rosbridge", "--serial-tcp"])
def test_sim_serve_over_tcp_in_process(flag: str) -> None:
    args = _parser().parse_args(["sim", "serve", flag, "127.0.0.1:0", "--seed", "2"])
    stop = threading.Event()
    lines: list[str] = []
    import contextlib
    import io

    out = io.StringIO()

    def run() -> None:
        with contextlib.redirect_stdout(out):
            args.func(args, stop)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: out.getvalue().strip() != "", 10.0)
        lines = out.getvalue().split()
        url = lines[0]
        assert url.startswith("ws://" if flag == "--rosbridge" else "socket://")
        link = open_link(url)
        link.connect()
        try:
            link.reset(2)
            assert link.latest() is not None
        finally:
            link.close()
    finally:
        stop.set()
        thread.join(5)


@pytest.mark.parametrize("text", ["9090", ":9090", "host:port", "host:70000"])
def test_bad_host_port_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--rosbridge"):
        parse_host_port(text, "--rosbridge")


def test_serve_needs_exactly_one_transport() -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["sim", "serve", "--serial-pty", "--rosbridge", "127.0.0.1:1"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["sim", "serve"])
