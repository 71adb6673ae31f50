"""Backbone verbs: ``tiny-model`` (a tiny random backbone for smoke runs and tests),
``convert-model`` (an offline backbone's GGUF -> safetensors) and ``prefetch`` (a pinned hub
model into the local Hugging Face cache)."""

from __future__ import annotations

import argparse
from pathlib import Path

from promptworth.backbones import registry as backbones
from promptworth.backbones.convert import convert_offline_model
from promptworth.backbones.tiny_models import build_tiny_model
from promptworth.cli.output import Output
from promptworth.errors import PromptworthError


def run_tiny_model(args: argparse.Namespace) -> Output:
    from promptworth.files import writable_folder

    out = args.out_dir
    # the model replaces what is at --out-dir: only ever an earlier model folder (publish_folder checks
    # its files once the new one is built; a link is refused at once)
    if out.is_symlink():
        raise PromptworthError(f"{out} is a link: the model is written only where no folder is, or in place of an "
                               "earlier model folder (remove the link or give another --out-dir)")
    if out.exists() and not (out / "config.json").is_file() and (not out.is_dir() or any(out.iterdir())):
        raise PromptworthError(f"{out} exists and is not a model folder; give a new folder or remove it")
    with writable_folder(out.parent, f"the model folder {out.name}"):
        built = build_tiny_model(args.kind, out, args.positions)
    return Output({"kind": args.kind, "positions": args.positions, "out_dir": built}, str(built))


def run_convert(args: argparse.Namespace) -> Output:
    from promptworth.files import writable_folder

    out = args.out_dir or Path(backbones.SHORT_NAMES[args.model])
    data = {"model": args.model, "out_dir": out, "converted": False}
    if out.exists():
        if args.force and (out / "config.json").is_file():
            return Output(data, f"{out} exists")
        raise PromptworthError(f"{out} already exists; remove it to convert again")
    with writable_folder(out.parent, f"the model folder {out.name}"):
        convert_offline_model(args.model, out)
    title = backbones.OFFLINE_MODELS[args.model].title
    return Output({**data, "converted": True},
                  f"{title} converted to {out} (weights dequantised to float32; logits checked against the GGUF model)")


# The file `promptworth prefetch --out` writes (docs/contracts.md)
PIN_FORMAT = "promptworth-model/1"


def run_prefetch(args: argparse.Namespace) -> Output:
    from promptworth.backbones import hub, resolve
    from promptworth.files import check_output_file, write_json

    out = check_output_file(args.out) if args.out is not None else None
    wanted = resolve.hub_model(args.model)
    if wanted is not None:
        hub.prefetch(wanted, args.trust_remote_code)
    ref = resolve.resolve_model(args.model)  # as a run will find it: offline, from the cache
    pin = {"format": PIN_FORMAT, "model": args.model, "name": ref.name,
           "hub": ref.hub.record() if ref.hub is not None else None,
           "weights": resolve.model_weight_files(ref), "model_sha256": resolve.weights_sha256(ref)}
    if out is not None:
        write_json(out, pin)
    where = f"commit {ref.hub.commit} in the Hugging Face cache" if ref.hub is not None else "a local folder"
    return Output({**pin, "out": out}, f"{args.model}: {where}, weights sha256 {pin['model_sha256']}; a run reads it "
                  "without network access" + (f" -> {out}" if out is not None else ""))
