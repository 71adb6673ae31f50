"""Tables of the analysis: data advantage per task with error bars, LM-BFF-style scores, and the
methods side by side (what trains, what a step costs, the scores), each per model (a ``model``
column; the rows of several models interleave, the model innermost).

Each comes as a long CSV (numbers at full precision, for machines), a markdown table and a LaTeX
``tabular`` (rounded, for people). The markdown parses back with :func:`parse_markdown`.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Sequence

import numpy as np
import pandas as pd

from promptworth.analysis.estimate import AdvantageOptions
from promptworth.analysis.advantage import MIN_INFORMATIVE_SEEDS, AdvantageResult, Comparison, advantage_table
from promptworth.analysis.curves import MODEL, check_tidy, check_unique_runs
from promptworth.analysis.gaps import gaps_frame
from promptworth.analysis.intervals import distinct_resamples
from promptworth.analysis.joins import comparison_runs, first_train_seed
from promptworth.analysis.sensitivity import HEADLINE, sensitivity_frame
from promptworth.analysis.train_seeds import several_train_seeds, train_seeds_frame, train_seeds_markdown
from promptworth.errors import PromptworthError
from promptworth.methods.specs import MethodSpec, table_order
from promptworth.analysis.table_format import MISSING, NOT_RUN, _is_nan, _span, format_advantage, format_count, format_gap, format_score, format_share, grid_latex, markdown, note_lines

ADVANTAGE_COLUMNS = tuple(field.name for field in fields(AdvantageResult))
LMBFF_COLUMNS = ("task", "train_size", "model", "method", "metric", "n_runs", "mean", "std")
METHODS_COLUMNS = ("method", "model", "objective", "tuning", "strategy", "trainable_params", "total_params", "share",
                   "step_s", "peak_rss_gb", "task", "train_size", "n_runs", "mean", "std")


# ---------------------------------------------------------------------------------------------
# Formatting helpers


# ---------------------------------------------------------------------------------------------
# Advantage table


def advantage_results(
    results: pd.DataFrame, comparisons: Sequence[Comparison], options: AdvantageOptions = AdvantageOptions()
) -> list[AdvantageResult]:
    """Every comparison on every task (tasks where a method is missing come out undefined)."""
    tidy = check_tidy(results)
    present = set(tidy["method"])
    out: list[AdvantageResult] = []
    for comp in comparisons:
        methods = {comp.treatment, comp.baseline, *(options.window_from or ())}
        if not methods <= present:
            raise PromptworthError(
                f"comparison {comp.label}: method(s) {', '.join(map(repr, sorted(methods - present)))} not in the results; "
                f"methods present: {', '.join(sorted(present))}"
            )
        out.extend(advantage_table(tidy, comp.treatment, comp.baseline, options))
    return out


def advantage_frame(results: Sequence[AdvantageResult]) -> pd.DataFrame:
    rows = [{k: getattr(r, k) for k in ADVANTAGE_COLUMNS} for r in results]
    return pd.DataFrame(rows, columns=list(ADVANTAGE_COLUMNS))


def comparison_advantage(results: pd.DataFrame, comparisons: Sequence[Comparison],
                         options: AdvantageOptions = AdvantageOptions(), in_place_of: str | None = None) -> pd.DataFrame:
    """The advantage table of the comparisons, on the runs they read
    (:func:`promptworth.analysis.joins.comparison_runs`, ``in_place_of`` as there)."""
    return advantage_frame(advantage_results(comparison_runs(results, in_place_of).frame, comparisons, options))


def compared(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of an advantage frame whose treatment and baseline both have runs: a table leaves
    out the comparisons a study did not run on a model or task (a strategy run on one task, a model
    run on fewer tasks or methods). A comparison a model never ran has no row, a task it did not
    run it on is a blank cell (:data:`NOT_RUN`), and ``–`` means undefined, not "not run"."""
    return frame[(frame["n_runs_treatment"] > 0) & (frame["n_runs_baseline"] > 0)]


def advantage_cells(group: pd.DataFrame, tasks: Sequence[str]) -> list[str]:
    """One table row's cells, a task each: the formatted advantage of ``group``'s result for the
    task, :data:`NOT_RUN` where it has none."""
    by_task = {r.task: format_advantage(r) for r in group.itertuples()}
    return [by_task.get(t, NOT_RUN) for t in tasks]


