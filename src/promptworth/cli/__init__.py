"""``promptworth <verb>``: the one command-line entry point.

Each verb lives in a small module of this package that defines ``register(subparsers)``; the
registered handler gets the parsed arguments and returns an exit status. Errors the user can fix
(``PromptworthError``) are printed as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from promptworth import __version__
from promptworth.errors import PromptworthError

VERB_MODULES = ("data", "study", "models", "train", "analysis", "costs")


class _Parser(argparse.ArgumentParser):
    """Argument errors are one line too (argparse prints the usage before them), exit status 2."""

    def error(self, message: str) -> NoReturn:
        verb = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        self.exit(2, f"promptworth: error: {verb}{message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="promptworth",
        description="How many data points is a prompt worth? Splits, training and analysis.",
    )
    parser.add_argument("--version", action="version", version=f"promptworth {__version__}")
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)
    for name in VERB_MODULES:
        importlib.import_module(f"promptworth.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.handler(args) or 0)
    except PromptworthError as exc:
        print(f"promptworth: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
