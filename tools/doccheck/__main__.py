"""``python -m tools.doccheck check|write|commands``: the commands, paths and figures of the README and docs/
(was the verb ``promptworth docs``)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from promptworth.errors import PromptworthError
from tools.doccheck import checker as readme


def parser() -> argparse.ArgumentParser:
    docs = argparse.ArgumentParser(
        prog="python -m tools.doccheck",
        description="check: every path the documentation names exists, every generated region is fresh, every "
        "quote in docs/quotes.yaml matches its source and no result-like number is quoted without one (exit 1 "
        "with one line per problem). write: rewrite the generated regions from their sources. commands: the "
        "commands of the README's command table and of every bash and python block, as JSON.",
    )
    docs.add_argument("action", choices=("check", "write", "commands"))
    docs.add_argument("--root", type=Path, default=Path("."), help="the checkout (default: the current folder)")
    docs.add_argument("--outputs", action="store_true",
                      help="check: paths that commands make (results/, resources/) must exist too")
    return docs


def run_docs(args: argparse.Namespace) -> int:
    root = args.root
    if not (root / readme.DOCS[0]).is_file():
        raise PromptworthError(f"{root} has no {readme.DOCS[0]}: give the checkout with --root")
    if args.action == "commands":
        print(json.dumps([asdict(c) for c in readme.commands(root)], indent=1))
        return 0
    if args.action == "write":
        for path in readme.write_generated(root):
            print(f"rewrote the generated regions of {path}")
        return 0
    problems = readme.check(root, outputs=args.outputs)
    for problem in problems:
        print(problem, file=sys.stderr)
    documents = len(readme.doc_files(root))
    print(f"[doccheck] {len(problems)} problem(s) in {documents} documents", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run_docs(args)
    except PromptworthError as exc:
        print(f"doccheck: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
