"""Where task files come from: a local data mirror, or a download from the original sources.

The mirror is a folder laid out like LM-BFF's ``data/`` (``original/``, ``k-shot/``) plus
``superglue/<TASK>/``. It is found, in this order, from an explicit argument (the config key
``data_dir``), the environment variable ``PROMPTWORTH_DATA``, or the default download folder
``~/.cache/promptworth/data`` (:func:`default_data_dir`). Files missing from a mirror are downloaded only into the default
folder (never into a user's mirror), from LM-BFF's data archive or SuperGLUE's per-task archives.

Every file whose sha256 is known (``checksums.sha256``: the published files) is verified on
each read, so a corrupt or edited copy fails loudly instead of skewing results.
"""

from __future__ import annotations

import functools
import os
import shutil
import tarfile
import urllib.request
import zipfile
from importlib import resources
from pathlib import Path

from promptworth.data.tasks import TaskSpec
from promptworth.errors import PromptworthError
from promptworth.files import sha256_file, staging_folder

DATA_ENV = "PROMPTWORTH_DATA"
LMBFF_ARCHIVE_URL = "https://nlp.cs.princeton.edu/projects/lm-bff/datasets.tar"
SUPERGLUE_URL = "https://dl.fbaipublicfiles.com/glue/superglue/data/v2/{task}.zip"
FEWGLUE_URL = "https://raw.githubusercontent.com/timoschick/fewglue/master/FewGLUE/{task}/{split}.jsonl"


def default_data_dir() -> Path:
    """The download cache, ``~/.cache/promptworth/data`` (read on each call: it follows $HOME)."""
    return (Path.home() / ".cache" / "promptworth" / "data").resolve()


def resolve_data_dir(configured: str | Path | None = None) -> Path:
    """The data mirror: the configured folder, else $PROMPTWORTH_DATA, else the download cache.

    The download cache need not exist yet (the first download creates it), also when a path
    resolved here is passed back in as ``configured``.
    """
    if configured:
        path = Path(configured).expanduser()
        source = "the config key data_dir"
    elif os.environ.get(DATA_ENV):
        path = Path(os.environ[DATA_ENV]).expanduser()
        source = f"${DATA_ENV}"
    else:
        return default_data_dir()
    if path.resolve() == default_data_dir():
        return default_data_dir()
    if not path.is_dir():
        raise PromptworthError(f"data mirror {path} (from {source}) is not a folder")
    return path.resolve()


@functools.cache
def known_checksums() -> dict[str, str]:
    """sha256 of the published files, by path relative to the mirror root."""
    text = resources.files(__package__).joinpath("checksums.sha256").read_text(encoding="utf-8")
    table = {}
    for line in text.splitlines():
        digest, relpath = line.split(maxsplit=1)
        table[relpath.strip()] = digest
    return table


def verify(path: Path, relpath: str) -> None:
    """Raise if ``path`` is a known file whose content differs from the published one."""
    expected = known_checksums().get(relpath)
    if expected is not None and sha256_file(path) != expected:
        raise PromptworthError(f"{path} is corrupt: its sha256 does not match the published file {relpath}")


def task_file(task: TaskSpec, name: str, data_dir: Path | None = None, *, download: bool = True) -> Path:
    """Path of one of ``task``'s files, verified; downloaded into the cache when it is missing."""
    root = resolve_data_dir(data_dir)
    relpath = f"{task.dir}/{name}"
    path = root / relpath
    if not path.is_file():
        if root != default_data_dir() or not download:
            raise PromptworthError(_missing_message(task, relpath, root))
        download_task(task, root)
        if not path.is_file():
            raise PromptworthError(_missing_message(task, relpath, root) + " (not in the downloaded archive either)")
    verify(path, relpath)
    return path


def _missing_message(task: TaskSpec, relpath: str, root: Path) -> str:
    message = f"{task.name}: {relpath} is not in the data mirror {root}"
    if task.kshot_dir and relpath.endswith(task.pool or "\0"):
        message += f"; its training pool is missing, only its published K-shot splits ({task.kshot_dir}) can be used"
    return message


def download_task(task: TaskSpec, root: Path, urls: dict[str, str] | None = None) -> None:
    """Fetch the original archive holding ``task``'s files and unpack it under ``root``.

    ``urls`` overrides the source addresses (tests point them at local ``file://`` archives).
    Files are unpacked into a temporary folder and moved into place only once all are verified.
    """
    urls = urls or {}
    with staging_folder(root, "downloaded data") as staging:
        if task.family == "lmbff":
            url = urls.get("lmbff", LMBFF_ARCHIVE_URL)
            archive = _fetch(url, staging / "datasets.tar")
            try:
                with tarfile.open(archive) as tar:
                    members = [m for m in tar.getmembers() if _under(m.name, task.dir) and m.isfile()]
                    tar.extractall(staging / "unpacked", members=members, filter="data")
            except tarfile.TarError as exc:
                raise PromptworthError(f"the download from {url} is not a valid archive ({exc})") from None
            unpacked = _find_folder(staging / "unpacked", task.dir)
        elif task.family == "superglue":
            folder = Path(task.dir).name
            url = urls.get("superglue", SUPERGLUE_URL).format(task=folder)
            archive = _fetch(url, staging / f"{folder}.zip")
            try:
                with zipfile.ZipFile(archive) as zipped:
                    zipped.extractall(staging / "unpacked")
            except zipfile.BadZipFile as exc:
                raise PromptworthError(f"the download from {url} is not a valid archive ({exc})") from None
            unpacked = _find_folder(staging / "unpacked", folder)
            for role, name in task.fewshot.items():
                split = "train" if role == "train" else "dev32"
                _fetch(urls.get("fewglue", FEWGLUE_URL).format(task=folder, split=split), unpacked / name)
        else:
            raise ValueError(f"registry: {task.name} has unknown family {task.family!r}")
        for path in sorted(unpacked.iterdir()):
            if path.is_file():
                verify(path, f"{task.dir}/{path.name}")
        target = root / task.dir
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(unpacked.iterdir()):
            if path.is_file():
                shutil.move(str(path), target / path.name)


def _under(member: str, folder: str) -> bool:
    """Whether a tar member lies in ``folder`` (archives may have a leading directory)."""
    return f"/{folder}/" in f"/{member}"


def _find_folder(base: Path, folder: str) -> Path:
    """The unpacked copy of ``folder`` (``original/SST-2`` or ``CB``), wherever the archive put it."""
    name = Path(folder).name
    for candidate in sorted(base.rglob(name)):
        if candidate.is_dir() and candidate.as_posix().endswith(folder):
            return candidate
    raise PromptworthError(f"the downloaded archive has no folder {folder}")


def _fetch(url: str, destination: Path) -> Path:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        raise PromptworthError(f"could not download {url}: {exc}") from None
    return destination
