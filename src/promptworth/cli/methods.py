"""Method verb: ``methods`` (the training methods, their parts, default hyperparameters and
trainable parameters)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from promptworth.cli.output import Output
from promptworth.errors import PromptworthError
from promptworth.methods import registry, specs as method_specs


def method_rows(model: str | None, task_name: str, task_files: Sequence[Path] = ()) -> list[dict]:
    """One row per built-in method; with ``model``, its parameters once the tuning is applied (a
    method that runs on a backbone of its own, SetFit, has none on ``model``: its row names its backbone)."""
    rows = []
    for spec in method_specs.BUILTINS:
        row = {"method": spec.name, "objective": spec.objective, "tuning": spec.tuning, "extras": list(spec.extras),
               "template": spec.template, "strategy": spec.strategy, "size_zero": spec.runs_at_size_zero,
               "trains": spec.tuning_spec.trains, "options": spec.resolved_options(),
               "training": spec.training_defaults(), "source": spec.tuning_spec.source, "paper": spec.paper,
               "backbone": spec.backbone}
        rows.append(row)
    if model is not None:
        from promptworth.backbones import load
        from promptworth.data.task_files import find_task
        from promptworth.methods import build
        from promptworth.training import runtime

        backbone = load.open_backbone(model)
        task = find_task(task_name, task_files)
        for row, spec in zip(rows, method_specs.BUILTINS):
            if spec.backbone is not None:
                continue
            try:
                method = build.build_method(spec, task, backbone, 128)
            except PromptworthError as exc:  # words or a template the task lacks (null, the controls)
                row["unavailable"] = str(exc)
                continue
            runtime.seed_everything(0)
            method.load_model()
            row["options"] = method.options
            row["parameters"] = method.parameter_count.as_dict()
    return rows


def run_methods(args: argparse.Namespace) -> Output:
    rows = method_rows(args.model, args.task, args.task_files)
    return Output(rows, methods_text(rows, args.task))


def methods_text(rows: list[dict], task: str) -> str:
    lines = []
    width = max(len(row["method"]) for row in rows) + 1
    for row in rows:
        options = ", ".join(f"{k}={v}" for k, v in row["options"].items()) or "-"
        training = ", ".join(f"{k}={v}" for k, v in row["training"].items()) or "-"
        counts = f"  not on {task}: {row['unavailable']}" if "unavailable" in row else ""
        if "parameters" in row:
            p = row["parameters"]
            share = f" ({100 * p['trainable'] / p['total']:.3g}%)" if p["total"] else ""
            counts = f"  trainable {p['trainable']:,} of {p['total']:,}{share}"
        parts = " + ".join([row["objective"], row["tuning"], *row["extras"]])
        parts += f" (template {row['template']})" if row["template"] else ""
        own = f" (on its own backbone, {row['backbone']})" if row["backbone"] else ""
        lines += [f"{row['method']:<{width}} {parts:<28} {row['strategy']}{own}",
                  f"{'':<{width}} trains: {row['trains']}",
                  f"{'':<{width}} options: {options}; training defaults: {training}{counts}"]
    lines.append(f"objectives: {', '.join(registry.OBJECTIVES)}; tunings: {', '.join(registry.TUNINGS)}; "
                 f"extras: {', '.join(registry.EXTRAS)} (a study may define more methods from these parts)")
    return "\n".join(lines)
