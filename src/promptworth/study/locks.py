"""Snakemake's working-directory lock after a hard kill: tell a stale lock from a live run.

Snakemake locks the files of a running workflow under ``.snakemake/locks``. A run killed hard
(SIGKILL, a lost SSH session, an out-of-memory kill) leaves the lock behind, and every later run
stops with a LockException until ``snakemake --unlock``. Unlocking while another Snakemake still
runs in the same folder would let two runs write the same files, so it is done only when no
Snakemake process works in the folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LOCK_DIR = Path(".snakemake") / "locks"


@dataclass(frozen=True)
class Process:
    pid: int
    command: str


def has_locks(folder: Path) -> bool:
    """Whether Snakemake's (file-based) lock of ``folder`` holds any lock file."""
    locks = folder / LOCK_DIR
    return locks.is_dir() and any(locks.iterdir())


def _ancestors(pid: int) -> set[int]:
    """``pid`` and its parents (a `make` target calling us names snakemake on its command line)."""
    chain = set()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state is the parent pid
    return chain


def _is_snakemake(argv: list[str]) -> bool:
    """A Snakemake process: its program or module is snakemake (``snakemake ...``,
    ``python -m snakemake ...``, ``python .venv/bin/snakemake ...``)."""
    head = argv[:3]
    return any(Path(word).name == "snakemake" for word in head)


def snakemake_processes(folder: Path) -> list[Process]:
    """Snakemake processes (other than this one and its parents) whose working directory is ``folder``."""
    folder = folder.resolve()
    own = _ancestors(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in own:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if _is_snakemake([a for a in argv if a]) and cwd == folder:
            found.append(Process(int(entry.name), " ".join(a for a in argv if a)))
    return sorted(found, key=lambda p: p.pid)
