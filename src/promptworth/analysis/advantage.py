"""The data advantage of one method over another (Le Scao & Rush, NAACL 2021).

How many training points the baseline needs, on average over score levels, beyond what the
treatment needs to reach the same test score. With the defaults this is their published procedure
(``naacl_demo/demo_utils.py`` of TevenLeScao/pet), see ``docs/analysis.md``:

1. per method and training-set size, reduce the runs (``max`` over seeds), then make the curve
   monotone with a running maximum over increasing sizes;
2. score window: from the larger of the curves' minima to the smaller of their maxima;
3. ``levels`` evenly spaced interior levels of the window (both endpoints excluded);
4. per level and curve, the size at which the piecewise-linear curve first reaches the level,
   interpolated linearly in raw size (flat stretches are skipped);
5. advantage = mean over levels of (baseline's size - treatment's size);
6. error bar: the standard deviation (``ddof=0``) of the advantage recomputed leaving out one
   run of each method involved, over all combinations.

Each model's runs make curves of their own: a table of several models gives an advantage per
(model, task). Everything here is pure: tidy tables in, numbers and small dataclasses out.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from promptworth.analysis.results import check_number_column, first_line
from promptworth.errors import PromptworthError

TIDY_COLUMNS = ("task", "method", "train_size", "seed", "score")
# optional: a table without it holds one model's runs (read as the model "")
MODEL = "model"
REDUCTIONS = ("max", "mean", "median")
X_SCALES = ("linear", "log")
WINDOWS = ("overlap", "full")
# Score levels are held in memory once per leave-one-out estimate (the paper uses 1,000).
MAX_LEVELS = 1_000_000


@dataclass(frozen=True)
class AdvantageOptions:
    """How the advantage is computed; the defaults are the published procedure."""

    reduction: str = "max"
    x_scale: str = "linear"
    window: str = "overlap"
    levels: int = 1000
    ddof: int = 0
    # Methods whose curves define the score window (None: the two compared). The paper's
    # "prompt vs null" and "null vs head" numbers use the prompt-vs-head window.
    window_from: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("reduction", self.reduction, REDUCTIONS),
            ("x scale", self.x_scale, X_SCALES),
            ("window", self.window, WINDOWS),
        ):
            if value not in allowed:
                raise PromptworthError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
        if not isinstance(self.levels, int) or not 1 <= self.levels <= MAX_LEVELS:
            raise PromptworthError(
                f"the number of levels must be an integer from 1 to {MAX_LEVELS:,}, got {self.levels!r}"
            )
        if self.ddof not in (0, 1):
            raise PromptworthError(f"ddof must be 0 or 1, got {self.ddof!r}")
        if self.window_from is not None and len(self.window_from) < 1:
            raise PromptworthError("window_from needs at least one method")


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
class AdvantageResult:
    """One comparison on one task of one model. ``reason`` says why ``advantage`` or ``std`` is
    NaN ("" if not)."""

    model: str
    task: str
    treatment: str
    baseline: str
    advantage: float
    std: float
    window_lo: float
    window_hi: float
    n_runs_treatment: int
    n_runs_baseline: int
    n_loo: int
    reduction: str
    x_scale: str
    window: str
    levels: int
    reason: str = ""
    # When the two curves do not overlap: a bound on the advantage, read off the curves' ends.
    # Positive: the treatment at its smallest size already beats the baseline at its largest, so
    # it is worth more than (baseline's largest - treatment's smallest size) points; negative:
    # the reverse, worth less than minus that many. NaN otherwise.
    bound: float = math.nan

    @property
    def n_runs(self) -> str:
        return f"{self.n_runs_treatment}/{self.n_runs_baseline}"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: NaN becomes None."""
        out: dict[str, object] = {}
        for key, value in asdict(self).items():
            out[key] = None if isinstance(value, float) and math.isnan(value) else value
        return out


# ---------------------------------------------------------------------------------------------
# Curves


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


def run_matrix(runs: pd.DataFrame) -> pd.DataFrame:
    """Scores of one method on one task of one model: one row per size (increasing), one column per seed."""
    check_unique_runs(runs)
    matrix = runs.pivot(index="train_size", columns="seed", values="score").sort_index()
    return matrix.astype(float)


def reduce_runs(matrix: pd.DataFrame, reduction: str = "max") -> pd.Series:
    """Per size, the runs reduced to one score (NaN ignored); sizes without a score dropped."""
    if reduction not in REDUCTIONS:
        raise PromptworthError(f"unknown reduction {reduction!r}; choose one of {', '.join(REDUCTIONS)}")
    reduced = getattr(matrix, reduction)(axis=1, skipna=True)
    return reduced.dropna()


