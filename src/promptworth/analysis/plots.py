"""Figures: test score against training-set size per task, an overview grid of all tasks, and the
methods side by side (score per method, ordered by how much of the model each trains).

Per task and model, a panel: one colour per method; every run as a faint point, the mean over runs
as a line, and for the two compared methods the monotone curve the advantage uses (best run,
running maximum) dashed, with the area between them over the score window shaded: its mean width in
data points is the advantage. A task's figure has a panel per model, side by side; the overview a
row of panels per model. The x axis is logarithmic; where a panel has zero-shot runs (size 0) it is
symmetric-log, linear from 0 to the smallest positive size, so the zero-shot point shows at 0. Figures are built on ``matplotlib.figure.Figure`` (Agg canvas; no pyplot
state).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from promptworth.analysis.advantage import (
    MODEL, AdvantageOptions, AdvantageResult, Curve, build_curve, check_tidy, check_log_sizes, compare, points_needed, run_matrix,
    score_levels,
)
from promptworth.analysis.tables import format_share, methods_frame
from promptworth.errors import PromptworthError
from promptworth.outputs import write_files
from promptworth.training.method_specs import DEFAULT_BASELINE, DEFAULT_TREATMENT, display_order

FORMATS = ("png", "pdf")
DPI = 150


@dataclass(frozen=True)
class TaskPanel:
    """What one panel shows: a task's runs on one model and, when defined, the comparison's result."""

    task: str
    runs: pd.DataFrame
    methods: tuple[str, ...]
    result: AdvantageResult | None
    model: str = ""
    # what its title calls it: the task, and the model where the runs are of several
    name: str = ""


def panel_name(task: str, model: str, several: bool) -> str:
    """A panel's name in its title: the task, with the model where the figure shows several."""
    return f"{task} ({model})" if several and model else task


