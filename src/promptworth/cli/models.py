"""Model verbs: ``tiny-model`` (a tiny random backbone for smoke runs and tests) and ``methods``
(the training methods, their parts, default hyperparameters and trainable parameters)."""

from __future__ import annotations

import argparse
from pathlib import Path

from promptworth.errors import PromptworthError
from promptworth.methods import build, registry, specs as method_specs
from promptworth.backbones.tiny_models import KINDS, build_tiny_model
from promptworth.training import runtime


def register(subparsers: argparse._SubParsersAction) -> None:
    tiny = subparsers.add_parser(
        "tiny-model",
        help="save a tiny randomly initialised backbone (for smoke runs; its scores mean nothing)",
    )
    tiny.add_argument("--kind", choices=KINDS, default="llama")
    tiny.add_argument("--out", type=Path, required=True, help="folder to write (config, weights, tokenizer)")
    tiny.set_defaults(handler=run_tiny_model)

    methods = subparsers.add_parser(
        "methods",
        help="list the built-in methods: parts, options, default hyperparameters, trainable parameters",
    )
    methods.add_argument("--model", help="also count each method's trainable and total parameters on this model "
                         "(a folder, hub id or short name; loads it once per method)")
    methods.add_argument("--task", default="SST-2", help="the task the counts are for: a head's size depends on its "
                         "labels (default: %(default)s)")
    methods.add_argument("--json", action="store_true", help="print JSON instead of a table")
    methods.set_defaults(handler=run_methods)


def run_tiny_model(args: argparse.Namespace) -> int:
    from promptworth.files import writable_folder

    out = args.out
    # the model replaces what is at --out: only ever an earlier model folder (publish_folder checks
    # its files once the new one is built; a link is refused at once)
    if out.is_symlink():
        raise PromptworthError(f"{out} is a link: the model is written only where no folder is, or in place of an "
                               "earlier model folder (remove the link or give another --out)")
    if out.exists() and not (out / "config.json").is_file() and (not out.is_dir() or any(out.iterdir())):
        raise PromptworthError(f"{out} exists and is not a model folder; give a new folder or remove it")
    with writable_folder(out.parent, f"the model folder {out.name}"):
        print(build_tiny_model(args.kind, out))
    return 0


def method_rows(model: str | None, task_name: str) -> list[dict]:
    """One row per built-in method; with ``model``, its parameters once the tuning is applied."""
    rows = []
    for spec in method_specs.BUILTINS:
        row = {"method": spec.name, "objective": spec.objective, "tuning": spec.tuning, "extras": list(spec.extras),
               "strategy": spec.strategy, "size_zero": spec.runs_at_size_zero,
               "trains": spec.tuning_spec.trains, "options": spec.resolved_options(),
               "training": spec.training_defaults(), "source": spec.tuning_spec.source, "paper": spec.paper}
        rows.append(row)
    if model is not None:
        from promptworth.data import tasks
        from promptworth.methods.objectives import prompt as methods
        from promptworth.training import run as train
        from promptworth.backbones import load

        backbone = load.open_backbone(model)
        task = tasks.get_task(task_name)
        for row, spec in zip(rows, method_specs.BUILTINS):
            method = build.build_method(spec, task, backbone, 128)
            runtime.seed_everything(0)
            method.load_model()
            row["options"] = method.options
            row["parameters"] = method.parameter_count.as_dict()
    return rows


def run_methods(args: argparse.Namespace) -> int:
    import json

    rows = method_rows(args.model, args.task)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(row["method"]) for row in rows) + 1
    for row in rows:
        options = ", ".join(f"{k}={v}" for k, v in row["options"].items()) or "-"
        training = ", ".join(f"{k}={v}" for k, v in row["training"].items()) or "-"
        counts = ""
        if "parameters" in row:
            p = row["parameters"]
            share = f" ({100 * p['trainable'] / p['total']:.3g}%)" if p["total"] else ""
            counts = f"  trainable {p['trainable']:,} of {p['total']:,}{share}"
        parts = " + ".join([row["objective"], row["tuning"], *row["extras"]])
        print(f"{row['method']:<{width}} {parts:<28} {row['strategy']}")
        print(f"{'':<{width}} trains: {row['trains']}")
        print(f"{'':<{width}} options: {options}; training defaults: {training}{counts}")
    print(f"objectives: {', '.join(registry.OBJECTIVES)}; tunings: {', '.join(registry.TUNINGS)}; "
          f"extras: {', '.join(registry.EXTRAS)} (a study may define more methods from these parts)")
    return 0
