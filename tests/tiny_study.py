"""The tiny study that the workflow tests share: run once per session (``conftest.tiny_study``),
copied by each test that changes it (its records, selection, config) and runs it again.

One task (SST-2), sizes 0 (the prompt untrained) and 8, one data seed, prompt and head on the
tiny LLaMA the workflow builds, a few steps; the lr_grid chooses the prompt's rate from two pilot
runs at size 8. Its numbers mean
nothing; it exercises the rules that reuse what exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = {
    **yaml.safe_load((REPO / "config" / "studies" / "tiny.yaml").read_text(encoding="utf-8")),
    "results_dir": "results",
    "tasks": ["SST-2"],
    "lr_grid": {"rates": {"prompt": [1.0e-4, 3.0e-2]}, "size": 8},
}
CONFIG["splits"] = {**CONFIG["splits"], "sizes": [0, 8], "data_seeds": [1]}
# the records the study writes, under its folder
PROMPT = Path("results/runs/tiny-llama/SST-2/prompt/8-1-1.json")
HEAD = Path("results/runs/tiny-llama/SST-2/head/8-1-1.json")
ZERO = Path("results/runs/tiny-llama/SST-2/prompt/0-1-1.json")
SELECTION = Path("results/lr/tiny-llama/SST-2/prompt.json")


def snakemake(cwd: Path, configfile: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """The workflow on ``configfile`` in the folder ``cwd`` (two jobs at once), with this
    process's environment (the tests' data mirror: conftest)."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "2",
               "--configfile", str(configfile), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def write_config(path: Path, **changes: object) -> Path:
    """The tiny study's config with ``changes`` (top-level keys; ``training`` merged), at ``path``.
    Its ``data_dir`` is the tests' mirror unless ``changes`` name one."""
    mirror = os.environ.get("PROMPTWORTH_DATA")
    config = {**CONFIG, **({"data_dir": mirror} if mirror else {})}
    config.update({k: v for k, v in changes.items() if k != "training"})
    config["training"] = {**CONFIG["training"], **changes.get("training", {})}  # type: ignore[dict-item]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@dataclass(frozen=True)
class TinyStudy:
    """The finished tiny study: its folder (results, the tiny model) and its config file."""

    folder: Path
    configfile: Path

    def copy(self, to: Path, memory: bool = False) -> Path:
        """A copy of the study's folder at ``to``: without Snakemake's memory of its jobs
        (``.snakemake/``), as a clone or another working folder sees it, or with it (``memory``),
        as the folder that ran it; the folder."""
        ignore = None if memory else shutil.ignore_patterns(".snakemake")
        shutil.copytree(self.folder, to, symlinks=True, ignore=ignore)
        return to


def run_tiny_study(folder: Path, data_dir: Path) -> TinyStudy:
    folder.mkdir(parents=True, exist_ok=True)
    configfile = write_config(folder / "tiny.yaml", data_dir=str(data_dir))
    result = snakemake(folder, configfile)
    if result.returncode != 0:
        raise AssertionError(f"the tiny study failed:\n{result.stderr[-4000:]}")
    return TinyStudy(folder, configfile)