def palette(methods: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    import seaborn as sns  # late: seaborn is slow to import

    colours = sns.color_palette("colorblind", n_colors=max(len(methods), 3))
    return dict(zip(methods, colours))


def file_stem(task: str) -> str:
    """A safe file name for a task's figure (never ``overview``, ``methods`` or ``scale``, the other figures' names)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", task).lstrip(".") or "task"  # no hidden files, no ".."
    return f"task_{stem}" if stem in ("overview", "methods", "scale") else stem


def task_panels(
    results: pd.DataFrame, treatment: str, baseline: str, options: AdvantageOptions = AdvantageOptions()
) -> list[TaskPanel]:
    tidy = check_tidy(results)
    present = list(dict.fromkeys(tidy["method"]))
    for method in (treatment, baseline):
        if method not in present:
            raise PromptworthError(f"method {method!r} not in the results; methods present: {', '.join(present)}")
    order = [treatment, baseline, *(m for m in present if m not in (treatment, baseline))]
    several = tidy[MODEL].nunique() > 1
    panels = []
    for (model, task), runs in tidy.groupby([MODEL, "task"], sort=False):
        methods = tuple(m for m in order if (runs["method"] == m).any())
        result = None
        needed = {treatment, baseline, *(options.window_from or ())}
        if needed <= set(methods):
            check_log_sizes(runs[runs["method"].isin(needed)], options)
            matrices = {m: run_matrix(runs[runs["method"] == m]) for m in needed}
            result = compare(matrices, treatment, baseline, options, task=str(task), model=str(model))
        panels.append(TaskPanel(str(task), runs, methods, result, str(model), panel_name(str(task), str(model), several)))
    return panels


def size_axis(ax: Axes, sizes: pd.Series) -> None:
    """The training-set size axis: logarithmic, or with zero-shot runs (size 0) symmetric-log,
    linear from 0 to the smallest positive size (half a decade wide) and logarithmic above, so
    that size 0 is drawn at the left of every curve that has it and straight segments from it stay
    straight (the advantage interpolates in raw size there)."""
    if (sizes == 0).any():
        positive = sizes[sizes > 0]
        ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0, linscale=0.5)
        ax.set_xlabel("training examples (0: zero-shot)")
    else:
        ax.set_xscale("log")
        ax.set_xlabel("training examples")


def _dense(curve: Curve, x_scale: str, per_segment: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """The piecewise-linear curve (linear in raw or log size) sampled densely, to draw on a log axis."""
    if len(curve.sizes) < 2:
        return curve.sizes, curve.scores
    t = np.linspace(0.0, 1.0, per_segment)
    x0, x1 = curve.sizes[:-1, None], curve.sizes[1:, None]
    y0, y1 = curve.scores[:-1, None], curve.scores[1:, None]
    xs = np.exp(np.log(x0) + t * (np.log(x1) - np.log(x0))) if x_scale == "log" else x0 + t * (x1 - x0)
    return xs.ravel(), (y0 + t * (y1 - y0)).ravel()


def _title(panel: TaskPanel) -> str:
    r, name = panel.result, panel.name or panel.task
    if r is None:
        return f"{name}"
    # a name with its model is long: the comparison goes on a line of its own
    name = f"{name}:" if name == panel.task else f"{name}\n"
    if math.isnan(r.advantage):
        if not math.isnan(r.bound):
            return f"{name} {r.treatment} vs {r.baseline}: {'>' if r.bound >= 0 else '<'} {r.bound:.0f} points (no overlap)"
        return f"{name} {r.treatment} vs {r.baseline}: undefined"
    err = "" if math.isnan(r.std) else f" ± {r.std:.0f}"
    return f"{name} {r.treatment} vs {r.baseline}: {r.advantage:.0f}{err} points"


def draw_panel(ax: Axes, panel: TaskPanel, colours: dict, options: AdvantageOptions, legend: bool = True) -> None:
    for method in panel.methods:
        runs = panel.runs[panel.runs["method"] == method]
        colour = colours[method]
        ax.scatter(runs["train_size"], runs["score"], s=10, alpha=0.35, color=colour, linewidths=0)
        mean = runs.groupby("train_size")["score"].mean().sort_index()
        ax.plot(mean.index, mean.to_numpy(), marker="o", markersize=3, lw=1.6, color=colour,
                label=f"{method} (mean of {runs['seed'].nunique()} runs)")
    r = panel.result
    if r is not None and not math.isnan(r.advantage):
        curves = {}
        for method in (r.treatment, r.baseline):
            curve = build_curve(run_matrix(panel.runs[panel.runs["method"] == method]), options.reduction)
            curves[method] = curve
            ax.plot(*_dense(curve, options.x_scale), lw=0.9, ls="--", color=colours[method], alpha=0.9)
        levels = score_levels(r.window_lo, r.window_hi, 400)
        x_t = points_needed(curves[r.treatment], levels, options.x_scale)
        x_b = points_needed(curves[r.baseline], levels, options.x_scale)
        ax.plot([], [], ls="--", lw=0.9, color="0.3", label=f"{options.reduction} over runs, running max")
        ax.fill_betweenx(levels, x_t, x_b, color="0.5", alpha=0.22, lw=0, label="advantage area")
        ax.axhspan(r.window_lo, r.window_hi, color="0.85", alpha=0.25, lw=0, zorder=0, label="score window")
    size_axis(ax, panel.runs["train_size"])
    ax.set_title(_title(panel), fontsize=9)
    metric = "/".join(dict.fromkeys(panel.runs["metric"].dropna().astype(str))) if "metric" in panel.runs else ""
    ax.set_ylabel(f"test {metric}".strip())
    ax.grid(True, which="major", lw=0.4, alpha=0.5)
    if legend:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def save_figure(fig: Figure, stem: Path) -> None:
    FigureCanvasAgg(fig)
    for fmt in FORMATS:
        # no creation date in the PDF: the same records give the same bytes
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        fig.savefig(stem.with_suffix(f".{fmt}"), dpi=DPI, metadata=metadata)
        fig.set_layout_engine("none")  # the layout is settled by the first save; reuse it


def task_figure(panels: Sequence[TaskPanel], colours: dict, options: AdvantageOptions) -> Figure:
    """One task: a panel per model (its panels), side by side on one score axis."""
    fig = Figure(figsize=(7.0 + 5.0 * (len(panels) - 1), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False).ravel()
    for ax, panel in zip(axes, panels):
        draw_panel(ax, panel, colours, options)
    return fig


def by_model(panels: Sequence[TaskPanel]) -> list[list[TaskPanel]]:
    """The panels grouped by model, each group and the panels in it in their first-seen order."""
    groups: dict[str, list[TaskPanel]] = {}
    for panel in panels:
        groups.setdefault(panel.model, []).append(panel)
    return list(groups.values())


def overview_figure(panels: Sequence[TaskPanel], colours: dict, options: AdvantageOptions) -> Figure:
    """Every panel in a grid of at most 4 columns; each model's panels start a row of their own,
    and with at most 4 tasks a task keeps its column (one model's panels above the other's)."""
    groups = by_model(panels)
    tasks = list(dict.fromkeys(panel.task for panel in panels))
    ncols = min(4, len(tasks))
    slots = [[tasks.index(p.task) if len(tasks) <= ncols else i for i, p in enumerate(group)] for group in groups]
    rows = [max(slot) // ncols + 1 for slot in slots]
    fig = Figure(figsize=(3.6 * ncols, 2.9 * sum(rows) + 0.5), layout="constrained")
    grid = fig.subplots(sum(rows), ncols, squeeze=False)
    axes = [grid[first + i // ncols, i % ncols] for slot, first in zip(slots, np.cumsum([0, *rows])) for i in slot]
    for ax, panel in zip(axes, (panel for group in groups for panel in group)):
        draw_panel(ax, panel, colours, options, legend=False)
    for ax in grid.ravel():
        ax.set_visible(any(ax is used for used in axes))
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            key = lab.split(" (")[0]
            if key not in labels:
                handles.append(h)
                labels.append(key)
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), frameon=False)
    return fig


def advantage_lines(ax: Axes, rows: pd.DataFrame, x: str, x_order: Sequence[str], line: str) -> None:
    """One line per value of column ``line`` across the categories ``x_order`` of column ``x``: the
    advantage ± its std as an error bar, and where the curves do not overlap the bound as an open
    triangle (up: more than, down: less than). Lines sit a little apart, their bars visible."""
    lines = list(dict.fromkeys(rows[line].astype(str)))
    colours = palette(lines)
    spread = 0.08 * (np.arange(len(lines)) - (len(lines) - 1) / 2)
    bound_shown = False
    for offset, name in zip(spread, lines):
        of_line = rows[rows[line].astype(str) == name]
        at = {str(key): row for key, row in zip(of_line[x], of_line.itertuples())}
        values = [at.get(category) for category in x_order]
        positions = np.arange(len(x_order)) + offset
        y = np.array([math.nan if v is None else v.advantage for v in values], dtype=float)
        err = np.array([0.0 if v is None or math.isnan(v.std) else v.std for v in values], dtype=float)
        ax.errorbar(positions, y, yerr=err, marker="o", ms=4, lw=1.4, capsize=3, color=colours[name], label=name)
        for position, v in zip(positions, values):
            if v is not None and math.isnan(v.advantage) and not math.isnan(v.bound):
                ax.scatter([position], [v.bound], marker="^" if v.bound >= 0 else "v", s=40, facecolors="none",
                           edgecolors=colours[name], label=None if bound_shown else "bound (curves do not overlap)")
                bound_shown = True
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_ylabel("data advantage (training examples)")
    ax.grid(True, axis="y", lw=0.4, alpha=0.5)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def model_sizes(panels: Sequence[TaskPanel]) -> dict[str, float]:
    """Each model's parameter count (the median of its runs' ``total_params``; NaN where no run
    records one), the models smallest first (those without a count last, in first-seen order)."""
    sizes: dict[str, float] = {}
    for panel in panels:
        if panel.model not in sizes and "total_params" in panel.runs.columns:
            counts = pd.to_numeric(panel.runs["total_params"], errors="coerce").dropna()
            sizes[panel.model] = float(counts.median()) if len(counts) else math.nan
        sizes.setdefault(panel.model, math.nan)
    return dict(sorted(sizes.items(), key=lambda item: (math.isnan(item[1]), 0.0 if math.isnan(item[1]) else item[1])))


def scale_figure(panels: Sequence[TaskPanel], treatment: str, baseline: str) -> Figure:
    """The compared methods' data advantage against the model: the models side by side, smallest
    first (their parameter counts in the tick labels), one line per task."""
    sizes = model_sizes(panels)
    rows = pd.DataFrame([{"model": p.model, "task": p.task, "advantage": p.result.advantage, "std": p.result.std,
                          "bound": p.result.bound} for p in panels if p.result is not None])
    if rows.empty:
        raise PromptworthError(f"no task has both {treatment} and {baseline}: no advantage to draw against the model")
    fig = Figure(figsize=(max(5.0, 1.6 * len(sizes) + 3.0), 3.8), layout="constrained")
    ax = fig.add_subplot()
    advantage_lines(ax, rows, "model", list(sizes), "task")
    ticks = [model if math.isnan(size) else f"{model}\n{size / 1e6:.0f} M parameters" for model, size in sizes.items()]
    ax.set_xticks(range(len(sizes)), ticks, fontsize=8)
    ax.set_xlim(-0.5, len(sizes) - 0.5)
    ax.set_xlabel("model")
    ax.set_title(f"{treatment} vs {baseline}: data advantage against the model", fontsize=9)
    return fig


def methods_figure(results: pd.DataFrame, colours: dict) -> Figure:
    """One panel per task and model at the task's largest training size: every run of every method
    as a point, the mean and standard deviation as a bar; methods from left to right by the share
    of the model they train (unknown shares last, in the registry's order)."""
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
    fig = Figure(figsize=(max(4.5, 0.55 * len(order) + 1.5) * ncols, 3.4 * nrows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (model, task) in zip(axes, panels):
        runs = tidy[(tidy[MODEL] == model) & (tidy["task"] == task)]
        size = runs["train_size"].max()
        runs = runs[runs["train_size"] == size]
        present = [m for m in order if (runs["method"] == m).any()]
        for x, method in enumerate(present):
            scores = 100 * runs.loc[runs["method"] == method, "score"].to_numpy(dtype=float)
            ax.scatter(np.full(len(scores), x), scores, s=10, alpha=0.45, color=colours[method], lw=0)
            ax.errorbar(x, scores.mean(), yerr=scores.std() if len(scores) > 1 else None, fmt="o", ms=5,
                        color=colours[method], capsize=3, lw=1.2)
        shown = {m: share_on[m, model, task, size] for m in present}
        labels = [m if math.isnan(shown[m]) else f"{m}\n{format_share(shown[m])}" for m in present]
        ax.set_xticks(range(len(present)), labels, rotation=60, ha="right", fontsize=7)
        metric = "/".join(dict.fromkeys(map(str, runs["metric"].fillna("")))) if "metric" in runs else ""
        ax.set_ylabel(f"test {metric} (x100)" if metric else "test score (x100)", fontsize=8)
        ax.set_title(f"{panel_name(task, model, len(models) > 1)}, {int(size)} training examples", fontsize=9)
        ax.grid(True, axis="y", lw=0.4, alpha=0.5)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("Methods by the share of the model they train (mean ± std over runs)", fontsize=9)
    return fig


def figures(
    results: pd.DataFrame, out_dir: Path, treatment: str = DEFAULT_TREATMENT, baseline: str = DEFAULT_BASELINE,
    options: AdvantageOptions = AdvantageOptions(),
) -> list[Path]:
    """Write ``<task>.png/.pdf`` per task, ``overview.png/.pdf`` and ``methods.png/.pdf`` into
    ``out_dir``, and where the results hold several models ``scale.png/.pdf`` (all or nothing)."""
    panels = task_panels(results, treatment, baseline, options)
    seen = list(dict.fromkeys(m for p in panels for m in p.methods))
    colours = palette(display_order(seen))  # the same colour for a method whatever is compared

    def write(tmp: Path) -> None:
        for task in dict.fromkeys(panel.task for panel in panels):
            of_task = [panel for panel in panels if panel.task == task]
            save_figure(task_figure(of_task, colours, options), tmp / file_stem(task))
        save_figure(overview_figure(panels, colours, options), tmp / "overview")
        save_figure(methods_figure(results, colours), tmp / "methods")
        if len({panel.model for panel in panels}) > 1:
            save_figure(scale_figure(panels, treatment, baseline), tmp / "scale")

    return write_files(out_dir, write)


def published_figure(frame: pd.DataFrame) -> Figure:
    """LM-BFF's table as a figure (``promptworth.analysis.published``): one panel per task, a row
    per way of using the model (per model, where the runs are of several); our mean ± std over runs
    as a bar, LM-BFF's number as a diamond."""
    tasks = list(dict.fromkeys(frame["task"]))
    named = frame["row"].astype(bool) & frame["method"].astype(bool)  # LM-BFF's rows name our method
    names = frame["label"] + np.where(named, " (" + frame["method"] + ")", "")
    if frame["model"].nunique() > 1:
        names = names + ", " + frame["model"]
    labels = list(dict.fromkeys(names))
    fig = Figure(figsize=(3.2 * len(tasks) + 3.0, 0.32 * len(labels) + 1.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(tasks), sharey=True, squeeze=False)).ravel()
    y = np.arange(len(labels))[::-1]
    for ax, task in zip(axes, tasks):
        rows = frame[frame["task"] == task]
        at = y[[labels.index(name) for name in names[rows.index]]]
        ours = 100 * rows["mean"].to_numpy(dtype=float)
        spread = np.nan_to_num(100 * rows["std"].to_numpy(dtype=float))
        ax.barh(at, np.nan_to_num(ours), xerr=spread, color="#4c72b0", alpha=0.8, height=0.6, capsize=2,
                error_kw={"lw": 0.8}, label="ours")
        ax.scatter(rows["published_mean"].to_numpy(dtype=float), at, marker="D", s=18, color="black", zorder=3,
                   label="LM-BFF (roberta-large)")
        metric = "/".join(m for m in dict.fromkeys(rows["metric"]) if m)
        ax.set_title(f"{task}" + (f" ({metric})" if metric else ""), fontsize=9)
        ax.set_xlim(min(0.0, np.nanmin([*ours, *rows["published_mean"], 0.0]) - 5), 100)
        ax.grid(True, axis="x", lw=0.4, alpha=0.5)
    axes[0].set_yticks(y, labels, fontsize=7)
    handles, keys = axes[0].get_legend_handles_labels()
    fig.legend(handles, keys, loc="outside lower center", ncols=2, frameon=False, fontsize=8)
    fig.suptitle("LM-BFF's table on this model: ours (bars, mean ± std over splits) and published", fontsize=9)
    return fig

