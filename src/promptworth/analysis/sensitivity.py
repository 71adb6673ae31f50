"""How much a data advantage depends on the estimator and the ladder: per comparison, model and task,
the advantage recomputed under the other reduction over seeds (max vs mean), without the untrained
point (size 0), leaving out each interior size, and on unmatched ladders (each curve on its own
sizes, as the second edition computed it), beside the headline.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import pandas as pd

from promptworth.analysis.estimate import AdvantageOptions
from promptworth.analysis.advantage import AdvantageResult, Comparison, compare, comparison_matrices
from promptworth.analysis.curves import MODEL, RunMatrix, check_tidy, matched_ladder
from promptworth.analysis.joins import models_cell

HEADLINE = "headline"
SENSITIVITY_COLUMNS = ("model", "task", "treatment", "baseline", "variant", "advantage", "lower", "upper", "std",
                       "bound", "bound_kind", "interval", "ladder", "reason")


def variants(matrices: dict[str, RunMatrix], options: AdvantageOptions) -> dict[str, AdvantageOptions]:
    """The options of each variant, by name (the headline first)."""
    other = "mean" if options.reduction == "max" else "max"
    out = {HEADLINE: options, f"{other} over seeds": replace(options, reduction=other)}
    if options.zero_point and any(m.has_untrained_point() for m in matrices.values()):
        out["no size 0"] = replace(options, zero_point=False)
    trained = [s for s in matched_ladder(matrices, zero_point=False).sizes if s not in options.leave_out]
    for size in trained[1:-1]:  # interior sizes: the ends make the window
        out[f"without {size:g}"] = replace(options, leave_out=(*options.leave_out, size))
    if options.matched and any(matched_ladder(matrices).dropped.values()):
        out["unmatched ladders"] = replace(options, matched=False)
    return out


def sensitivity_frame(results: pd.DataFrame, comparisons: Sequence[Comparison],
                      options: AdvantageOptions = AdvantageOptions()) -> pd.DataFrame:
    """One row per comparison, model, task that ran the comparison's methods, and variant."""
    tidy = check_tidy(results)
    rows = []
    for comparison in comparisons:
        methods = list(dict.fromkeys((comparison.treatment, comparison.baseline, *(options.window_from or ()))))
        for (model, task), runs in tidy.groupby([MODEL, "task"], sort=False):
            matrices = comparison_matrices(runs, methods)
            if len(matrices) < len(methods):
                continue
            named = models_cell(runs, comparison.treatment, comparison.baseline, str(model))
            for name, variant in variants(matrices, options).items():
                result = compare(matrices, comparison.treatment, comparison.baseline, variant, str(task), named)
                rows.append(_row(result, name))
    return pd.DataFrame(rows, columns=list(SENSITIVITY_COLUMNS))


def _row(result: AdvantageResult, variant: str) -> dict[str, object]:
    return {"variant": variant, **{k: getattr(result, k) for k in SENSITIVITY_COLUMNS if k != "variant"}}
