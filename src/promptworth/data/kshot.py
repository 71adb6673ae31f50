"""LM-BFF's K-shot sampler, byte for byte (its tools/generate_k_shot_data.py): per seed, shuffle the pool with numpy's seed, the first K of each label as train, the next K as dev, the evaluation set as test."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from promptworth.data.sources import resolve_data_dir, task_file
from promptworth.data.split_folder import write_manifest
from promptworth.data.splits import ALL, DEFAULT_K, check_seed
from promptworth.data.tasks import TaskSpec, get_task, registry
from promptworth.errors import PromptworthError
from promptworth.files import check_replaceable, publish_folder, staging_folder


# LM-BFF generated its published splits with this seed order; it matters for CoLA (see below).
LMBFF_SEEDS = (100, 13, 21, 42, 87)


def lmbff_tasks() -> list[str]:
    return [name for name, spec in registry().items() if spec.family == "lmbff"]


def _lmbff_seed_order(seeds: Sequence[int]) -> list[int]:
    """The order in which LM-BFF's script would visit ``seeds``: its own order first, then the rest."""
    return [s for s in LMBFF_SEEDS] + [s for s in seeds if s not in LMBFF_SEEDS]


def _kshot_label(task: TaskSpec, record: Any) -> str:
    """The label LM-BFF groups by: the raw value, or above/below the threshold for regression."""
    raw = record[task.fields["label"]]
    if task.regression_threshold is not None:
        return "0" if float(raw) < task.regression_threshold else "1"
    return str(raw).strip()


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(lines)


def _read_lines(path: Path) -> list[str]:
    # Text mode with universal newlines and utf-8, exactly as LM-BFF's script reads (keeps a BOM).
    with open(path, "r", encoding="utf-8") as handle:
        return handle.readlines()


def _check_k(task: TaskSpec, groups: dict[str, list], k: int, seed: int) -> None:
    for label, members in groups.items():
        if len(members) < k:
            raise PromptworthError(
                f"{task.name}: K={k} is larger than class {label!r} holds ({len(members)} examples in the pool)"
            )


def _kshot_train(groups: dict[str, list], k: int, full: bool) -> list:
    """The training part of a K-shot split: the first K of each class, or (``full``) every
    member of the pool but the K-shot dev rows (each class's K after its first K)."""
    return [member for g in groups.values() for member in (g[:k] + g[2 * k:] if full else g[:k])]


def _kshot_folder(k: int, seed: int, full: bool) -> str:
    return f"{ALL if full else k}-{seed}"


def _kshot_tsv(task: TaskSpec, root: Path, out: Path, k: int, seeds: Sequence[int], full: bool = False) -> dict[int, Path]:
    """GLUE-style tasks: lines of the tsv files are shuffled and written back unchanged."""
    pool_path = task_file(task, task.file_name("pool"), root)
    eval_names = [task.file_name("eval"), *task.extra_eval]
    eval_paths = [task_file(task, name, root) for name in eval_names]
    lines = _read_lines(pool_path)
    header, body = (lines[:1], lines[1:]) if task.header else ([], lines)
    wanted = set(seeds)
    written = {}
    for seed in _lmbff_seed_order(seeds):
        # LM-BFF shuffles a fresh copy of the body for files with a header, but the file's own list
        # for headerless CoLA: CoLA's shuffles accumulate over the seeds, in LM-BFF's seed order.
        shuffled = body if not task.header else list(body)
        np.random.RandomState(seed).shuffle(shuffled)
        if seed not in wanted:
            continue
        groups: dict[str, list[str]] = {}
        for line in shuffled:
            groups.setdefault(_kshot_label(task, line.strip().split("\t")), []).append(line)
        _check_k(task, groups, k, seed)
        folder = out / _kshot_folder(k, seed, full)
        folder.mkdir(parents=True)
        for name, path in zip(eval_names, eval_paths):
            _write_lines(folder / name.replace("dev", "test"), _read_lines(path))
        dev_name = "dev_matched.tsv" if task.extra_eval else "dev.tsv"
        _write_lines(folder / "train.tsv", header + _kshot_train(groups, k, full))
        _write_lines(folder / dev_name, header + [line for g in groups.values() for line in g[k : 2 * k]])
        sources = {f"{task.dir}/{p.name}": p for p in [pool_path, *eval_paths]}
        write_manifest(folder, _kshot_info(task, k, seed, full), sources)
        written[seed] = folder
    return written


