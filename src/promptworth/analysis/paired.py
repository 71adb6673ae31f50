"""Paired comparisons: two methods' runs on the same test rows, compared row by row (the records'
``predictions``, promptworth.training.predictions). Per comparison, model, task and size: the
accuracy gap over the data seeds both methods ran, its bootstrap interval over the seeds and over
the seeds and the test rows (promptworth.analysis.paired_stats), and McNemar's exact test of each
pair of runs (one data seed and training seed). ``promptworth paired`` writes paired.md and
paired.csv; docs/analysis.md says how to read them.

Records made before issue 30 keep no predictions: their pairs are left out and counted, and a set
of records without any gives a table that says so, never a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from promptworth.analysis.advantage import MIN_INFORMATIVE_SEEDS, Comparison
from promptworth.analysis.intervals import check_confidence
from promptworth.analysis.paired_stats import SeedRows, gap_intervals, pair_counts
from promptworth.analysis.results import run_seed
from promptworth.analysis.joins import comparison_runs
from promptworth.analysis.table_format import format_gap, format_score, markdown, note_lines
from promptworth.errors import PromptworthError
from promptworth.paths import study_relative
from promptworth.training.predictions import RowPredictions, decode

PAIRED_COLUMNS = ("model", "task", "treatment", "baseline", "train_size", "n_seeds", "n_pairs", "n_rows",
                  "treatment_acc", "baseline_acc", "gap", "seeds_lower", "seeds_upper", "rows_lower", "rows_upper",
                  "confidence", "mcnemar_p", "discordant")
NO_PREDICTIONS = ("The run records keep no per-row predictions (records made before issue 30 do not): "
                  "there is nothing to pair row by row, and no number is given.")

_Run = tuple[Path, Mapping[str, Any]]


@dataclass
class Left:
    """What the table leaves out: pairs of runs one of whose records has no predictions, and
    the regression tasks (no right or wrong rows to count)."""

    without_predictions: list[str] = field(default_factory=list)
    regression: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)  # which runs the comparisons read (analysis.joins)


def _runs(records: Mapping[Path, Mapping[str, Any]], in_place_of: str | None
          ) -> tuple[dict[tuple, _Run], tuple[str, ...]]:
    """The records the comparisons read (:func:`promptworth.analysis.joins.comparison_runs`: the first
    train seed, a method on a backbone of its own under the model it ran in place of) by (model,
    task, method, size, data seed, train seed), and the notes of what that changed; one run twice is an error."""
    paths = list(records)
    chosen = comparison_runs(pd.DataFrame([{
        "model": r["model"], "task": r["task"], "method": r["method"], "train_seed": int(r["train_seed"]),
        "objective": (r.get("method_parts") or {}).get("objective", "")} for r in records.values()]),
        in_place_of, untrained_points=False)
    runs: dict[tuple, _Run] = {}
    for index, model in chosen.frame["model"].items() if len(paths) else ():
        path = paths[int(index)]
        record = records[path]
        key = (model, record["task"], record["method"], int(record["train_size"]), record["data_seed"],
               int(record["train_seed"]))
        if key in runs:
            raise PromptworthError(f"the same run appears twice: {runs[key][0]} and {path}")
        runs[key] = (path, record)
    return runs, chosen.notes


def _pairs(runs: Mapping[tuple, _Run], comparison: Comparison) -> dict[tuple, list[tuple[_Run, _Run]]]:
    """The pairs of runs (treatment, baseline) of one data seed and train seed, by (model, task, size)."""
    groups: dict[tuple, list[tuple[_Run, _Run]]] = {}
    for (model, task, method, size, data_seed, train_seed), run in runs.items():
        partner = runs.get((model, task, comparison.baseline, size, data_seed, train_seed))
        if method == comparison.treatment and partner is not None:
            groups.setdefault((model, task, size), []).append((run, partner))
    order = sorted(groups, key=lambda key: (key[1], key[0], key[2]))
    return {key: sorted(groups[key], key=lambda pair: _seed(pair[0][1])) for key in order}


def _seed(record: Mapping[str, Any]) -> tuple[int, int]:
    return (-1 if record["data_seed"] is None else record["data_seed"], record["train_seed"])


def _decoded(treatment: _Run, baseline: _Run, left: Left) -> tuple[RowPredictions, RowPredictions] | None:
    """Both runs' predictions, on the same rows; None (and counted in ``left``) where one has none."""
    (t_path, t_record), (b_path, b_record) = treatment, baseline
    t, b = decode(t_record), decode(b_record)
    if t is None or b is None:
        left.without_predictions.append(study_relative(t_path if t is None else b_path))
        return None
    if t.regression:
        left.regression.add(t_record["task"])
        return None
    if t.rows_sha256 != b.rows_sha256:
        raise PromptworthError(f"{t_path} and {b_path}: runs of one data seed and train seed that scored different "
                               "test rows (predictions.rows_sha256 differ): they cannot be paired row by row")
    return t, b


