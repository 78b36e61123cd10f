"""Parallel against serial evaluation on this machine, with the machine's other load measured.

    python benchmarks/parallel_eval.py --workspace WS [--model r001] [--episodes 60]
                                       [--jobs 2] [--rounds 1] [--json]

Runs `takeover dagger eval MODEL --episodes N --jobs 1` and `--jobs J` alternately (ABBA: serial,
parallel, parallel, serial, ... so a load that drifts during the run favours neither) on a copy
of the workspace's models (the real cards are left alone), checks that every run gave the same
per-seed outcomes, and reports the speed-up of the mean wall times. On a shared machine a
speed-up says little without the load it was measured under, so each run also records:
- `cpu_s`: the CPU time of the evaluation and its workers (getrusage of the children);
- `others_cores`: the cores everything else on the machine kept busy during the run, on
  average ((busy jiffies of /proc/stat - the run's own CPU) / wall time);
- the load averages before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TAKEOVER = [sys.executable, "-m", "takeover.cli"]


def busy_seconds() -> float:
    """Core-seconds the whole machine has spent busy since boot (/proc/stat's cpu line)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one_run(ws: Path, model: str, episodes: int, jobs: int) -> dict[str, Any]:
    load_before = os.getloadavg()
    busy0, cpu0, t0 = busy_seconds(), children_cpu(), time.perf_counter()
    out = subprocess.run([*TAKEOVER, "dagger", "eval", model, "--workspace", str(ws),
                          "--episodes", str(episodes), "--jobs", str(jobs), "--json"],
                         check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu = children_cpu() - cpu0
    busy = busy_seconds() - busy0
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"jobs": jobs, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "others_cores": round(max(0.0, busy - cpu) / wall, 2),
            "loadavg_before": load_before[0], "loadavg_after": os.getloadavg()[0],
            "successes": result["successes"], "per_seed": result["per_seed"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--model", default="r001")
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="ABBA blocks (4 runs each)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="takeover-parallel-") as tmp:
        ws = Path(tmp) / "ws"
        (ws / "models").mkdir(parents=True)
        shutil.copy2(args.workspace / "takeover.toml", ws / "takeover.toml")
        shutil.copytree(args.workspace / "models" / args.model, ws / "models" / args.model)
        (ws / "models" / "current").symlink_to(args.model)
        runs = []
        for jobs in [1, args.jobs, args.jobs, 1] * args.rounds:
            run = one_run(ws, args.model, args.episodes, jobs)
            runs.append(run)
            print(f"jobs {jobs}: {run['wall_s']:.1f} s wall, {run['cpu_s']:.1f} s CPU, others "
                  f"kept {run['others_cores']:.2f} cores busy", file=sys.stderr, flush=True)
    same = all(r["per_seed"] == runs[0]["per_seed"] for r in runs)
    serial = [r["wall_s"] for r in runs if r["jobs"] == 1]
    parallel = [r["wall_s"] for r in runs if r["jobs"] == args.jobs]
    speedup = (sum(serial) / len(serial)) / (sum(parallel) / len(parallel))
    summary = {"episodes": args.episodes, "jobs": args.jobs, "speedup": round(speedup, 2),
               "same_outcomes": same, "cores": os.cpu_count(),
               "others_cores_mean": round(sum(r["others_cores"] for r in runs) / len(runs), 2),
               "runs": [{k: v for k, v in r.items() if k != "per_seed"} for r in runs]}
    print(f"speed-up x{speedup:.2f} with --jobs {args.jobs} ({args.episodes} episodes; outcomes "
          f"{'identical' if same else 'DIFFERENT'}); the rest of the machine kept "
          f"{summary['others_cores_mean']:.2f} of {os.cpu_count()} cores busy on average",
          file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
