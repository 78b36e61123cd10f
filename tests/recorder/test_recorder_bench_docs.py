"""The benchmark in short (no timing asserts) and the format doc against the schema."""

from __future__ import annotations

from pathlib import Path

from takeover.bench.recorder import bench_compression, bench_listing, format_report, frame_pool
from takeover.recorder import schema

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_640x480_at_30hz_accounts_for_every_tick(tmp_path: Path) -> None:
    """Whether the writer keeps up is a figure of `takeover bench recorder` (it depends on the
    machine's load); what holds everywhere: every tick is either in the file or counted as
    dropped, and the queue never exceeds its bound."""
    frames = frame_pool(3)
    assert frames[0].shape == (480, 640, 3)
    row = bench_compression("gzip:1", frames, 2.0, tmp_path / "gzip")
    assert row["steps"] > 0
    assert row["steps"] + row["dropped_steps"] == row["loop"]["ticks"], row
    assert row["queue_high_water"] <= row["queue_capacity"]
    listing = bench_listing(5, tmp_path / "listing")
    report = format_report({
        "frame": [480, 640, 3], "rate_hz": 30.0, "duration_s": 2.0, "raw_mb_per_min": 1.0,
        "content": "test", "loop_without_recorder": row["loop"], "compressions": [row],
        "default_compression": "gzip:1", "listing": listing})
    assert "gzip:1" in report and "listing 5 episodes" in report


def test_format_doc_names_every_dataset_and_attribute() -> None:
    text = (DOCS / "dataset-format.md").read_text()
    for d in schema.DATASETS:
        assert f"`{d.name}`" in text, d.name
    for attr in schema.ATTR_TYPES:
        assert f"`{attr}`" in text, attr
    assert f"schema version {schema.SCHEMA_VERSION}" in text
    assert "rounds/" in text and "ep_0001.hdf5" in text
