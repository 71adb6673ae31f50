"""Data verbs: ``kshot`` (LM-BFF's exact K-shot splits), ``split`` (data-size ladders), ``tasks``."""

from __future__ import annotations

import argparse
from pathlib import Path

from promptworth.data import splits, tasks
from promptworth.data.kshot import LMBFF_SEEDS, kshot as sample_kshot, lmbff_tasks
from promptworth.data.sources import resolve_data_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    kshot = subparsers.add_parser(
        "kshot",
        help="write LM-BFF's K-shot splits, byte for byte",
        description="Write LM-BFF's K-shot splits (<out>/<task>/<K>-<seed>/) exactly as LM-BFF's sampler does.",
    )
    kshot.add_argument("--data-dir", type=Path, help="data mirror (default: $PROMPTWORTH_DATA or the download cache)")
    kshot.add_argument("--out", type=Path, required=True, help="output folder (LM-BFF's data/k-shot)")
    kshot.add_argument("--k", type=int, default=splits.DEFAULT_K, help="examples per class (default %(default)s)")
    kshot.add_argument("--seeds", type=int, nargs="+", default=list(LMBFF_SEEDS), help="data seeds")
    kshot.add_argument("--tasks", nargs="+", help="tasks (default: every LM-BFF task whose pool is available)")
    kshot.add_argument("--full", action="store_true",
                       help="the full-data setting: the K-shot dev and test, the whole pool less dev as training "
                            "set, in <task>/all-<seed>/")
    kshot.set_defaults(handler=run_kshot)

    split = subparsers.add_parser(
        "split",
        help="write nested training/dev/test splits of several sizes",
        description="Write the splits of a data-size ladder: <out>/<size>-<data_seed>/{train,dev,test}.jsonl "
        "and manifest.json. Training sets are nested: each contains the smaller ones.",
    )
    split.add_argument("--task", required=True)
    split.add_argument("--sizes", nargs="+", required=True, type=splits.parse_size, help="sizes (integers or 'all')")
    split.add_argument("--data-seed", type=int, required=True)
    split.add_argument("--dev-policy", choices=splits.DEV_POLICIES, default=splits.DEFAULT_DEV_POLICY)
    split.add_argument("--dev-size", type=int, help="dev rows for --dev-policy fixed")
    split.add_argument("--test-limit", type=int, help="use a fixed seeded subset of this many evaluation rows")
    split.add_argument("--data-dir", type=Path, help="data mirror (default: $PROMPTWORTH_DATA or the download cache)")
    split.add_argument("--out", type=Path, required=True, help="the task's split folder")
    split.set_defaults(handler=run_split)

    listing = subparsers.add_parser("tasks", help="list the registry's tasks and their files")
    listing.add_argument("--data-dir", type=Path)
    listing.set_defaults(handler=run_tasks)


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
