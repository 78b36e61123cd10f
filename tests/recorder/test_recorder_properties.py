"""Property tests of the small pieces everything else leans on."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from takeover.recorder.episode_file import StepCounts
from takeover.recorder.safeio import ClearedFlagsReader, GuardedFile, cleared_superblock, lookup3

LABELS = st.sampled_from([-1, 0, 1, -128])


@given(st.lists(LABELS, max_size=200), st.lists(st.integers(1, 50), max_size=20))
def test_step_counts_do_not_depend_on_batching(modes: list[int], cuts: list[int]) -> None:
    arr = np.array(modes, dtype=np.int8)
    counts = StepCounts()
    start = 0
    for cut in [*cuts, len(arr)]:
        counts.update(arr[start:start + cut])
        start += cut
    counts.update(arr[start:])
    runs = sum(1 for i, m in enumerate(modes) if m == 1 and (i == 0 or modes[i - 1] != 1))
    assert (counts.demo, counts.robot, counts.intervention, counts.unlabeled) == (
        modes.count(-1), modes.count(0), modes.count(1), modes.count(-128))
    assert counts.interventions == runs


def test_lookup3_reference_vectors() -> None:
    # From Bob Jenkins' lookup3.c driver5().
    assert lookup3(b"", 0) == 0xDEADBEEF
    assert lookup3(b"Four score and seven years ago", 0) == 0x17770551
    assert lookup3(b"Four score and seven years ago", 1) == 0xCD628161


def test_cleared_superblock_matches_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    with h5py.File(path, "w", libver=("v110", "v110")) as f:
        f["x"] = np.arange(5)
    head = path.read_bytes()[:64]
    assert cleared_superblock(head) == head[:48]  # flags already clear: unchanged
    broken = bytearray(head)
    broken[11] = 0x05  # "open for writing", checksum now wrong
    assert cleared_superblock(bytes(broken)) is None  # refuses what it cannot verify
    with h5py.File(ClearedFlagsReader(path), "r") as f:
        assert list(f["x"][:]) == [0, 1, 2, 3, 4]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.binary(min_size=1, max_size=64)),
                min_size=1, max_size=30), st.integers(0, 30))
def test_guarded_file_reads_back_what_was_written_after_a_failure(
        writes: list[tuple[int, bytes]], fail_at: int) -> None:
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        g = GuardedFile(Path(tmp) / "g.bin")
        model = bytearray()
        for i, (offset, data) in enumerate(writes):
            if i == fail_at:
                g.error = OSError(28, "No space left on device")  # as a failed write leaves it
            g.seek(offset)
            assert g.write(data) == len(data)
            end = offset + len(data)
            model.extend(bytes(max(0, end - len(model))))
            model[offset:end] = data
        buf = bytearray(len(model))
        g.seek(0)
        g.readinto(buf)
        assert bytes(buf) == bytes(model)
        on_disk = (Path(tmp) / "g.bin").read_bytes()
        written = [w for i, w in enumerate(writes) if i < fail_at]
        disk_model = bytearray()
        for offset, data in written:  # only the writes before the failure reached the disk
            end = offset + len(data)
            disk_model.extend(bytes(max(0, end - len(disk_model))))
            disk_model[offset:end] = data
        assert on_disk == bytes(disk_model)
        g.close()
