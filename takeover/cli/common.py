"""Arguments several command groups share."""

from __future__ import annotations

import argparse
from pathlib import Path

from takeover.workspace.layout import find_workspace

WORKSPACE_HELP = ("the workspace (default: the current directory if it holds a takeover.toml"
                  "{tail})")


def add_workspace_option(p: argparse.ArgumentParser, *, required: bool, help: str | None = None
                         ) -> None:
    """--workspace DIR, resolved by `resolve_workspace_option` with the rule of
    `takeover.workspace.layout.find_workspace`, the same for every command."""
    tail = ", else the current directory" if required else ", else none"
    p.add_argument("--workspace", type=Path, default=None, metavar="DIR",
                   help=help or WORKSPACE_HELP.format(tail=tail))
    p.set_defaults(workspace_required=required)


def resolve_workspace_option(args: argparse.Namespace) -> None:
    if "workspace_required" in vars(args):
        args.workspace = find_workspace(args.workspace, required=args.workspace_required)
