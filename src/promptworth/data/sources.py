"""Where task files come from: a local data mirror, or a download from the original sources.

The mirror is a folder laid out like LM-BFF's ``data/`` (``original/``, ``k-shot/``) plus
``superglue/<TASK>/``. It is found, in this order, from an explicit argument (the config key
``data_dir``), the environment variable ``PROMPTWORTH_DATA``, or the default download folder
``$XDG_CACHE_HOME/promptworth/data``, by default ``~/.cache/promptworth/data``
(:func:`default_data_dir`). Files missing from a mirror are downloaded only into the default
folder (never into a user's mirror), from LM-BFF's data archive or SuperGLUE's per-task archives
and FewGLUE's files (:data:`SOURCES`); ``PROMPTWORTH_DATA_ORIGIN`` points every download at
another origin that holds the same files (:func:`source_url`).

Every file whose sha256 is known (``checksums.sha256``: the published files) is verified on
each read, so a corrupt or edited copy fails loudly instead of skewing results.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tarfile
import urllib.request
import zipfile
from importlib import resources
from pathlib import Path
from typing import Sequence

from promptworth.data.tasks import TaskSpec
from promptworth.errors import PromptworthError
from promptworth.files import sha256_file, staging_folder

DATA_ENV = "PROMPTWORTH_DATA"
ORIGIN_ENV = "PROMPTWORTH_DATA_ORIGIN"
# The original sources. $PROMPTWORTH_DATA_ORIGIN keeps each address's host and path and replaces
# what comes before them: http://127.0.0.1:8000/nlp.cs.princeton.edu/projects/lm-bff/datasets.tar
# (the layout `wget --force-directories` gives a copy of the sources).
SOURCES = {
    "lmbff": "https://nlp.cs.princeton.edu/projects/lm-bff/datasets.tar",
    "superglue": "https://dl.fbaipublicfiles.com/glue/superglue/data/v2/{task}.zip",
    "fewglue": "https://raw.githubusercontent.com/timoschick/fewglue/master/FewGLUE/{task}/{split}.jsonl",
}
# FewGLUE's name of each few-shot file a SuperGLUE task names (the registry's key fewshot)
FEWGLUE_SPLITS = {"train": "train", "dev": "dev32"}
_ORIGIN = re.compile(r"^(https?|file)://")


def default_data_dir() -> Path:
    """The download cache, ``$XDG_CACHE_HOME/promptworth/data``, else ``~/.cache/promptworth/data``
    (read on each call: it follows the environment)."""
    cache = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(cache) if os.path.isabs(cache) else Path.home() / ".cache"  # XDG: a relative path is ignored
    return (base / "promptworth" / "data").resolve()


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


def _differs(path: Path, relpath: str) -> bool:
    """Whether ``path``, the file ``relpath`` of the data folder, has a published sha256 and another content."""
    expected = known_checksums().get(relpath)
    return expected is not None and sha256_file(path) != expected


def verify(path: Path, relpath: str) -> None:
    """Raise if ``path`` is a known file whose content differs from the published one."""
    if _differs(path, relpath):
        raise PromptworthError(f"{path} is corrupt: its sha256 does not match the published file {relpath}")


def task_file(task: TaskSpec, name: str, data_dir: Path | None = None, *, download: bool = True) -> Path:
    """Path of one of ``task``'s files, verified; downloaded into the cache when it is missing."""
    root = resolve_data_dir(data_dir)
    relpath = f"{task.dir}/{name}"
    path = root / relpath
    if not path.is_file():
        if root != default_data_dir() or not download:
            raise PromptworthError(_missing_message(task, relpath, root))
        download_tasks([task], root)
        if not path.is_file():
            raise PromptworthError(_missing_message(task, relpath, root))
    try:
        verify(path, relpath)
    except PromptworthError as exc:
        if root != default_data_dir():
            raise
        raise PromptworthError(f"{exc}; delete it and it is downloaded again") from None
    return path


def _missing_message(task: TaskSpec, relpath: str, root: Path) -> str:
    """Why a file is missing: a mirror lacks it, or (in the cache, after a download) its source does."""
    if root == default_data_dir():
        return f"{task.name}: {relpath} is not in the download from its source (into {root})"
    message = f"{task.name}: {relpath} is not in the data mirror {root}"
    if task.kshot_dir and relpath.endswith(task.pool or "\0"):
        message += f"; its training pool is missing, only its published K-shot splits ({task.kshot_dir}) can be used"
    return message


# ---------------------------------------------------------------------------------------------
# Downloads