def _kshot_csv(task: TaskSpec, root: Path, out: Path, k: int, seeds: Sequence[int], full: bool = False) -> dict[int, Path]:
    """Headerless csv tasks: LM-BFF goes through pandas, whose quoting we must reproduce."""
    pool_path = task_file(task, task.file_name("pool"), root)
    eval_path = task_file(task, task.file_name("eval"), root)
    pool = pd.read_csv(pool_path, header=None)
    evaluation = pd.read_csv(eval_path, header=None)
    written = {}
    for seed in seeds:
        records = pool.values.tolist()
        np.random.RandomState(seed).shuffle(records)
        groups: dict[str, list] = {}
        for record in records:
            groups.setdefault(_kshot_label(task, record), []).append(record)
        _check_k(task, groups, k, seed)
        folder = out / _kshot_folder(k, seed, full)
        folder.mkdir(parents=True)
        evaluation.to_csv(folder / "test.csv", header=False, index=False)
        dev = [record for g in groups.values() for record in g[k : 2 * k]]
        pd.DataFrame(_kshot_train(groups, k, full)).to_csv(folder / "train.csv", header=False, index=False)
        pd.DataFrame(dev).to_csv(folder / "dev.csv", header=False, index=False)
        sources = {f"{task.dir}/{p.name}": p for p in [pool_path, eval_path]}
        write_manifest(folder, _kshot_info(task, k, seed, full), sources)
        written[seed] = folder
    return written


def _kshot_info(task: TaskSpec, k: int, seed: int, full: bool) -> dict[str, Any]:
    info = {"layout": "lmbff", "task": task.name, "k": k, "data_seed": seed, "sampler": "lmbff"}
    if full:
        info.update(size=ALL, train="the whole pool less the K-shot dev rows (LM-BFF's full-data setting)")
    return info


def kshot(
    out: Path,
    task_names: Sequence[str] | None = None,
    k: int = DEFAULT_K,
    seeds: Sequence[int] = LMBFF_SEEDS,
    data_dir: Path | None = None,
    full: bool = False,
) -> dict[str, dict[int, Path]]:
    """Write LM-BFF's K-shot splits for ``task_names`` under ``out/<task>/<k>-<seed>/``.

    ``full``: LM-BFF's full-data setting under ``out/<task>/all-<seed>/``: the same K-shot dev and
    test, and as training set the whole pool less those dev rows.

    Without ``task_names``: every LM-BFF task whose training pool is in the mirror (the others are
    reported as skipped). Everything is staged and moved into place only when all tasks succeeded.
    """
    if k <= 0:
        raise PromptworthError(f"K must be positive, got {k}")
    for seed in seeds:
        check_seed(seed, "a data seed")
    if len(set(seeds)) != len(seeds):
        raise PromptworthError(f"duplicate seeds in {list(seeds)}")
    root = resolve_data_dir(data_dir)
    if task_names:
        specs = [get_task(name) for name in task_names]
        for spec in specs:
            if spec.family != "lmbff":
                raise PromptworthError(f"{spec.name} is not one of LM-BFF's tasks; use `promptworth split` for it")
    else:
        specs = [get_task(name) for name in lmbff_tasks()]
        specs = [spec for spec in specs if (root / spec.dir / spec.file_name("pool")).is_file()]
    out = Path(out)
    results: dict[str, dict[int, Path]] = {}
    with staging_folder(out, "splits") as staging:
        for spec in specs:
            sampler = _kshot_csv if spec.format == "csv" else _kshot_tsv
            results[spec.name] = sampler(spec, root, staging / spec.name, k, seeds, full)
        check_replaceable((folder, out / name / folder.name) for name, folders in results.items()
                          for folder in folders.values())
        for name, folders in results.items():
            for seed, folder in folders.items():
                final = out / name / folder.name
                publish_folder(folder, final)
                folders[seed] = final
    return results
