"""``promptworth <verb>``: the one command-line entry point.

The verbs, their options and their handlers are one table (:mod:`promptworth.cli.verbs`); the
option sets are defined once (:mod:`promptworth.cli.options`); each handler module
(``cli/data.py``, ``study.py``, ``backbones.py``, ``methods.py``, ``train.py``, ``analysis.py``,
``reproduce.py``) holds handlers only: a handler gets the parsed arguments and returns an exit
status, or the result it prints (:class:`promptworth.cli.output.Output`, as text or ``--json``).

Exit status: 0 done; 1 a run failed (:class:`promptworth.errors.RunFailed`: it diverged, its
worker died; or an unexpected error, with its traceback); 2 bad input or usage (a
``PromptworthError``, or an argument argparse refuses), printed as one line. ``pool`` exits with its
command's status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, NoReturn

from promptworth.cli.options import add_options, version
from promptworth.cli.output import Output
from promptworth.cli.verbs import VERBS, add_verb
from promptworth.errors import PromptworthError


class _Parser(argparse.ArgumentParser):
    """Argument errors are one line too (argparse prints the usage before them), exit status 2."""

    def error(self, message: str) -> NoReturn:
        verb = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        self.exit(2, f"promptworth: error: {verb}{message} (see {self.prog} --help)\n")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of the verb ``argv`` names, or of every verb (for ``--help``, or no verb): a verb's
    option sets are built only when it is the one parsed, so a verb pays only for its own imports."""
    parser = _Parser(
        prog="promptworth",
        description="How many data points is a prompt worth? Splits, training and analysis.",
    )
    add_options(parser, version())
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)
    named = next((a for a in argv or [] if not a.startswith("-")), None)
    known = named in {verb.name for verb in VERBS}
    for verb in VERBS:
        if not known or verb.name == named:
            add_verb(subparsers, verb)
    return parser


def handler(path: str) -> Callable[[argparse.Namespace], int]:
    """The handler a verb names (``"module:function"``), imported now."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
        result = handler(args.handler)(args)
    except PromptworthError as exc:
        print(f"promptworth: error: {exc}", file=sys.stderr)
        return exc.exit_status
    if isinstance(result, Output):
        print(result.render(args.json), flush=True)
        return result.status
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
