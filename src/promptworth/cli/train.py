"""Training verbs: ``train`` (one run -> one run record), ``search`` (a search method's label words or
template -> its result file), ``select-lr`` (a study's pilot runs -> the learning rate chosen on
dev), ``worker`` (a long-lived process of a
``promptworth pool`` that trains the runs handed to it) and ``convert-model`` (an offline
backbone's GGUF -> safetensors)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from promptworth.cli.options import config_from_args, load_options, option_value
from promptworth.errors import PromptworthError
from promptworth.methods import specs as method_specs
from promptworth.training import lr_grid
from promptworth.training.request import RunRequest, model_for


def check_run_arguments(args: argparse.Namespace) -> None:
    """The arguments of ``train`` that the training code takes as given, checked up front."""
    from promptworth.data.splits import check_seed

    check_seed(args.seed, "--seed")
    if getattr(args, "data_seed", None) is not None:
        check_seed(args.data_seed, "--data-seed")
    if args.threads < 0:
        raise PromptworthError(f"--threads must be 0 (torch's default) or a positive number, got {args.threads}")
    if getattr(args, "test_limit", None) is not None and args.test_limit < 1:
        raise PromptworthError(f"--test-limit must be a positive number of rows, got {args.test_limit}")
    every = getattr(args, "progress_every", 0.0)
    if not math.isfinite(every) or every < 0:
        raise PromptworthError(f"--progress-every must be 0 (a line after every step) or a positive number of seconds, "
                               f"got {every:g}")
    if getattr(args, "learning_rate_from", None) is not None and args.learning_rate is not None:
        raise PromptworthError("give --learning-rate or --learning-rate-from (the rate a selection file chose), not both")


def method_from_args(args: argparse.Namespace) -> method_specs.MethodSpec:
    """The method of ``--method``: a built-in, or one defined by ``--objective``, ``--tuning``,
    ``--option`` and ``--extra`` (as a study's inline definition)."""
    if args.objective is None and args.tuning is None and not args.option and not args.extra:
        return method_specs.resolve(args.method)
    if args.objective is None:
        raise PromptworthError("--tuning, --option and --extra define a new method: give its --objective too")
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PromptworthError(f"--option {item!r}: write KEY=VALUE, e.g. r=4")
        if key in options:
            raise PromptworthError(f"--option {key} is given twice ({key}={options[key]} and {item}): give each option "
                                   "once")
        options[key] = option_value(value)
    if len(set(args.extra)) != len(args.extra):
        twice = next(extra for extra in args.extra if args.extra.count(extra) > 1)
        raise PromptworthError(f"--extra {twice} is given twice: give each extra once")
    definition = {"name": args.method, "objective": args.objective, "tuning": args.tuning or "full", "options": options,
                  "extras": args.extra}
    return method_specs.define(definition, "--method")


def run_train(args: argparse.Namespace) -> int:
    from promptworth.study import tiny_variant as fast
    from promptworth.training import pool as workers

    check_run_arguments(args)
    method = method_from_args(args)
    config = config_from_args(args, method.training_defaults())
    config, args.test_limit = fast.train_settings(config, args.test_limit)  # PROMPTWORTH_FAST=1: a few steps
    request = RunRequest(
        task=args.task, method=method, split_dir=args.split_dir, model=model_for(method, args.model), seed=args.seed,
        config=config, model_options=load_options(args), template=args.template, data_seed=args.data_seed,
        test_limit=args.test_limit, threads=args.threads, device=args.device, progress=not args.no_progress,
        progress_every=args.progress_every, search=args.search, lr_selection=args.learning_rate_from,
        task_files=tuple(args.task_files),
    )
    pool = os.environ.get(workers.POOL_ENV)
    if pool:
        status = workers.delegate(Path(pool), {"request": request.to_json(), "out": str(args.out)})
        if status is not None:
            return status
        print(f"promptworth: no worker of the pool {pool} can be reached: training in this process", file=sys.stderr)
    return train_here(request, args.out)


def train_here(request: RunRequest, out: Path) -> int:
    from promptworth.training import run as train

    train.train_to_file(request, out)
    return 0


def run_search(args: argparse.Namespace) -> int:
    from promptworth.study import tiny_variant as fast
    from promptworth.files import check_output_file, writable_folder, write_json
    from promptworth.training import search

    check_run_arguments(args)
    method = method_from_args(args)
    config, _ = fast.train_settings(config_from_args(args, method.training_defaults()), None)
    out = check_output_file(args.out)
    request = search.SearchRequest(
        task=args.task, method=method, split_dir=args.split_dir, model=model_for(method, args.model), seed=args.seed,
        config=config, model_options=load_options(args), template=args.template, generator=args.generator,
        threads=args.threads, device=args.device, progress=not args.no_progress, task_files=tuple(args.task_files),
    )
    with writable_folder(out.parent, f"the search result {out.name}"):
        result = search.run_search(request)
        write_json(out, result)
    chosen = result["label_words"] if result["kind"] == "words" else result["template"]
    print(f"{result['task']} {result['method']} {result['model']}: {result['kind']} {chosen} "
          f"({len(result['candidates'])} candidates, {result['finetunes']} fine-tuned); "
          f"{result['wall_s']:.0f} s -> {args.out}", file=sys.stderr)
    return 0


def run_select_lr(args: argparse.Namespace) -> int:
    from promptworth.files import check_output_file, write_json

    out = check_output_file(args.out)
    if args.bands and args.size not in args.bands:
        raise PromptworthError(f"--size {args.size} is not one of --bands {' '.join(map(str, args.bands))}")
    selection = lr_grid.select(args.records, args.task, args.method, args.size, args.rates, args.extend_at_edge,
                               args.bands)
    write_json(out, selection)
    means = ", ".join(f"{lr_grid.rate_label(r['learning_rate'])}: {r['mean_dev_score']:.4f}" for r in selection["rates"])
    beyond = (selection.get("extension") or {}).get("learning_rate")
    extended = f", the grid extended to {lr_grid.rate_label(beyond)} at its edge" if beyond is not None else ""
    print(f"{args.task} {args.method}: learning rate {lr_grid.rate_label(selection['learning_rate'])} "
          f"(mean dev {means}; {len(selection['runs'])} pilot runs{extended}) -> {out}", file=sys.stderr)
    return 0


def run_worker(args: argparse.Namespace) -> int:
    from promptworth.training import worker

    worker.serve(args.socket)
    return 0


