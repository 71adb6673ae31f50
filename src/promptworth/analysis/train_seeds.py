"""The training seed's share of the spread (train_seeds.md, train_seeds.csv): for the methods that
ran two or more train seeds on a data seed, per model, task, method and size, the spread between
data seeds (their first train seed's runs, as every other table reads them) beside the spread
between the train seeds of one data seed. docs/analysis.md says how to read it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from promptworth.analysis.curves import MODEL, ZERO_SHOT, check_tidy, run_units
from promptworth.analysis.joins import words
from promptworth.analysis.table_format import MISSING, markdown

TRAIN_SEEDS_COLUMNS = ("model", "task", "method", "train_size", "first_train_seed", "n_data_seeds", "sd_data_seeds",
                       "n_paired", "mean_abs_difference", "sd_train_seeds", "train_share")


def several_train_seeds(results: pd.DataFrame) -> bool:
    """Whether some run of the results has a sibling of another train seed (same model, task,
    method, size and data seed): the table applies."""
    if "train_seed" not in results.columns or "data_seed" not in results.columns:
        return False
    keys = results.reindex(columns=[MODEL, "task", "method", "train_size", "data_seed"]).fillna("").astype(str)
    return bool(results.groupby([keys[c] for c in keys.columns])["train_seed"].nunique().gt(1).any())


def _size_row(runs: pd.DataFrame) -> dict[str, float]:
    """One size's spreads: the SD of the first train seed's scores over data seeds (ddof 1); per
    data seed with several train seeds, the mean absolute difference of each two of them, and the
    pooled within-seed SD (its variance: the mean of the seeds' variances, ddof 1)."""
    first = int(runs["train_seed"].min())
    firsts = runs.loc[runs["train_seed"] == first, "score"].to_numpy(float)
    differences, variances = [], []
    for _, scores in runs.groupby("unit", sort=False)["score"]:
        if len(scores) > 1:
            values = scores.to_numpy(float)
            differences.append(np.mean([abs(a - b) for a, b in itertools.combinations(values, 2)]))
            variances.append(float(np.var(values, ddof=1)))
    sd_data = float(np.std(firsts, ddof=1)) if len(firsts) > 1 else math.nan
    sd_train = math.sqrt(np.mean(variances)) if variances else math.nan
    return {"first_train_seed": first, "n_data_seeds": len(firsts), "sd_data_seeds": sd_data,
            "n_paired": len(differences), "mean_abs_difference": float(np.mean(differences)) if differences else math.nan,
            "sd_train_seeds": sd_train, "train_share": sd_train**2 / sd_data**2 if sd_data > 0 else math.nan}


def train_seeds_frame(results: pd.DataFrame) -> pd.DataFrame:
    """A row per model, task, method and size whose runs have several train seeds on a data seed."""
    tidy = check_tidy(results)
    tidy = tidy.assign(unit=run_units(tidy), train_seed=pd.to_numeric(tidy["train_seed"]))
    rows = []
    for (model, task, method), runs in tidy.groupby([MODEL, "task", "method"], sort=False):
        if runs.groupby("unit")["train_seed"].nunique().max() < 2:
            continue
        for size, of_size in sorted(runs.groupby("train_size"), key=lambda item: item[0]):
            rows.append({"model": model, "task": task, "method": method, "train_size": int(size), **_size_row(of_size)})
    return pd.DataFrame(rows, columns=list(TRAIN_SEEDS_COLUMNS))


def _points(value: float) -> str:
    return MISSING if math.isnan(value) else f"{100 * value:.1f}"


def _share_sentence(frame: pd.DataFrame) -> str:
    """How much of the spread between data seeds the training seed's is, over the trained sizes."""
    trained = frame[(frame["train_size"] > ZERO_SHOT) & frame["train_share"].notna()]
    if trained.empty:
        return "No trained size has both spreads: no share to give."
    per_method = [f"{method} {100 * shares.median():.0f} %" for method, shares in trained.groupby("method", sort=False)
                  ["train_share"]]
    return (f"Over the {len(trained)} trained sizes, the train seed's variance is a median "
            f"{100 * trained['train_share'].median():.0f} % of the variance between data seeds ({words(per_method)}); "
            "the rest is the split's (which examples train, which rows choose the checkpoint).")


def train_seeds_markdown(frame: pd.DataFrame) -> str:
    header = ["model", "task", "method", "train_size", "data seeds", "SD between data seeds", "data seeds with 2+",
              "mean |difference| of train seeds", "SD between train seeds", "train seed's share"]
    rows = [[str(r.model), str(r.task), str(r.method), str(r.train_size), str(r.n_data_seeds), _points(r.sd_data_seeds),
             str(r.n_paired), _points(r.mean_abs_difference), _points(r.sd_train_seeds),
             MISSING if math.isnan(r.train_share) else f"{100 * r.train_share:.0f} %"] for r in frame.itertuples()]
    firsts = words(sorted(set(frame["first_train_seed"].astype(int)))) if len(frame) else "1"
    note = (f"\nScores x100. SD between data seeds: of the runs of train seed {firsts} (one per data seed, as every "
            "other table reads them; ddof 1), so it holds the train seed's spread as well as the split's. Between "
            "train seeds: on each data seed that ran two or more, the mean absolute difference of two train seeds' "
            "scores and the SD within the data seed (its variance the mean over those data seeds, ddof 1). The train "
            "seed's share: its variance over the variance between data seeds; from so few seeds both are rough, "
            f"and a share above 100 % is noise. {_share_sentence(frame)}\n")
    return markdown(header, rows) + note
