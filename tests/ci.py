"""What a test does when something it needs is absent (the data mirror, a reference file, an
offline model's package, the browser): it skips, but under CI (``CI=true``, as ``.ci/run`` sets),
where everything is provided, it fails, since a skip there would hide a check that did not run."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``; under CI, fail with it."""
    if under_ci():
        pytest.fail(f"under CI this test must run, but {reason}")
    pytest.skip(reason)
