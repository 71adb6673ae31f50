"""A training request: everything a run is told (torch-free; a pool's client builds it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from promptworth.methods.specs import MethodSpec
from promptworth.training.settings import TrainConfig


@dataclass
class RunRequest:
    task: str
    method: str | MethodSpec  # a built-in's name, or a method defined from parts
    split_dir: Path
    model: str
    seed: int
    config: TrainConfig = field(default_factory=TrainConfig)
    template: str | None = None
    data_seed: int | None = None
    test_limit: int | None = None
    threads: int = 0
    progress: bool = True
    # when the process of this run started (POSIX time); None: this process's own start. A
    # pool's worker sets it to its client's start (see promptworth.training.pool)
    started_at: float | None = None
    # the result file of a search (promptworth search) that a search method applies
    search: Path | None = None
    # the lr_grid's selection file (promptworth select-lr): the run trains at the rate it chose
    lr_selection: Path | None = None
