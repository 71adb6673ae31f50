"""Where things are: the checkout's root, and a path as a record names it."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The repository root when running from a checkout (short names resolve against it)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


def study_relative(path: str | Path) -> str:
    """``path`` relative to the working directory (the study's folder), so that a record names
    no folder of the machine that trained it."""
    return os.path.relpath(Path(path).absolute(), Path.cwd())
