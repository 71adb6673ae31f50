"""One stage of a study's ``stages``: the order its runs train in (promptworth.study.planning.stages)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The stage of the runs that no configured stage takes (all of a study's runs where it has no stages).
REST = "rest"
# A stage's filters, each on the run's field of the singular name (models: Run.model, ...).
FILTERS = ("models", "tasks", "methods", "sizes", "data_seeds", "train_seeds")


@dataclass(frozen=True)
class Stage:
    """The runs of its models (labels, as the run folders name them), tasks, methods, sizes, data
    seeds and train seeds (empty: any) train before the next stage's. A run is in the first stage
    that takes it; the runs no stage takes train last (:data:`REST`)."""

    name: str
    models: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    sizes: tuple[int | str, ...] = ()
    data_seeds: tuple[int, ...] = ()
    train_seeds: tuple[int, ...] = ()

    def takes(self, run: Any) -> bool:
        """Whether this stage takes ``run`` (a :class:`promptworth.study.config.Run`)."""
        return all(not getattr(self, key) or getattr(run, key[:-1]) in getattr(self, key) for key in FILTERS)
