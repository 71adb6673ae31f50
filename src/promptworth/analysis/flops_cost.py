"""The worth of a prompt in compute: each method's test score against its training FLOPs, beside its
curve in data points (``promptworth flops``: cost.{md,csv}, cost.png/.pdf). From the records: a
run's own ``timing.flops`` (train: its training steps; eval: its dev and test evaluations), and the
learning-rate pilots its selection cites, as a note. docs/analysis.md says how to read them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from promptworth.analysis.curves import run_matrix
from promptworth.analysis.gaps import size_means
from promptworth.analysis.joins import BACKBONE, comparison_runs, first_train_seed, words
from promptworth.analysis.plots import SCALE, MethodStyle, legend_below, metric_label, panel_name, size_axis
from promptworth.analysis.results import run_seed
from promptworth.analysis.table_format import MISSING, format_score, markdown, note_lines
from promptworth.training.record import read_record

TERA = 1e12
COST_COLUMNS = ("model", "task", "method", "train_size", "n_runs", "train_tflops", "eval_tflops", "mean", "lower",
                "upper", "n_seeds")


def cost_runs(run_records: Mapping[Path, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per record: the run, its score and its FLOPs (NaN where the record counts none)."""
    rows = []
    for record in run_records.values():
        flops = record["timing"].get("flops") or {}
        rows.append({"model": record["model"], "task": record["task"], "method": record["method"],
                     "objective": (record.get("method_parts") or {}).get("objective", ""),
                     "train_size": int(record["train_size"]), "data_seed": record["data_seed"],
                     "train_seed": int(record["train_seed"]), "seed": run_seed(record["data_seed"], record["train_seed"]),
                     "metric": record["metric"], "score": math.nan if record["score"] is None else float(record["score"]),
                     "train_flops": float(flops.get("train", math.nan)), "eval_flops": float(flops.get("eval", math.nan))})
    return pd.DataFrame(rows)


