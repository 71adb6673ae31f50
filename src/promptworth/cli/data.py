"""Data verbs: ``kshot`` (LM-BFF's exact K-shot splits), ``split`` (data-size ladders), ``tasks``,
``fetch-data`` (a study's or some tasks' files, downloaded ahead of time and verified)."""

from __future__ import annotations

import argparse
from pathlib import Path

from promptworth.cli.output import Output
from promptworth.data import splits, task_files, tasks
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
    task = task_files.find_task(args.task, args.task_files)
    written = splits.ladder(task, spec, args.out_dir, data_dir=args.data_dir)
    text = "\n".join(f"{args.task} size {size}: {folder}" for size, folder in written.items())
    return Output({"task": args.task, "splits": {str(size): folder for size, folder in written.items()}}, text)


def run_tasks(args: argparse.Namespace) -> Output:
    root = resolve_data_dir(args.data_dir)
    rows = []
    for name, spec in {**tasks.registry(), **task_files.load_task_files(args.task_files)}.items():
        pool, evaluation = (_here(spec, root, split) for split in tasks.SPLIT_FILES)
        rows.append({"task": name, "family": spec.family, "metric": spec.metric,
                     "labels": None if spec.is_regression else spec.num_labels, "pool_here": pool, "eval_here": evaluation})
    lines = [f"{'task':<14} {'family':<9} {'metric':<9} {'labels':>6}  pool here  eval here"]
    for row in rows:
        labels = "reg" if row["labels"] is None else str(row["labels"])
        lines.append(f"{row['task']:<14} {row['family']:<9} {row['metric']:<9} {labels:>6}  {row['pool_here']:<9}  "
                     f"{row['eval_here']}")
    return Output({"data_dir": root, "tasks": rows}, "\n".join(lines))


def _here(spec: tasks.TaskSpec, root: Path, split: str) -> str:
    """Whether a task's pool or eval file is at hand: yes, no, or hub (a hub dataset's, downloaded when read)."""
    name, source = (spec.pool if split == "pool" else spec.eval), spec.source
    if source is None:
        return "yes" if name is not None and (root / spec.dir / name).is_file() else "no"
    if source.hub is not None:
        return "hub"
    return "yes" if (source.saved or source.folder / name).exists() else "no"


def run_fetch_data(args: argparse.Namespace) -> Output:
    from promptworth.data.fetch import fetch

    names, data_dir = list(args.tasks or []), args.data_dir
    if args.configfile is not None:
        from promptworth.study import tiny_variant
        from promptworth.study.config_file import read_config_file
        from promptworth.study.load import read_study

        # the study as the workflow reads it (the tiny variant's under PROMPTWORTH_FAST=1); its task
        # files' tasks read their own files, where the task file names them
        study = read_study(tiny_variant.study_config(read_config_file(args.configfile)))
        names = [*(name for name in study.tasks if name not in study.defined_tasks), *names]
        data_dir = data_dir or study.data_dir
    if not names:
        raise PromptworthError("fetch-data: give --configfile FILE (a study's tasks) or --tasks TASK ...")
    files = fetch(names, data_dir)
    data = [{"task": f.task, "file": f.relpath, "path": f.path, "sha256": f.sha256, "downloaded": f.downloaded,
             "published_sha256": f.published} for f in files]
    lines = [f"{f.task}: {f.relpath} ({'downloaded' if f.downloaded else 'already there'}; "
             f"{'sha256 verified' if f.published else 'no published sha256: not verified'})" for f in files]
    tasks_fetched = len({f.task for f in files})
    lines.append(f"{len(files)} files of {tasks_fetched} task{'s' * (tasks_fetched != 1)} in "
                 f"{resolve_data_dir(data_dir)}: {sum(f.downloaded for f in files)} downloaded, "
                 f"{sum(f.published for f in files)} verified against their published sha256")
    return Output(data, "\n".join(lines))
