"""A study's plan: its runs and the lr_grid's pilot runs, and a summary of them."""

from __future__ import annotations

from pathlib import Path
from typing import Collection, Sequence

from promptworth.backbones.resolve import model_label
from promptworth.study.config import Pilot, Run, StudyConfig
from promptworth.study.stage import REST


def plan(study: StudyConfig) -> list[Run]:
    """Every training run of the study, in a stable order: model by model, in the config's order. A
    method with a backbone of its own (SetFit) runs on it, once, where the first model would run it."""
    return list(dict.fromkeys(
        Run(model_label(study.backbone_for(model, method)), task, method, size, data_seed, train_seed)
        for model in study.models
        for task in study.tasks_for(model)
        for size in study.splits.sizes_for(task)
        for data_seed in study.data_seeds_for(size)
        for method in study.methods_for(task, size, model, data_seed)
        for train_seed in study.train_seeds_for(task, method, model)
    ))


def stages(study: StudyConfig) -> list[tuple[str, list[Run]]]:
    """The study's runs in the order it trains them: each of its ``stages`` with the runs it takes
    (of those no stage before it took), then :data:`promptworth.study.stage.REST` with the runs
    none takes (every run, for a study without stages); a stage with no run is left out."""
    left, ordered = plan(study), []
    for stage in study.stages:
        ordered.append((stage.name, [run for run in left if stage.takes(run)]))
        left = [run for run in left if not stage.takes(run)]
    ordered.append((REST, left))
    return [(name, runs) for name, runs in ordered if runs]


def pilots(study: StudyConfig) -> list[Pilot]:
    """Every pilot run of the study's ``lr_grid`` (none without one), in a stable order: per model
    and task, each method of the grid that trains on it at a size above 0, at each pilot size whose
    band some of its runs fall in, at each rate of the grid. The pilots at a rate beyond the grid's
    edge are not planned: whether they run follows from these (:func:`extension_pilots`)."""
    if study.lr_grid is None:
        return []
    data_seeds, train_seeds = study.pilot_seeds()
    return list(dict.fromkeys(
        Pilot(model_label(study.backbone_for(model, method)), task, method, band, data_seed, train_seed, rate)
        for model in study.models
        for task in study.tasks_for(model)
        for method, rates in study.lr_grid.rates.items()
        for band in study.lr_bands(task, method, model)
        for rate in rates
        for data_seed in data_seeds
        for train_seed in train_seeds
    ))


def extension_pilots(study: StudyConfig) -> list[Pilot]:
    """The pilot runs a grid that extends at its edge may add: per model, task, method, band and
    pilot seeds, at the rate beyond each edge (``promptworth.training.lr_grid.EDGE_RULE``; the
    workflow runs those of the edge the grid's choice falls on). None for a grid that does not extend."""
    if study.lr_grid is None or not study.lr_grid.extend_at_edge:
        return []
    planned = {(p.model, p.task, p.method, p.size, p.data_seed, p.train_seed): None for p in pilots(study)}
    return [Pilot(model, task, method, size, data_seed, train_seed, rate)
            for (model, task, method, size, data_seed, train_seed) in planned
            for rate in study.pilot_rates(method) if rate not in study.lr_grid.rates[method]]


def plan_summary(study: StudyConfig, record_files: Sequence[Path], stale: Collection[str] = ()) -> str:
    """What a study is about to do, for the start of its workflow: its tasks and methods, its runs
    and how many are still to train, its lr_grid's pilots (how long it takes:
    :func:`promptworth.study.estimate_report.study_summary`). A record in ``stale`` (not what the
    study asks for: promptworth.study.reuse) trains again."""
    done = [path for path in record_files if path.is_file() and str(path) not in stale]
    left = len(record_files) - len(done)
    lines = [
        f"[promptworth] plan: {len(study.tasks)} task(s) ({', '.join(study.tasks)}), "
        f"{len(study.methods)} method(s), {', '.join(study.models)}",
        f"[promptworth] {len(record_files)} runs: {len(done)} finished, {left} to train",
    ]
    if study.lr_grid is not None:
        grid = study.lr_grid
        bands = f", a rate per size band (pilot sizes {', '.join(map(str, grid.sizes))})" if len(grid.sizes) > 1 else ""
        edge = "; a choice at the grid's edge adds the pilots of the rate beyond it" if grid.extend_at_edge else ""
        lines.append(f"[promptworth] learning-rate grid: {len(pilots(study))} pilot runs choose the rate of "
                     f"{', '.join(grid.rates)} on dev first{bands}{edge}")
    return "\n".join(lines)
