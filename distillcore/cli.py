"""Command-line plumbing shared by the `distill3d` and `graphdistill` commands.

Each command group lives in its own module exposing ``add_parser(subparsers, name, help)``. A group's
module is imported only when its command is parsed (:class:`_LazyGroupParser`), so ``prog --help``
imports no group (no torch) and one group's missing optional dependency never breaks another group.
A command whose extra is missing ends with one line naming the extra and exit code 2
(:class:`distillcore.extras.MissingExtraError`).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable

from distillcore.extras import MissingExtraError, missing_extra_for


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument error is one line naming where help is (argparse prints the whole usage first, 30-100
    lines for commands generated from config dataclasses). Sub-command parsers inherit the class."""

    _PROG = "_distillkit_parser_prog"  # the deepest sub-command that parsed, for unrecognized arguments

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if not hasattr(namespace, self._PROG):  # a sub-command's parser set it first
            setattr(namespace, self._PROG, self.prog)
        return namespace, extras

    def parse_args(self, args=None, namespace=None):
        # argparse reports arguments no sub-command took from the top parser, whose help lists none of them
        namespace, extras = self.parse_known_args(args, namespace)
        prog = getattr(namespace, self._PROG)
        delattr(namespace, self._PROG)
        if extras:
            self.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(extras)} (see {prog} --help)\n")
        return namespace


class _LazyGroupParser(OneLineErrorParser):
    """Stands in for a command group's parser in ``prog``'s sub-command table: the top-level help lists
    the group from its one-line help, and parsing the group's arguments imports the group module and
    hands them to the real parser it registers."""

    def __init__(self, *args, group_module: str, group_help: str | None = None, **kwargs):
        super().__init__(*args, add_help=False, **kwargs)
        self._group_module, self._group_help = group_module, group_help
        self._real: argparse.ArgumentParser | None = None

    def group_parser(self) -> argparse.ArgumentParser:
        """The group's real parser (imports the group module on first call).

        Raises :class:`MissingExtraError` (message prefixed by ``prog group``) when the module needs an
        optional package that is not installed.
        """
        if self._real is None:
            prog, name = self.prog.rsplit(" ", 1)
            try:
                module = importlib.import_module(self._group_module)
            except ImportError as err:
                missing = missing_extra_for(err)
                if missing is not None:
                    raise missing.with_command(self.prog) from err
                if isinstance(err, ModuleNotFoundError) and err.name and self._group_module.startswith(err.name):
                    self.exit(2, f"{self.prog}: error: the {name!r} command is not part of this installation "
                                 f"(module {self._group_module} not found)\n")
                raise
            # registered under a throw-away parent named like the real one, so usage lines read "prog name"
            subparsers = OneLineErrorParser(prog=prog, add_help=False).add_subparsers()
            module.add_parser(subparsers, name, self._group_help)
            self._real = subparsers.choices[name]
        return self._real

    def parse_known_args(self, args=None, namespace=None):
        return self.group_parser().parse_known_args(args, namespace)


def build_parser(prog: str, groups: list[tuple[str, str, str]], description: str) -> argparse.ArgumentParser:
    """The ``prog`` parser with one sub-command per ``(name, module, one-line help)`` group; a group's
    module is imported only when that command is parsed."""
    parser = OneLineErrorParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_LazyGroupParser)
    for name, module, help_text in groups:
        sub.add_parser(name, help=help_text, group_module=module, group_help=help_text)
    return parser


def run(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parses ``argv`` and runs the chosen command; errors propagate (for tests and Python callers).

    An ImportError of an optional package (``import open3d`` with open3d absent) is re-raised as
    :class:`MissingExtraError` naming the command and the extra that provides it.
    """
    command = None
    try:
        args = parser.parse_args(argv)
        command = getattr(args, "command", None)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except ImportError as err:
        missing = missing_extra_for(err)
        if missing is None or missing.command is not None:
            raise
        raise missing.with_command(f"{parser.prog} {command}" if command else parser.prog) from err


PATH_ERRORS = {
    FileExistsError: "{path} already exists and is in the way (a file where a folder is needed, or a name taken)",
    NotADirectoryError: "{path}: a part of this path is a file, not a folder",
    IsADirectoryError: "{path} is a folder; a file path is needed",
}


def console(prog: str, main: Callable[[list[str] | None], int]) -> int:
    """Console-script entry around ``main``: bad input (a missing file, a malformed value, an output path
    that is a file where a folder goes or the reverse) is reported as one ``error:`` line and exit code 2
    rather than a traceback, and so is a missing optional package (one line naming the extra to install);
    Ctrl-C is one line and exit code 130. ``DISTILLKIT_DEBUG=1`` re-raises."""
    try:
        return main(None)
    except MissingExtraError as err:
        if os.environ.get("DISTILLKIT_DEBUG") == "1":
            raise
        print(str(err) if err.command else f"{prog}: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, KeyError) as err:
        if os.environ.get("DISTILLKIT_DEBUG") == "1":
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as err:
        # an output path the user gave that cannot be made: a file where a folder goes, or the reverse
        if os.environ.get("DISTILLKIT_DEBUG") == "1":
            raise
        path = err.filename2 or err.filename  # os.replace(tmp, path) names the user's path second
        print(f"{prog}: error: {PATH_ERRORS[type(err)].format(path=path)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # commands checkpoint as they go and atomic writes leave no half-written file: say how to go on
        print(f"\n{prog}: interrupted (a command with --resume continues from its last checkpoint)", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports it
