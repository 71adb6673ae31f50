"""Score curves: a tidy table of runs to one method's run matrix, the matrix to a monotone curve,
and the questions the data advantage asks of curves (score window, levels, points needed).

A run matrix holds one method's scores on one task of one model: a row per training-set size, a
column per run, and for each run its resampling unit (its data seed: the runs of two methods on one
data seed share that seed's split). Everything here is pure: tables and arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from promptworth.errors import PromptworthError

TIDY_COLUMNS = ("task", "method", "train_size", "seed", "score")
# optional: a table without it holds one model's runs (read as the model "")
MODEL = "model"
# optional: the run's data seed, the unit a bootstrap resamples (without it: the run's seed)
DATA_SEED = "data_seed"
REDUCTIONS = ("max", "mean", "median")
X_SCALES = ("linear", "log")
WINDOWS = ("overlap", "full")
ZERO_SHOT = 0  # the untrained point: only methods that predict untrained have it


@dataclass(frozen=True)
class Curve:
    """A monotone score curve: strictly increasing sizes, non-decreasing scores."""

    sizes: np.ndarray
    scores: np.ndarray

    @property
    def lo(self) -> float:
        return float(self.scores[0])

    @property
    def hi(self) -> float:
        return float(self.scores[-1])


@dataclass(frozen=True)
class RunMatrix:
    """One method's scores: ``scores[i, j]`` is run ``seeds[j]`` at ``sizes[i]`` (NaN: no score);
    ``units[j]`` is the data seed run j trained on."""

    sizes: np.ndarray
    scores: np.ndarray
    seeds: tuple[str, ...]
    units: tuple[str, ...]

    def at_sizes(self, keep: np.ndarray) -> "RunMatrix":
        """The rows whose size is in ``keep``."""
        rows = np.isin(self.sizes, keep)
        return RunMatrix(self.sizes[rows], self.scores[rows], self.seeds, self.units)

    def without_seed(self, seed: str) -> "RunMatrix":
        columns = [j for j, s in enumerate(self.seeds) if s != seed]
        return RunMatrix(self.sizes, self.scores[:, columns], tuple(self.seeds[j] for j in columns),
                         tuple(self.units[j] for j in columns))

    def resampled(self, copies: dict[str, int]) -> "RunMatrix":
        """Each run repeated as many times as its unit was drawn (``copies``: unit -> count)."""
        repeats = np.array([copies.get(unit, 0) for unit in self.units], dtype=int)
        columns = np.repeat(np.arange(len(self.seeds)), repeats)
        return RunMatrix(self.sizes, self.scores[:, columns], tuple(self.seeds[j] for j in columns),
                         tuple(self.units[j] for j in columns))

    def has_untrained_point(self) -> bool:
        rows = self.sizes == ZERO_SHOT
        return bool(rows.any() and not np.isnan(self.scores[rows]).all())

    def trained_sizes(self) -> set[float]:
        """The sizes above 0 at which some run has a score."""
        scored = ~np.isnan(self.scores).all(axis=1) if self.scores.size else np.zeros(len(self.sizes), bool)
        return {float(s) for s in self.sizes[scored] if s > ZERO_SHOT}


# ---------------------------------------------------------------------------------------------
# Tidy tables


def check_tidy(frame: pd.DataFrame, source: str = "results") -> pd.DataFrame:
    """The tidy columns with the right types, and a ``model`` column ("" where the table has
    none); NaN scores dropped (a missing value is no run), a missing, negative or fractional
    train_size or an infinite number is an error."""
    missing = [c for c in TIDY_COLUMNS if c not in frame.columns]
    if missing:
        raise PromptworthError(f"{source}: missing column(s) {', '.join(missing)}; need {', '.join(TIDY_COLUMNS)}")
    out = frame.copy()
    for column in ("task", "method", "seed"):
        blank = out[column].isna() | (out[column].astype(str).str.strip() == "")
        if blank.any():
            raise PromptworthError(f"{source}: {int(blank.sum())} row(s) without a {column}")
    out["task"] = out["task"].astype(str)
    out["method"] = out["method"].astype(str)
    out["seed"] = out["seed"].astype(str)
    out[MODEL] = out[MODEL].fillna("").astype(str) if MODEL in out.columns else ""
    try:
        out["train_size"] = pd.to_numeric(out["train_size"], errors="raise")
        out["score"] = pd.to_numeric(out["score"], errors="raise")
    except (ValueError, TypeError) as exc:
        raise PromptworthError(f"{source}: train_size and score must be numbers ({exc})") from None
    if out["train_size"].isna().any():
        raise PromptworthError(f"{source}: {int(out['train_size'].isna().sum())} row(s) without a train_size")
    infinite = np.isinf(out["score"].astype(float)) | np.isinf(out["train_size"].astype(float))
    if infinite.any():
        raise PromptworthError(f"{source}: {int(infinite.sum())} row(s) with an infinite score or train_size")
    sizes = out["train_size"].astype(float)
    not_counts = (sizes < 0) | (sizes != np.floor(sizes))
    if not_counts.any():
        raise PromptworthError(
            f"{source}: train_size {sizes[not_counts].iloc[0]:g} is not a number of training examples (0, 1, 2, ...)"
        )
    out = out[out["score"].notna()]
    if out.empty:
        raise PromptworthError(f"{source}: no runs with a score")
    return out


RUN_KEY = [MODEL, "task", "method", "train_size", "seed"]


def first_duplicate_run(frame: pd.DataFrame) -> pd.Series | None:
    """The first row whose (model, task, method, train_size, seed) another row has too, or None
    (a table without a model column holds one model)."""
    duplicated = frame.duplicated([c for c in RUN_KEY if c in frame.columns], keep=False)
    return frame[duplicated].iloc[0] if duplicated.any() else None


def check_unique_runs(frame: pd.DataFrame) -> None:
    """One run per (model, task, method, train_size, seed): curves need it."""
    first = first_duplicate_run(frame)
    if first is not None:
        model = f" of model {first[MODEL]!r}" if first.get(MODEL) else ""
        raise PromptworthError(
            f"several runs of {first['method']!r}{model} on {first['task']!r} share train_size "
            f"{first['train_size']} and seed {first['seed']!r} (several templates? filter first)"
        )


def run_units(runs: pd.DataFrame) -> pd.Series:
    """Per row, the unit a bootstrap resamples: the data seed where the table has one (blank
    cells: the seed), else the seed."""
    seeds = runs["seed"].astype(str)
    if DATA_SEED not in runs.columns:
        return seeds
    data_seeds = runs[DATA_SEED].fillna("").astype(str).str.strip()
    return data_seeds.where(data_seeds != "", seeds)


def run_matrix(runs: pd.DataFrame) -> RunMatrix:
    """The run matrix of one method's runs on one task of one model (tidy rows)."""
    check_unique_runs(runs)
    table = runs.pivot(index="train_size", columns="seed", values="score").sort_index()
    unit_of = dict(zip(runs["seed"].astype(str), run_units(runs)))
    seeds = tuple(str(s) for s in table.columns)
    return RunMatrix(table.index.to_numpy(dtype=float), table.to_numpy(dtype=float), seeds,
                     tuple(unit_of[s] for s in seeds))


