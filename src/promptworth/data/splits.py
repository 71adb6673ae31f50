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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from promptworth.errors import PromptworthError
from promptworth.files import check_replaceable, publish_folder, staging_folder
from promptworth.data.sources import resolve_data_dir
from promptworth.data.task_files import manifest_info
from promptworth.data.tasks import TaskSpec, as_task
from promptworth.data.rows import load_rows, source_files
from promptworth.data.split_folder import write_manifest

DEV_POLICIES = ("same_as_train", "fixed", "fixed_subset")
DEFAULT_DEV_POLICY = "fixed"  # Le Scao & Rush
# The policies whose dev set is as large as the training set (LM-BFF's rule; true few-shot
# selection, Perez et al. 2021): none at size 0, so not with size 0 nor 'all'.
TRAIN_SIZED_DEV = ("same_as_train", "fixed_subset")
# The policies that draw a fixed dev set of ``dev_size`` rows first.
FIXED_DEV = ("fixed", "fixed_subset")
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


def no_dev_at_zero(policy: str) -> str:
    """Why a policy whose dev set is as large as the training set cannot draw size 0."""
    return NO_DEV_AT_ZERO.replace("'same_as_train'", repr(policy))


# ---------------------------------------------------------------------------------------------
# Small helpers


def check_seed(seed: int, what: str) -> int:
    """``seed`` if it is an integer in :data:`SEED_RANGE`; an error naming ``what`` otherwise."""
    low, high = SEED_RANGE
    if isinstance(seed, bool) or not isinstance(seed, int) or not low <= seed <= high:
        raise PromptworthError(f"{what} must be an integer from {low} to {high}, got {seed!r}")
    return seed


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
    drawn first, shared by every size of this seed, size 0 included) or "fixed_subset" (the
    training rows of "fixed", and the first ``size`` rows of its dev set: a dev set as large as the
    training set, whose runs differ from their "fixed" twins in the dev set alone; at most
    ``dev_size``, not with size 0).
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
        if self.dev_policy in FIXED_DEV and (self.dev_size is None or self.dev_size <= 0):
            raise PromptworthError(f"dev policy {self.dev_policy!r} needs a positive dev_size")
        if self.dev_policy in TRAIN_SIZED_DEV and ALL in self.sizes:
            raise PromptworthError(f"dev policy {self.dev_policy!r} cannot be used with size 'all'")
        if self.dev_policy in TRAIN_SIZED_DEV and ZERO_SHOT in self.sizes:
            raise PromptworthError(no_dev_at_zero(self.dev_policy))
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
    if dev_policy == "fixed_subset" and size != ALL and dev_size is not None and size > dev_size:
        return (f"training size {size:,} under dev policy 'fixed_subset' needs as many dev rows of the fixed dev set, "
                f"which holds {dev_size:,}: raise dev_size")
    if dev_policy in FIXED_DEV:
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
    if spec.dev_policy in FIXED_DEV:
        dev, rest = permutation[: spec.dev_size], permutation[spec.dev_size :]
        if spec.dev_policy == "fixed_subset":
            return rest[:size], dev[:size]
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


def ladder(task: str | TaskSpec, spec: LadderSpec, out: Path, data_dir: Path | None = None) -> dict[int | str, Path]:
    """Write the splits of every size of ``spec`` under ``out/<size>-<data_seed>/`` (a built-in
    task by its name, a task file's by its spec)."""
    task = as_task(task)
    root = resolve_data_dir(data_dir) if task.source is None else None
    pool = load_rows(task, "pool", root)
    evaluation = load_rows(task, "eval", root)
    test = [evaluation[i] for i in test_indices(len(evaluation), spec.test_limit)]
    sources = source_files(task, root)
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
                **manifest_info(task),
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
