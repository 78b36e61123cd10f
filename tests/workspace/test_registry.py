"""The workspace's on-disk contract: the one reader of models/current, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from takeover.errors import PolicyError
from takeover.workspace.atomic import atomic_write_bytes
from takeover.workspace.layout import init_workspace
from takeover.workspace.registry import current_model_id, current_model_path, deployed_onnx


def _model(ws: Path, model_id: str) -> Path:
    onnx = ws / "models" / model_id / "policy.onnx"
    onnx.parent.mkdir(parents=True)
    onnx.write_bytes(b"onnx")
    return onnx


@pytest.mark.parametrize("form", ["symlink", "text", "text-with-path"])
def test_every_form_of_the_pointer_reads_alike(tmp_path: Path, form: str) -> None:
    ws = init_workspace(tmp_path / "ws")
    onnx = _model(ws, "r002")
    pointer = ws / "models" / "current"
    if form == "symlink":
        os.symlink("r002", pointer)
    else:
        pointer.write_text("models/r002\n" if form == "text-with-path" else "r002\n")
    assert current_model_id(ws) == "r002"
    assert deployed_onnx(ws) == ("r002", onnx)
    assert current_model_path(ws) == onnx


def test_no_pointer_and_a_dangling_pointer(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    assert current_model_id(ws) is None and deployed_onnx(ws) is None
    with pytest.raises(PolicyError, match="no deployed model"):
        current_model_path(ws)
    os.symlink("r009", ws / "models" / "current")
    assert current_model_id(ws) == "r009" and deployed_onnx(ws) is None
    with pytest.raises(PolicyError, match=r"has no policy\.onnx"):
        current_model_path(ws)


def test_an_atomic_write_that_fails_leaves_the_old_content(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "card.json"
    atomic_write_bytes(target, b"old")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)  # the new content never became durable
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]  # no temporary left behind
