"""The files some tasks read, got ahead of time (``promptworth fetch-data``): downloaded into the
download cache where they are missing (one download per source archive), then each verified
against its published sha256 (:mod:`promptworth.data.sources`). A mirror is only verified: a file
missing from it is an error, as when a command reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from promptworth.data.sources import default_data_dir, download_tasks, known_checksums, resolve_data_dir, task_file
from promptworth.data.tasks import TaskSpec, get_task
from promptworth.files import sha256_file


@dataclass(frozen=True)
class FetchedFile:
    """One file of a task in the data folder, after :func:`fetch`."""

    task: str
    relpath: str  # its path in the data folder, as checksums.sha256 names it
    path: Path
    sha256: str
    downloaded: bool  # downloaded by this fetch (else it was there already)
    published: bool  # its sha256 is the published one (False: none is published for it, so it is not verified)


def files_read(task: TaskSpec) -> list[str]:
    """The files of ``task`` that splits and runs read: its training pool and evaluation sets."""
    return [name for name in (task.pool, task.eval, *task.extra_eval) if name]


def fetch(task_names: Iterable[str], data_dir: str | Path | None = None) -> list[FetchedFile]:
    """Every file :func:`files_read` names for ``task_names``, in the data folder and verified.

    Into the download cache, the missing ones of all tasks are downloaded together (all or
    nothing); in a mirror, the first missing file is an error that names it.
    """
    specs = [get_task(name) for name in dict.fromkeys(task_names)]
    root = resolve_data_dir(data_dir)
    missing = [spec for spec in specs if any(not (root / spec.dir / name).is_file() for name in files_read(spec))]
    if missing and root == default_data_dir():
        download_tasks(missing, root)
    found = []
    for spec in specs:
        for name in files_read(spec):
            path = task_file(spec, name, root, download=False)
            relpath = f"{spec.dir}/{name}"
            found.append(FetchedFile(spec.name, relpath, path, sha256_file(path), spec in missing,
                                     relpath in known_checksums()))
    return found