# ---------------------------------------------------------------------------------------------
# Curves


def reduce_runs(matrix: RunMatrix, reduction: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """(sizes, one score per size): the runs reduced per size, NaN ignored; sizes without a score dropped."""
    if reduction not in REDUCTIONS:
        raise PromptworthError(f"unknown reduction {reduction!r}; choose one of {', '.join(REDUCTIONS)}")
    scored = ~np.isnan(matrix.scores).all(axis=1) if matrix.scores.shape[1] else np.zeros(len(matrix.sizes), bool)
    reduce = {"max": np.nanmax, "mean": np.nanmean, "median": np.nanmedian}[reduction]
    values = reduce(matrix.scores[scored], axis=1) if scored.any() else np.array([], float)
    return matrix.sizes[scored], np.asarray(values, dtype=float)


def monotone_curve(sizes: np.ndarray, values: np.ndarray) -> Curve:
    """Running maximum over increasing sizes: the best score reached with at most that many points."""
    order = np.argsort(sizes, kind="stable")
    return Curve(sizes=np.asarray(sizes, float)[order], scores=np.maximum.accumulate(np.asarray(values, float)[order]))


def build_curve(matrix: RunMatrix, reduction: str = "mean", trained_only: bool = False) -> Curve | None:
    """The monotone curve of a run matrix (``trained_only``: of its sizes above 0, the running
    maximum taken without the untrained point); None when no size has a score."""
    sizes, values = reduce_runs(matrix, reduction)
    if trained_only:
        keep = sizes > ZERO_SHOT
        sizes, values = sizes[keep], values[keep]
    return monotone_curve(sizes, values) if len(sizes) else None


def score_window(curves: Sequence[Curve], mode: str = "overlap") -> tuple[float, float]:
    """``overlap``: [max of minima, min of maxima] (may be empty: lo >= hi); ``full``: the union."""
    if mode == "overlap":
        return max(c.lo for c in curves), min(c.hi for c in curves)
    if mode == "full":
        return min(c.lo for c in curves), max(c.hi for c in curves)
    raise PromptworthError(f"unknown window {mode!r}; choose one of {', '.join(WINDOWS)}")


def score_levels(lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` evenly spaced levels strictly inside (lo, hi)."""
    return np.linspace(lo, hi, n + 2)[1:-1]


def points_needed(curve: Curve, levels: np.ndarray, x_scale: str = "linear") -> np.ndarray:
    """Per level, the smallest size at which the piecewise-linear curve reaches it.

    The first point at or above the level and its predecessor bracket the crossing, so flat
    stretches before it are skipped. Levels at or below the curve's first score take its first
    size; levels it never reaches take its last size (clamping: see :func:`clamped_levels`).
    """
    x = np.log(curve.sizes) if x_scale == "log" else curve.sizes
    y = curve.scores
    i = np.searchsorted(y, levels, side="left")  # first index with y >= level
    inside = (i > 0) & (i < len(y))
    j = np.clip(i, 1, max(len(y) - 1, 1))
    out = np.where(i == 0, x[0], x[-1]).astype(float)
    if len(y) > 1:
        x0, x1, y0, y1 = x[j - 1], x[j], y[j - 1], y[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            interp = x0 + (levels - y0) * (x1 - x0) / (y1 - y0)
        out = np.where(inside, interp, out)
    return np.exp(out) if x_scale == "log" else out


def clamped_levels(curve: Curve, levels: np.ndarray) -> np.ndarray:
    """The levels the curve never reaches within its sizes (counted at its largest size)."""
    return levels > curve.hi


def zero_segment_levels(curve: Curve, levels: np.ndarray) -> np.ndarray:
    """The levels the curve reaches on its straight segment from the untrained point (size 0) to
    its first trained size: where nothing was measured, only drawn."""
    if len(curve.sizes) < 2 or curve.sizes[0] != ZERO_SHOT:
        return np.zeros(len(levels), bool)
    return (levels > curve.scores[0]) & (levels <= curve.scores[1])


# ---------------------------------------------------------------------------------------------
# Ladders


@dataclass(frozen=True)
class Ladder:
    """The sizes a comparison uses: the trained sizes every method involved ran (and the untrained
    point of the methods that have it), and per method the sizes dropped because another did not run them."""

    sizes: tuple[float, ...]
    dropped: dict[str, tuple[float, ...]]

    def note(self) -> str:
        """``dropped, not run by every method compared: head 32, 320``, or ""."""
        parts = [f"{method} {', '.join(f'{s:g}' for s in sizes)}" for method, sizes in self.dropped.items() if sizes]
        return f"dropped, not run by every method compared: {'; '.join(parts)}" if parts else ""


def matched_ladder(matrices: dict[str, RunMatrix], zero_point: bool = True, leave_out: Sequence[float] = ()) -> Ladder:
    """The trained sizes all ``matrices`` have a score at, less ``leave_out``; size 0 where
    ``zero_point`` (each method keeps its own untrained point: a head has none to share)."""
    shared = set.intersection(*(m.trained_sizes() for m in matrices.values())) - {float(s) for s in leave_out}
    untrained = {float(ZERO_SHOT)} if zero_point and any(m.has_untrained_point() for m in matrices.values()) else set()
    sizes = sorted(shared | untrained)
    dropped = {method: tuple(sorted(m.trained_sizes() - shared - {float(s) for s in leave_out}))
               for method, m in matrices.items()}
    return Ladder(tuple(sizes), dropped)


def on_ladder(matrices: dict[str, RunMatrix], ladder: Ladder) -> dict[str, RunMatrix]:
    return {method: m.at_sizes(np.array(ladder.sizes)) for method, m in matrices.items()}
