"""A validated config mapping -> :class:`promptworth.study.config.StudyConfig`, checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from promptworth.backbones.registry import LoadOptions
from promptworth.data.task_files import load_task_files
from promptworth.errors import PromptworthError
from promptworth.methods import specs as method_specs
from promptworth.study.checks import check_study
from promptworth.study.config import LrGrid, MethodSettings, ModelSettings, SizeSettings, SplitsConfig, StudyConfig
from promptworth.study.config_file import read_config_file, refuse_yte, schema_file, validate_config
from promptworth.study.stage import FILTERS, Stage


def _same(value: Any) -> Any:
    return value


def _given(config: dict[str, Any], readers: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """The keys ``config`` sets, each read by its reader. Keys it leaves out are not passed, so a
    default lives in one place: the dataclass (the schema checks shapes only)."""
    return {key: read(config[key]) for key, read in readers.items() if key in config}


def _lr_grid(grid: dict[str, Any]) -> LrGrid:
    """A config's ``lr_grid``: ``size: 100`` is one size band, as ``sizes: [100]``."""
    if "size" in grid and "sizes" in grid:
        raise PromptworthError("config: lr_grid: give size (one pilot size) or sizes, not both")
    return LrGrid(rates={name: tuple(rates) for name, rates in grid["rates"].items()},
                  sizes=tuple(grid["sizes"]) if "sizes" in grid else (grid["size"],),
                  **_given(grid, {"data_seeds": tuple, "train_seeds": tuple, "extend_at_edge": bool}))


def read_study(source: str | Path | Mapping[str, Any], changes: Mapping[str, Any] | None = None) -> StudyConfig:
    """A study from its config file (plain YAML) or its config (a mapping), with ``changes`` to its
    top-level keys (as Snakemake's ``--config KEY=VALUE``), checked against the workflow's schema
    where the checkout has it (an installed package without the checkout checks its meaning only)."""
    if isinstance(source, Mapping):
        config = dict(source)
        refuse_yte(config, "config")
    else:
        config = read_config_file(source)
    config.update(changes or {})
    schema = schema_file()
    return load_study(config, schema if schema.is_file() else None)


def load_study(config: dict[str, Any], schema_path: Path | None = None) -> StudyConfig:
    """A ``StudyConfig`` from a config dict (checked against the schema when one is given)."""
    if schema_path is not None:
        validate_config(config, schema_path)
    raw_splits = dict(config["splits"])
    splits = SplitsConfig(
        kind=raw_splits["kind"],
        data_seeds=tuple(raw_splits["data_seeds"]),
        **_given(raw_splits, {
            "sizes": tuple,
            "sizes_by_task": lambda by_task: {task: tuple(sizes) for task, sizes in by_task.items()},
            "dev_policy": str, "dev_size": int, "test_limit": _same, "k": int,
        }),
    )
    names, defined = [], {}
    for i, item in enumerate(config["methods"]):
        if isinstance(item, dict):
            spec = method_specs.define(item, f"config: methods[{i}]")
            defined[spec.name] = spec
            names.append(spec.name)
        else:
            names.append(item)
    model = config["model"]
    try:
        defined_tasks = load_task_files(config.get("task_files", ()))
    except PromptworthError as exc:
        raise PromptworthError(f"config: task_files: {exc}") from None
    study = StudyConfig(
        tasks=tuple(config["tasks"]),
        methods=tuple(names),
        models=(model,) if isinstance(model, str) else tuple(model),
        train_seeds=tuple(config["train_seeds"]),
        splits=splits,
        training=dict(config["training"]),
        defined_methods=defined,
        defined_tasks=defined_tasks,
        **_given(config, {
            "templates": dict,
            "methods_by_task": lambda by_task: {task: tuple(methods) for task, methods in by_task.items()},
            "by_size": lambda by_size: {str(size): SizeSettings(**_given(settings, {
                "methods": tuple, "data_seeds": tuple, "training": dict})) for size, settings in by_size.items()},
            "comparisons": lambda texts: tuple(tuple(text.split(":")) for text in texts),
            "data_dir": _same, "results_dir": str, "runs_dir": _same, "resources": dict,
            "training_by_method": lambda by_method: {name: dict(settings) for name, settings in by_method.items()},
            "by_model": lambda by_model: {str(name): ModelSettings(
                load=LoadOptions(**_given(settings, {"dtype": str, "trust_remote_code": bool})), **_given(settings, {
                    "tasks": tuple, "methods": tuple, "data_seeds": tuple, "train_seeds": tuple, "resources": dict}))
                for name, settings in by_model.items()},
            "train_seeds_by_task": lambda by_task: {task: tuple(seeds) for task, seeds in by_task.items()},
            "lr_grid": _lr_grid,
            "by_method": lambda by_method: {str(name): MethodSettings(**_given(settings, {
                "sizes": tuple, "data_seeds": tuple, "train_seeds": tuple, "dev_policy": str}))
                for name, settings in by_method.items()},
            "stages": lambda stages: tuple(Stage(stage["name"], **_given(stage, dict.fromkeys(FILTERS, tuple)))
                                           for stage in stages),
        }),
    )
    check_study(study)
    return study