def _advantage_grid(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Rows: comparisons, each per model; columns: tasks (first-seen order), as in the paper's
    table; only the comparisons run (:func:`compared`)."""
    frame = compared(frame)
    tasks = list(dict.fromkeys(frame["task"]))
    header = ["comparison", "model", *tasks]
    rows = []
    for (treatment, baseline, model), group in frame.groupby(["treatment", "baseline", "model"], sort=False):
        rows.append([f"{treatment} vs {baseline}", str(model), *advantage_cells(group, tasks)])
    return header, rows


def estimator_text(frame: pd.DataFrame) -> str:
    """The estimator of an advantage frame in words, with its number of data seeds."""
    frame = compared(frame)
    if frame.empty:
        return ""
    first = frame.iloc[0]
    options = AdvantageOptions(reduction=str(first["reduction"]), interval=str(first["interval"]),
                               confidence=float(first["confidence"]))
    seeds = sorted({int(n) for n in frame["n_seeds"] if n > 0})
    counted = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]} to {seeds[-1]}" if seeds else "no"
    return f"{options.describe()}, {counted} seed{'' if seeds == [1] else 's'}"


def advantage_notes(frame: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    """What a reader needs beside the advantage table: the estimator, the seeds, what a bound
    means, the sizes a comparison dropped to match its methods' ladders, and ``notes`` (which
    runs the comparisons read: :mod:`promptworth.analysis.joins`)."""
    frame = compared(frame)
    if frame.empty:
        return "\n\n".join(notes) + "\n" if notes else ""
    lines = [f"Cells: the data advantage in training examples. Estimator: {estimator_text(frame)}. "
             "`> N`: the treatment at its smallest trained size beats the baseline at every size, so the "
             "advantage is more than N (`< -N`: the reverse); `≥ N` / `≤ N`: a curve never reaches the top of "
             "the score window, so N is a bound; `–`: undefined; blank: not run."]
    if frame["interval"].eq("bootstrap").any() and (frame["n_seeds"].between(2, MIN_INFORMATIVE_SEEDS - 1)).any():
        few = sorted({int(n) for n in frame["n_seeds"] if 2 <= n < MIN_INFORMATIVE_SEEDS})
        counts = " or ".join(f"{n} data seeds ({distinct_resamples(n)} distinct resamples)" for n in few)
        lines.append(f"With {counts} a bootstrap interval shows the seeds' spread; it is not an informative "
                     "confidence interval.")
    dropped = [f"{r.treatment} vs {r.baseline} ({r.model}, {r.task}) on sizes {r.ladder} ({r.dropped})"
               for r in frame.itertuples() if isinstance(r.dropped, str) and r.dropped]
    if dropped:
        lines.append("Matched ladders: " + "; ".join(dropped) + ".")
    return "\n\n".join([*lines, *notes]) + "\n"


def advantage_markdown(frame: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    text = advantage_notes(frame, notes)
    return markdown(*_advantage_grid(frame)) + (f"\n{text}" if text else "")


def advantage_latex(frame: pd.DataFrame) -> str:
    return grid_latex(*_advantage_grid(frame), text_columns=2, label_columns=2)


# ---------------------------------------------------------------------------------------------
# LM-BFF-style table: mean (std) over runs, per task, size and method


def lmbff_frame(results: pd.DataFrame, ddof: int = 0) -> pd.DataFrame:
    """Long table of mean and std (``ddof=0``, numpy's default) of the score over runs, per task,
    size, model and method."""
    tidy = check_tidy(results)
    check_unique_runs(tidy)
    if "metric" not in tidy.columns:
        tidy = tidy.assign(metric="")
    grouped = tidy.groupby(["task", "train_size", MODEL, "method"], sort=False)
    rows = []
    for (task, size, model, method), group in grouped:
        scores = group["score"].to_numpy(dtype=float)
        rows.append({
            "task": task, "train_size": int(size), "model": model, "method": method,
            "metric": "/".join(dict.fromkeys(map(str, group["metric"].fillna("")))),
            "n_runs": len(scores), "mean": float(np.mean(scores)),
            "std": float(np.std(scores, ddof=ddof)) if len(scores) > 1 else math.nan,
        })
    frame = pd.DataFrame(rows, columns=list(LMBFF_COLUMNS))
    order = {"task": _first_seen(tidy["task"]), "model": _first_seen(tidy[MODEL])}
    return frame.sort_values(["task", "train_size", "model"], key=lambda s: s.map(order[s.name]) if s.name in order else s,
                             kind="stable").reset_index(drop=True)


def _first_seen(values: pd.Series) -> dict[str, int]:
    """Each value's rank in the order the values first appear."""
    return {value: i for i, value in enumerate(dict.fromkeys(values))}


def _lmbff_grid(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Rows: (task, size, model); columns: methods (first-seen order); cells ``mean (std)`` x 100."""
    seen = list(dict.fromkeys(frame["method"]))
    methods = table_order(seen)
    header = ["task", "train_size", "model", *methods]
    rows = []
    for (task, size, model), group in frame.groupby(["task", "train_size", "model"], sort=False):
        by_method = {r.method: format_score(r.mean, r.std) for r in group.itertuples()}
        rows.append([str(task), str(size), str(model), *(by_method.get(m, MISSING) for m in methods)])
    return header, rows


def lmbff_markdown(frame: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    return markdown(*_lmbff_grid(frame)) + note_lines(notes)


def lmbff_latex(frame: pd.DataFrame) -> str:
    return grid_latex(*_lmbff_grid(frame), text_columns=3, label_columns=3)


# ---------------------------------------------------------------------------------------------
# The methods side by side: what trains, what a step costs, the scores


def _median(values: pd.Series | None) -> float:
    if values is None:
        return math.nan
    known = pd.to_numeric(values, errors="coerce").dropna()
    return float(known.median()) if len(known) else math.nan


def _one_text(values: pd.Series | None) -> str:
    known = [v for v in dict.fromkeys(values.fillna("")) if v] if values is not None else []
    return "/".join(map(str, known))


def methods_frame(results: pd.DataFrame, ddof: int = 0) -> pd.DataFrame:
    """Long table: per method and model, the method's parts and strategy, seconds per training
    step and peak memory (medians over all its runs on that model); per task and training size,
    the median trainable and total parameters, the share of the model that trains, and the mean
    and std of the score."""
    tidy = check_tidy(results)
    check_unique_runs(tidy)
    rows = []
    models = list(dict.fromkeys(tidy[MODEL]))
    for method, model in ((m, n) for m in table_order(list(dict.fromkeys(tidy["method"]))) for n in models):
        runs = tidy[(tidy["method"] == method) & (tidy[MODEL] == model)]
        if runs.empty:
            continue
        objective, tuning = _one_text(runs.get("objective")), _one_text(runs.get("tuning"))
        known_parts = objective and tuning and "/" not in objective + tuning
        facts = {
            "method": method, "model": model, "objective": objective, "tuning": tuning,
            "strategy": MethodSpec(method, objective, tuning).strategy if known_parts else "",
            "step_s": _median(runs.get("step_s")), "peak_rss_gb": _median(runs.get("peak_rss_gb")),
        }
        for (task, size), group in runs.groupby(["task", "train_size"], sort=False):
            # per task: a new head's size follows the task's number of labels
            trainable, total = _median(group.get("trainable_params")), _median(group.get("total_params"))
            scores = group["score"].to_numpy(dtype=float)
            rows.append({**facts, "trainable_params": trainable, "total_params": total,
                         "share": trainable / total if total else math.nan,
                         "task": task, "train_size": int(size), "n_runs": len(scores),
                         "mean": float(np.mean(scores)),
                         "std": float(np.std(scores, ddof=ddof)) if len(scores) > 1 else math.nan})
    return pd.DataFrame(rows, columns=list(METHODS_COLUMNS))


def _methods_grid(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Rows: methods, each per model; columns: the facts, then one score column per (task, size):
    the tasks as they come, each one's sizes from the smallest (the zero-shot point first), whichever
    method came first with which size."""
    tasks = list(dict.fromkeys(frame["task"]))
    groups = sorted(set(zip(frame["task"], frame["train_size"])), key=lambda g: (tasks.index(g[0]), g[1]))
    header = ["method", "model", "strategy", "trains", "share", "step s", "peak GB",
              *(f"{t} ({n})" for t, n in groups)]
    rows = []
    for (method, model), runs in frame.groupby(["method", "model"], sort=False):
        first = runs.iloc[0]
        scores = {(r.task, r.train_size): format_score(r.mean, r.std) for r in runs.itertuples()}
        rows.append([
            str(method), str(model), first.strategy or MISSING, _span(runs["trainable_params"], format_count),
            _span(runs["share"], format_share),
            MISSING if _is_nan(first.step_s) else f"{first.step_s:.2f}",
            MISSING if _is_nan(first.peak_rss_gb) else f"{first.peak_rss_gb:.1f}",
            *(scores.get(g, MISSING) for g in groups),
        ])
    return header, rows


def methods_markdown(frame: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    return markdown(*_methods_grid(frame)) + note_lines(notes)


def methods_latex(frame: pd.DataFrame) -> str:
    return grid_latex(*_methods_grid(frame), text_columns=5, label_columns=3)


# ---------------------------------------------------------------------------------------------
# The gap at each size, and the sensitivity of the advantage


def _gaps_grid(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = ["comparison", "model", "task", "train_size", "seeds", "treatment", "baseline", "gap [95% CI]"]
    rows = [[f"{r.treatment} vs {r.baseline}", str(r.model), str(r.task), str(r.train_size), str(r.n_seeds),
             format_score(r.treatment_mean, math.nan), format_score(r.baseline_mean, math.nan),
             format_gap(r.gap, r.lower, r.upper)] for r in frame.itertuples()]
    return header, rows


def gaps_markdown(frame: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    confidence = f"{frame['confidence'].iloc[0]:.0%}" if len(frame) else "95%"
    note = (f"\nScores x100 (mean over the data seeds both methods ran at that size); gap = treatment - baseline, "
            f"paired on the data seed, with Student's t {confidence} interval over the seeds (none for one seed).\n")
    if frame["n_seeds"].between(2, MIN_INFORMATIVE_SEEDS - 1).any():
        note += ("\nWith fewer than 5 seeds t has few degrees of freedom (2 seeds: one, and an interval more than "
                 "ten times the seeds' half-difference wide, or of zero width where both seeds happen to give the "
                 "same difference): read such intervals as the seeds' spread, not as confidence intervals.\n")
    header, rows = _gaps_grid(frame)
    return markdown(header[:-1] + [f"gap [{confidence} CI]"], rows) + note + note_lines(notes)


def _sensitivity_grid(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Rows: comparison, model, task; columns: the variants (headline first), blank where one does not apply."""
    names = list(dict.fromkeys(frame["variant"]))
    names = [HEADLINE] + sorted((n for n in names if n != HEADLINE), key=_variant_order)
    header = ["comparison", "model", "task", *names]
    rows = []
    for (treatment, baseline, model, task), group in frame.groupby(["treatment", "baseline", "model", "task"], sort=False):
        cells = {r.variant: format_advantage(r) for r in group.itertuples()}
        rows.append([f"{treatment} vs {baseline}", str(model), str(task), *(cells.get(n, NOT_RUN) for n in names)])
    return header, rows


def _variant_order(name: str) -> tuple[int, float, str]:
    """The other reduction, size 0, the interior sizes by size, then unmatched ladders."""
    if name.startswith("without "):
        return (2, float(name.split()[1]), name)
    return ({"no size 0": 1, "unmatched ladders": 3}.get(name, 0), 0.0, name)


def sensitivity_markdown(frame: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    note = ("\nEach cell: the advantage recomputed with one change to the headline (its cells as in the "
            "advantage table): the other reduction over seeds, without the untrained point (size 0), without "
            "one interior size of the ladder, or each curve on its own sizes (unmatched ladders).\n")
    return markdown(*_sensitivity_grid(frame)) + note + note_lines(notes)


# ---------------------------------------------------------------------------------------------
# Everything at once


def table_texts(
    results: pd.DataFrame,
    comparisons: Sequence[Comparison],
    options: AdvantageOptions = AdvantageOptions(),
    in_place_of: str | None = None,
    advantage: pd.DataFrame | None = None,
) -> dict[str, str]:
    """Texts of advantage, lmbff and methods .{md,tex,csv}, gaps and sensitivity .{md,csv}, and
    where some runs have several train seeds train_seeds.{md,csv}, by file name (nothing written
    here). The comparisons read :func:`promptworth.analysis.joins.comparison_runs` (``in_place_of``
    as there); the score tables each method's own runs of the first train seed. ``advantage``: the
    comparisons' :func:`comparison_advantage` when the caller has computed it."""
    runs = comparison_runs(results, in_place_of)
    scores, seeds_note = first_train_seed(results)
    score_notes = (seeds_note,) if seeds_note else ()
    adv = comparison_advantage(results, comparisons, options, in_place_of) if advantage is None else advantage
    lmbff = lmbff_frame(scores)
    per_method = methods_frame(scores)
    gaps = gaps_frame(runs.frame, comparisons, options.confidence)
    sensitivity = sensitivity_frame(runs.frame, comparisons, options)
    texts = {
        "gaps.csv": gaps.to_csv(index=False),
        "gaps.md": gaps_markdown(gaps, runs.notes),
        "sensitivity.csv": sensitivity.to_csv(index=False),
        "sensitivity.md": sensitivity_markdown(sensitivity, runs.notes),
        "methods.csv": per_method.to_csv(index=False),
        "methods.md": methods_markdown(per_method, score_notes),
        "methods.tex": methods_latex(per_method),
        "advantage.csv": adv.to_csv(index=False),
        "advantage.md": advantage_markdown(adv, runs.notes),
        "advantage.tex": advantage_latex(adv),
        "lmbff.csv": lmbff.to_csv(index=False),
        "lmbff.md": lmbff_markdown(lmbff, score_notes),
        "lmbff.tex": lmbff_latex(lmbff),
    }
    if several_train_seeds(results):
        seeds = train_seeds_frame(results)
        texts.update({"train_seeds.csv": seeds.to_csv(index=False), "train_seeds.md": train_seeds_markdown(seeds)})
    return texts
