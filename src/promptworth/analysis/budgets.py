"""The data advantage at several training budgets: how a prompt's worth depends on how long the
baseline (and the prompt) may train.

A run trained with ``budgets`` (``TrainConfig.budgets``, constant learning rate) records, at each
step budget B, the test score of its best dev state among the evaluations at steps up to B: what
a B-step run with the same seed scores. ``runs.csv`` carries them as ``score_at_<B>`` columns
(:mod:`promptworth.analysis.results`); here they become a long table, one row per run and budget
(budget ``converged``: the run's own score, trained until patience or its cap stopped it), and the
advantage of each comparison at each budget, computed by :mod:`promptworth.analysis.advantage`
unchanged on each budget's scores. A starved baseline shows as an advantage that shrinks with
the budget.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd
from matplotlib.figure import Figure

from promptworth.analysis.estimate import AdvantageOptions
from promptworth.analysis.advantage import Comparison
from promptworth.analysis.results import BUDGET_PREFIX, budget_columns
from promptworth.analysis.summary_plots import advantage_points, line_colours
from promptworth.analysis.tables import advantage_cells, advantage_results, compared, estimator_text
from promptworth.analysis.table_format import markdown
from promptworth.errors import PromptworthError

CONVERGED = "converged"  # the budget of a run's own score
# identify a run (the columns of runs.csv a long row keeps; an imported table may lack some)
RUN_COLUMNS = ("task", "method", "model", "template_name", "train_size", "seed", "metric")
SCORES_COLUMNS = (*RUN_COLUMNS, "budget", "score")
ADVANTAGE_BY_BUDGET_COLUMNS = ("model", "task", "treatment", "baseline", "budget", "advantage", "lower", "upper", "std",
                               "bound", "bound_kind", "reduction", "interval", "confidence", "n_seeds", "n_runs_treatment",
                               "n_runs_baseline", "reason")


def budget_label(budget: str) -> str:
    """``50`` -> ``50 steps``; ``converged`` stays."""
    return budget if budget == CONVERGED else f"{budget} steps"


def scores_by_budget(results: pd.DataFrame) -> pd.DataFrame:
    """One row per run and budget: the runs' ``score_at_<B>`` (a run without one at B has no row
    there), then every run's own score as budget ``converged``. Budgets in increasing order."""
    columns = budget_columns(results.columns)
    if not columns:
        raise PromptworthError(
            "the results hold no scores at step budgets (no score_at_<B> column): the runs were trained "
            "without budgets (training.budgets, promptworth train --budgets)"
        )
    kept = [c for c in RUN_COLUMNS if c in results.columns]
    frames = [results[kept].assign(budget=column[len(BUDGET_PREFIX):], score=results[column]) for column in columns]
    frames.append(results[kept].assign(budget=CONVERGED, score=results["score"]))
    long = pd.concat(frames, ignore_index=True)
    long = long[long["score"].notna()]
    return long[[c for c in SCORES_COLUMNS if c in long.columns]].reset_index(drop=True)


def _check_budget_runs(scores: pd.DataFrame, comparisons: Sequence[Comparison], options: AdvantageOptions) -> None:
    """Every compared method has scores at every budget (else one clear error, not a missing method)."""
    methods = {m for c in comparisons for m in (c.treatment, c.baseline, *(options.window_from or ()))}
    present = set(scores.loc[scores["budget"] == CONVERGED, "method"].astype(str))
    for budget, runs in scores.groupby("budget", sort=False):
        missing = sorted((methods & present) - set(runs["method"].astype(str)))
        if missing:
            raise PromptworthError(
                f"no run of {', '.join(map(repr, missing))} records a score at {budget_label(str(budget))} "
                "(trained without that budget?); every compared method needs each budget"
            )


def advantage_by_budget(
    results: pd.DataFrame, comparisons: Sequence[Comparison], options: AdvantageOptions = AdvantageOptions()
) -> pd.DataFrame:
    """Each comparison on each task at each budget (budgets in increasing order, then converged),
    by :func:`promptworth.analysis.tables.advantage_results` on that budget's scores."""
    scores = scores_by_budget(results)
    _check_budget_runs(scores, comparisons, options)
    rows = []
    for budget, runs in scores.groupby("budget", sort=False):
        for result in advantage_results(runs, comparisons, options):
            rows.append({**{key: getattr(result, key) for key in ADVANTAGE_BY_BUDGET_COLUMNS if key != "budget"},
                         "budget": budget})
    return pd.DataFrame(rows, columns=list(ADVANTAGE_BY_BUDGET_COLUMNS))