def monotone_curve(reduced: pd.Series) -> Curve:
    """Running maximum over increasing sizes: the best score reached with at most that many points."""
    reduced = reduced.sort_index()
    sizes = reduced.index.to_numpy(dtype=float)
    scores = np.maximum.accumulate(reduced.to_numpy(dtype=float))
    return Curve(sizes=sizes, scores=scores)


def build_curve(matrix: pd.DataFrame, reduction: str = "max") -> Curve | None:
    """The monotone curve of a run matrix; None when no size has a score."""
    reduced = reduce_runs(matrix, reduction)
    return monotone_curve(reduced) if len(reduced) else None


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
    size; levels it never reaches take its last size (clamping; only in the ``full`` window or a
    window taken from other curves).
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


def curve_advantage(
    treatment: Curve, baseline: Curve, window: tuple[float, float], options: AdvantageOptions
) -> float:
    """Mean over levels of (baseline's size - treatment's size): area between curves / height."""
    levels = score_levels(window[0], window[1], options.levels)
    gap = points_needed(baseline, levels, options.x_scale) - points_needed(treatment, levels, options.x_scale)
    return float(np.mean(gap))


# ---------------------------------------------------------------------------------------------
# One comparison with its leave-one-out error bar


def _window_problem(curves: Sequence[Curve], window: tuple[float, float], mode: str) -> str:
    lo, hi = window
    if lo < hi:
        return ""
    ranges = ", ".join(f"[{c.lo:.4g}, {c.hi:.4g}]" for c in curves)
    if mode == "full":
        return f"every curve is flat at {lo:.4g}: no score range to compare"
    if lo > hi:
        return f"score ranges do not overlap ({ranges})"
    return f"the shared score range has zero height ({ranges}; flat or single-size curve)"


def no_overlap_bound(treatment: Curve, baseline: Curve) -> float:
    """A bound on the advantage of two curves that do not overlap (NaN when they do)."""
    if treatment.lo > baseline.hi:
        return float(baseline.sizes[-1] - treatment.sizes[0])
    if baseline.lo > treatment.hi:
        return -float(treatment.sizes[-1] - baseline.sizes[0])
    return math.nan


def _pair_bound(matrices: dict[str, pd.DataFrame], treatment: str, baseline: str, reduction: str) -> float:
    curves = [build_curve(matrices[m], reduction) for m in (treatment, baseline)]
    if any(curve is None for curve in curves):
        return math.nan
    return no_overlap_bound(*curves)


def _estimate(
    matrices: dict[str, pd.DataFrame], treatment: str, baseline: str, options: AdvantageOptions
) -> tuple[float, tuple[float, float], str]:
    """Point estimate from run matrices by method: (advantage, window, reason if NaN)."""
    curves: dict[str, Curve] = {}
    for method, matrix in matrices.items():
        curve = build_curve(matrix, options.reduction)
        if curve is None:
            return math.nan, (math.nan, math.nan), f"no scores of {method!r}"
        curves[method] = curve
    window_methods = options.window_from or (treatment, baseline)
    window_curves = [curves[m] for m in window_methods]
    if options.window == "full":
        window_curves = window_curves + [curves[treatment], curves[baseline]]
    window = score_window(window_curves, options.window)
    problem = _window_problem(window_curves, window, options.window)
    if problem:
        return math.nan, window, problem
    return curve_advantage(curves[treatment], curves[baseline], window, options), window, ""


