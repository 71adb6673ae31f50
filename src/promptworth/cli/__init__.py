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
# The module of each verb, so that running one imports only its module: `promptworth train` and
# `progress` run once per training job, and the other modules import torch, datasets or pandas
# (seconds). `promptworth --help` imports them all; a test checks this table against them.
VERB_MODULE = {
    "kshot": "data", "split": "data", "tasks": "data",
    "progress": "study", "unlock-stale": "study", "pool": "study",
    "tiny-model": "models", "methods": "models",
    "train": "train", "search": "train", "select-lr": "train", "convert-model": "train", "worker": "train",
    "aggregate": "analysis", "advantage": "analysis", "import-lescao": "analysis", "tables": "analysis",
    "figures": "analysis", "budgets": "analysis", "lmbff-table": "analysis",
    "costs": "costs",
}


class _Parser(argparse.ArgumentParser):
    """Argument errors are one line too (argparse prints the usage before them), exit status 2."""

    def error(self, message: str) -> NoReturn:
        verb = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        self.exit(2, f"promptworth: error: {verb}{message} (see {self.prog} --help)\n")


def build_parser(modules: tuple[str, ...] = VERB_MODULES) -> argparse.ArgumentParser:
    """The parser of every verb, or of the verbs of ``modules`` only."""
    parser = _Parser(
        prog="promptworth",
        description="How many data points is a prompt worth? Splits, training and analysis.",
    )
    parser.add_argument("--version", action="version", version=f"promptworth {__version__}")
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)
    for name in modules:
        importlib.import_module(f"promptworth.cli.{name}").register(subparsers)
    return parser


def verb_modules(argv: list[str]) -> tuple[str, ...]:
    """The modules to import for ``argv``: the verb's own when it names one, else every one."""
    verb = next((a for a in argv if not a.startswith("-")), None)
    return (VERB_MODULE[verb],) if verb in VERB_MODULE else VERB_MODULES


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(verb_modules(argv))
    try:
        args = parser.parse_args(argv)
        return int(args.handler(args) or 0)
    except PromptworthError as exc:
        print(f"promptworth: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
