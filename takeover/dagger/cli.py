"""`takeover dagger ...`: the rounds of a workspace."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from takeover.dagger.metrics import format_status_table, workspace_metrics
from takeover.recorder.store import EpisodeStore


def add_dagger_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("dagger", help="DAgger rounds: metrics per round")
    dsub = p.add_subparsers(dest="dagger", required=True, metavar="{status}")
    status = dsub.add_parser("status", help="per-round metrics: interventions, autonomy, success")
    status.add_argument("--workspace", type=Path, default=Path("."), metavar="DIR")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_cmd_status)


def _cmd_status(args: argparse.Namespace) -> int:
    store = EpisodeStore(args.workspace)
    rows = workspace_metrics(store.episodes())
    if args.json:
        sys.stdout.write(json.dumps({"workspace": str(store.workspace),
                                     "rounds": [r.as_json() for r in rows]}) + "\n")
        return 0
    if not rows:
        print(f"{store.workspace}: no episodes recorded yet")
        return 0
    for line in format_status_table(rows):
        print(line)
    return 0