def compare(
    matrices: dict[str, pd.DataFrame],
    treatment: str,
    baseline: str,
    options: AdvantageOptions = AdvantageOptions(),
    task: str = "",
    model: str = "",
) -> AdvantageResult:
    """Advantage of ``treatment`` over ``baseline`` from run matrices (see :func:`run_matrix`).

    ``matrices`` holds the two compared methods and any ``options.window_from`` methods. The
    error bar leaves out one run of every method involved (all combinations: 4 x 4 for two
    methods with four runs, 4 x 4 x 4 when a third method sets the window, which is what
    reproduces the paper's error bars). It needs two runs of each such method, else it is NaN.
    """
    if treatment == baseline:
        raise PromptworthError(f"treatment and baseline are the same method ({treatment!r})")
    involved = list(dict.fromkeys((treatment, baseline, *(options.window_from or ()))))
    absent = [m for m in involved if m not in matrices]
    if absent:
        raise PromptworthError(f"no runs of {', '.join(map(repr, absent))}")
    matrices = {m: matrices[m] for m in involved}
    advantage, window, reason = _estimate(matrices, treatment, baseline, options)
    seeds = {m: list(matrices[m].columns) for m in involved}
    loo: list[float] = []
    if not reason and min(len(s) for s in seeds.values()) < 2:
        reason = "std needs at least two runs of each method (leave-one-out)"
    elif not reason:
        for left_out in itertools.product(*seeds.values()):
            reduced = {m: matrices[m].drop(columns=[seed]) for m, seed in zip(involved, left_out)}
            loo.append(_estimate(reduced, treatment, baseline, options)[0])
    bound = _pair_bound(matrices, treatment, baseline, options.reduction) if math.isnan(advantage) else math.nan
    finite = [v for v in loo if not math.isnan(v)]
    std = float(np.std(finite, ddof=options.ddof)) if len(finite) > max(options.ddof, 0) else math.nan
    if loo and len(finite) < len(loo):
        note = f"{len(loo) - len(finite)} of {len(loo)} leave-one-out estimates undefined, std over the rest"
        reason = f"{reason}; {note}" if reason else note
    return AdvantageResult(
        model=model, task=task, treatment=treatment, baseline=baseline, advantage=advantage, std=std,
        window_lo=float(window[0]), window_hi=float(window[1]),
        n_runs_treatment=len(seeds[treatment]), n_runs_baseline=len(seeds[baseline]), n_loo=len(finite),
        reduction=options.reduction, x_scale=options.x_scale, window=options.window,
        levels=options.levels, reason=reason, bound=bound,
    )


def check_log_sizes(runs: pd.DataFrame, options: AdvantageOptions) -> None:
    """The log x scale interpolates in log size: a zero-shot run (size 0) has none."""
    if options.x_scale == "log" and (runs["train_size"] <= 0).any():
        raise PromptworthError("the log x scale needs positive training-set sizes (drop the zero-shot runs)")


def advantage_table(
    results: pd.DataFrame,
    treatment: str,
    baseline: str,
    options: AdvantageOptions = AdvantageOptions(),
    tasks: Iterable[str] | None = None,
) -> list[AdvantageResult]:
    """One :class:`AdvantageResult` per model and task (each in first-seen order; per model, the
    tasks it has runs of) of a tidy results table.

    A task lacking one of the methods gets NaN with the reason; a method absent from the whole
    table, or a requested task absent from it, is an error.
    """
    tidy = check_tidy(results)
    window_methods = tuple(options.window_from or ())
    needed = list(dict.fromkeys((treatment, baseline, *window_methods)))
    known = list(dict.fromkeys(tidy["method"]))
    unknown = [m for m in needed if m not in known]
    if unknown:
        raise PromptworthError(
            f"method(s) {', '.join(map(repr, unknown))} not in the results; methods present: {', '.join(known)}"
        )
    all_tasks = list(dict.fromkeys(tidy["task"]))
    chosen = list(tasks) if tasks else all_tasks
    absent = [t for t in chosen if t not in all_tasks]
    if absent:
        raise PromptworthError(f"task(s) {', '.join(absent)} not in the results; tasks present: {', '.join(all_tasks)}")
    out = []
    for model, of_model in tidy.groupby(MODEL, sort=False):
        for task in (t for t in chosen if (of_model["task"] == t).any()):
            rows = of_model[(of_model["task"] == task) & of_model["method"].isin(needed)]
            check_log_sizes(rows, options)
            matrices = {m: run_matrix(rows[rows["method"] == m]) for m in needed if (rows["method"] == m).any()}
            missing = [m for m in needed if m not in matrices]
            if missing:
                reason = f"no runs of {', '.join(missing)}"
                out.append(_undefined(str(model), task, treatment, baseline, matrices, options, reason))
                continue
            out.append(compare(matrices, treatment, baseline, options, task=task, model=str(model)))
    return out


def _undefined(
    model: str, task: str, treatment: str, baseline: str, matrices: dict[str, pd.DataFrame], options: AdvantageOptions,
    reason: str,
) -> AdvantageResult:
    n_t = matrices[treatment].shape[1] if treatment in matrices else 0
    n_b = matrices[baseline].shape[1] if baseline in matrices else 0
    return AdvantageResult(
        model=model, task=task, treatment=treatment, baseline=baseline, advantage=math.nan, std=math.nan,
        window_lo=math.nan, window_hi=math.nan, n_runs_treatment=n_t, n_runs_baseline=n_b, n_loo=0,
        reduction=options.reduction, x_scale=options.x_scale, window=options.window,
        levels=options.levels, reason=reason,
    )


