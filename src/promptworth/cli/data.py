"""Data verbs: ``kshot`` (LM-BFF's exact K-shot splits), ``split`` (data-size ladders), ``tasks``,
``fetch-data`` (a study's or some tasks' files, downloaded ahead of time and verified)."""

from __future__ import annotations

import argparse
import json

from promptworth.data import splits, tasks
from promptworth.data.kshot import kshot as sample_kshot, lmbff_tasks
from promptworth.data.sources import resolve_data_dir
from promptworth.errors import PromptworthError


def run_kshot(args: argparse.Namespace) -> int:
    root = resolve_data_dir(args.data_dir)
    written = sample_kshot(args.out, args.tasks, k=args.k, seeds=args.seeds, data_dir=root, full=args.full)
    skipped = [name for name in lmbff_tasks() if name not in written and not args.tasks]
    for name, folders in written.items():
        print(f"{name}: {len(folders)} splits in {args.out / name}")
    if skipped:
        print(f"skipped (training pool not in {root}): {', '.join(skipped)}")
    return 0


def run_split(args: argparse.Namespace) -> int:
    spec = splits.LadderSpec(
        sizes=tuple(args.sizes),
        data_seed=args.data_seed,
        dev_policy=args.dev_policy,
        dev_size=args.dev_size,
        test_limit=args.test_limit,
    )
    written = splits.ladder(args.task, spec, args.out, data_dir=args.data_dir)
    for size, folder in written.items():
        print(f"{args.task} size {size}: {folder}")
    return 0


def run_tasks(args: argparse.Namespace) -> int:
    root = resolve_data_dir(args.data_dir)
    print(f"{'task':<14} {'family':<9} {'metric':<9} {'labels':>6}  pool here  eval here")
    for name, spec in tasks.registry().items():
        pool = spec.pool is not None and (root / spec.dir / spec.pool).is_file()
        evaluation = spec.eval is not None and (root / spec.dir / spec.eval).is_file()
        labels = "reg" if spec.is_regression else str(spec.num_labels)
        print(f"{name:<14} {spec.family:<9} {spec.metric:<9} {labels:>6}  {'yes' if pool else 'no':<9}  {'yes' if evaluation else 'no'}")
    return 0


def run_fetch_data(args: argparse.Namespace) -> int:
    from promptworth.data.fetch import fetch

    names, data_dir = list(args.tasks or []), args.data_dir
    if args.configfile is not None:
        from promptworth.study import tiny_variant
        from promptworth.study.config_file import read_config_file, schema_file
        from promptworth.study.load import load_study

        # the study as the workflow reads it (the tiny variant's under PROMPTWORTH_FAST=1)
        study = load_study(tiny_variant.study_config(read_config_file(args.configfile)), schema_file())
        names, data_dir = [*study.tasks, *names], data_dir or study.data_dir
    if not names:
        raise PromptworthError("fetch-data: give --configfile FILE (a study's tasks) or --tasks TASK ...")
    files = fetch(names, data_dir)
    if args.json:
        print(json.dumps([{"task": f.task, "file": f.relpath, "path": str(f.path), "sha256": f.sha256,
                           "downloaded": f.downloaded, "published_sha256": f.published} for f in files], indent=2))
        return 0
    for f in files:
        check = "sha256 verified" if f.published else "no published sha256: not verified"
        print(f"{f.task}: {f.relpath} ({'downloaded' if f.downloaded else 'already there'}; {check})")
    tasks = len({f.task for f in files})
    print(f"{len(files)} files of {tasks} task{'s' * (tasks != 1)} in {resolve_data_dir(data_dir)}: "
          f"{sum(f.downloaded for f in files)} downloaded, {sum(f.published for f in files)} verified against their "
          "published sha256")
    return 0