def advantage_by_budget_markdown(frame: pd.DataFrame) -> str:
    """Rows: comparison, model and budget; columns: tasks; cells as in the advantage table (``752 ± 46``),
    only the comparisons run (:func:`promptworth.analysis.tables.compared`)."""
    frame = compared(frame)
    tasks = list(dict.fromkeys(frame["task"]))
    rows = []
    keys = ["treatment", "baseline", "model", "budget"]
    # each comparison, then each model, then its budgets in the frame's order
    order = {key: {value: i for i, value in enumerate(dict.fromkeys(frame[key]))} for key in keys}
    groups = sorted(frame.groupby(keys, sort=False), key=lambda item: tuple(order[k][v] for k, v in zip(keys, item[0])))
    for (treatment, baseline, model, budget), group in groups:
        rows.append([f"{treatment} vs {baseline}", model, budget_label(str(budget)), *advantage_cells(group, tasks)])
    note = f"\nCells as in `advantage.md`. Estimator: {estimator_text(frame)}.\n" if len(frame) else ""
    return markdown(["comparison", "model", "budget", *tasks], rows) + note


def stop_steps(results: pd.DataFrame, comparison: Comparison) -> dict[tuple[str, str], float]:
    """Per (model, task), the median number of steps the compared methods' trained runs took before
    they stopped: where "converged" sits on the figure's step axis (NaN where runs do not say)."""
    if "steps" not in results.columns:
        return {}
    runs = results[results["method"].isin([comparison.treatment, comparison.baseline]) & (results["train_size"] > 0)]
    model = runs["model"] if "model" in runs.columns else pd.Series("", index=runs.index)
    steps = pd.to_numeric(runs["steps"], errors="coerce")
    return {(str(m), str(t)): float(s) for (m, t), s in steps.groupby([model, runs["task"]], sort=False).median().items()}


def budgets_figure(frame: pd.DataFrame, comparison: Comparison, stops: dict[tuple[str, str], float]) -> Figure:
    """The advantage of ``comparison`` against the number of training steps, a line per task (and
    model): its advantage at each step budget, joined, and where the runs trained to their own stop
    ("converged"), a diamond at the median step they stopped at (not joined: each run stopped at
    its own step). Points with their intervals, bounds as open triangles."""
    rows = frame[(frame["treatment"] == comparison.treatment) & (frame["baseline"] == comparison.baseline)]
    if rows.empty:
        raise PromptworthError(f"no advantage of {comparison.label} to draw")
    several = rows["model"].nunique() > 1
    rows = rows.assign(line=[f"{t} ({m})" if several else str(t) for t, m in zip(rows["task"], rows["model"])],
                       budget=rows["budget"].astype(str))
    lines = list(dict.fromkeys(rows["line"]))
    colours = line_colours(lines)
    fig = Figure(figsize=(8.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    at_budgets = rows[rows["budget"] != CONVERGED]
    positions = {line: at_budgets.loc[at_budgets["line"] == line, "budget"].astype(float).to_numpy() for line in lines}
    advantage_points(ax, at_budgets, positions, "line", colours, connect=True)
    converged = rows[rows["budget"] == CONVERGED]
    for row in converged.itertuples():
        step = stops.get((str(row.model), str(row.task)), float("nan"))
        value = row.bound if row.bound_kind else row.advantage
        if pd.notna(step) and pd.notna(value):
            ax.scatter([step], [value], marker="D", s=30, color=colours[row.line], zorder=3,
                       facecolors="none" if row.bound_kind else colours[row.line])
    ax.scatter([], [], marker="D", s=30, color="0.3",
               label="converged: at the median step its runs stopped")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xscale("log")
    ax.set_xlabel("training steps: every run's budget, or (diamonds) its runs' median stop", fontsize=8)
    ax.set_title(f"{comparison.label}: data advantage against the training budget\n(95% interval; "
                 "triangles: bounds)", fontsize=9)
    return fig
