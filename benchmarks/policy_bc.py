"""End-to-end behavioural cloning: 40 expert episodes -> `takeover train` -> 100 held-out seeds.

    python benchmarks/policy_bc.py [--workspace DIR] [--train-episodes 40] [--eval-episodes 100]
                                   [--epochs N] [--demo-noise W_RADPS] [--json]

Every step goes through the CLI, as a user would run it: `takeover init`, `takeover drive
--driver expert --record --fast [--demo-noise W]` (seeds 1000..), `takeover train`, `takeover drive --driver
policy --fast` on seeds 5000.. (never seen in training). Prints the success rate with its 95%
Wilson score interval, the training wall time and images/s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from takeover.dagger.metrics import wilson_interval

TAKEOVER = [sys.executable, "-m", "takeover.cli"]
TRAIN_SEED = 1000
EVAL_SEED = 5000


def run_json(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([*TAKEOVER, *args, "--json"], check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, default=None, help="reuse (or create) this workspace")
    ap.add_argument("--train-episodes", type=int, default=40)
    ap.add_argument("--eval-episodes", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--demo-noise", type=float, default=None, metavar="W_RADPS",
                    help="record the demonstrations with DART turn-rate noise (takeover drive "
                    "--demo-noise); default: clean demonstrations")
    ap.add_argument("--skip-train", action="store_true", help="evaluate models/current as it is")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ws = args.workspace or Path(tempfile.mkdtemp(prefix="takeover-bc-")) / "ws"
    if not (ws / "takeover.toml").exists():
        subprocess.run([*TAKEOVER, "init", str(ws)], check=True, capture_output=True)
    if not list((ws / "rounds").glob("r000/ep_*.hdf5")):
        demo = run_json(["drive", "--driver", "expert", "--episodes", str(args.train_episodes),
                         "--seed", str(TRAIN_SEED), "--fast", "--record", "--workspace", str(ws),
                         *(["--demo-noise", str(args.demo_noise)] if args.demo_noise else [])])
        print(f"recorded {demo['episodes']} demonstrations ({demo['successes']} docked)",
              file=sys.stderr)
    card: dict[str, Any] = {}
    train_wall = None
    if not args.skip_train:
        t0 = time.perf_counter()
        card = run_json(["train", "--workspace", str(ws),
                         *(["--epochs", str(args.epochs)] if args.epochs else [])])
        train_wall = time.perf_counter() - t0
    result = run_json(["drive", "--driver", "policy", "--workspace", str(ws), "--fast",
                       "--episodes", str(args.eval_episodes), "--seed", str(EVAL_SEED)])
    lo, hi = wilson_interval(result["successes"], result["episodes"])
    details: dict[str, int] = {}
    for ep in result["per_episode"]:
        details[ep["detail"]] = details.get(ep["detail"], 0) + 1
    summary = {
        "train_episodes": args.train_episodes,
        "demo_noise_w_radps": args.demo_noise,
        "eval_episodes": result["episodes"],
        "eval_seeds": f"{EVAL_SEED}..{EVAL_SEED + result['episodes'] - 1}",
        "successes": result["successes"],
        "success_rate": result["success_rate"],
        "ci_low": round(lo, 4),
        "ci_high": round(hi, 4),
        "outcomes": details,
        "train_total_s": None if train_wall is None else round(train_wall, 1),
        "train_loop_s": card.get("training", {}).get("wall_s"),
        "images_per_s": card.get("training", {}).get("images_per_s"),
        "epochs": card.get("training", {}).get("epochs_run"),
        "policy_latency_ms_p50": result.get("policy", {}).get("latency_ms_p50"),
        "policy_latency_ms_p99": result.get("policy", {}).get("latency_ms_p99"),
        "workspace": str(ws),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
