"""The `takeover` command. See DESIGN.md's CLI contract; `--json` output is a contract too.

Errors meant for people (`TakeoverError`) print as one line on stderr, no traceback; usage and
config errors exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from takeover import __version__
from takeover.cli.bench import add_bench_parser
from takeover.cli.common import resolve_workspace_option
from takeover.cli.core import add_core_parser
from takeover.cli.dagger import add_dagger_parser
from takeover.cli.data import add_data_parser
from takeover.cli.drive import add_drive_parser
from takeover.cli.init import add_init_parser
from takeover.cli.output import missing_extra_line, print_error
from takeover.cli.policy import add_policy_parsers
from takeover.cli.probe import add_probe_parser
from takeover.cli.run import add_run_parser
from takeover.cli.sim import add_sim_parser
from takeover.errors import TakeoverError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="takeover",
        description="Teach a mobile robot to dock by demonstration and human-gated DAgger.",
    )
    parser.add_argument("--version", action="version", version=f"takeover {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run_parser(sub)
    add_drive_parser(sub)
    add_probe_parser(sub)
    add_init_parser(sub)
    add_sim_parser(sub)
    add_data_parser(sub)
    add_dagger_parser(sub)
    add_bench_parser(sub)
    add_policy_parsers(sub)
    add_core_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        resolve_workspace_option(args)
        code: int = args.func(args)
        return code
    except TakeoverError as e:
        print_error(e)
        return e.exit_code
    except ModuleNotFoundError as e:  # an optional extra that this install does not have
        line = missing_extra_line(e, args.command)
        if line is None:
            raise
        print_error(line)
        return 1
    except KeyboardInterrupt:
        print("takeover: interrupted", file=sys.stderr)
        return 130
