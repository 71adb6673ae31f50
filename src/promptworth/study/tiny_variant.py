"""The tiny variant: ``PROMPTWORTH_FAST=1`` makes every long command short, to check that it works.

The one switch of the newcomer test (``make test-newcomer``), for anyone who wants to see a command
run through in seconds rather than run it for real. It is read here and nowhere else:

- a study (``make study``, ``publish``, ``report``, a bare ``snakemake``) trains the tiny random
  model the workflow builds (``resources/models/tiny-llama``, in place of every model of the study)
  on its first ``TASKS`` tasks, first
  ``SIZES`` sizes, first data seed and first training seed; its results stay under ``results/``
  (a study whose ``results_dir`` is another folder of the checkout, e.g. the published
  ``reports/``, writes to ``results/fast/<results_dir>``), so a tiny run never overwrites
  committed results;
- ``promptworth train`` trains at most ``STEPS`` steps and evaluates at most ``TEST_ROWS`` test
  rows, on whatever model it is given (the README's SmolLM2 example stays SmolLM2);
- the benchmarks measure a step or two and write under ``results/fast/``.

Numbers from the tiny variant mean nothing; the records say what ran (their hyperparameters).
"""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from promptworth.errors import PromptworthError
from promptworth.training.settings import TrainConfig

ENV = "PROMPTWORTH_FAST"
STEPS = 2
TEST_ROWS = 24
TASKS = 2
SIZES = 2
# built by the workflow's rule tiny_model (promptworth.backbones.registry.MODELS_DIR)
TINY_MODEL = "resources/models/tiny-llama"
# the tiny model's positions (rule tiny_model: promptworth tiny-model --positions): room for the
# in-context methods' long contexts (the third edition's ICL reads 1,536 tokens)
TINY_POSITIONS = 2048
RESULTS = PurePosixPath("results")
FAST_RESULTS = RESULTS / "fast"


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the tiny variant is on: ``PROMPTWORTH_FAST`` is ``1`` (unset, empty or ``0``: off)."""
    value = environ.get(ENV, "").strip()
    if value not in ("", "0", "1"):
        raise PromptworthError(f"{ENV} must be 1 (the tiny variant) or 0 (off), got {value!r}")
    return value == "1"


def redirect(path: str | Path, root: Path | None = None) -> Path:
    """Where the tiny variant writes what would go to ``path``: a relative ``path`` inside
    ``results/`` stays, any other relative one becomes ``results/fast/<path>``. An absolute
    ``path`` inside ``root`` (the checkout) is treated as relative to it; one outside stays."""
    path = Path(path)
    if path.is_absolute():
        if root is not None and path.is_relative_to(root):
            return root / redirect(path.relative_to(root))
        return path
    parts = [part for part in PurePosixPath(path.as_posix()).parts if part not in (".", "..")]
    if ".." in path.parts or not parts or parts[0] != RESULTS.name:
        return Path(FAST_RESULTS, *parts)
    return Path(*parts)


def output(path: str | Path, root: Path | None = None) -> Path:
    """``path``, or under the tiny variant its :func:`redirect`."""
    return redirect(path, root) if enabled() else Path(path)


def small(value: int, fast_value: int) -> int:
    """``value``, or under the tiny variant at most ``fast_value``."""
    return min(value, fast_value) if enabled() else value


def study_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A study's config (Snakemake's ``config``), or under the tiny variant its tiny version. A
    study that reads existing run records (``runs_dir``) trains nothing: only its outputs move."""
    out = copy.deepcopy(dict(config))
    if not enabled():
        return out
    out["results_dir"] = redirect(out.get("results_dir") or RESULTS).as_posix()
    if out.get("runs_dir"):
        return out
    tasks = list(out["tasks"])[:TASKS]
    out.update(model=TINY_MODEL, tasks=tasks, train_seeds=list(out["train_seeds"])[:1])
    out.pop("by_model", None)  # its keys name the study's models, which the tiny one replaces
    out.pop("train_seeds_by_task", None)  # one train seed everywhere
    out.pop("stages", None)  # they name the models, tasks and seeds it cuts: one stage of every run
    for key in ("templates", "methods_by_task"):
        if key in out:
            out[key] = {task: value for task, value in out[key].items() if task in tasks}
    names = [m["name"] if isinstance(m, dict) else m for m in out["methods"]]
    runs = set(names).union(*out.get("methods_by_task", {}).values())
    if "training_by_method" in out:  # only methods the tiny study still runs, within the tiny model's positions
        out["training_by_method"] = {m: _within_tiny_positions(v) for m, v in out["training_by_method"].items() if m in runs}
    if "lr_grid" in out:  # the grid of the methods the tiny study still runs, on one pilot split
        grid = {**out["lr_grid"], "rates": {m: r for m, r in out["lr_grid"]["rates"].items() if m in runs}}
        for key in ("data_seeds", "train_seeds"):
            if key in grid:
                grid[key] = list(grid[key])[:1]
        out["lr_grid"] = grid
        if not grid["rates"]:
            del out["lr_grid"]
    splits = out["splits"]
    splits["data_seeds"] = list(splits["data_seeds"])[:1]
    if "sizes" in splits:
        splits["sizes"] = list(splits["sizes"])[:SIZES]
    if "sizes_by_task" in splits:
        splits["sizes_by_task"] = {t: list(s)[:SIZES] for t, s in splits["sizes_by_task"].items() if t in tasks}
    splits["test_limit"] = min(splits.get("test_limit") or TEST_ROWS, TEST_ROWS)
    # a task's sizes as the study reads them (StudySplits.sizes_for): its own, else the ladder's
    by_task = splits.get("sizes_by_task", {})
    kept = {str(size): size for task in tasks for size in by_task.get(task, splits.get("sizes", []))}
    if "by_size" in out:  # only the sizes the tiny study still trains at
        out["by_size"] = {size: value for size, value in out["by_size"].items() if str(size) in kept}
        if not out["by_size"]:
            del out["by_size"]
    if "by_method" in out:
        sized = runs.union(*(settings.get("methods", ()) for settings in out.get("by_size", {}).values()))
        out["by_method"] = _tiny_by_method(out["by_method"], sized, kept)
        if not out["by_method"]:
            del out["by_method"]
    # within the tiny model's positions; fp32, since its numbers mean nothing anyway
    out["training"] = {**out.get("training", {}), "max_length": 64, "precision": "fp32"}
    # no GPU asked for: a GPU study's tiny variant runs on any machine (where there is one, it still uses it)
    if "resources" in out:
        out["resources"] = {**out["resources"], "gpus": 0}
    return out


