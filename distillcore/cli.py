"""Command-line plumbing shared by the `distill3d` and `graphdistill` commands.

Each command group lives in its own module exposing ``add_parser(subparsers, name, help)``; groups
are imported lazily so ``--help`` stays fast and a group whose package is absent is left out.
"""
from __future__ import annotations

import argparse
import importlib


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
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)
