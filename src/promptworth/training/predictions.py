"""A run's test predictions in its record (the ``predictions`` key): one per test row, in the test
set's order, with the rows' gold labels, so that two runs that scored the same rows can be paired
row by row (promptworth.analysis.paired). docs/contracts.md describes the key.

Classification (encoding ``base36``): ``predicted`` and ``gold`` are strings of one character per
row, the class index as a base-36 digit (``0``-``9``, then ``a``-``z``: up to 36 classes); SST-2's
872 rows take 872 characters each. Regression (encoding ``decimal4``): lists of numbers, the
predictions rounded to 4 decimal places, the gold values as the data gives them. ``rows`` counts
the rows and ``rows_sha256`` names them (promptworth.data.rows.rows_sha256: their fields and
labels, in order): two records scored the same rows exactly when both agree.

Records made before issue 30 have no ``predictions``; it is null for a run without test rows.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from promptworth.errors import PromptworthError

LABELS = "base36"  # classification: one base-36 digit per row
VALUES = "decimal4"  # regression: a list of numbers, predictions rounded to VALUE_DECIMALS places
ENCODINGS = (LABELS, VALUES)
VALUE_DECIMALS = 4
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
KEYS = ("rows", "rows_sha256", "encoding", "predicted", "gold")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_BASE36 = re.compile(r"[0-9a-z]*")
# How far an accuracy recomputed from the rows may differ from the recorded one (as record.METRIC_SLACK).
ACCURACY_SLACK = 1e-9


def _labels_text(labels: Sequence[float]) -> str:
    digits = []
    for label in labels:
        index = int(label)
        if index != label or not 0 <= index < len(DIGITS):
            raise PromptworthError(f"a class index of {label!r} cannot be recorded as a base-36 digit (0 to 35)")
        digits.append(DIGITS[index])
    return "".join(digits)


def encode(predicted: Sequence[float], gold: Sequence[float], rows_sha256: str, regression: bool) -> dict[str, Any]:
    """The record's ``predictions`` of a run that predicted ``predicted`` on test rows whose gold
    labels are ``gold`` (in the same order) and whose rows hash to ``rows_sha256``."""
    if len(predicted) != len(gold):
        raise AssertionError(f"{len(predicted)} predictions for {len(gold)} test rows")
    if regression:
        values: dict[str, Any] = {"predicted": [round(float(v), VALUE_DECIMALS) for v in predicted],
                                  "gold": [float(v) for v in gold]}
    else:
        values = {"predicted": _labels_text(predicted), "gold": _labels_text(gold)}
    return {"rows": len(gold), "rows_sha256": rows_sha256, "encoding": VALUES if regression else LABELS, **values}


def _check_column(value: Any, encoding: str, rows: int, key: str, where: str) -> None:
    if encoding == LABELS:
        if not isinstance(value, str) or not _BASE36.fullmatch(value):
            raise PromptworthError(f"{where}: key 'predictions.{key}' must be a string of base-36 digits (0-9, a-z), "
                                   f"one per test row, got {str(value)[:40]!r}")
    elif not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise PromptworthError(f"{where}: key 'predictions.{key}' must be a list of numbers, one per test row")
    if len(value) != rows:
        raise PromptworthError(f"{where}: key 'predictions.{key}' has {len(value)} entries, but predictions.rows "
                               f"is {rows}")


def check(record: Mapping[str, Any], where: str) -> None:
    """A record's ``predictions`` (absent or null: none) is well formed: its keys, one entry per
    test row (``rows`` = the record's test_size), base-36 digits or numbers by its encoding, and,
    where the record has an accuracy, the accuracy its rows give. Else one error naming ``where``."""
    block = record.get("predictions")
    if block is None:
        return
    if not isinstance(block, dict) or sorted(block) != sorted(KEYS):
        shown = sorted(block) if isinstance(block, dict) else block
        raise PromptworthError(f"{where}: key 'predictions' must be null or an object with {', '.join(KEYS)}, "
                               f"got {str(shown)[:80]}")
    rows, encoding = block["rows"], block["encoding"]
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
        raise PromptworthError(f"{where}: key 'predictions.rows' must be a positive integer, got {rows!r}")
    if record.get("test_size") is not None and rows != record["test_size"]:
        raise PromptworthError(f"{where}: key 'predictions.rows' is {rows}, but the record's test_size is "
                               f"{record['test_size']}")
    if not isinstance(block["rows_sha256"], str) or not _SHA256.fullmatch(block["rows_sha256"]):
        raise PromptworthError(f"{where}: key 'predictions.rows_sha256' must be a sha256 (64 hexadecimal digits)")
    if encoding not in ENCODINGS:
        raise PromptworthError(f"{where}: key 'predictions.encoding' must be one of {', '.join(ENCODINGS)}, "
                               f"got {encoding!r}")
    for key in ("predicted", "gold"):
        _check_column(block[key], encoding, rows, key, where)
    accuracy = record.get("test", {}).get("acc")
    if encoding == LABELS and accuracy is not None:
        found = sum(p == g for p, g in zip(block["predicted"], block["gold"])) / rows
        if not math.isclose(found, accuracy, rel_tol=0.0, abs_tol=ACCURACY_SLACK):
            raise PromptworthError(f"{where}: key 'predictions': its rows give an accuracy of {found!r}, but the "
                                   f"record's test.acc is {accuracy!r}")


@dataclass(frozen=True)
class RowPredictions:
    """A checked record's predictions, decoded: ``predicted`` and ``gold`` as arrays (class
    indices, or numbers for a regression task), one per test row."""

    rows_sha256: str
    predicted: np.ndarray
    gold: np.ndarray
    regression: bool

    @property
    def correct(self) -> np.ndarray:
        """Whether each row's predicted class is its gold class (classification only)."""
        if self.regression:
            raise AssertionError("a regression task's predictions are not right or wrong")
        return self.predicted == self.gold


def _decode_labels(text: str) -> np.ndarray:
    return np.array([DIGITS.index(digit) for digit in text], dtype=np.int64)


def decode(record: Mapping[str, Any]) -> RowPredictions | None:
    """The predictions of a record read through :func:`promptworth.training.record.check`; None
    for a record without them (made before issue 30, or a run without test rows)."""
    block = record.get("predictions")
    if block is None:
        return None
    if block["encoding"] == VALUES:
        return RowPredictions(block["rows_sha256"], np.asarray(block["predicted"], float),
                              np.asarray(block["gold"], float), regression=True)
    return RowPredictions(block["rows_sha256"], _decode_labels(block["predicted"]), _decode_labels(block["gold"]),
                          regression=False)


def kept_in(path: str | Path) -> bool:
    """Whether the run record file at ``path`` keeps per-row predictions: a quick look, not a check
    (the workflow asks it before the records are read; a file it cannot read reads as without)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(record, dict) and record.get("predictions") is not None
