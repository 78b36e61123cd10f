"""The `takeover` command: argparse front ends only, one module per command group
(`run`, `drive`, `data`, `train`/`export`, `dagger`, `sim`, `bench`, `init`), one JSON printer
(`output.py`) and one way to print an error. Library packages below export functions; nothing
below `cli/` parses arguments."""

from takeover.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
