"""Training/dev/test splits: LM-BFF's exact K-shot sampler and nested data-size ladders.

Two layouts of a split folder, both read by ``load_split``:

* LM-BFF's own (``<task>/<K>-<seed>/train.tsv|csv, dev.*, test.*``), written byte for byte as
  LM-BFF's ``tools/generate_k_shot_data.py`` writes them, so its published md5 sums check out;
* ours, for the data-size ladders (``<task>/<size>-<data_seed>/train.jsonl, dev.jsonl,
  test.jsonl``): one normalised row per line (see ``promptworth.data.tasks``).

Both get a ``manifest.json``: what the split is, the sha256 of every file and of its sources.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import datasets
import numpy as np
import pandas as pd

from promptworth import __version__
from promptworth.errors import PromptworthError
from promptworth.files import check_replaceable, publish_folder, sha256_file, staging_folder
from promptworth.data.sources import (
    MANIFEST,
    SplitChecksums,
    read_manifest,
    resolve_data_dir,
    split_checksums,
    task_file,
    verify_split_file,
)
from promptworth.data.tasks import TaskSpec, get_task, load_rows, read_records, registry, rows_from_records, to_dataset

MANIFEST_VERSION = 1
# LM-BFF generated its published splits with this seed order; it matters for CoLA (see below).
LMBFF_SEEDS = (100, 13, 21, 42, 87)
DEV_POLICIES = ("same_as_train", "fixed")
DEFAULT_DEV_POLICY = "fixed"  # Le Scao & Rush
DEFAULT_K = 16  # LM-BFF's K: examples per class
ALL = "all"
# The test subset (``test_limit``) is drawn with this seed, the same for every run of a study.
TEST_SUBSET_SEED = 0
# Every seed (data or training) is in this range: numpy's RandomState, which LM-BFF's sampler
# uses, takes no other, and torch and numpy's Generator take all of these.
SEED_RANGE = (0, 2**32 - 1)
# The zero-shot size: an empty training set (the dev and test sets as at every other size).
ZERO_SHOT = 0
SIZE_KINDS = "a non-negative integer (0: the zero-shot point, no training rows) or 'all'"
NO_DEV_AT_ZERO = ("dev policy 'same_as_train' draws as many dev rows as training rows: size 0 would have no "
                  "dev set; use dev policy 'fixed' with size 0")


# ---------------------------------------------------------------------------------------------
# Small helpers


def check_seed(seed: int, what: str) -> int:
    """``seed`` if it is an integer in :data:`SEED_RANGE`; an error naming ``what`` otherwise."""
    low, high = SEED_RANGE
    if isinstance(seed, bool) or not isinstance(seed, int) or not low <= seed <= high:
        raise PromptworthError(f"{what} must be an integer from {low} to {high}, got {seed!r}")
    return seed


def write_manifest(folder: Path, info: dict[str, Any], sources: dict[str, Path]) -> None:
    """``manifest.json``: ``info`` plus the sha256 of every file in ``folder`` and of ``sources``."""
    files = {path.name: sha256_file(path) for path in sorted(folder.iterdir()) if path.name != MANIFEST}
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        **info,
        "files": files,
        "sources": {name: sha256_file(path) for name, path in sorted(sources.items())},
        "promptworth_version": __version__,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# LM-BFF's K-shot sampler, byte for byte


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


# ---------------------------------------------------------------------------------------------
# Data-size ladders


@dataclass(frozen=True)
class LadderSpec:
    """How the splits of one task and data seed are drawn.

    ``sizes`` are training-set sizes (ints, or "all": the whole pool less the dev set; 0: no
    training rows, the zero-shot point of a curve). They are nested: each size's training set is
    a prefix of one seeded permutation of the pool. The dev set follows ``dev_policy``:
    "same_as_train" (LM-BFF: as many dev rows as training rows, the rows right after the training
    prefix; none at size 0, so not with size 0) or "fixed" (Le Scao & Rush: ``dev_size`` rows
    drawn first, shared by every size of this seed, size 0 included).
    """

    sizes: tuple[int | str, ...]
    data_seed: int
    dev_policy: str = DEFAULT_DEV_POLICY
    dev_size: int | None = None
    test_limit: int | None = None

    def __post_init__(self) -> None:
        check_seed(self.data_seed, "the data seed")
        if not self.sizes:
            raise PromptworthError("no training sizes given")
        for size in self.sizes:
            if size != ALL and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
                raise PromptworthError(f"training size {size!r} must be {SIZE_KINDS}")
        if len(set(self.sizes)) != len(self.sizes):
            raise PromptworthError(f"duplicate training sizes in {list(self.sizes)}")
        if self.dev_policy not in DEV_POLICIES:
            raise PromptworthError(f"unknown dev policy {self.dev_policy!r}; expected one of {DEV_POLICIES}")
        if self.dev_policy == "fixed" and (self.dev_size is None or self.dev_size <= 0):
            raise PromptworthError("dev policy 'fixed' needs a positive dev_size")
        if self.dev_policy == "same_as_train" and ALL in self.sizes:
            raise PromptworthError("dev policy 'same_as_train' cannot be used with size 'all'")
        if self.dev_policy == "same_as_train" and ZERO_SHOT in self.sizes:
            raise PromptworthError(NO_DEV_AT_ZERO)
        if self.test_limit is not None and self.test_limit <= 0:
            raise PromptworthError(f"test_limit must be positive, got {self.test_limit}")


def parse_size(text: str) -> int | str:
    """A size from the command line or a file name: an integer or 'all'."""
    if text == ALL:
        return ALL
    try:
        return int(text)
    except ValueError:
        raise PromptworthError(f"training size {text!r} must be {SIZE_KINDS}") from None


def size_problem(pool_size: int, dev_policy: str, dev_size: int | None, size: int | str) -> str | None:
    """Why a training set of ``size`` cannot be drawn from a pool of ``pool_size`` rows under the
    dev policy, or None (a pure function: the config check and :func:`ladder_indices` share it)."""
    if dev_policy == "fixed":
        assert dev_size is not None
        if dev_size >= pool_size:
            return (f"dev_size {dev_size:,} leaves no training row: the pool holds {pool_size:,} rows; lower the "
                    "dev size")
        if size != ALL and size > pool_size - dev_size:
            return (f"training size {size:,} exceeds the pool ({pool_size:,} rows, {dev_size:,} of them kept for dev: "
                    f"at most {pool_size - dev_size:,} to train on)")
        return None
    if size != ALL and 2 * size > pool_size:
        return f"training size {size:,} with an equally large dev set exceeds the pool ({pool_size:,} rows)"
    return None


def ladder_indices(pool_size: int, spec: LadderSpec, size: int | str) -> tuple[np.ndarray, np.ndarray]:
    """Pool positions of the training and dev rows of one size (a pure function of its inputs)."""
    problem = size_problem(pool_size, spec.dev_policy, spec.dev_size, size)
    if problem is not None:
        raise PromptworthError(problem)
    permutation = np.random.default_rng(spec.data_seed).permutation(pool_size)
    if spec.dev_policy == "fixed":
        dev, rest = permutation[: spec.dev_size], permutation[spec.dev_size :]
        return (rest, dev) if size == ALL else (rest[:size], dev)
    return permutation[:size], permutation[size : 2 * size]


def test_indices(eval_size: int, limit: int | None) -> np.ndarray:
    """The evaluation rows used as test: all, or a fixed seeded subset (in file order)."""
    if limit is None or limit >= eval_size:
        return np.arange(eval_size)
    return np.sort(np.random.default_rng(TEST_SUBSET_SEED).permutation(eval_size)[:limit])


def _write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def size_dir_name(size: int | str, data_seed: int) -> str:
    return f"{size}-{data_seed}"


def ladder(task_name: str, spec: LadderSpec, out: Path, data_dir: Path | None = None) -> dict[int | str, Path]:
    """Write the splits of every size of ``spec`` under ``out/<size>-<data_seed>/``."""
    task = get_task(task_name)
    root = resolve_data_dir(data_dir)
    pool = load_rows(task, "pool", root)
    evaluation = load_rows(task, "eval", root)
    test = [evaluation[i] for i in test_indices(len(evaluation), spec.test_limit)]
    sources = {f"{task.dir}/{task.file_name(s)}": task_file(task, task.file_name(s), root) for s in ("pool", "eval")}
    out = Path(out)
    written = {}
    with staging_folder(out, "splits") as staging:
        for size in spec.sizes:
            train_idx, dev_idx = ladder_indices(len(pool), spec, size)
            folder = staging / size_dir_name(size, spec.data_seed)
            folder.mkdir()
            _write_rows(folder / "train.jsonl", [pool[i] for i in train_idx])
            _write_rows(folder / "dev.jsonl", [pool[i] for i in dev_idx])
            _write_rows(folder / "test.jsonl", test)
            info = {
                "layout": "rows",
                "task": task.name,
                "size": size,
                "train_rows": len(train_idx),
                "dev_rows": len(dev_idx),
                "test_rows": len(test),
                "data_seed": spec.data_seed,
                "dev_policy": spec.dev_policy,
                "dev_size": spec.dev_size,
                "test_limit": spec.test_limit,
                "test_subset_seed": TEST_SUBSET_SEED if spec.test_limit else None,
            }
            write_manifest(folder, info, sources)
            written[size] = folder
        check_replaceable((folder, out / folder.name) for folder in written.values())
        for size, folder in written.items():
            final = out / folder.name
            publish_folder(folder, final)
            written[size] = final
    return written


# ---------------------------------------------------------------------------------------------
# Reading a split folder


def _read_jsonl_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of one of our split files: one JSON object per line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PromptworthError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptworthError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise PromptworthError(f"{path}: line {number} is not a JSON object")
        rows.append(row)
    return rows


def check_rows(task: TaskSpec, rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Rows of a split file have the task's shape (``promptworth.data.tasks``): an integer ``idx``,
    every field of the task and a valid label; the first bad row is named."""
    for number, row in enumerate(rows, start=1):
        where = f"{path}: row {number} (idx {row.get('idx')!r})"
        if not isinstance(row.get("idx"), int) or isinstance(row.get("idx"), bool):
            raise PromptworthError(f"{path}: row {number} has no integer 'idx'")
        missing = [name for name in ("label", *task.text_fields) if name not in row]
        if missing:
            raise PromptworthError(f"{where} has no field {missing[0]!r} of {task.name}")
        for name in task.text_fields:
            wanted = int if name.endswith("_index") else str
            value = row[name]
            if not isinstance(value, wanted) or isinstance(value, bool):
                raise PromptworthError(f"{where}: field {name!r} must be {'an integer' if wanted is int else 'a string'}")
        label = row["label"]
        if task.is_regression:
            ok = isinstance(label, (int, float)) and not isinstance(label, bool) and math.isfinite(label)
        else:
            ok = isinstance(label, int) and not isinstance(label, bool) and 0 <= label < task.num_labels
        if not ok:
            expected = "a finite number" if task.is_regression else f"a label index in 0..{task.num_labels - 1}"
            raise PromptworthError(f"{where}: label {label!r} is not {expected}")


