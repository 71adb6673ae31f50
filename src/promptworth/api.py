"""promptworth as a library: write splits, train one run, analyse a study's records, compute a
data advantage from a table of runs (``docs/api.md`` shows each).

    import promptworth.api as pw

    folders = pw.split("SST-2", [16, 64], data_seed=1, out_dir="results/api/splits/SST-2", dev_size=32)
    record = pw.train("SST-2", "prompt", folders[16], seed=1, max_steps=200)
    pw.advantage(runs)  # a DataFrame: method, train_size, data_seed, score

Each function is the code path of a command (``promptworth split``, ``train``, ``aggregate`` with
``tables``, ``advantage``) and of the workflow, with its checks: a bad input is one
:class:`promptworth.errors.PromptworthError`, and nothing is computed here that they do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, TYPE_CHECKING

from promptworth.data import splits
from promptworth.errors import PromptworthError
from promptworth.methods import specs as method_specs

if TYPE_CHECKING:
    import pandas as pd


def split(task: str, sizes: Sequence[int | str], data_seed: int, out_dir: str | Path, *,
          dev_policy: str = splits.DEFAULT_DEV_POLICY, dev_size: int | None = None, test_limit: int | None = None,
          data_dir: str | Path | None = None) -> dict[int | str, Path]:
    """Write the nested splits of ``task`` at ``sizes`` (integers, or "all") for one data seed under
    ``out_dir/<size>-<data_seed>/``, as ``promptworth split``: each size's folder, by size."""
    spec = splits.LadderSpec(sizes=tuple(sizes), data_seed=data_seed, dev_policy=dev_policy, dev_size=dev_size,
                             test_limit=test_limit)
    return splits.ladder(task, spec, Path(out_dir), data_dir=None if data_dir is None else Path(data_dir))


def train(task: str, method: str | method_specs.MethodSpec, split_dir: str | Path, *, model: str | None = None,
          seed: int = 1, out: str | Path | None = None, template: str | None = None, test_limit: int | None = None,
          threads: int = 0, progress: bool = False, model_dtype: str = "fp32", trust_remote_code: bool = False,
          task_files: Sequence[str | Path] = (), **settings: Any) -> dict[str, Any]:
    """Fine-tune one run and return its record (``docs/contracts.md``), as ``promptworth train``.

    ``method``: a built-in method's name (``promptworth methods``) or a
    :class:`~promptworth.methods.specs.MethodSpec` (``promptworth.methods.specs.define``);
    ``model``: a folder, a pinned hub model ``<id>@<revision>`` (prefetched: ``promptworth prefetch``)
    or a short name (default: the method's own backbone, else SmolLM2), loaded in ``model_dtype``
    (``--model-dtype``) and with ``trust_remote_code`` as the command's flags; ``task_files``: as
    ``--task-files`` (``task`` may be one of theirs);
    ``settings``: training settings (the fields of :class:`~promptworth.training.settings.TrainConfig`,
    e.g. ``max_steps=200, learning_rate=1e-5``) over the method's defaults; ``out``: also write the
    record there (all or nothing). ``PROMPTWORTH_FAST=1``: the tiny variant's few steps, as the command.
    """
    from promptworth.data.splits import check_seed
    from promptworth.study import tiny_variant
    from promptworth.backbones.registry import DTYPES, LoadOptions
    from promptworth.training import run
    from promptworth.training.request import RunRequest, model_for
    from promptworth.training.settings import config_from_mapping

    check_seed(seed, "the train seed")
    if threads < 0:
        raise PromptworthError(f"threads must be 0 (torch's default) or a positive number, got {threads}")
    if model_dtype not in DTYPES:
        raise PromptworthError(f"model_dtype must be one of {', '.join(DTYPES)}, got {model_dtype!r}")
    spec = method_specs.resolve(method) if isinstance(method, str) else method
    config, test_limit = tiny_variant.train_settings(config_from_mapping({**spec.training_defaults(), **settings}),
                                                     test_limit)
    request = RunRequest(task=task, method=spec, split_dir=Path(split_dir), model=model_for(spec, model), seed=seed,
                         config=config, model_options=LoadOptions(model_dtype, trust_remote_code), template=template,
                         test_limit=test_limit, threads=threads, progress=progress,
                         task_files=tuple(Path(path) for path in task_files))
    return run.run(request) if out is None else run.train_to_file(request, Path(out))


@dataclass(frozen=True)
class Analysis:
    """A study's analysis: its runs, the data advantage of each comparison, its tables' texts."""

    runs: pd.DataFrame  # one row per run (the workflow's runs.csv)
    advantage: pd.DataFrame  # one row per comparison, model and task (tables/advantage.csv)
    tables: dict[str, str]  # every table `promptworth tables` writes, by file name


def analyse(runs_dir: str | Path, config: str | Path | Mapping[str, Any], out_dir: str | Path | None = None) -> Analysis:
    """The analysis of a study's finished records, as the workflow makes it with ``runs_dir``
    (``make figures``): the records under ``runs_dir`` that are the runs of the study ``config``
    (a config file or mapping), each checked against what the study asks, then the study's
    comparisons, each in the first comparison's score window. ``out_dir``: also write the tables."""
    from promptworth.analysis.advantage import Comparison
    from promptworth.analysis.estimate import AdvantageOptions
    from promptworth.analysis.results import collect
    from promptworth.analysis.tables import comparison_advantage, table_texts
    from promptworth.files import write_texts
    from promptworth.study.config import model_label
    from promptworth.study.load import read_study

    study = read_study(config, {"runs_dir": str(runs_dir)})
    runs = collect([runs_dir], study=study)
    comparisons = [Comparison(treatment, baseline) for treatment, baseline in study.comparisons]
    options = AdvantageOptions(window_from=tuple(study.comparisons[0]))
    in_place_of = model_label(study.models[0])  # a method on a backbone of its own runs in its place
    frame = comparison_advantage(runs, comparisons, options, in_place_of)
    tables = table_texts(runs, comparisons, options, in_place_of, advantage=frame)
    if out_dir is not None:
        write_texts(out_dir, tables)
    return Analysis(runs, frame, tables)


def advantage(runs: pd.DataFrame, treatment: str = method_specs.DEFAULT_TREATMENT,
              baseline: str = method_specs.DEFAULT_BASELINE, **options: Any) -> pd.DataFrame:
    """The data advantage of ``treatment`` over ``baseline`` with its interval, one row per model and
    task (the columns of ``promptworth advantage --json``), from a table of runs: one row per run
    with ``method``, ``train_size``, ``score`` and ``data_seed`` (or ``seed``, a run's id at its
    size); ``task``, ``model`` and ``train_seed`` where there are several. ``options``: how it is
    estimated (:class:`~promptworth.analysis.estimate.AdvantageOptions`' fields, e.g.
    ``reduction="max", interval="loo"``; by default the studies' estimator)."""
    from promptworth.analysis.advantage import advantage_table
    from promptworth.analysis.estimate import AdvantageOptions
    from promptworth.analysis.results import run_seed
    from promptworth.analysis.tables import advantage_frame

    table = runs.copy()
    if "seed" not in table.columns:
        if "data_seed" not in table.columns:
            raise PromptworthError("runs: need a data_seed column (or seed: a run's id at its size)")
        train_seeds = table["train_seed"] if "train_seed" in table.columns else [None] * len(table)
        table["seed"] = [str(d) if t is None else run_seed(d, t) for d, t in zip(table["data_seed"], train_seeds)]
    if "task" not in table.columns:
        table["task"] = "all"
    return advantage_frame(advantage_table(table, treatment, baseline, AdvantageOptions(**options)))