def source_path(source: str, **fields: str) -> str:
    """Where one file of a source (:data:`SOURCES`) lies, its address without the scheme:
    ``nlp.cs.princeton.edu/projects/lm-bff/datasets.tar``."""
    return SOURCES[source].format(**fields).split("://", 1)[1]


def source_url(source: str, **fields: str) -> str:
    """The address one file of a source is downloaded from: the original, or under
    ``$PROMPTWORTH_DATA_ORIGIN`` (``http://host:port/folder`` or ``file:///folder``) its
    :func:`source_path` there: a copy of the sources for machines without the internet (and tests)."""
    origin = os.environ.get(ORIGIN_ENV, "").strip()
    if not origin:
        return SOURCES[source].format(**fields)
    if not _ORIGIN.match(origin):
        raise PromptworthError(f"${ORIGIN_ENV} is {origin!r}: give an http://, https:// or file:// address of a "
                               "folder laid out like the sources (README.md, \"Data\")")
    return f"{origin.rstrip('/')}/{source_path(source, **fields)}"


# (the file's path under the data folder, the unpacked file, the address it came from)
Unpacked = list[tuple[str, Path, str]]


def download_tasks(specs: Sequence[TaskSpec], root: Path) -> None:
    """Fetch the original files of ``specs`` and put them under ``root``: LM-BFF's archive once for
    all its tasks; a SuperGLUE task's zip and its FewGLUE files.

    Files are unpacked into a staging folder and moved into place only once every one of them
    is verified: a failed or corrupt download leaves nothing.
    """
    specs = list({spec.name: spec for spec in specs}.values())
    for spec in specs:
        if spec.family not in ("lmbff", "superglue"):
            raise ValueError(f"registry: {spec.name} has unknown family {spec.family!r}")
    with staging_folder(root, "downloaded data") as staging:
        lmbff = [spec for spec in specs if spec.family == "lmbff"]
        files = _unpack_lmbff(lmbff, staging / "lmbff") if lmbff else []
        for spec in specs:
            if spec.family == "superglue":
                files += _unpack_superglue(spec, staging / "superglue")
        for relpath, path, url in files:
            if _differs(path, relpath):
                raise PromptworthError(f"the download from {url} is corrupt: its {relpath} does not match the "
                                       "published file's sha256 (nothing was written)")
        for relpath, path, _ in files:
            (root / relpath).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), root / relpath)


def _unpack_lmbff(specs: list[TaskSpec], staging: Path) -> Unpacked:
    url = source_url("lmbff")
    staging.mkdir()
    archive = _fetch(url, staging / "datasets.tar")
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and any(_under(m.name, s.dir) for s in specs)]
            tar.extractall(staging / "unpacked", members=members, filter="data")
    except tarfile.TarError as exc:
        raise PromptworthError(f"the download from {url} is not a valid archive ({exc})") from None
    return [(f"{spec.dir}/{path.name}", path, url)
            for spec in specs for path in _files(_find_folder(staging / "unpacked", spec.dir, url))]


def _unpack_superglue(spec: TaskSpec, staging: Path) -> Unpacked:
    folder = Path(spec.dir).name
    url = source_url("superglue", task=folder)
    staging.mkdir(exist_ok=True)
    archive = _fetch(url, staging / f"{folder}.zip")
    try:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(staging / f"{folder}-unpacked")
    except zipfile.BadZipFile as exc:
        raise PromptworthError(f"the download from {url} is not a valid archive ({exc})") from None
    unpacked = _find_folder(staging / f"{folder}-unpacked", folder, url)
    files = [(f"{spec.dir}/{path.name}", path, url) for path in _files(unpacked)]
    for role, name in spec.fewshot.items():
        address = source_url("fewglue", task=folder, split=FEWGLUE_SPLITS[role])
        files.append((f"{spec.dir}/{name}", _fetch(address, unpacked / name), address))
    return files


def _files(folder: Path) -> list[Path]:
    return [path for path in sorted(folder.iterdir()) if path.is_file()]


def _under(member: str, folder: str) -> bool:
    """Whether a tar member lies in ``folder`` (archives may have a leading directory)."""
    return f"/{folder}/" in f"/{member}"


def _find_folder(base: Path, folder: str, url: str) -> Path:
    """The unpacked copy of ``folder`` (``original/SST-2`` or ``CB``), wherever the archive put it."""
    name = Path(folder).name
    for candidate in sorted(base.rglob(name)):
        if candidate.is_dir() and candidate.as_posix().endswith(folder):
            return candidate
    raise PromptworthError(f"the download from {url} has no folder {folder}")


def _fetch(url: str, destination: Path) -> Path:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        raise PromptworthError(f"could not download {url}: {exc}") from None
    return destination