def _seed_rows(scored: Sequence[tuple[Mapping[str, Any], RowPredictions, RowPredictions]]) -> dict[str, SeedRows]:
    """Per data seed, the row-by-row differences averaged over its training seeds (as gaps.md
    averages a data seed's runs), on the one test set its runs scored."""
    by_seed: dict[str, list[tuple[RowPredictions, RowPredictions]]] = {}
    for record, t, b in scored:
        by_seed.setdefault(str(record["data_seed"]), []).append((t, b))
    out = {}
    for seed, runs in by_seed.items():
        if len({t.rows_sha256 for t, _ in runs}) > 1:
            raise PromptworthError(f"the runs of data seed {seed} scored different test rows: they cannot be averaged "
                                   "row by row")
        differences = np.mean([t.correct.astype(float) - b.correct.astype(float) for t, b in runs], axis=0)
        out[seed] = SeedRows(differences, runs[0][0].rows_sha256)
    return out


def _seed_accuracy(scored: Sequence[tuple[Mapping[str, Any], RowPredictions, RowPredictions]], side: int) -> float:
    """A method's accuracy: its runs' means averaged within each data seed, then over the seeds."""
    by_seed: dict[Any, list[float]] = {}
    for record, *predictions in scored:
        by_seed.setdefault(record["data_seed"], []).append(float(predictions[side].correct.mean()))
    return float(np.mean([np.mean(values) for values in by_seed.values()]))


def _size_row(comparison: Comparison, key: tuple, pairs: Sequence[tuple[_Run, _Run]], left: Left,
              confidence: float, resamples: int) -> dict[str, Any] | None:
    """One table row: the pairs of one (model, task, size) that have predictions; None without any."""
    scored, counts = [], {}
    for treatment, baseline in pairs:
        decoded = _decoded(treatment, baseline, left)
        if decoded is not None:
            record = treatment[1]
            scored.append((record, *decoded))
            counts[run_seed(record["data_seed"], record["train_seed"])] = pair_counts(decoded[0].correct,
                                                                                     decoded[1].correct)
    if not scored:
        return None
    model, task, size = key
    ran_on = (pairs[0][0][1]["model"], pairs[0][1][1]["model"])
    model = model if ran_on[0] == ran_on[1] else " vs ".join(ran_on)  # a method on a backbone of its own
    by_seed = _seed_rows(scored)
    intervals = gap_intervals(by_seed, confidence, resamples)
    return {"model": model, "task": task, "treatment": comparison.treatment, "baseline": comparison.baseline,
            "train_size": size, "n_seeds": len(by_seed), "n_pairs": len(scored),
            "n_rows": min(c.rows for c in counts.values()),
            "treatment_acc": _seed_accuracy(scored, 0), "baseline_acc": _seed_accuracy(scored, 1),
            "gap": intervals.gap, "seeds_lower": intervals.seeds[0], "seeds_upper": intervals.seeds[1],
            "rows_lower": intervals.rows[0], "rows_upper": intervals.rows[1], "confidence": confidence,
            "mcnemar_p": " ".join(f"{seed}={c.mcnemar_p:.6g}" for seed, c in counts.items()),
            "discordant": " ".join(f"{seed}={c.treatment_only}/{c.baseline_only}" for seed, c in counts.items())}


