"""Data verbs: ``kshot`` (LM-BFF's exact K-shot splits), ``split`` (data-size ladders), ``tasks``,
``fetch-data`` (a study's or some tasks' files, downloaded ahead of time and verified)."""

from __future__ import annotations

import argparse

from promptworth.cli.output import Output
from promptworth.data import splits, tasks
from promptworth.data.kshot import kshot as sample_kshot, lmbff_tasks
from promptworth.data.sources import resolve_data_dir
from promptworth.errors import PromptworthError


def run_kshot(args: argparse.Namespace) -> Output:
    root = resolve_data_dir(args.data_dir)
    written = sample_kshot(args.out_dir, args.tasks, k=args.k, seeds=args.seeds, data_dir=root, full=args.full)
    skipped = [name for name in lmbff_tasks() if name not in written and not args.tasks]
    lines = [f"{name}: {len(folders)} splits in {args.out_dir / name}" for name, folders in written.items()]
    if skipped:
        lines.append(f"skipped (training pool not in {root}): {', '.join(skipped)}")
    return Output({"out_dir": args.out_dir, "splits": written, "skipped": skipped}, "\n".join(lines))


def run_split(args: argparse.Namespace) -> Output:
    spec = splits.LadderSpec(
        sizes=tuple(args.sizes),
        data_seed=args.data_seed,
        dev_policy=args.dev_policy,
        dev_size=args.dev_size,
        test_limit=args.test_limit,
    )
    written = splits.ladder(args.task, spec, args.out_dir, data_dir=args.data_dir)
    text = "\n".join(f"{args.task} size {size}: {folder}" for size, folder in written.items())
    return Output({"task": args.task, "splits": {str(size): folder for size, folder in written.items()}}, text)


def run_tasks(args: argparse.Namespace) -> Output:
    root = resolve_data_dir(args.data_dir)
    rows = []
    for name, spec in tasks.registry().items():
        rows.append({"task": name, "family": spec.family, "metric": spec.metric,
                     "labels": None if spec.is_regression else spec.num_labels,
                     "pool_here": spec.pool is not None and (root / spec.dir / spec.pool).is_file(),
                     "eval_here": spec.eval is not None and (root / spec.dir / spec.eval).is_file()})
    lines = [f"{'task':<14} {'family':<9} {'metric':<9} {'labels':>6}  pool here  eval here"]
    for row in rows:
        labels = "reg" if row["labels"] is None else str(row["labels"])
        lines.append(f"{row['task']:<14} {row['family']:<9} {row['metric']:<9} {labels:>6}  "
                     f"{'yes' if row['pool_here'] else 'no':<9}  {'yes' if row['eval_here'] else 'no'}")
    return Output({"data_dir": root, "tasks": rows}, "\n".join(lines))


def run_fetch_data(args: argparse.Namespace) -> Output:
    from promptworth.data.fetch import fetch

    names, data_dir = list(args.tasks or []), args.data_dir
    if args.configfile is not None:
        from promptworth.study import tiny_variant
        from promptworth.study.config_file import read_config_file
        from promptworth.study.load import read_study

        # the study as the workflow reads it (the tiny variant's under PROMPTWORTH_FAST=1)
        study = read_study(tiny_variant.study_config(read_config_file(args.configfile)))
        names, data_dir = [*study.tasks, *names], data_dir or study.data_dir
    if not names:
        raise PromptworthError("fetch-data: give --configfile FILE (a study's tasks) or --tasks TASK ...")
    files = fetch(names, data_dir)
    data = [{"task": f.task, "file": f.relpath, "path": f.path, "sha256": f.sha256, "downloaded": f.downloaded,
             "published_sha256": f.published} for f in files]
    lines = [f"{f.task}: {f.relpath} ({'downloaded' if f.downloaded else 'already there'}; "
             f"{'sha256 verified' if f.published else 'no published sha256: not verified'})" for f in files]
    tasks = len({f.task for f in files})
    lines.append(f"{len(files)} files of {tasks} task{'s' * (tasks != 1)} in {resolve_data_dir(data_dir)}: "
                 f"{sum(f.downloaded for f in files)} downloaded, {sum(f.published for f in files)} verified against "
                 "their published sha256")
    return Output(data, "\n".join(lines))