def _within_tiny_positions(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A method's training settings with ``max_length`` at most the tiny model's positions."""
    if "max_length" not in settings:
        return dict(settings)
    return {**settings, "max_length": min(int(settings["max_length"]), TINY_POSITIONS)}


def _tiny_by_method(by_method: Mapping[str, Any], runs: set[str], kept: Mapping[str, Any]) -> dict[str, Any]:
    """``by_method`` of the methods the tiny study runs: at the sizes it kept (a method none of whose
    sizes it kept runs at its first trained size), on its one data seed (so no data_seeds)."""
    out = {}
    for method, settings in by_method.items():
        if method not in runs:
            continue
        settings = {key: value for key, value in settings.items() if key != "data_seeds"}
        if "sizes" in settings:
            trained = [size for size in kept.values() if size not in (0, "all")][:1]
            settings["sizes"] = [size for size in settings["sizes"] if str(size) in kept] or trained
        if settings:
            out[method] = settings
    return out


def train_settings(config: TrainConfig, test_limit: int | None) -> tuple[TrainConfig, int | None]:
    """One run's training settings and test rows, or under the tiny variant a few steps of them."""
    if not enabled():
        return config, test_limit
    short = replace(config, max_steps=min(config.max_steps, STEPS), min_steps=min(config.min_steps, STEPS))
    return short, min(test_limit or TEST_ROWS, TEST_ROWS)


def notice() -> str:
    """One line saying the tiny variant is on (empty when it is off)."""
    if not enabled():
        return ""
    return (f"promptworth: {ENV}=1: the tiny variant (a tiny random model or at most {STEPS} steps, "
            f"outputs under {RESULTS}/): it checks that commands run; its numbers mean nothing")
