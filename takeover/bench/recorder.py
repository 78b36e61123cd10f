"""`takeover bench recorder`: record 640x480 RGB at 30 Hz through the real control loop.

For each compression, the control loop (teleop.loop.ControlLoop, with its Arbiter) runs at
30 Hz on a link that serves 640x480 camera frames, and the EpisodeWriter records every tick.
Measured: the file's growth (MB/s while recording, MB per minute of episode), the writer's
capacity (raw frame MB it can take per second of its own busy time), the queue's high-water
mark against its capacity, dropped steps, and the loop's lateness while it records. A run
without the recorder gives the loop's baseline. Frames are the simulator's renders at 640x480
with sensor noise (sigma 2 grey levels) added, so they compress like a camera's, not like
flat synthetic images.

Also measured: listing 1,000 episodes from attributes, without and with the index.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from takeover.recorder.codec import DEFAULT_COMPRESSION, Compression
from takeover.recorder.episode_file import EpisodeFileWriter, EpisodeMeta, ObsSpec, StepColumns
from takeover.recorder.layout import episode_name, make_dirs, round_dir
from takeover.recorder.reader import read_info
from takeover.recorder.store import EpisodeStore
from takeover.recorder.writer import EpisodeWriter
from takeover.types import Command, CommandSource, Mode, Observation, StepRecord

WIDTH, HEIGHT, RATE_HZ = 640, 480, 30.0
COMPRESSIONS = ("none", "lzf", "gzip:1", "gzip:4")


def frame_pool(n: int, noise_sigma: float = 2.0, seed: int = 0) -> list[npt.NDArray[np.uint8]]:
    """n consecutive 640x480 frames of a simulated approach to the dock, with sensor noise."""
    from takeover.sim.expert import DockingExpert
    from takeover.sim.render import CameraModel
    from takeover.sim.simulator import SimConfig, Simulator

    sim = Simulator(seed, SimConfig(camera=CameraModel(width_px=WIDTH, height_px=HEIGHT)))
    expert = DockingExpert(sim.dock_pose)
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        obs = sim.observe(with_scan=False)
        assert obs.image is not None
        noisy = obs.image.astype(np.int16) + rng.normal(0, noise_sigma, obs.image.shape)
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
        sim.command(expert.command(obs.odom))
        sim.step(1.0 / RATE_HZ)
    return frames


def _frame_link(frames: list[npt.NDArray[np.uint8]]) -> Any:
    from takeover.hw.base import LinkHealth, RobotLink

    class FrameLink(RobotLink):
        """A robot that only has a 640x480 camera running at the loop's rate."""

        def __init__(self) -> None:
            super().__init__("bench://camera")
            self._t0 = time.monotonic_ns()
            self._scan = np.full(360, 2.0, dtype=np.float32)

        def connect(self, timeout_s: float = 5.0) -> None:
            pass

        def send(self, command: Command) -> Command:
            return command

        def latest(self) -> Observation:
            now = time.monotonic_ns()
            i = int((now - self._t0) * RATE_HZ / 1e9) % len(frames)
            return Observation(t_ns=now, image=frames[i], scan_m=self._scan)

        def health(self) -> LinkHealth:
            return LinkHealth(connected=True)

        def close(self) -> None:
            pass

    return FrameLink()


def _run_loop(frames: list[npt.NDArray[np.uint8]], duration_s: float,
              writer: EpisodeWriter | None) -> dict[str, Any]:
    from takeover.config import SafetyConfig
    from takeover.control.arbiter import Arbiter
    from takeover.control.loop import ControlLoop

    loop = ControlLoop(_frame_link(frames), Arbiter(SafetyConfig()), rate_hz=RATE_HZ,
                       sinks=[writer] if writer is not None else [])
    loop.start()
    time.sleep(duration_s)  # the measurement window
    loop.stop()
    return loop.timing().as_json()


