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
import json
import os
import shutil
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptworth.errors import PromptworthError
from promptworth.files import sha256_file, staging_folder

if TYPE_CHECKING:
    from promptworth.data.tasks import TaskSpec

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
