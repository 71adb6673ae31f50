"""Model verbs: ``tiny-model`` (a tiny random backbone for smoke runs and tests)."""

from __future__ import annotations

import argparse
from pathlib import Path

from promptworth.errors import PromptworthError
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
    from promptworth.outputs import writable_folder

    out = args.out
    # the model replaces what is at --out: only ever an earlier model folder
    if out.exists() and not (out / "config.json").is_file() and (not out.is_dir() or any(out.iterdir())):
        raise PromptworthError(f"{out} exists and is not a model folder; give a new folder or remove it")
    with writable_folder(out.parent, f"the model folder {out.name}"):
        print(build_tiny_model(args.kind, out))
    return 0
