"""Evaluation episodes spread over processes, with the same outcomes as one process.

A policy evaluated on the lockstep simulator is CPU-bound Python (rendering, physics, the
Arbiter) plus single-threaded onnxruntime, so one process uses one core. Here the seeds of each
group (a model under a perturbation) are cut into chunks (`_chunks`, long first, single episodes
last) and the chunks run in worker processes
(`spawn`: nothing of the parent, torch included, is inherited), each chunk a headless
`run_drive` with the policy driving alone (`--driver policy --fast`, nobody takes over).

An episode depends on its seed alone: the world, the simulator's noise, the perturbation's draws
and the policy's state are all reset from it at the start of the episode (control/episodes.py,
sim/simulator.py, sim/perturb.py), so how the seeds are cut into chunks and which process runs
which chunk cannot change an outcome. `jobs=1` runs every group as one `run_drive` in this
process; tests/dagger/test_evaluation.py checks that it and `jobs=2` agree episode by episode.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import statistics
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from takeover.errors import UsageError
from takeover.session.drive import DriveRequest, run_drive


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def check_jobs(jobs: int | None) -> int:
    if jobs is None:
        return default_jobs()
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: must be at least 1")
    return jobs


@dataclass(frozen=True)
class EpisodeGroup:
    """Episodes of one policy on one simulator setup: seeds seed..seed+episodes-1."""

    key: str  # how the caller finds the group's results
    policy: Path
    robot_url: str  # sim:// with its options (perturb=...)
    seed: int
    episodes: int


@dataclass(frozen=True)
class _Chunk:
    key: str
    policy: str
    robot_url: str
    seed: int
    episodes: int


@dataclass
class GroupResult:
    key: str
    episodes: list[dict[str, Any]]  # run_drive's per_episode rows (measured), by seed
    latency_ms_p50: float | None


def _run_chunk(workspace: str, chunk: _Chunk, max_steps: int) -> tuple[list[dict[str, Any]],
                                                                          float | None]:
    """One chunk in a worker (or in this process): its episodes and the policy's p50 latency."""
    summary = run_drive(DriveRequest(
        robot_url=chunk.robot_url, driver="policy", episodes=chunk.episodes, seed=chunk.seed,
        workspace=Path(workspace), policy=Path(chunk.policy), fast=True, max_steps=max_steps,
        measure=True))
    return list(summary["per_episode"]), summary.get("policy", {}).get("latency_ms_p50")


def _chunks(groups: Sequence[EpisodeGroup], jobs: int) -> list[_Chunk]:
    """Guided self-scheduling: each chunk a third of a worker's share of what is left (at most
    10 episodes, at least 1), so the first chunks are long (opening a chunk, the simulator and
    the policy, costs about 0.2 s) and the last ones are single episodes that finish together
    (an episode takes 0.3-2 s; a long chunk at the end would leave the other workers idle)."""
    remaining = sum(g.episodes for g in groups)
    out = []
    for g in groups:
        start = 0
        while start < g.episodes:
            size = min(g.episodes - start, max(1, min(10, math.ceil(remaining / (3 * jobs)))))
            out.append(_Chunk(g.key, str(g.policy), g.robot_url, g.seed + start, size))
            start += size
            remaining -= size
    return out


def run_groups(workspace: Path, groups: Sequence[EpisodeGroup], max_steps: int,
               jobs: int | None = None, progress: TextIO | None = None) -> dict[str, GroupResult]:
    """Run every group's episodes on `jobs` processes (default: the cores); results by key,
    each group's episodes in seed order."""
    jobs = check_jobs(jobs)
    if len({g.key for g in groups}) != len(groups):
        raise ValueError("group keys must be unique")
    ws = str(workspace)
    rows: dict[str, list[dict[str, Any]]] = {g.key: [] for g in groups}
    latencies: dict[str, list[float]] = {g.key: [] for g in groups}
    size = {g.key: g.episodes for g in groups}

    def collect(key: str, episodes: list[dict[str, Any]], latency: float | None) -> None:
        rows[key].extend(episodes)
        if latency is not None:
            latencies[key].append(latency)
        if progress is not None:
            done = rows[key]
            ok = sum(e["outcome"] == "success" for e in done)
            print(f"{key}: {len(done)}/{size[key]} episodes, {ok} docked", file=progress,
                  flush=True)

    if jobs == 1:
        for g in groups:  # one run_drive per group: the serial reference
            chunk = _Chunk(g.key, str(g.policy), g.robot_url, g.seed, g.episodes)
            collect(g.key, *_run_chunk(ws, chunk, max_steps))
    else:
        chunks = _chunks(groups, jobs)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(jobs, len(chunks)), mp_context=context) as pool:
            pending: dict[Future[tuple[list[dict[str, Any]], float | None]], _Chunk] = {
                pool.submit(_run_chunk, ws, c, max_steps): c for c in chunks}
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        chunk = pending.pop(future)
                        collect(chunk.key, *future.result())
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
    return {key: GroupResult(key, sorted(rows[key], key=lambda e: int(e["seed"])),
                             statistics.median(latencies[key]) if latencies[key] else None)
            for key in rows}
