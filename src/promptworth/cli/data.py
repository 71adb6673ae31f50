"""Data verbs: ``kshot`` (LM-BFF's exact K-shot splits), ``split`` (data-size ladders), ``tasks``."""

from __future__ import annotations

import argparse
from pathlib import Path

from promptworth.data import splits, task_files, tasks
from promptworth.data.kshot import kshot as sample_kshot, lmbff_tasks
from promptworth.data.sources import resolve_data_dir


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
    task = task_files.find_task(args.task, args.task_files)
    written = splits.ladder(task, spec, args.out, data_dir=args.data_dir)
    for size, folder in written.items():
        print(f"{args.task} size {size}: {folder}")
    return 0


def run_tasks(args: argparse.Namespace) -> int:
    root = resolve_data_dir(args.data_dir)
    print(f"{'task':<14} {'family':<9} {'metric':<9} {'labels':>6}  pool here  eval here")
    for name, spec in {**tasks.registry(), **task_files.load_task_files(args.task_files)}.items():
        pool, evaluation = (_here(spec, root, split) for split in tasks.SPLIT_FILES)
        labels = "reg" if spec.is_regression else str(spec.num_labels)
        print(f"{name:<14} {spec.family:<9} {spec.metric:<9} {labels:>6}  {pool:<9}  {evaluation}")
    return 0


def _here(spec: tasks.TaskSpec, root: Path, split: str) -> str:
    """Whether a task's pool or eval file is at hand: yes, no, or hub (a hub dataset's, downloaded when read)."""
    name, source = (spec.pool if split == "pool" else spec.eval), spec.source
    if source is None:
        return "yes" if name is not None and (root / spec.dir / name).is_file() else "no"
    if source.hub is not None:
        return "hub"
    return "yes" if (source.saved or source.folder / name).exists() else "no"
