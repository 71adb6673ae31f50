"""All-or-nothing outputs: every file promptworth writes appears whole or not at all.

A file is written to a temporary name beside it and renamed into place; a folder of files is
written into a temporary folder and moved; the destination folder is probed for writing before
any work starts, so an output that cannot be written fails first, in one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, TYPE_CHECKING

from promptworth.errors import PromptworthError


if TYPE_CHECKING:
    import pandas as pd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def plain_file_mode(path: str | Path) -> None:
    """Give a file another library wrote (it may make it 0600) the mode of any file promptworth writes."""
    os.chmod(path, 0o666 & ~_umask())


def non_finite_key(value: Any, key: str = "") -> str | None:
    """The dotted key of the first NaN or infinite number in a JSON value, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return key or "(the whole value)"
    if isinstance(value, dict):
        items = [(f"{key}.{name}" if key else str(name), item) for name, item in value.items()]
    elif isinstance(value, list):
        items = [(f"{key}[{i}]", item) for i, item in enumerate(value)]
    else:
        return None
    for item_key, item in items:
        found = non_finite_key(item, item_key)
        if found is not None:
            return found
    return None


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its ancestors that do not exist yet, deepest first."""
    folder = folder.absolute()
    return [p for p in (folder, *folder.parents) if not p.exists()]


def _remove_empty(folders: Iterable[Path]) -> None:
    for folder in folders:  # deepest first; stop at the first one that is not empty
        if not folder.exists():
            continue
        try:
            folder.rmdir()
        except OSError:
            return


@contextlib.contextmanager
def writable_folder(folder: str | Path, what: str) -> Iterator[Path]:
    """Create ``folder`` and write and remove a probe file in it before the block's work, so an
    output that cannot be written fails first (one line, not a traceback after hours of work).
    The folders created here are removed again if the block fails: a failure leaves nothing."""
    folder = Path(folder)
    created = _missing_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        _remove_empty(created)
        raise PromptworthError(f"cannot write {what} into {folder}: {exc.strerror or exc}") from None
    try:
        yield folder
    except BaseException:
        _remove_empty(created)
        raise


def check_output_file(path: str | Path) -> Path:
    """An output file's path; an existing folder there is an error."""
    path = Path(path)
    if path.is_dir():
        raise PromptworthError(f"{path} is a folder; give the name of the file to write")
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto it only if the block succeeds."""
    path = check_output_file(path)
    with writable_folder(path.parent, path.name):
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the output gets a plain file's mode
        try:
            yield Path(tmp)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def write_json(path: str | Path, value: Any) -> None:
    """``value`` as indented JSON at ``path``, all or nothing; a NaN or infinite number anywhere
    in it is an error (JSON has none: a reader would get a number that means nothing)."""
    bad = non_finite_key(value)
    if bad is not None:
        raise PromptworthError(f"{path}: refusing to write a non-finite number (NaN or inf) at {bad}")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def read_output(path: str | Path, where: str, what: str, format_tag: str, maker: str) -> dict[str, Any]:
    """A JSON file one of promptworth's verbs wrote (a search result, a learning-rate selection),
    read back: an object whose ``format`` is ``format_tag``; else one error that starts with
    ``where`` and names ``what`` it should be and the verb that makes one (``maker``)."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PromptworthError(f"{where}: cannot read it as {what}: {exc}") from None
    if not isinstance(value, dict) or value.get("format") != format_tag:
        raise PromptworthError(f"{where}: not {what} ({format_tag}); make it with {maker}")
    return value


@contextlib.contextmanager
def staging_folder(parent: str | Path, what: str) -> Iterator[Path]:
    """A temporary folder inside ``parent`` to build outputs in, removed when the block ends
    whatever happens; finished results leave it through :func:`publish_folder` (or a move of
    their own). ``parent`` is probed for writing first; if this call created it and nothing
    was published into it, it is removed again."""
    parent = Path(parent)
    created = not parent.exists()
    with writable_folder(parent, what):
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if created and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()


def replace_problem(staged: str | Path, final: str | Path) -> str | None:
    """Why the finished folder ``staged`` may not take the place of ``final``, or None. Only an
    earlier output of the same kind is replaced: a real folder (not a link) that holds only files
    of the names ``staged`` holds; a folder that holds anything else was not written there by
    promptworth, and is never deleted."""
    staged, final = Path(staged), Path(final)
    if final.is_symlink():
        return (f"{final} is a link: promptworth writes its folder only where none is, or in place of an earlier one "
                "of its own (remove the link or give another --out-dir)")
    if not final.exists():
        return None
    if not final.is_dir():
        return f"{final} is a file, not a folder"
    names = {item.name for item in staged.iterdir()}
    foreign = sorted(item.name for item in final.iterdir()
                     if item.is_symlink() or not item.is_file() or item.name not in names)
    if foreign:
        return (f"{final} exists and holds {foreign[0]!r}, which promptworth did not write there: it replaces only an "
                "earlier output of its own (move that away, or give another --out-dir)")
    return None


def check_replaceable(pairs: Iterable[tuple[Path, Path]]) -> None:
    """Every (staged, final) pair can be published (:func:`replace_problem`): checked for all
    before the first is moved, so that a refusal leaves nothing partial."""
    for staged, final in pairs:
        problem = replace_problem(staged, final)
        if problem is not None:
            raise PromptworthError(problem)


def publish_folder(staged: str | Path, final: str | Path) -> Path:
    """Move a finished folder (built in a :func:`staging_folder` of the same file system) into
    place, replacing an earlier output of its own there (never anything else:
    :func:`replace_problem`); the folder gets a plain folder's mode (mkdtemp makes 0700)."""
    staged, final = Path(staged), Path(final)
    check_replaceable([(staged, final)])
    staged.chmod(0o777 & ~_umask())
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staged, final)
    return final


def write_files(out_dir: str | Path, write: Callable[[Path], None]) -> list[Path]:
    """Call ``write(tmp_dir)`` and move what it wrote into ``out_dir`` only if it succeeds.

    ``out_dir`` is created if needed; files already there with other names are left alone.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PromptworthError(f"{out_dir} is a file, not a folder")
    with staging_folder(out_dir.resolve().parent, f"the folder {out_dir.name}") as tmp_dir:
        write(tmp_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for item in sorted(tmp_dir.iterdir()):
            target = out_dir / item.name
            os.replace(item, target)
            written.append(target)
        return written


def write_texts(out_dir: str | Path, texts: Mapping[str, str]) -> list[Path]:
    """Every text into ``out_dir`` under its file name, all or nothing (:func:`write_files`)."""

    def write(tmp: Path) -> None:
        for name, text in texts.items():
            (tmp / name).write_text(text, encoding="utf-8")

    return write_files(out_dir, write)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
