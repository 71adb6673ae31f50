"""Shared fixtures: where the data mirror and the reference files are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared(env: str, name: str) -> Path:
    return Path(os.environ.get(env) or REPO.parent / "shared" / name).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data mirror (``$PROMPTWORTH_DATA``, else ``../shared/data``)."""
    path = _shared("PROMPTWORTH_DATA", "data")
    if not path.is_dir():
        pytest.skip(f"no data mirror at {path}; set PROMPTWORTH_DATA")
    return path


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Published numbers and checksums (``$PROMPTWORTH_REFERENCE``, else ``../shared/reference``)."""
    path = _shared("PROMPTWORTH_REFERENCE", "reference")
    if not path.is_dir():
        pytest.skip(f"no reference folder at {path}; set PROMPTWORTH_REFERENCE")
    return path


@pytest.fixture(autouse=True)
def _mirror_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests read the mirror beside the checkout unless told otherwise."""
    if not os.environ.get("PROMPTWORTH_DATA"):
        default = REPO.parent / "shared" / "data"
        if default.is_dir():
            monkeypatch.setenv("PROMPTWORTH_DATA", str(default))
