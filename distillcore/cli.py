"""Command-line plumbing shared by the `distill3d` and `graphdistill` commands.

Each command group lives in its own module exposing ``add_parser(subparsers, name, help)``; groups
are imported lazily so ``--help`` stays fast and a group whose package is absent is left out.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable


def build_parser(prog: str, groups: list[tuple[str, str, str]], description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, help_text in groups:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name is not None and module.startswith(err.name):
                continue  # the group is not part of this build
            raise
        mod.add_parser(sub, name, help_text)
    return parser


def run(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parses ``argv`` and runs the chosen command; errors propagate (for tests and Python callers)."""
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


def console(prog: str, main: Callable[[list[str] | None], int]) -> int:
    """Console-script entry around ``main``: bad input (a missing file, a malformed value) is reported
    as one ``error:`` line and exit code 2 rather than a traceback. ``DISTILLKIT_DEBUG=1`` re-raises."""
    try:
        return main(None)
    except (FileNotFoundError, ValueError, KeyError) as err:
        if os.environ.get("DISTILLKIT_DEBUG") == "1":
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