def bench_compression(compression: str, frames: list[npt.NDArray[np.uint8]],
                      duration_s: float, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    comp = Compression.parse(compression)
    writer = EpisodeWriter(workdir, compression=comp, rate_hz=RATE_HZ)
    writer.start()
    writer.begin_episode(EpisodeMeta(round=0, rate_hz=RATE_HZ, origin="bench"))
    t0 = time.perf_counter()
    loop = _run_loop(frames, duration_s, writer)
    path = writer.end_episode("aborted").result(timeout=600)
    wall_s = time.perf_counter() - t0
    stats = writer.stats()
    writer.stop()
    assert path is not None
    info = read_info(path)
    size = path.stat().st_size
    episode_s = info.num_steps / RATE_HZ
    raw = info.num_steps * WIDTH * HEIGHT * 3
    return {
        "compression": str(comp),
        "steps": info.num_steps,
        "episode_s": round(episode_s, 2),
        "file_mb": round(size / 1e6, 1),
        "write_mb_s": round(size / 1e6 / episode_s, 2),
        "file_mb_per_min": round(size / 1e6 / episode_s * 60, 1),
        "ratio": round(raw / size, 2),
        "writer_busy_frac": round(stats.busy_s / wall_s, 3),
        "capacity_raw_mb_s": round(raw / 1e6 / stats.busy_s, 1) if stats.busy_s else None,
        "queue_high_water": stats.queue_high_water,
        "queue_capacity": stats.queue_capacity,
        "dropped_steps": stats.dropped_steps,
        "frames_stored_raw": stats.frames_raw,
        "loop": loop,
    }


def bench_listing(n: int, workdir: Path) -> dict[str, Any]:
    """Create n small episodes (no frames) and time listing them."""
    spec = ObsSpec(scan_beams=180)
    directory = round_dir(workdir, 0)
    make_dirs(directory)
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        meta = EpisodeMeta(round=0, rate_hz=20.0, extra={"seed": i})
        out = EpisodeFileWriter(directory / episode_name(i), meta, spec, Compression.parse(None),
                                episode_index=i, crash_safe=False, fsync=False)
        cols = StepColumns(spec)
        for k in range(10):
            cols.add_record(StepRecord(step=k, t_ns=k * 50_000_000, observation=None,
                                       command=Command(0.1, 0.0), source=CommandSource.HUMAN,
                                       mode=Mode.MANUAL, policy_action=None, human_action=None,
                                       action_mode=-1, loop_late_ns=0, policy_latency_ns=0))
        out.append_columns(cols.take())
        out.finalize("success")
    created_s = time.perf_counter() - t0
    store = EpisodeStore(workdir)
    t = time.perf_counter()
    cold = store.episodes(use_index=False)
    cold_s = time.perf_counter() - t
    t = time.perf_counter()
    store.episodes()  # builds the index
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    warm = store.episodes()
    warm_s = time.perf_counter() - t
    assert len(cold) == len(warm) == n
    return {"episodes": n, "create_s": round(created_s, 2), "list_attributes_s": round(cold_s, 3),
            "list_first_with_index_s": round(build_s, 3), "list_indexed_s": round(warm_s, 3)}


def run_recorder_bench(quick: bool = False, *, duration_s: float | None = None,
                       compressions: tuple[str, ...] = COMPRESSIONS,
                       workdir: Path | None = None) -> dict[str, Any]:
    """Measure every compression; quick: 5 s each and 200 episodes listed instead of 60 s and
    1,000. Returns one JSON-able dict (`takeover bench recorder --json` prints it)."""
    seconds = duration_s if duration_s is not None else (5.0 if quick else 60.0)
    frames = frame_pool(12 if quick else 30)
    with tempfile.TemporaryDirectory(prefix="takeover-bench-", dir=workdir) as tmp:
        root = Path(tmp)
        baseline = _run_loop(frames, min(seconds, 10.0), None)
        rows = [bench_compression(c, frames, seconds, root / c.replace(":", "_"))
                for c in compressions]
        listing = bench_listing(200 if quick else 1000, root / "listing")
    return {
        "frame": [HEIGHT, WIDTH, 3],
        "rate_hz": RATE_HZ,
        "duration_s": seconds,
        "raw_mb_per_min": round(WIDTH * HEIGHT * 3 * RATE_HZ * 60 / 1e6, 1),
        "content": "simulator renders at 640x480 with sensor noise (sigma 2)",
        "cpus": os.cpu_count(),
        "loop_without_recorder": baseline,
        "compressions": rows,
        "default_compression": DEFAULT_COMPRESSION,
        "listing": listing,
    }


def format_report(result: dict[str, Any]) -> str:
    """The bench result as a table for people."""
    lines = [f"recorder: {result['frame'][1]}x{result['frame'][0]} RGB at "
             f"{result['rate_hz']:.0f} Hz for {result['duration_s']:.0f} s each "
             f"(raw {result['raw_mb_per_min']} MB/min; {result['content']})"]
    base = result["loop_without_recorder"]
    lines.append(f"loop without recorder: late p99 {base['late_ms_p99']} ms, "
                 f"max {base['late_ms_max']} ms ({base.get('scheduling', '')})")
    header = ["compression", "MB/s", "MB/min", "ratio", "writer busy", "queue hw/cap",
              "dropped", "late p99 ms", "late max ms"]
    rows = [header]
    for r in result["compressions"]:
        rows.append([r["compression"], f"{r['write_mb_s']:.1f}", f"{r['file_mb_per_min']:.0f}",
                     f"{r['ratio']:.2f}", f"{100 * r['writer_busy_frac']:.0f}%",
                     f"{r['queue_high_water']}/{r['queue_capacity']}", str(r["dropped_steps"]),
                     f"{r['loop']['late_ms_p99']}", f"{r['loop']['late_ms_max']}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    li = result["listing"]
    lines.append(f"listing {li['episodes']} episodes: {li['list_attributes_s']} s from attributes,"
                 f" {li['list_indexed_s']} s with the index")
    lines.append(f"default compression: {result['default_compression']}")
    return "\n".join(lines)


__all__ = ["format_report", "run_recorder_bench"]
