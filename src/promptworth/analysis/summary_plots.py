"""Figures that sum up across tasks: the methods side by side (score per method, ordered by how
much of the model each trains), the advantage against the model, LM-BFF's table beside ours, and
the advantage as points with their intervals (which the budgets figure uses too)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from promptworth.analysis.curves import MODEL, check_tidy
from promptworth.analysis.joins import BACKBONE, method_label
from promptworth.analysis.plots import SCALE, MethodStyle, TaskPanel, method_points, metric_label, panel_name
from promptworth.analysis.table_format import format_share
from promptworth.analysis.tables import methods_frame
from promptworth.errors import PromptworthError
from promptworth.methods.specs import display_order

BOUND_MARKERS = {"more_than": "^", "at_least": "^", "less_than": "v", "at_most": "v"}


def advantage_points(ax: Axes, rows: pd.DataFrame, positions: dict[str, np.ndarray], line: str,
                     colours: dict[str, tuple], connect: bool = False) -> None:
    """Per value of column ``line``, its advantages at ``positions[value]`` (one x per row of that
    value, in order): a point with its interval as an error bar, a bound as an open triangle (up:
    more than / at least, down: less than / at most); joined by a line only where ``connect``.
    A line with nothing to draw gets no legend entry."""
    bound_shown = False
    for name, of_line in rows.groupby(line, sort=False):
        x = positions[str(name)]
        y = of_line["advantage"].to_numpy(float)
        kinds = of_line["bound_kind"].fillna("").astype(str).to_numpy()
        finite = ~np.isnan(y) & (kinds == "")
        if finite.any():
            lower = np.where(np.isfinite(of_line["lower"]), y - of_line["lower"], 0.0)
            upper = np.where(np.isfinite(of_line["upper"]), of_line["upper"] - y, 0.0)
            ax.errorbar(x[finite], y[finite], yerr=[np.nan_to_num(lower[finite]), np.nan_to_num(upper[finite])],
                        marker="o", ms=4, lw=1.2 if connect else 0, elinewidth=1.2, capsize=3,
                        color=colours[str(name)], label=str(name))
        for position, kind, bound in zip(x, kinds, of_line["bound"].to_numpy(float)):
            if kind:
                ax.scatter([position], [bound], marker=BOUND_MARKERS[kind], s=40, facecolors="none",
                           edgecolors=colours[str(name)])
        if not finite.any() and any(kinds):  # a line of bounds only: named once
            ax.scatter([], [], marker="^", s=40, facecolors="none", edgecolors=colours[str(name)], label=str(name))
        if any(kinds) and not bound_shown:
            ax.scatter([], [], marker="^", s=40, facecolors="none", edgecolors="0.3",
                       label="a bound (open triangle: more / less than)")
            bound_shown = True
    ax.axhline(0.0, color="0.5", lw=0.8)
    # bounds can be ten times the numbers: linear up to 100 examples, logarithmic beyond
    ax.set_yscale("symlog", linthresh=100.0, linscale=1.0)
    ax.set_ylabel("data advantage (training examples)")
    ax.grid(True, axis="y", lw=0.4, alpha=0.5)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def line_colours(names: Sequence[str]) -> dict[str, tuple]:
    import seaborn as sns  # late: seaborn is slow to import

    palette = sns.color_palette("colorblind", n_colors=max(len(names), 3))
    if len(names) > len(palette):
        raise PromptworthError(f"{len(names)} lines in one figure: more than the palette's {len(palette)} colours")
    return dict(zip(names, palette))


def model_sizes(panels: Sequence[TaskPanel]) -> dict[str, float]:
    """Each model's parameter count (the median of its runs' ``total_params``; NaN where no run
    records one), the models smallest first (those without a count last, in first-seen order)."""
    sizes: dict[str, float] = {}
    for panel in panels:
        if panel.model not in sizes and "total_params" in panel.runs.columns:
            # not a method's own backbone (SetFit's) beside the model: analysis.joins
            own = panel.runs[panel.runs[BACKBONE] == panel.model] if BACKBONE in panel.runs.columns else panel.runs
            counts = pd.to_numeric(own["total_params"], errors="coerce").dropna()
            sizes[panel.model] = float(counts.median()) if len(counts) else math.nan
        sizes.setdefault(panel.model, math.nan)
    return dict(sorted(sizes.items(), key=lambda item: (math.isnan(item[1]), 0.0 if math.isnan(item[1]) else item[1])))


def scale_figure(panels: Sequence[TaskPanel], treatment: str, baseline: str) -> Figure:
    """The compared methods' data advantage per model, the models side by side, smallest first
    (their parameter counts in the tick labels), a point per task: no line joins two models."""
    sizes = model_sizes(panels)
    rows = pd.DataFrame([{"model": p.model, "task": p.task, "advantage": p.result.advantage, "lower": p.result.lower,
                          "upper": p.result.upper, "bound": p.result.bound, "bound_kind": p.result.bound_kind}
                         for p in panels if p.result is not None])
    if rows.empty:
        raise PromptworthError(f"no task has both {treatment} and {baseline}: no advantage to draw against the model")
    models = list(sizes)
    rows = rows.sort_values("model", key=lambda column: column.map(models.index), kind="stable")
    tasks = list(dict.fromkeys(rows["task"]))
    spread = 0.1 * (np.arange(len(tasks)) - (len(tasks) - 1) / 2)
    positions = {task: np.array([models.index(m) for m in rows.loc[rows["task"] == task, "model"]]) + offset
                 for task, offset in zip(tasks, spread)}
    fig = Figure(figsize=(max(5.0, 1.6 * len(sizes) + 3.0), 3.8), layout="constrained")
    ax = fig.add_subplot()
    advantage_points(ax, rows, positions, "task", line_colours(tasks))
    ticks = [model if math.isnan(size) else f"{model}\n{size / 1e6:.0f} M parameters" for model, size in sizes.items()]
    ax.set_xticks(range(len(sizes)), ticks, fontsize=8)
    ax.set_xlim(-0.5, len(sizes) - 0.5)
    ax.set_xlabel("model")
    ax.set_title(f"{treatment} vs {baseline}: data advantage per model (95% interval; triangles: bounds)", fontsize=9)
    if not (rows["advantage"].notna() | rows["bound_kind"].astype(bool)).any():
        ax.text(0.5, 0.5, "no number and no bound to draw:\nevery comparison is undefined (see advantage.md)",
                transform=ax.transAxes, ha="center", va="center", fontsize=8, color="0.35")
    return fig


def methods_figure(results: pd.DataFrame, styles: dict[str, MethodStyle], confidence: float = 0.95) -> Figure:
    """One panel per task and model at the task's largest training size: every run of every method
    as a point, the mean over data seeds with its interval; methods from left to right by the share
    of the model they train (unknown shares last, in the registry's order); every panel on one
    0-100 axis."""
    tidy = check_tidy(results)
    models, tasks = list(dict.fromkeys(tidy[MODEL])), list(dict.fromkeys(tidy["task"]))
    panels = [(model, task) for model in models for task in tasks
              if ((tidy[MODEL] == model) & (tidy["task"] == task)).any()]
    # the share each method trains, as the methods table states it: per task and model (a head's
    # size follows the task's labels); the order follows the first ones'
    frame = methods_frame(results)
    per_method = frame.drop_duplicates("method").set_index("method")["share"]
    shares = {m: float(per_method[m]) for m in display_order(list(dict.fromkeys(tidy["method"])))}
    share_on = {(r.method, r.model, r.task, r.train_size): float(r.share) for r in frame.itertuples()}
    order = sorted(shares, key=lambda m: (math.isnan(shares[m]), shares[m] if not math.isnan(shares[m]) else 0.0))
    ncols = min(2, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(max(4.5, 0.55 * len(order) + 1.5) * ncols, 3.6 * nrows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (model, task) in zip(axes, panels):
        runs = tidy[(tidy[MODEL] == model) & (tidy["task"] == task)]
        size = runs["train_size"].max()
        runs = runs[runs["train_size"] == size]
        present = [m for m in order if (runs["method"] == m).any()]
        method_points(ax, runs, present, styles, confidence, model)
        shown = {m: share_on[m, model, task, size] for m in present}
        names = {m: method_label(runs, m, model) for m in present}
        labels = [names[m] if math.isnan(shown[m]) else f"{names[m]}\n{format_share(shown[m])}" for m in present]
        ax.set_xticks(range(len(present)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(0, SCALE)
        ax.set_ylabel(metric_label(runs), fontsize=8)
        ax.set_title(f"{panel_name(task, model, len(models) > 1)}, {int(size)} training examples", fontsize=9)
        ax.grid(True, axis="y", lw=0.4, alpha=0.5)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"Methods by the share of the model they train (mean and {confidence:.0%} interval over data seeds; "
                 "points: runs)", fontsize=9)
    return fig


def published_figure(frame: pd.DataFrame) -> Figure:
    """LM-BFF's table as a figure (``promptworth.analysis.lmbff``): one panel per task, a row
    per way of using the model (per model, where the runs are of several); our mean ± std over
    splits as a bar (a row we did not run: "not run", no bar), LM-BFF's number as a diamond."""
    tasks = list(dict.fromkeys(frame["task"]))
    named = frame["row"].astype(bool) & frame["method"].astype(bool)  # LM-BFF's rows name our method
    names = frame["label"] + np.where(named, " (" + frame["method"] + ")", "")
    if frame["model"].nunique() > 1:
        names = names + ", " + frame["model"]
    labels = list(dict.fromkeys(names))
    fig = Figure(figsize=(3.2 * len(tasks) + 3.0, 0.32 * len(labels) + 1.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(tasks), sharey=True, squeeze=False)).ravel()
    y = np.arange(len(labels))[::-1]
    for ax, task in zip(axes, tasks):
        rows = frame[frame["task"] == task]
        at = y[[labels.index(name) for name in names[rows.index]]]
        ours = SCALE * rows["mean"].to_numpy(dtype=float)
        spread = SCALE * rows["std"].to_numpy(dtype=float)
        ran = ~np.isnan(ours)
        ax.barh(at[ran], ours[ran], xerr=np.nan_to_num(spread[ran]), color="#4c72b0", alpha=0.8, height=0.6,
                capsize=2, error_kw={"lw": 0.8}, label="ours")
        for position in at[~ran]:
            ax.text(1.0, position, "not run", va="center", fontsize=6, color="0.45")
        ax.scatter(rows["published_mean"].to_numpy(dtype=float), at, marker="D", s=18, color="black", zorder=3,
                   label="LM-BFF (roberta-large)")
        metric = "/".join(m for m in dict.fromkeys(rows["metric"]) if m)
        ax.set_title(f"{task}" + (f" ({metric})" if metric else ""), fontsize=9)
        ax.set_xlim(min(0.0, np.nanmin([*ours, *rows["published_mean"], 0.0]) - 5), 100)
        ax.set_xlabel("test score (x100)", fontsize=8)
        ax.grid(True, axis="x", lw=0.4, alpha=0.5)
    axes[0].set_yticks(y, labels, fontsize=7)
    handles, keys = axes[0].get_legend_handles_labels()
    fig.legend(handles, keys, loc="outside lower center", ncols=2, frameon=False, fontsize=8)
    fig.suptitle("LM-BFF's table on this model: ours (bars, mean ± std over splits) and published", fontsize=9)
    return fig
