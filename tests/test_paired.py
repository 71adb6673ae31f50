"""Each test row's prediction in the record, and two methods compared row by row (``promptworth paired``):
McNemar's exact test and the bootstrap over data seeds and test rows."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_results import record

from promptworth.analysis.advantage import Comparison
from promptworth.analysis.gaps import gaps_frame
from promptworth.analysis.paired import NO_PREDICTIONS, paired_frame, paired_markdown
from promptworth.analysis.paired_stats import PairCounts, SeedRows, gap_intervals, pair_counts
from promptworth.analysis.results import collect, read_records
from promptworth.cli import main
from promptworth.errors import PromptworthError
from promptworth.training import predictions
from promptworth.training.record import read_record

ROWS = hashlib.sha256(b"the test rows").hexdigest()
PROMPT_VS_HEAD = [Comparison("prompt", "head")]


def run_record(method: str, predicted: str, gold: str, data_seed: int = 1, train_seed: int = 1, size: int = 32,
               rows_sha256: str = ROWS, **changes: Any) -> dict[str, Any]:
    """A schema-2 SST-2 record whose test rows are ``gold`` and whose run predicted ``predicted``
    (its accuracy follows from them)."""
    accuracy = sum(p == g for p, g in zip(predicted, gold)) / len(gold)
    kept = {"rows": len(gold), "rows_sha256": rows_sha256, "encoding": "base36", "predicted": predicted, "gold": gold}
    return record(schema_version=2, model_sha256=None, task="SST-2", method=method, model="smollm2", template=None,
                  template_name=None, metric="acc", test={"acc": accuracy}, score=accuracy, test_size=len(gold),
                  train_size=size, data_seed=data_seed, train_seed=train_seed, split_dir=None,
                  split_manifest_sha256=None, predictions=kept, **changes)


def write_records(folder: Path, runs: list[dict[str, Any]]) -> dict[Path, dict[str, Any]]:
    for run in runs:
        path = folder / run["method"] / f"{run['train_size']}-{run['data_seed']}-{run['train_seed']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(run), encoding="utf-8")
    return read_records([folder])


# ---------------------------------------------------------------------------------------------
# The record's predictions


def test_predictions_encode_as_one_base36_digit_per_row_and_decode_back():
    kept = predictions.encode([0.0, 5.0, 1.0, 11.0], [0, 5, 2, 11], ROWS, regression=False)
    assert kept == {"rows": 4, "rows_sha256": ROWS, "encoding": "base36", "predicted": "051b", "gold": "052b"}
    decoded = predictions.decode({"predictions": kept})
    assert decoded.predicted.tolist() == [0, 5, 1, 11] and decoded.correct.tolist() == [True, True, False, True]
    values = predictions.encode([0.123456, 4.99999], [0.2, 5.0], ROWS, regression=True)
    assert values["encoding"] == "decimal4" and values["predicted"] == [0.1235, 5.0] and values["gold"] == [0.2, 5.0]
    with pytest.raises(PromptworthError, match="cannot be recorded as a base-36 digit"):
        predictions.encode([36.0], [0], ROWS, regression=False)


def test_a_record_with_predictions_reads_back_and_one_without_still_does(tmp_path):
    with_rows = tmp_path / "with.json"
    with_rows.write_text(json.dumps(run_record("prompt", "0110", "0111")))
    assert read_record(with_rows)["predictions"]["predicted"] == "0110"
    without = dict(run_record("prompt", "0110", "0111"))
    del without["predictions"]
    (tmp_path / "without.json").write_text(json.dumps(without))
    assert "predictions" not in read_record(tmp_path / "without.json")
    (tmp_path / "null.json").write_text(json.dumps({**without, "predictions": None}))
    assert read_record(tmp_path / "null.json")["predictions"] is None


def _with(**block: Any) -> dict[str, Any]:
    good = run_record("prompt", "0110", "0111")
    return {**good, "predictions": {**good["predictions"], **block}}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({**run_record("prompt", "0110", "0111"), "predictions": "0110"}, "key 'predictions' must be an object"),
        ({**run_record("prompt", "0110", "0111"), "predictions": {"predicted": "0110"}},
         "key 'predictions' must be null or an object with rows, rows_sha256, encoding, predicted, gold"),
        (_with(predicted="011"), "key 'predictions.predicted' has 3 entries, but predictions.rows is 4"),
        (_with(gold="01 1"), "key 'predictions.gold' must be a string of base-36 digits"),
        (_with(predicted="01A0"), "key 'predictions.predicted' must be a string of base-36 digits"),
        (_with(predicted=[0, 1, 1, 0]), "key 'predictions.predicted' must be a string of base-36 digits"),
        (_with(rows=5, predicted="01100", gold="01110"), "key 'predictions.rows' is 5, but the record's test_size is 4"),
        (_with(rows=0), "key 'predictions.rows' must be a positive integer"),
        (_with(rows_sha256="abc"), "key 'predictions.rows_sha256' must be a sha256"),
        (_with(encoding="base10"), "key 'predictions.encoding' must be one of base36, decimal4"),
        (_with(encoding="decimal4"), "key 'predictions.predicted' must be a list of numbers"),
        (_with(predicted="0111"), "its rows give an accuracy of 1.0, but the record's test.acc is 0.75"),
    ],
)
def test_a_malformed_predictions_field_is_one_clear_error(tmp_path, capsys, bad, message):
    path = tmp_path / "runs" / "bad.json"
    path.parent.mkdir()
    path.write_text(json.dumps(bad))
    with pytest.raises(PromptworthError) as error:
        read_record(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)
    assert main(["aggregate", str(path.parent), "--out", str(tmp_path / "runs.csv")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "runs.csv").exists()


# ---------------------------------------------------------------------------------------------
# McNemar and the bootstrap over rows


def test_identical_predictions_give_no_gap_and_a_mcnemar_p_of_one():
    right = np.array([True, False, True, True, False])
    counts = pair_counts(right, right.copy())
    assert counts == PairCounts(0, 0, 5) and counts.gap == 0.0 and counts.mcnemar_p == 1.0
    seeds = {"1": SeedRows(right.astype(float) - right.astype(float), ROWS)}
    assert gap_intervals(seeds, 0.95, 500).rows == (0.0, 0.0)


def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_rows():
    treatment = np.array([True] * 9 + [False] * 2 + [True] * 30 + [False] * 10)
    baseline = np.array([False] * 9 + [True] * 2 + [True] * 30 + [False] * 10)
    counts = pair_counts(treatment, baseline)
    assert (counts.treatment_only, counts.baseline_only, counts.rows) == (9, 2, 51)
    assert counts.gap == pytest.approx(7 / 51)
    # two-sided exact: twice the lower tail of Binomial(11, 1/2) at 2
    assert counts.mcnemar_p == pytest.approx(2 * sum(math.comb(11, k) for k in range(3)) / 2**11)
    assert counts.mcnemar_p == pytest.approx(stats.binomtest(9, 11, 0.5).pvalue)
    assert pair_counts(baseline, treatment).mcnemar_p == pytest.approx(counts.mcnemar_p)


def _width(interval: tuple[float, float]) -> float:
    return interval[1] - interval[0]


def test_the_row_bootstrap_of_one_seed_is_the_paired_bootstrap_of_its_rows():
    # 400 rows: the treatment alone right on half of them, the methods agree on the rest
    differences = np.array([1.0, 0.0] * 200)
    result = gap_intervals({"1": SeedRows(differences, ROWS)}, 0.95, 4000)
    standard_error = differences.std() / math.sqrt(len(differences))
    assert result.gap == 0.5 and result.seeds == (0.5, 0.5) and result.draws == 4000
    assert result.rows[0] == pytest.approx(0.5 - 1.96 * standard_error, abs=0.006)
    assert result.rows[1] == pytest.approx(0.5 + 1.96 * standard_error, abs=0.006)
    assert gap_intervals({"1": SeedRows(differences, ROWS)}, 0.95, 4000) == result  # a fixed generator seed


def test_seeds_that_share_a_test_set_share_its_row_resample():
    rng = np.random.default_rng(0)
    differences = rng.choice([-1.0, 0.0, 1.0], size=300, p=[0.2, 0.5, 0.3])
    alone = gap_intervals({"1": SeedRows(differences, ROWS)}, 0.95, 8000)
    # two seeds with the same differences on the same rows: the seeds agree, so the rows' error is
    # all there is, and it does not shrink by averaging two seeds that scored the same rows
    shared = gap_intervals({"1": SeedRows(differences, ROWS), "2": SeedRows(differences, ROWS)}, 0.95, 8000)
    assert shared.seeds == (shared.gap, shared.gap)
    assert 0.95 < _width(shared.rows) / _width(alone.rows) < 1.05
    # on two test sets the rows' errors are independent: half the seed resamples (one copy of each
    # seed) average them out by 1/sqrt 2, and the interval is about 0.88 times as wide (a nested
    # bootstrap, rows resampled anew for each seed, would give this for shared rows too)
    other = hashlib.sha256(b"other rows").hexdigest()
    apart = gap_intervals({"1": SeedRows(differences, ROWS), "2": SeedRows(differences, other)}, 0.95, 8000)
    assert 0.82 < _width(apart.rows) / _width(alone.rows) < 0.93


def test_the_seeds_interval_is_the_exact_bootstrap_over_the_seeds():
    seeds = {str(s): SeedRows(np.full(10, gap), ROWS) for s, gap in enumerate([0.1, 0.2, 0.3, 0.5, 0.9])}
    result = gap_intervals(seeds, 0.95, 2000)
    assert result.exact_seeds and result.gap == pytest.approx(0.4)
    # every row of a seed has the same difference: resampling rows changes nothing
    assert result.rows == pytest.approx(result.seeds)
    assert result.seeds[0] < 0.25 and 0.55 < result.seeds[1] < 0.9


# ---------------------------------------------------------------------------------------------
# The paired table


GOLD = "0101010101"


def test_paired_rows_give_the_gap_of_gaps_md_and_mcnemar_per_pair(tmp_path):
    runs = [run_record("prompt", "0101010111", GOLD, data_seed=1), run_record("head", "0111011111", GOLD, data_seed=1),
            run_record("prompt", "0101010101", GOLD, data_seed=2), run_record("head", "1101010101", GOLD, data_seed=2),
            run_record("prompt", "0101010100", GOLD, size=64), run_record("head", "0101010100", GOLD, size=64)]
    records = write_records(tmp_path / "runs", runs)
    frame, left = paired_frame(records, PROMPT_VS_HEAD, 0.95, 500)
    assert not left.without_predictions and list(frame["train_size"]) == [32, 64]
    first = frame.iloc[0]
    # seed 1: prompt 9/10, head 7/10 (prompt alone right on rows 2 and 6, head alone on none); seed 2: 10/10 vs 9/10
    assert first["gap"] == pytest.approx(((0.9 - 0.7) + (1.0 - 0.9)) / 2)
    assert (first["treatment_acc"], first["baseline_acc"]) == pytest.approx((0.95, 0.8))
    assert first["discordant"] == "1-1=2/0 2-1=1/0" and (first["n_seeds"], first["n_pairs"], first["n_rows"]) == (2, 2, 10)
    p_values = [float(item.split("=")[1]) for item in first["mcnemar_p"].split()]
    assert p_values == pytest.approx([stats.binomtest(2, 2, 0.5).pvalue, stats.binomtest(1, 1, 0.5).pvalue], rel=1e-5)
    assert first["seeds_lower"] <= first["gap"] <= first["seeds_upper"]
    assert first["rows_lower"] <= first["seeds_lower"] and first["rows_upper"] >= first["seeds_upper"]
    same = frame.iloc[1]  # identical predictions: no gap, no interval, p = 1
    assert (same["gap"], same["rows_lower"], same["rows_upper"], same["mcnemar_p"]) == (0.0, 0.0, 0.0, "1-1=1")
    # the gap is gaps.md's: the same records through runs.csv
    gaps = gaps_frame(collect([tmp_path / "runs"]), PROMPT_VS_HEAD)
    assert list(gaps["gap"]) == pytest.approx(list(frame["gap"]))
    text = paired_markdown(frame, left)
    assert "| prompt vs head | smollm2 | SST-2 | 32 | 2 | 10 | 95.0 | 80.0 | +15.0 [" in text and "| 0.5, 1 |" in text


def test_runs_that_scored_different_rows_are_not_paired(tmp_path):
    other = hashlib.sha256(b"other rows").hexdigest()
    records = write_records(tmp_path / "runs", [run_record("prompt", "0101", "0101"),
                                                run_record("head", "0101", "0101", rows_sha256=other)])
    with pytest.raises(PromptworthError, match="scored different test rows .* they cannot be paired row by row"):
        paired_frame(records, PROMPT_VS_HEAD)


def _old(run: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in run.items() if key != "predictions"}


def test_records_without_predictions_give_a_table_that_says_so_and_no_number(tmp_path, capsys):
    write_records(tmp_path / "runs", [_old(run_record("prompt", "0101", "0101")), _old(run_record("head", "0001", "0101"))])
    out = tmp_path / "tables"
    assert main(["paired", str(tmp_path / "runs"), "--out-dir", str(out)]) == 0
    assert "0 paired rows, 1 left out without per-row predictions" in capsys.readouterr().out
    text = (out / "paired.md").read_text()
    assert text.startswith(NO_PREDICTIONS) and "1 pair(s) of runs left out" in text and "|" not in text
    assert pd.read_csv(out / "paired.csv").empty


def test_a_pair_without_predictions_is_left_out_and_counted(tmp_path, capsys):
    runs = [run_record("prompt", "0101", "0101", data_seed=1), run_record("head", "0001", "0101", data_seed=1),
            _old(run_record("prompt", "0101", "0101", data_seed=2)), run_record("head", "0001", "0101", data_seed=2)]
    write_records(tmp_path / "runs", runs)
    assert main(["paired", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "t"), "--comparisons", "prompt:head"]) == 0
    table = pd.read_csv(tmp_path / "t" / "paired.csv")
    assert list(table["n_seeds"]) == [1] and list(table["gap"]) == [0.25]
    assert "1 pair(s) of runs left out: a record without per-row predictions" in (tmp_path / "t" / "paired.md").read_text()
    assert main(["paired", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "t"), "--comparisons", "prompt:null"]) == 2
    assert "comparison prompt vs null: method(s) 'null' not in the records" in capsys.readouterr().err
