"""The C99 firmware codec and the Python codec agree on every shared vector, both ways.

Python -> C: firmware/test_vectors.txt (written by takeover.hw.serial.vectors) is checked by the
C host test byte for byte. C -> Python: the C test writes its own encodings of those vectors
plus random messages of every type; here each one is encoded and decoded by Python and must
match byte for byte and field for field.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from ci_needs import need

from takeover.hw.serial import protocol as sp
from takeover.hw.serial import vectors as sv

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"


def test_checked_in_vectors_are_what_python_generates() -> None:
    on_disk = (FIRMWARE / "test_vectors.txt").read_text(encoding="ascii").splitlines()
    assert on_disk == sv.generate_vectors(), (
        "firmware/test_vectors.txt is stale: run python -m takeover.hw.serial.vectors"
    )


def test_python_decodes_its_own_vectors() -> None:
    frames = rejects = 0
    for line in sv.generate_vectors():
        kind = line.split(" ", 1)[0]
        if kind == "frame":
            vector = sv.parse_frame(line)
            decoded = list(sp.FrameDecoder().feed(vector.wire))
            assert [sp.parse_message(f) for f in decoded] == [vector.message]
            frames += 1
        elif kind == "reject":
            _, reason, wire = line.split(" ")
            decoder = sp.FrameDecoder()
            assert list(decoder.feed(bytes.fromhex(wire.removeprefix("wire=")))) == []
            field = {"cobs": "cobs_errors", "short": "short_frames", "crc": "crc_errors",
                     "oversized": "oversized"}[reason]
            assert getattr(decoder.stats, field) == 1, line[:80]
            rejects += 1
    assert frames >= 25 and rejects >= 6


@pytest.fixture(scope="module")
def c_vectors(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    need(compiler is not None and shutil.which("make") is not None,
         "no C compiler or make on this machine")
    build = tmp_path_factory.mktemp("firmware-build")
    result = subprocess.run(
        ["make", "-s", "-C", str(FIRMWARE), "test", f"BUILD={build}"],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert " passed, 0 failed" in result.stdout
    return (build / "c_vectors.txt").read_text(encoding="ascii").splitlines()


def test_c_codec_passes_on_python_vectors_and_python_agrees_with_c(c_vectors: list[str]) -> None:
    frames = [line for line in c_vectors if line.startswith("frame ")]
    python_frames = [line for line in sv.generate_vectors() if line.startswith("frame ")]
    # The C test echoes every Python frame vector first, re-encoded by C: identical text.
    assert frames[: len(python_frames)] == python_frames
    assert len(frames) >= len(python_frames) + 13 * 40  # and 40 random messages of each type
    for line in frames:
        vector = sv.parse_frame(line)
        assert sp.encode_message(vector.message, vector.seq) == vector.wire, line[:100]
        decoded = list(sp.FrameDecoder().feed(vector.wire))
        assert len(decoded) == 1 and decoded[0].seq == vector.seq
        assert sp.parse_message(decoded[0]) == vector.message
        assert sv.format_frame(vector.message, vector.seq) == line