# ---------------------------------------------------------------------------------------------
# Le Scao & Rush's wandb exports

_RUN_COLUMN = re.compile(r"^(?P<model>.+?) seed (?P<seed>\d+) - (?P<key>.+)$")
_CLF = re.compile(r"^CLF (?P<backbone>\S+)$")
_PVP = re.compile(r"^PVP (?P<pattern>\d+) (?P<backbone>\S+)(?P<null> neutral verbalizer)?$")
_SIZE_COLUMN = "training_points"


def _lescao_method(model: str, pattern: int, column: str, source: str) -> tuple[str, str, str] | None:
    """(method, backbone, template name) of a wandb model name; None for other patterns."""
    if match := _CLF.match(model):
        return "head", match["backbone"], ""
    if match := _PVP.match(model):
        if int(match["pattern"]) != pattern:
            return None
        method = "null" if match["null"] else "prompt"
        return method, match["backbone"], f"pattern-{pattern}"
    raise PromptworthError(f"{source}: column {column!r}: unknown model {model!r} (expected 'CLF <model>' or 'PVP <p> <model>[ neutral verbalizer]')")


def _task_from_stem(stem: str) -> str:
    """A registry task name matching the file stem case-insensitively, else the stem itself."""
    from promptworth.data.tasks import registry  # the registry pulls in `datasets`: import late

    names = {name.lower(): name for name in registry()}
    return names.get(stem.lower(), stem)


def import_lescao(path: Path, task: str | None = None, pattern: int = 0) -> pd.DataFrame:
    """Le Scao & Rush's ``wandb_export.csv`` as a tidy table.

    Columns: task, method, model, template_name, train_size, seed, metric, score. ``CLF <model>``
    is ``head``, ``PVP <pattern> <model>`` is ``prompt`` and ``PVP <pattern> <model> neutral
    verbalizer`` is ``null``; other patterns, ``_step`` and the ``__MIN``/``__MAX`` columns are
    ignored; empty cells are dropped (no run); text or an infinite number in a score or
    ``training_points`` cell is an error naming the line and column.
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise PromptworthError(f"{source}: no such file")
    if pattern < 0:
        raise PromptworthError(f"--pattern must be a PVP pattern number (0, 1, ...), got {pattern}")
    try:
        frame = pd.read_csv(path)
    except OSError as exc:
        raise PromptworthError(f"{source}: cannot read ({exc.strerror or exc})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PromptworthError(f"{source}: not a readable CSV ({first_line(exc)})") from None
    if _SIZE_COLUMN not in frame.columns:
        raise PromptworthError(f"{source}: no {_SIZE_COLUMN!r} column; not a Le Scao & Rush wandb export")
    sizes = check_number_column(frame[_SIZE_COLUMN], _SIZE_COLUMN, source, required=True)
    for row, size in enumerate(sizes):
        if size < 0 or size != int(size):
            raise PromptworthError(f"{source}: line {row + 2}, column {_SIZE_COLUMN!r}: {size:g} is not a number of points")
    task = task or _task_from_stem(path.stem)
    records = []
    metrics: set[str] = set()
    patterns: set[int] = set()
    for column in frame.columns:
        match = _RUN_COLUMN.match(column)
        if not match or match["key"].endswith(("__MIN", "__MAX")) or not match["key"].startswith("test-"):
            continue
        if pvp := _PVP.match(match["model"]):
            patterns.add(int(pvp["pattern"]))
        mapped = _lescao_method(match["model"], pattern, column, source)
        if mapped is None:
            continue
        method, backbone, template_name = mapped
        metric = match["key"].removeprefix("test-")
        metrics.add(metric)
        scores = check_number_column(frame[column], column, source)  # empty: no run; text or inf: an error
        for size, score in zip(sizes, scores):
            if pd.notna(score):
                records.append((task, method, backbone, template_name, int(size), match["seed"], metric, float(score)))
    if patterns and pattern not in patterns:
        raise PromptworthError(
            f"{source}: no runs of pattern {pattern} (patterns here: {', '.join(map(str, sorted(patterns)))})"
        )
    if len(metrics) > 1:
        raise PromptworthError(f"{source}: several test metrics ({', '.join(sorted(metrics))}); expected one")
    if not records:
        raise PromptworthError(f"{source}: no scores of 'CLF' or pattern {pattern} runs")
    columns = ["task", "method", "model", "template_name", "train_size", "seed", "metric", "score"]
    tidy = pd.DataFrame.from_records(records, columns=columns)
    return tidy.sort_values(["method", "train_size", "seed"], kind="stable").reset_index(drop=True)
