"""Model verbs: ``tiny-model`` (a tiny random backbone for smoke runs and tests)."""

from __future__ import annotations

import argparse
from pathlib import Path

from promptworth.tiny import KINDS, build_tiny_model


def register(subparsers: argparse._SubParsersAction) -> None:
    tiny = subparsers.add_parser(
        "tiny-model",
        help="save a tiny randomly initialised backbone (for smoke runs; its scores mean nothing)",
    )
    tiny.add_argument("--kind", choices=KINDS, default="llama")
    tiny.add_argument("--out", type=Path, required=True, help="folder to write (config, weights, tokenizer)")
    tiny.set_defaults(handler=run_tiny_model)


def run_tiny_model(args: argparse.Namespace) -> int:
    print(build_tiny_model(args.kind, args.out))
    return 0
