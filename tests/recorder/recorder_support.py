from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from recsim import sim_records

from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.writer import EpisodeWriter
from takeover.types import StepRecord


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture(scope="session")
def records_60() -> list[StepRecord]:
    """60 steps (3 s) of a simulated run with every mode, shared by the tests (read-only)."""
    return list(sim_records(seed=5, n=60))


def record_episode(writer: EpisodeWriter, records: list[StepRecord], *, round_index: int = 0,
                   outcome: str = "success", **meta: object) -> Path:
    writer.begin_episode(EpisodeMeta(round=round_index, rate_hz=20.0, **meta))  # type: ignore[arg-type]
    for r in records:
        assert writer.offer(r)
    path = writer.end_episode(outcome).result(timeout=60)
    assert path is not None
    return path


@pytest.fixture
def writer(workspace: Path) -> Iterator[EpisodeWriter]:
    w = EpisodeWriter(workspace, rate_hz=20.0, queue_s=1000.0, fsync=False)
    w.start()
    yield w
    w.stop()