def _lmbff_file(folder: Path, stem: str, suffix: str) -> Path:
    """LM-BFF names MNLI's dev/test files ``*_matched``; everything else plain."""
    for name in (f"{stem}{suffix}", f"{stem}_matched{suffix}"):
        if (folder / name).is_file():
            return folder / name
    raise PromptworthError(f"split folder {folder} has no {stem}{suffix}")


def _read_part(task: TaskSpec, checksums: SplitChecksums, part: str) -> datasets.Dataset:
    """One part of a split folder, verified against ``checksums`` before it is parsed."""
    folder = checksums.folder
    if (folder / f"{part}.jsonl").is_file():
        path = folder / f"{part}.jsonl"
        verify_split_file(path, checksums)
        rows = _read_jsonl_rows(path)
        check_rows(task, rows, path)
    else:
        path = _lmbff_file(folder, part, ".csv" if task.format == "csv" else ".tsv")
        verify_split_file(path, checksums)
        rows = rows_from_records(task, read_records(task, path), path)
    return to_dataset(task, rows)


def verified_checksums(task: TaskSpec, split_dir: Path) -> SplitChecksums:
    """What the split folder's files must hash to; an error if it is not a verifiable split of ``task``."""
    return split_checksums(Path(split_dir), task.name, task.kshot_dir)


def manifest_size(split_dir: Path) -> int | str | None:
    """The training-set size a split folder's manifest states (None: no manifest, or none stated,
    e.g. LM-BFF's K-shot folders, whose ``k`` counts examples per class)."""
    manifest = read_manifest(Path(split_dir))
    return manifest.get("size") if isinstance(manifest, dict) else None


def load_split_part(task_name: str, split_dir: Path, part: str) -> datasets.Dataset:
    """One part ('train', 'dev' or 'test') of a split folder, in either layout, verified (see
    :func:`promptworth.data.sources.split_checksums`)."""
    task = get_task(task_name)
    return _read_part(task, verified_checksums(task, split_dir), part)


def load_split(task_name: str, split_dir: Path) -> datasets.DatasetDict:
    """``train``, ``dev`` and ``test`` of a split folder, in either layout, verified."""
    task = get_task(task_name)
    checksums = verified_checksums(task, split_dir)
    return datasets.DatasetDict({part: _read_part(task, checksums, part) for part in ("train", "dev", "test")})