def cost_frame(runs: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per model, task, method and size: runs, mean training and evaluation TFLOP, the mean score
    over data seeds with Student's t interval (as the curves draw it)."""
    rows = []
    runs = runs[runs["score"].notna()]
    for (model, task, method), of_method in runs.groupby(["model", "task", "method"], sort=False):
        means = size_means(run_matrix(of_method), confidence).set_index("train_size")
        for size, of_size in of_method.groupby("train_size", sort=True):
            stats = means.loc[float(size)]
            rows.append({"model": model, "task": task, "method": method, "train_size": int(size), "n_runs": len(of_size),
                         "train_tflops": of_size["train_flops"].mean() / TERA,
                         "eval_tflops": of_size["eval_flops"].mean() / TERA, "mean": stats["mean"],
                         "lower": stats["lower"], "upper": stats["upper"], "n_seeds": int(stats["n_seeds"])})
    return pd.DataFrame(rows, columns=list(COST_COLUMNS))


def pilot_flops(run_records: Mapping[Path, Mapping[str, Any]]) -> tuple[dict[str, float], list[str]]:
    """Per method, the training FLOPs of the learning-rate pilots its runs' selections cite, less
    the pilots a run took over (that run's own FLOPs count them); and the files (selections, pilot
    records) not found."""
    taken = {(r.get("lr_selection") or {}).get("pilot", {}).get("file") for r in run_records.values()
             if isinstance((r.get("lr_selection") or {}).get("pilot"), Mapping)}
    selections = {(r["method"], r["lr_selection"]["file"]) for r in run_records.values()
                  if isinstance(r.get("lr_selection"), Mapping) and isinstance(r["lr_selection"].get("file"), str)}
    pilots: dict[str, set[str]] = {}
    missing = []
    for method, file in sorted(selections):
        try:
            cited = json.loads(Path(file).read_text(encoding="utf-8")).get("runs") or []
        except (OSError, ValueError, AttributeError):
            missing.append(file)
            continue
        files = {run.get("file") for run in cited if isinstance(run, Mapping)} - taken - {None}
        missing += sorted(f for f in files if not Path(f).is_file())
        pilots.setdefault(method, set()).update(f for f in files if Path(f).is_file())
    flops = {method: sum(float((read_record(Path(file))["timing"].get("flops") or {}).get("train", 0.0))
                         for file in files) for method, files in pilots.items()}
    return flops, missing


def cost_notes(runs: pd.DataFrame, pilots: tuple[dict[str, float], list[str]]) -> list[str]:
    """What the FLOPs are, and the pilots' share beside the runs' own (all of them: ``runs``)."""
    notes = ["Scores x100: the mean over data seeds with Student's t interval, as the curves draw them. Training "
             "TFLOP: each run's own (timing.flops.train: the model FLOPs of its training steps, 3 x forward), the "
             "mean over its runs; 0 for a method that takes no step, whose cost is at inference (eval TFLOP: its "
             "dev and test evaluations)."]
    flops, missing = pilots
    own = runs.groupby("method", sort=False)["train_flops"].sum()
    shares = [f"{method} {flops[method] / TERA:.3g} TFLOP ({100 * flops[method] / own[method]:.0f} % of its runs' "
              "own)" for method in own.index if flops.get(method) and own[method] > 0]
    if shares:
        notes.append("The learning-rate pilots are not in them (a run at a pilot's size, data seed and rate is that "
                     f"pilot, counted once, as the run's own): the other pilots trained {words(shares)}.")
    if missing:
        notes.append(f"{len(missing)} learning-rate selection(s) or pilot record(s) the records cite are not here "
                     f"({missing[0]}{' and more' if len(missing) > 1 else ''}): those pilots are not counted.")
    return notes


def cost_markdown(frame: pd.DataFrame, notes: list[str], confidence: float = 0.95) -> str:
    header = ["model", "task", "method", "train_size", "runs", "training TFLOP", "eval TFLOP",
              f"score [{confidence:.0%} CI]"]
    rows = [[str(r.model), str(r.task), str(r.method), str(r.train_size), str(r.n_runs), _tflops(r.train_tflops),
             _tflops(r.eval_tflops), _score(r.mean, r.lower, r.upper)] for r in frame.itertuples()]
    return markdown(header, rows) + note_lines(notes)


def _tflops(value: float) -> str:
    return MISSING if math.isnan(value) else f"{value:.3g}"


def _score(mean: float, lower: float, upper: float) -> str:
    text = format_score(mean, math.nan)
    return text if math.isnan(lower) else f"{text} [{100 * lower:.1f}, {100 * upper:.1f}]"


def cost_texts(run_records: Mapping[Path, Mapping[str, Any]], confidence: float = 0.95
               ) -> tuple[dict[str, str], pd.DataFrame]:
    """cost.md and cost.csv (each method on the model it ran on, its first train seed's runs), and
    the runs the figure draws."""
    runs = cost_runs(run_records)
    frame = cost_frame(first_train_seed(runs)[0], confidence)
    return {"cost.csv": frame.to_csv(index=False),
            "cost.md": cost_markdown(frame, cost_notes(runs, pilot_flops(run_records)), confidence)}, runs


def _draw(ax, stats: pd.DataFrame, x: str, style: MethodStyle, label: str) -> None:
    low = np.nan_to_num(SCALE * (stats["mean"] - stats["lower"]))
    high = np.nan_to_num(SCALE * (stats["upper"] - stats["mean"]))
    ax.errorbar(stats[x], SCALE * stats["mean"], yerr=[low, high], marker=style.marker, ms=3, lw=1.3,
                ls=style.linestyle, color=style.colour, capsize=2, label=label)


def cost_figure(runs: pd.DataFrame, styles: Mapping[str, MethodStyle], in_place_of: str | None = None,
                confidence: float = 0.95) -> Figure:
    """A row per model and task: the score against training examples, and against training TFLOP
    (symmetric-log: 0 for a method that takes no step); a method with a backbone of its own beside
    the model it ran in place of."""
    joined = comparison_runs(runs, in_place_of, untrained_points=False).frame
    frame = cost_frame(joined, confidence)
    panels = list(dict.fromkeys(zip(frame["model"], frame["task"])))
    fig = Figure(figsize=(10.0, 3.4 * len(panels) + 0.8), layout="constrained")
    axes = fig.subplots(len(panels), 2, squeeze=False)
    for (by_size, by_flops), (model, task) in zip(axes, panels):
        stats = frame[(frame["model"] == model) & (frame["task"] == task)]
        of_panel = joined[(joined["model"] == model) & (joined["task"] == task)]
        for method, of_method in stats.groupby("method", sort=False):
            ran_on = of_panel.loc[of_panel["method"] == method, BACKBONE].iloc[0] if BACKBONE in of_panel else model
            label = method if ran_on == model else f"{method} ({ran_on})"
            _draw(by_size, of_method, "train_size", styles[method], label)
            _draw(by_flops, of_method, "train_tflops", styles[method], label)
        size_axis(by_size, stats["train_size"])
        positive = stats.loc[stats["train_tflops"] > 0, "train_tflops"]
        # linear from 0 to the power of ten below the smallest count, logarithmic above
        low = 10.0 ** math.floor(math.log10(positive.min())) if len(positive) else 1.0
        by_flops.set_xscale("symlog", linthresh=low, linscale=0.5)
        by_flops.set_xlabel("training TFLOP (0: no training step)")
        by_flops.sharey(by_size)
        # the means set the range, as in the task figures: an interval of few seeds runs off the panel
        means = SCALE * stats["mean"]
        pad = max(0.08 * (means.max() - means.min()), 2.5)
        by_size.set_ylim(means.min() - pad, means.max() + pad)
        name = panel_name(task, model, frame["model"].nunique() > 1)
        by_size.set_title(f"{name}: score against training examples", fontsize=8)
        by_flops.set_title(f"{name}: score against training compute", fontsize=8)
        by_size.set_ylabel(metric_label(of_panel), fontsize=8)
        for ax in (by_size, by_flops):
            ax.grid(True, which="major", lw=0.4, alpha=0.5)
    legend_below(fig, list(axes[:, 0]), 10.0)
    fig.suptitle(f"Test score against training examples and training FLOPs (mean and {confidence:.0%} t interval "
                 "over data seeds)", fontsize=9)
    return fig
