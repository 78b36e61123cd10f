"""`takeover init DIR`: a new workspace with a commented takeover.toml."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_init_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help="create a workspace with a commented takeover.toml")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.set_defaults(func=_cmd_init)


def _cmd_init(args: argparse.Namespace) -> int:
    from takeover.workspace.layout import init_workspace

    path = init_workspace(args.dir)
    print(f"workspace ready: {path} (edit {path / 'takeover.toml'})")
    return 0
