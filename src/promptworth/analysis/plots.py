"""Figures: test score against training-set size per task, an overview grid of all tasks, and the
figure machinery the other figures share (method styles, axes, saving).

Per task and model, a panel: every run as a faint point, per method the mean over data seeds as a
line with its 95% interval as a band (Student's t over the seeds), the score window of the compared
pair as a light band, and the data advantage in the title in data points. Under it, a small panel
of the gap at each size (treatment minus baseline, paired on the data seed, with its interval).
Scores are in % (x100), as in the tables; every panel of a row shares one y range. The x axis is
logarithmic; where a panel has zero-shot runs (size 0) it is symmetric-log, linear from 0 to the
smallest positive size. A panel whose runs all have one size is drawn as points per method, with no
curve. Every method has one style (colour, marker, line) in every figure. Figures are built on
``matplotlib.figure.Figure`` (Agg canvas; no pyplot state).
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

from promptworth.analysis.estimate import AdvantageOptions
from promptworth.analysis.advantage import AdvantageResult, check_log_sizes, compare, comparison_matrices
from promptworth.analysis.curves import MODEL, check_tidy, run_matrix
from promptworth.analysis.gaps import paired_gaps, size_means
from promptworth.analysis.joins import method_label
from promptworth.analysis.table_format import format_advantage
from promptworth.errors import PromptworthError
from promptworth.methods.specs import builtin_methods

FORMATS = ("png", "pdf")
DPI = 150
SCALE = 100.0  # scores are drawn in % (x100), as the tables print them
MARKERS = ("o", "s", "^", "D", "v")
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)))
# the palette: seaborn's ten colour-blind colours, then these ten far from them
MORE_COLOURS = ((0.0, 0.0, 0.0), (0.1, 0.1, 0.45), (0.5, 0.0, 0.1), (0.0, 0.45, 0.45), (0.45, 0.45, 0.0),
                (0.85, 0.0, 0.65), (0.45, 0.75, 0.1), (0.4, 0.5, 0.6), (0.3, 0.0, 0.5), (0.75, 0.65, 0.45))
# the built-ins of issue 29 hold the palette's slots 0-18; a study's own methods take the slots from 19 on
OWN_METHODS_FROM_SLOT = 19
# a colour for each built-in added since, in the registry's order, none of them in the palette (a
# built-in added later appends one): no built-in added moves or looks like any other method
LATER_BUILTIN_COLOURS = ((0.6, 0.3, 0.0), (0.2, 0.6, 0.9), (0.9, 0.45, 0.45), (0.0, 0.3, 0.15))
METRIC_NAMES = {"acc": "accuracy", "f1": "F1", "macro_f1": "macro F1", "mcc": "MCC", "pearson": "Pearson r",
                "spearman": "Spearman r"}


@dataclass(frozen=True)
class MethodStyle:
    colour: tuple[float, float, float]
    marker: str
    linestyle: object


def method_styles(methods: Sequence[str]) -> dict[str, MethodStyle]:
    """Each method's style, fixed across figures and by a rule that no new built-in changes.

    A slot ``s`` is colour ``s % 20`` of the palette with marker and line ``(s // 10) % 5``: slots
    0 to 99 are 100 styles, no two alike. The first 19 built-ins take slots 0-18 by their place in
    the registry; a study's own (defined) methods take slots 19, 20, ... in name order, whatever the
    registry holds. A built-in past the first 19 takes a colour of its own outside the palette
    (``LATER_BUILTIN_COLOURS``) with marker and line ``(place // 10) % 5``. So no two methods of a
    figure look alike while it shows fewer than 82 defined methods."""
    import seaborn as sns  # late: seaborn is slow to import

    palette = [tuple(c) for c in sns.color_palette("colorblind", n_colors=10)] + list(MORE_COLOURS)
    builtins = list(builtin_methods())
    defined = sorted(m for m in set(methods) if m not in builtins)
    styles = {}
    for method in methods:
        if method in defined:
            styles[method] = slot_style(OWN_METHODS_FROM_SLOT + defined.index(method), palette)
        elif (place := builtins.index(method)) < OWN_METHODS_FROM_SLOT:
            styles[method] = slot_style(place, palette)
        else:
            cycle = (place // 10) % len(MARKERS)
            colour = LATER_BUILTIN_COLOURS[place - OWN_METHODS_FROM_SLOT]  # none: append one for the new built-in
            styles[method] = MethodStyle(colour, MARKERS[cycle], LINESTYLES[cycle])
    return styles


def slot_style(slot: int, palette: Sequence[tuple[float, float, float]]) -> MethodStyle:
    """The style of a slot: the palette's colours in turn, the marker and line changing every ten."""
    cycle = (slot // 10) % len(MARKERS)
    return MethodStyle(palette[slot % len(palette)], MARKERS[cycle], LINESTYLES[cycle])


def metric_label(runs: pd.DataFrame) -> str:
    """The y label: ``test accuracy (%)``, ``test macro F1 (x100)``."""
    metrics = list(dict.fromkeys(runs["metric"].dropna().astype(str))) if "metric" in runs else []
    names = "/".join(METRIC_NAMES.get(m, m) for m in metrics if m) or "score"
    return f"test {names} ({'%' if metrics == ['acc'] else 'x100'})"


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

    @property
    def single_size(self) -> bool:
        return self.runs["train_size"].nunique() == 1


def panel_name(task: str, model: str, several: bool) -> str:
    """A panel's name in its title: the task, with the model where the figure shows several."""
    return f"{task} ({model})" if several and model else task


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
        needed = list(dict.fromkeys((treatment, baseline, *(options.window_from or ()))))
        if set(needed) <= set(methods):
            check_log_sizes(runs[runs["method"].isin(needed)], options)
            result = compare(comparison_matrices(runs, needed), treatment, baseline, options, str(task), str(model))
        panels.append(TaskPanel(str(task), runs, methods, result, str(model), panel_name(str(task), str(model), several)))
    models = list(dict.fromkeys(tidy[MODEL].astype(str)))  # each model's panels in the order its first run came
    return sorted(panels, key=lambda panel: models.index(panel.model))


def size_axis(ax: Axes, sizes: pd.Series, label: bool = True) -> None:
    """The training-set size axis: logarithmic, or with zero-shot runs (size 0) symmetric-log,
    linear from 0 to the smallest positive size (half a decade wide) and logarithmic above."""
    if (sizes == 0).any():
        positive = sizes[sizes > 0]
        ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0, linscale=0.5)
        text = "training examples (0: zero-shot)"
    else:
        ax.set_xscale("log")
        text = "training examples"
    if label:
        ax.set_xlabel(text)


def advantage_title(result: AdvantageResult | None) -> str:
    """``prompt vs head: 91 data points [81, 103]``; ``> 990 data points``; ``undefined``."""
    if result is None:
        return ""
    text = format_advantage(result, unit="data points")
    return f"{result.treatment} vs {result.baseline}: {'undefined' if text == '–' else text}"


def _title(panel: TaskPanel) -> str:
    if panel.single_size:
        size = int(panel.runs["train_size"].iloc[0])
        return f"{panel.name}: {size} training examples (one size: no curve)"
    comparison = advantage_title(panel.result)
    return f"{panel.name}\n{comparison}" if comparison else panel.name


def method_points(ax: Axes, runs: pd.DataFrame, methods: Sequence[str], styles: dict[str, MethodStyle],
                  confidence: float = 0.95, model: str = "") -> None:
    """Runs of one size, side by side per method (x: the method, with the backbone it ran on where
    that is not ``model``): every run a faint point, the mean over data seeds with its interval as an error bar."""
    for x, method in enumerate(methods):
        of_method = runs[runs["method"] == method]
        style = styles[method]
        ax.scatter(np.full(len(of_method), x), SCALE * of_method["score"].to_numpy(float), s=10, alpha=0.4,
                   color=style.colour, marker=style.marker, lw=0)
        stats = size_means(run_matrix(of_method), confidence).iloc[0]
        low, high = stats["mean"] - stats["lower"], stats["upper"] - stats["mean"]
        error = None if math.isnan(low) else [[SCALE * low], [SCALE * high]]
        ax.errorbar(x, SCALE * stats["mean"], yerr=error, fmt=style.marker, ms=5, color=style.colour, capsize=3,
                    lw=1.2, label=method_label(runs, method, model))
    ax.set_xticks(range(len(methods)), [method_label(runs, m, model) for m in methods], rotation=45, ha="right",
                  fontsize=7)
    ax.set_xlim(-0.6, len(methods) - 0.4)


def draw_curves(ax: Axes, panel: TaskPanel, styles: dict[str, MethodStyle], compared: Sequence[str],
                confidence: float) -> None:
    """Every method's runs and mean line; the ``compared`` methods' intervals as bands (more
    bands would hide the lines)."""
    for method in panel.methods:
        runs = panel.runs[panel.runs["method"] == method]
        style = styles[method]
        ax.scatter(runs["train_size"], SCALE * runs["score"], s=9, alpha=0.3, color=style.colour,
                   marker=style.marker, linewidths=0)
        stats = size_means(run_matrix(runs), confidence)
        if method in compared:
            ax.fill_between(stats["train_size"], SCALE * stats["lower"], SCALE * stats["upper"],
                            color=style.colour, alpha=0.15, lw=0)
        ax.plot(stats["train_size"], SCALE * stats["mean"], marker=style.marker, markersize=3, lw=1.5,
                ls=style.linestyle, color=style.colour, label=method_label(panel.runs, method, panel.model))
    ax.fill_between([], [], [], color=styles[panel.methods[0]].colour, alpha=0.15, lw=0,
                    label=f"{confidence:.0%} interval of the mean (t, over data seeds)")
    r = panel.result
    if r is not None and not math.isnan(r.window_lo) and (not math.isnan(r.advantage) or r.is_bound):
        ax.axhspan(SCALE * r.window_lo, SCALE * r.window_hi, color="0.88", lw=0, zorder=0,
                   label="score window")
    size_axis(ax, panel.runs["train_size"], label=False)
    ax.grid(True, which="major", lw=0.4, alpha=0.5)


def draw_gaps(ax: Axes, panel: TaskPanel, treatment: str, baseline: str, colour: tuple, confidence: float) -> None:
    """The gap at each size both compared methods ran, with its interval, on the curves' x axis."""
    runs = panel.runs
    if {treatment, baseline} <= set(panel.methods):
        gaps = pd.DataFrame(paired_gaps(run_matrix(runs[runs["method"] == treatment]),
                                        run_matrix(runs[runs["method"] == baseline]), confidence))
        if len(gaps):
            low = np.nan_to_num(SCALE * (gaps["gap"] - gaps["lower"]))
            high = np.nan_to_num(SCALE * (gaps["upper"] - gaps["gap"]))
            ax.errorbar(gaps["train_size"], SCALE * gaps["gap"], yerr=[low, high], fmt="o", ms=3, lw=1, capsize=2,
                        color=colour)
    ax.axhline(0.0, color="0.4", lw=0.8)
    ax.set_ylabel(f"{treatment} − {baseline}\n(% points)", fontsize=7)
    ax.grid(True, which="major", lw=0.4, alpha=0.5)
    size_axis(ax, runs["train_size"])


def draw_panel(axes: tuple[Axes, Axes | None], panel: TaskPanel, styles: dict[str, MethodStyle], treatment: str,
               baseline: str, confidence: float = 0.95) -> None:
    """A panel's curves (or points, for one size) and, under them, its gaps."""
    curves, gaps = axes
    if panel.single_size:
        method_points(curves, panel.runs, panel.methods, styles, confidence, panel.model)
        if gaps is not None:
            gaps.set_visible(False)
    else:
        draw_curves(curves, panel, styles, (treatment, baseline), confidence)
        curves.tick_params(labelbottom=False)
        draw_gaps(gaps, panel, treatment, baseline, styles[treatment].colour if treatment in styles else "0.2",
                  confidence)
    curves.set_title(_title(panel), fontsize=8)
    curves.set_ylabel(metric_label(panel.runs), fontsize=8)


def save_figure(fig: Figure, stem: Path) -> None:
    FigureCanvasAgg(fig)
    for fmt in FORMATS:
        # no creation date in the PDF: the same records give the same bytes
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        fig.savefig(stem.with_suffix(f".{fmt}"), dpi=DPI, metadata=metadata)
        fig.set_layout_engine("none")  # the layout is settled by the first save; reuse it


def legend_below(fig: Figure, axes: Sequence[Axes], width_in: float) -> None:
    """One legend for the figure, under it, wrapped to the figure's width (never clipped)."""
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels and not label.startswith("_"):
                handles.append(handle)
                labels.append(label)
    if labels:
        longest = max(len(label) for label in labels)
        ncols = max(1, min(len(labels), int(width_in / (0.5 + 0.075 * longest))))
        fig.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False, fontsize=7)


def share_y(rows: Sequence[Sequence[tuple[Axes, tuple[float, float]]]]) -> None:
    """One y range per row of panels, from the data each panel draws (runs and means; its gaps):
    a band or an interval wider than the data runs off the panel rather than squeeze it."""
    for row in rows:
        ranges = [extent for ax, extent in row if ax.get_visible() and not math.isnan(extent[0])]
        if not ranges:
            continue
        low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
        pad = max(0.08 * (high - low), 2.5)
        for ax, _ in row:
            ax.set_ylim(low - pad, high + pad)


def score_extent(panel: TaskPanel) -> tuple[float, float]:
    scores = SCALE * panel.runs["score"].to_numpy(float)
    return float(scores.min()), float(scores.max())


def gap_extent(panel: TaskPanel, treatment: str, baseline: str) -> tuple[float, float]:
    """The range of the panel's mean gaps, always with 0 in it."""
    runs = panel.runs
    if panel.single_size or not {treatment, baseline} <= set(panel.methods):
        return math.nan, math.nan
    gaps = [SCALE * row["gap"] for row in paired_gaps(run_matrix(runs[runs["method"] == treatment]),
                                                      run_matrix(runs[runs["method"] == baseline]))]
    return min([0.0, *gaps]), max([0.0, *gaps])


def panel_grid(fig: Figure, nrows: int, ncols: int, gaps: bool = True) -> list[list[tuple[Axes, Axes | None]]]:
    """``nrows`` x ``ncols`` panels, each a curves axis over a smaller gaps axis sharing its x axis
    (none where ``gaps`` is False: a figure of single-size panels has no gaps to draw)."""
    if not gaps:
        grid = fig.subplots(nrows, ncols, squeeze=False)
        return [[(grid[row, col], None) for col in range(ncols)] for row in range(nrows)]
    grid = fig.add_gridspec(2 * nrows, ncols, height_ratios=[3.0, 1.1] * nrows)
    cells = []
    for row in range(nrows):
        line = []
        for col in range(ncols):
            curves = fig.add_subplot(grid[2 * row, col])
            line.append((curves, fig.add_subplot(grid[2 * row + 1, col], sharex=curves)))
        cells.append(line)
    return cells


def any_curve(panels: Sequence[TaskPanel]) -> bool:
    return any(not panel.single_size for panel in panels)


def task_figure(panels: Sequence[TaskPanel], styles: dict[str, MethodStyle], treatment: str, baseline: str,
                confidence: float) -> Figure:
    """One task: a panel per model, side by side on one score axis."""
    width = 5.2 + 4.2 * (len(panels) - 1)
    fig = Figure(figsize=(width, 5.0 if any_curve(panels) else 4.0), layout="constrained")
    (row,) = panel_grid(fig, 1, len(panels), any_curve(panels))
    for cell, panel in zip(row, panels):
        draw_panel(cell, panel, styles, treatment, baseline, confidence)
    share_y([[(c, score_extent(p)) for (c, _), p in zip(row, panels)],
             [(g, gap_extent(p, treatment, baseline)) for (_, g), p in zip(row, panels) if g is not None]])
    legend_below(fig, [c for c, _ in row], width)
    return fig


def by_model(panels: Sequence[TaskPanel]) -> list[list[TaskPanel]]:
    """The panels grouped by model, each group and the panels in it in their first-seen order."""
    groups: dict[str, list[TaskPanel]] = {}
    for panel in panels:
        groups.setdefault(panel.model, []).append(panel)
    return list(groups.values())


def overview_figure(panels: Sequence[TaskPanel], styles: dict[str, MethodStyle], treatment: str, baseline: str,
                    confidence: float) -> Figure:
    """Every panel in a grid of at most 4 columns; each model's panels start a row of their own,
    and with at most 4 tasks a task keeps its column (one model's panels above the other's)."""
    groups = by_model(panels)
    tasks = list(dict.fromkeys(panel.task for panel in panels))
    ncols = min(4, len(tasks))
    slots = [[tasks.index(p.task) if len(tasks) <= ncols else i for i, p in enumerate(group)] for group in groups]
    rows = [max(slot) // ncols + 1 for slot in slots]
    width = 3.7 * ncols
    fig = Figure(figsize=(width, (3.9 if any_curve(panels) else 3.2) * sum(rows) + 0.8), layout="constrained")
    cells = panel_grid(fig, sum(rows), ncols, any_curve(panels))
    used = [cells[first + i // ncols][i % ncols] for slot, first in zip(slots, np.cumsum([0, *rows])) for i in slot]
    ordered = [panel for group in groups for panel in group]
    for cell, panel in zip(used, ordered):
        draw_panel(cell, panel, styles, treatment, baseline, confidence)
    drawn = {id(curves): panel for (curves, _), panel in zip(used, ordered)}
    for line in cells:
        for curves, gaps in line:
            if id(curves) not in drawn:
                curves.set_visible(False)
                if gaps is not None:
                    gaps.set_visible(False)
    share_y([[(c, score_extent(drawn[id(c)])) for c, _ in line if id(c) in drawn] for line in cells]
            + [[(g, gap_extent(drawn[id(c)], treatment, baseline)) for c, g in line if id(c) in drawn and g is not None]
               for line in cells])
    legend_below(fig, [c for c, _ in used], width)
    return fig
