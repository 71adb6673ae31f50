"""Evaluation metrics (pure numpy): acc, f1 (binary, class 1 positive), macro_f1, mcc, pearson."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

CLASSIFICATION = ("acc", "f1", "macro_f1", "mcc")
REGRESSION = ("pearson", "spearman")


def accuracy(gold: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(gold == pred)) if len(gold) else 0.0


def _f1(gold: np.ndarray, pred: np.ndarray, positive: int) -> float:
    tp = np.sum((pred == positive) & (gold == positive))
    fp = np.sum((pred == positive) & (gold != positive))
    fn = np.sum((pred != positive) & (gold == positive))
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0


def f1(gold: np.ndarray, pred: np.ndarray) -> float:
    return _f1(gold, pred, 1)


def macro_f1(gold: np.ndarray, pred: np.ndarray, num_labels: int) -> float:
    return float(np.mean([_f1(gold, pred, label) for label in range(num_labels)]))


def mcc(gold: np.ndarray, pred: np.ndarray, num_labels: int) -> float:
    """Matthews correlation, multiclass (Gorodkin's R_K); 0 when undefined (one class predicted)."""
    confusion = np.zeros((num_labels, num_labels), dtype=np.float64)
    np.add.at(confusion, (gold, pred), 1)
    t, p = confusion.sum(1), confusion.sum(0)
    c, s = np.trace(confusion), confusion.sum()
    denominator = math.sqrt(s**2 - p @ p) * math.sqrt(s**2 - t @ t)
    return float((c * s - t @ p) / denominator) if denominator else 0.0


def pearson(gold: np.ndarray, pred: np.ndarray) -> float:
    if len(gold) < 2 or np.std(gold) == 0 or np.std(pred) == 0:
        return 0.0
    return float(np.corrcoef(gold, pred)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values))
    for value in np.unique(values):  # average ranks of ties
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(gold: np.ndarray, pred: np.ndarray) -> float:
    return pearson(_ranks(gold), _ranks(pred))


def compute(gold: Sequence[float], pred: Sequence[float], num_labels: int | None) -> dict[str, float]:
    """Every applicable metric: classification (``num_labels``) or regression (``None``)."""
    gold_a, pred_a = np.asarray(gold), np.asarray(pred)
    if num_labels is None:
        return {"pearson": pearson(gold_a, pred_a), "spearman": spearman(gold_a, pred_a)}
    gold_a, pred_a = gold_a.astype(np.int64), pred_a.astype(np.int64)
    out = {"acc": accuracy(gold_a, pred_a)}
    if num_labels == 2:
        out["f1"] = f1(gold_a, pred_a)
    out["macro_f1"] = macro_f1(gold_a, pred_a, num_labels)
    out["mcc"] = mcc(gold_a, pred_a, num_labels)
    return out