def paired_frame(records: Mapping[Path, Mapping[str, Any]], comparisons: Sequence[Comparison],
                 confidence: float = 0.95, resamples: int = 2000, in_place_of: str | None = None
                 ) -> tuple[pd.DataFrame, Left]:
    """Every comparison's paired rows (one per model, task and size where both methods have runs
    of a data seed and train seed that keep predictions) and what was left out (with the notes of
    which runs the comparisons read)."""
    check_confidence(confidence)
    if resamples < 1:
        raise PromptworthError(f"--resamples must be positive, got {resamples}")
    (runs, notes), rows = _runs(records, in_place_of), []
    left = Left(notes=list(notes))
    present = {key[2] for key in runs}
    for comparison in comparisons:
        missing = {comparison.treatment, comparison.baseline} - present
        if missing:
            raise PromptworthError(f"comparison {comparison.label}: method(s) {', '.join(map(repr, sorted(missing)))} "
                                   f"not in the records; methods present: {', '.join(sorted(present))}")
    for comparison in comparisons:
        for key, pairs in _pairs(runs, comparison).items():
            row = _size_row(comparison, key, pairs, left, confidence, resamples)
            if row is not None:
                rows.append(row)
    return pd.DataFrame(rows, columns=list(PAIRED_COLUMNS)), left


def _p_values(text: str) -> str:
    """``1-1=0.0213 2-1=0.5`` -> ``0.021, 0.5`` (two significant digits, in the seeds' order)."""
    return ", ".join(f"{float(item.partition('=')[2]):.2g}" for item in text.split())


def _left_notes(left: Left) -> str:
    notes = ""
    if left.without_predictions:
        shown = ", ".join(left.without_predictions[:3]) + (" and more" if len(left.without_predictions) > 3 else "")
        notes += (f"\n{len(left.without_predictions)} pair(s) of runs left out: a record without per-row predictions "
                  f"(made before issue 30): {shown}.\n")
    if left.regression:
        notes += (f"\nNot paired: {', '.join(sorted(left.regression))} (a regression task: no rows right or "
                  "wrong to count).\n")
    return notes + note_lines(left.notes)


def paired_markdown(frame: pd.DataFrame, left: Left) -> str:
    """The table for people (accuracy x100), with how to read it; where no pair of runs keeps
    predictions, only a sentence that says so."""
    if frame.empty:
        return NO_PREDICTIONS + "\n" + _left_notes(left)
    confidence = f"{frame['confidence'].iloc[0]:.0%}"
    header = ["comparison", "model", "task", "train_size", "seeds", "rows", "treatment", "baseline",
              f"gap [{confidence} CI, seeds]", f"[{confidence} CI, seeds + rows]", "McNemar p (per run pair)"]
    rows = [[f"{r.treatment} vs {r.baseline}", str(r.model), str(r.task), str(r.train_size), str(r.n_seeds),
             str(r.n_rows), format_score(r.treatment_acc, np.nan), format_score(r.baseline_acc, np.nan),
             format_gap(r.gap, r.seeds_lower, r.seeds_upper), format_gap(r.gap, r.rows_lower, r.rows_upper),
             _p_values(r.mcnemar_p)] for r in frame.itertuples()]
    note = (f"\nAccuracy x100 on the test rows both methods' runs scored, paired on the data seed and training seed "
            "(a data seed's training seeds averaged); gap = treatment - baseline, the mean over the data seeds. "
            f"Percentile bootstrap intervals: over the data seeds, each seed's rows as they are; over the data seeds "
            "and the test rows, one row resample per test set shared by every seed that scored it (the seeds share "
            "one test set: its sampling error does not average out over them). McNemar: the exact two-sided test of "
            "each pair of runs (in the order of their seeds, data seed then training seed; paired.csv names them); "
            "not combined, since the pairs share their rows and their tests are not independent: the "
            "seeds + rows interval is the combined statement.\n")
    if (frame["n_seeds"] < MIN_INFORMATIVE_SEEDS).any():
        note += (f"\nWith fewer than {MIN_INFORMATIVE_SEEDS} data seeds the bootstrap over seeds has few distinct "
                 "resamples (2 seeds: 3; one seed: none, the seeds interval is the gap itself): read the seeds "
                 "interval as their spread; the seeds + rows interval then mostly shows the test rows' share.\n")
    return markdown(header, rows) + note + _left_notes(left)
