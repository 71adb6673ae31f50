"""A split folder: its manifest (written, read, hashed), its files verified, its rows loaded.

Every split folder describes itself in ``manifest.json`` (its rows' checksums and sources); a run
record names its split by the manifest's sha256. Reading a split verifies it first, so a changed
file fails loudly instead of skewing a result."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import datasets

from promptworth import __version__
from promptworth.data.rows import read_records, rows_from_records, to_dataset
from promptworth.data.sources import known_checksums
from promptworth.data.tasks import TaskSpec, as_task
from promptworth.errors import PromptworthError
from promptworth.files import sha256_file


# Every split folder describes itself in this file (its rows' checksums and sources); a run
# record names its split by the manifest's sha256.
MANIFEST = "manifest.json"


HOW_TO_WRITE_A_SPLIT = "write a verified split with `promptworth split` (or `promptworth kshot`)"


def manifest_sha256(split_dir: Path) -> str | None:
    """sha256 of a split folder's manifest (None when it has none)."""
    path = Path(split_dir) / MANIFEST
    return sha256_file(path) if path.is_file() else None


def read_manifest(split_dir: Path) -> dict[str, Any] | None:
    """A split folder's manifest (None when it has none), checked: a ``task`` name and a
    ``files`` object of sha256 digests by file name."""
    path = Path(split_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PromptworthError(f"{path}: not a readable manifest ({exc})") from None
    except RecursionError:
        raise PromptworthError(f"{path}: nested too deeply to be a manifest") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (
        not isinstance(manifest, dict) or not isinstance(manifest.get("task"), str) or not isinstance(files, dict)
        or not all(isinstance(name, str) and isinstance(digest, str) for name, digest in files.items())
    ):
        raise PromptworthError(f"{path}: not a split manifest (it needs 'task' and 'files': {{name: sha256}})")
    # only files of the folder itself: a name like /dev/zero or ../x would be read to hash it
    strays = [name for name in files if name in ("", ".", "..") or "/" in name or "\\" in name]
    if strays:
        raise PromptworthError(f"{path}: {strays[0]!r} is not the name of a file in the split folder")
    return manifest


@dataclass(frozen=True)
class SplitChecksums:
    """The sha256 each file of a split folder must have (by file name), and where they come from."""

    folder: Path
    files: dict[str, str]
    origin: str


def split_checksums(split_dir: Path, task_name: str, kshot_dir: str | None) -> SplitChecksums:
    """What the files of a split folder of ``task_name`` must hash to.

    A folder with a manifest: the manifest's ``files``, and the manifest must name ``task_name``.
    Without one, LM-BFF's published K-shot folders (``<kshot_dir>/<K>-<seed>``, so the folder
    must sit in a folder named like the task's ``kshot_dir``) are checked against the published
    checksums. Any other folder cannot be verified: an error.
    """
    folder = Path(split_dir)
    if not folder.is_dir():
        raise PromptworthError(f"split folder {folder} does not exist")
    manifest = read_manifest(folder)
    if manifest is not None:
        if manifest["task"] != task_name:
            raise PromptworthError(
                f"split folder {folder} holds a split of {manifest['task']} (its {MANIFEST}), not of {task_name}"
            )
        return SplitChecksums(folder, dict(manifest["files"]), f"the sha256 in {folder / MANIFEST}")
    here = folder.resolve()
    prefix = f"{kshot_dir}/{here.name}/"
    published = {
        relpath.removeprefix(prefix): digest for relpath, digest in known_checksums().items()
        if kshot_dir and relpath.startswith(prefix)
    }
    if not published:
        raise PromptworthError(
            f"split folder {folder} cannot be verified: it has no {MANIFEST} and is not one of LM-BFF's "
            f"published K-shot folders of {task_name}; {HOW_TO_WRITE_A_SPLIT}"
        )
    expected = Path(kshot_dir or "").name
    if here.parent.name != expected:
        raise PromptworthError(
            f"split folder {folder} is not a K-shot folder of {task_name}: it lies in {here.parent.name!r}, "
            f"LM-BFF's splits of {task_name} lie in {expected!r} ({kshot_dir}/{here.name})"
        )
    return SplitChecksums(folder, published, f"the published sha256 of {prefix}")


def verify_split_file(path: Path, checksums: SplitChecksums) -> None:
    """Raise unless ``path`` (a file of the split folder) hashes to what ``checksums`` say."""
    expected = checksums.files.get(path.name)
    if expected is None:
        raise PromptworthError(f"{path} cannot be verified: {checksums.origin} lists no such file")
    if sha256_file(path) != expected:
        raise PromptworthError(
            f"{path} has changed since its split was written: its sha256 does not match {checksums.origin}; "
            f"{HOW_TO_WRITE_A_SPLIT} again"
        )


def verify_split(checksums: SplitChecksums) -> None:
    """Every file the checksums list is there and unchanged."""
    for name in sorted(checksums.files):
        path = checksums.folder / name
        if not path.is_file():
            raise PromptworthError(f"{path} is missing: {checksums.origin} lists it")
        verify_split_file(path, checksums)


MANIFEST_VERSION = 1


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


def load_split_part(task: str | TaskSpec, split_dir: Path, part: str) -> datasets.Dataset:
    """One part ('train', 'dev' or 'test') of a split folder, in either layout, verified (see
    :func:`promptworth.data.sources.split_checksums`); a built-in task by its name, a task file's
    by its spec."""
    task = as_task(task)
    return _read_part(task, verified_checksums(task, split_dir), part)


def load_split(task: str | TaskSpec, split_dir: Path) -> datasets.DatasetDict:
    """``train``, ``dev`` and ``test`` of a split folder, in either layout, verified; a built-in task
    by its name, a task file's by its spec."""
    task = as_task(task)
    checksums = verified_checksums(task, split_dir)
    return datasets.DatasetDict({part: _read_part(task, checksums, part) for part in ("train", "dev", "test")})


def infer_data_seed(split_dir: Path) -> int | None:
    """From the manifest, or from an LM-BFF folder name ``<K>-<seed>``."""
    manifest = Path(split_dir) / "manifest.json"
    if manifest.is_file():
        try:
            seed = json.loads(manifest.read_text(encoding="utf-8")).get("data_seed")
            return int(seed) if seed is not None else None
        except (ValueError, TypeError):
            return None
    name = Path(split_dir).resolve().name
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if "-" in name and tail.isdigit() else None
