"""Our runs in the layout of LM-BFF's Table 3 (Gao, Fisch & Chen 2021), beside its published numbers.

LM-BFF's rows are ways of using a model (majority class, zero-shot prompt, in-context learning,
fine-tuning with a head, prompt-based fine-tuning, with demonstrations, with an automatic template,
fine-tuning on the full training set); each is one of our methods at the K-shot size, or at the
full-data size (``sizes: [16, all]`` of a kshot study). Methods with no row of theirs follow as rows
of our own. Each row is filled per model (a ``model`` column) where the runs are of several. The published numbers (roberta-large, K = 16, mean (std) over the 5 splits) are
``lmbff_table3.csv``, transcribed from ``../shared/reference/README.md`` (a test keeps them equal).

Per row the table also states what it cost here: the summed process time of its runs (a run's
whole life: start-up, model load, training, evaluation), plus a search method's search
(``search_s``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from promptworth.analysis.curves import MODEL, check_tidy, check_unique_runs
from promptworth.analysis.table_format import MISSING, format_score, grid_latex, markdown
from promptworth.errors import PromptworthError
from promptworth.methods.specs import display_order

PUBLISHED_FILE = Path(__file__).with_name("lmbff_table3.csv")
COLUMNS = ("row", "label", "method", "model", "setting", "task", "metric", "n_runs", "mean", "std", "published_mean",
           "published_std", "process_s")


@dataclass(frozen=True)
class Row:
    """One row of the table: LM-BFF's ``key`` (empty: a row of ours only), its label, and the
    method and data setting ("k": the K-shot size, "all": the full training set) it is made of
    (no method: a row we have no method for)."""

    key: str
    label: str
    method: str
    setting: str = "k"


# LM-BFF's Table 3, top to bottom, with the method of ours that is each row
LMBFF_ROWS = (
    Row("majority", "majority class", "majority"),
    Row("zeroshot", "prompt, zero-shot", "zeroshot"),
    Row("icl", "in-context learning (GPT-3 style), no training", "icl"),
    Row("finetune", "fine-tuning with a head", "head"),
    Row("prompt", "prompt-based fine-tuning, manual template", "prompt"),
    Row("prompt-demo", "+ demonstrations", "prompt-demo"),
    Row("autotemplate", "prompt-based fine-tuning, automatic template", "prompt-autotemplate"),
    Row("autotemplate-demo", "+ demonstrations", ""),
    Row("finetune-full", "fine-tuning with a head, full training set", "head", "all"),
)


def published() -> dict[tuple[str, str], tuple[float, float]]:
    """LM-BFF's numbers by (row key, task): (mean, std); std is NaN where they give none."""
    with open(PUBLISHED_FILE, encoding="utf-8", newline="") as handle:
        return {(r["row"], r["task"]): (float(r["mean"]), float(r["std"]) if r["std"] else math.nan)
                for r in csv.DictReader(handle)}


def _settings(tidy: pd.DataFrame) -> pd.Series:
    """Each run's data setting: "k" at its task's smallest training size, "all" above it."""
    smallest = tidy.groupby("task")["train_size"].transform("min")
    sizes = tidy.groupby("task")["train_size"].nunique()
    if (sizes > 2).any():
        task = sizes[sizes > 2].index[0]
        raise PromptworthError(f"task {task} has runs at {sizes[task]} training sizes; LM-BFF's table has the "
                               "K-shot size and the full training set only")
    return pd.Series(np.where(tidy["train_size"] == smallest, "k", "all"), index=tidy.index)


def lmbff_rows(methods_run: list[tuple[str, str]]) -> list[Row]:
    """LM-BFF's rows, then one row of ours for each (method, setting) run that none of theirs is."""
    theirs = {(row.method, row.setting) for row in LMBFF_ROWS}
    order = {name: i for i, name in enumerate(display_order(list(dict.fromkeys(m for m, _ in methods_run))))}
    ours = [Row("", f"ours: {method}" + (", full training set" if setting == "all" else ""), method, setting)
            for method, setting in sorted(methods_run, key=lambda run: (run[1] == "all", order[run[0]]))
            if (method, setting) not in theirs]
    return [*LMBFF_ROWS, *ours]


def published_frame(results: pd.DataFrame, ddof: int = 0) -> pd.DataFrame:
    """Long table: per row, model and task, our mean and std over runs, LM-BFF's, and our runs' time."""
    tidy = check_tidy(results)
    check_unique_runs(tidy)
    tidy = tidy.assign(setting=_settings(tidy))
    if "metric" not in tidy.columns:
        tidy = tidy.assign(metric="")
    theirs = published()
    runs_seen = list(dict.fromkeys(zip(tidy["method"], tidy["setting"])))
    seconds = tidy["process_s"] if "process_s" in tidy.columns else pd.Series(math.nan, index=tidy.index)
    if "wall_s" in tidy.columns:
        seconds = seconds.fillna(tidy["wall_s"])
    if "search_s" in tidy.columns:  # a search method's search is part of its cost
        seconds = seconds + tidy["search_s"].fillna(0.0)
    tidy = tidy.assign(cost_s=seconds)
    rows = []
    models, tasks = list(dict.fromkeys(tidy[MODEL])), list(dict.fromkeys(tidy["task"]))
    for row, model, task in ((r, m, t) for r in lmbff_rows(runs_seen) for m in models for t in tasks):
        runs = tidy[(tidy["task"] == task) & (tidy[MODEL] == model) & (tidy["method"] == row.method)
                    & (tidy["setting"] == row.setting)]
        scores = runs["score"].to_numpy(dtype=float)
        mean, std = theirs.get((row.key, task), (math.nan, math.nan))
        rows.append({
            "row": row.key, "label": row.label, "method": row.method, "model": model, "setting": row.setting,
            "task": task,
            "metric": "/".join(dict.fromkeys(map(str, runs["metric"].fillna("")))),
            "n_runs": len(scores), "mean": float(np.mean(scores)) if len(scores) else math.nan,
            "std": float(np.std(scores, ddof=ddof)) if len(scores) > 1 else math.nan,
            "published_mean": mean, "published_std": std,
            "process_s": float(runs["cost_s"].sum()) if len(runs) else math.nan,
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _grid(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Rows: LM-BFF's, then ours, each per model; per task two columns, ours and LM-BFF's; then our
    CPU time."""
    tasks = list(dict.fromkeys(frame["task"]))
    header = ["row", "model", *(f"{task} {who}" for task in tasks for who in ("ours", "LM-BFF")), "CPU h (runs)"]
    lines = []
    for (key, label, method, model), group in frame.groupby(["row", "label", "method", "model"], sort=False):
        by_task = {r.task: r for r in group.itertuples()}
        cells = []
        for task in tasks:
            r = by_task[task]
            cells += [format_score(r.mean, r.std), format_score(r.published_mean, r.published_std, scale=1)]
        runs = int(group["n_runs"].sum())
        hours = group["process_s"].sum(min_count=1) / 3600
        cost = MISSING if not runs or math.isnan(hours) else f"{hours:.2f} ({runs})"
        name = label if not key else f"{label} (`{method}`)" if method else f"{label} (no method here)"
        lines.append([name, str(model), *cells, cost])
    return header, lines


def published_markdown(frame: pd.DataFrame) -> str:
    return markdown(*_grid(frame))


def published_latex(frame: pd.DataFrame) -> str:
    return grid_latex(*_grid(frame), text_columns=2, label_columns=2)
