"""Run records -> the tidy results table (``promptworth aggregate``)."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from promptworth import files
from promptworth.training import record as records
from promptworth.analysis.results import BASE_COLUMNS, collect, read_table
from promptworth.training.record import read_record
from promptworth.data import split_folder as split_files
from promptworth.errors import PromptworthError
from promptworth.files import write_csv


def record(**changes: Any) -> dict[str, Any]:
    """A complete schema-1 run record (docs/contracts.md) with ``changes`` applied."""
    base: dict[str, Any] = {
        "schema_version": 1, "task": "CB", "method": "prompt", "model": "roberta-large", "model_path": "/m",
        "template": "*cls**a* ? *mask*, *b*", "template_name": "t0", "verbalizer": {"0": ["Yes"]},
        "train_size": 32, "data_seed": 13, "train_seed": 1, "split_dir": "/s", "split_manifest_sha256": "ab",
        "hyperparameters": {"protocol": "lescao"}, "dev_curve": [{"step": 50, "dev_score": 0.7}],
        "best_step": 50, "dev_score": 0.7, "metric": "macro_f1", "test": {"macro_f1": 0.61, "acc": 0.8},
        "score": 0.61, "timing": {"wall_s": 12.5, "train_s": 10.0}, "device": "cpu", "precision": "fp32",
        "versions": {}, "git_commit": "abc",
    }
    base.update(changes)
    if "score" in changes and "test" not in changes and changes["score"] is not None:
        base["test"] = {**base["test"], base["metric"]: changes["score"]}  # a score is its metric's test score
    return base


# one budget's entry of a record (promptworth.training.loop.BudgetResult.as_record)
BUDGET = {"steps": 50, "reached": True, "best_step": 50, "dev_score": 0.6, "score": 0.55, "test": {"macro_f1": 0.55}}


def write(path: Path, content: dict[str, Any] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def test_collect_one_row_per_run_with_contract_columns(tmp_path: Path) -> None:
    write(tmp_path / "runs" / "a" / "r1.json", record())
    write(tmp_path / "runs" / "b" / "c" / "r2.json", record(method="head", template_name=None, template=None,
                                                           train_seed=2, test={"macro_f1": 0.5, "mcc": 0.1}, score=0.5))
    single = write(tmp_path / "r3.json", record(train_size=64, data_seed=None, score=None, best_step=None))
    table = collect([tmp_path / "runs", single])
    assert list(table.columns) == [*BASE_COLUMNS, "test_acc", "test_macro_f1", "test_mcc"]
    assert len(table) == 3
    head = table[table.method == "head"].iloc[0]
    assert head.seed == "13-2" and head.template_name == "" and head.score == 0.5 and math.isnan(head.test_acc)
    unknown = table[table.train_size == 64].iloc[0]
    assert unknown.seed == "na-1" and math.isnan(unknown.score) and pd.isna(unknown.best_step)
    assert table.wall_s.tolist() == [12.5, 12.5, 12.5]


def test_table_round_trip_keeps_method_names(tmp_path: Path) -> None:
    write(tmp_path / "r" / "1.json", record(method="null"))
    write(tmp_path / "r" / "2.json", record(method="head", template_name=None))
    out = tmp_path / "runs.csv"
    write_csv(collect([tmp_path / "r"]), out)
    back = read_table(out)
    assert sorted(back.method) == ["head", "null"]  # pandas would read "null" as missing
    assert back.seed.tolist() == ["13-1", "13-1"] and back.data_seed.tolist() == [13, 13]


@pytest.mark.parametrize("key", ["task", "method", "train_size", "train_seed", "score", "test", "timing", "metric"])
def test_missing_key_names_the_file_and_key(tmp_path: Path, key: str) -> None:
    content = record()
    del content[key]
    path = write(tmp_path / "bad.json", content)
    with pytest.raises(PromptworthError, match=rf"bad\.json: missing key '{key}'"):
        collect([tmp_path])
    assert str(path) in _message(lambda: read_record(path))


def _message(call) -> str:
    with pytest.raises(PromptworthError) as info:
        call()
    return str(info.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (record(schema_version=3), "unknown schema_version 3"),
        ({k: v for k, v in record().items() if k != "schema_version"}, "missing key 'schema_version'"),
        (record(timing={"train_s": 1}), "missing key 'timing.wall_s'"),
        (record(task=None), "key 'task' is null"),
        (record(train_size="32"), "'train_size' must be an integer"),
        (record(score="high"), "'score' must be a number"),
        (record(test=[0.5]), "'test' must be an object"),
        ("{not json", "not valid JSON"),
        ("[" * 100000 + "]" * 100000, "nested too deeply to be a run record"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_malformed_records(tmp_path: Path, content: Any, message: str) -> None:
    write(tmp_path / "x.json", content)
    with pytest.raises(PromptworthError, match=message):
        collect([tmp_path / "x.json"])


def test_duplicates_missing_and_empty(tmp_path: Path) -> None:
    write(tmp_path / "a" / "1.json", record())
    write(tmp_path / "b" / "1.json", record())
    with pytest.raises(PromptworthError, match="same run appears twice"):
        collect([tmp_path])
    with pytest.raises(PromptworthError, match="no such file or folder"):
        collect([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PromptworthError, match="no run JSON files"):
        collect([tmp_path / "empty"])


def split_folder(folder: Path, task: str = "CB") -> Path:
    """A small split folder of ``task`` with its manifest, as ``promptworth split`` writes one."""
    folder.mkdir(parents=True)
    for part in ("train", "dev", "test"):
        (folder / f"{part}.jsonl").write_text(f'{{"idx": 0, "text_a": "{part}", "text_b": "b", "label": 0}}\n')
    split_files.write_manifest(folder, {"layout": "rows", "task": task, "size": 32}, {})
    return folder


def test_a_record_whose_split_changed_since_is_an_error(tmp_path: Path) -> None:
    split = split_folder(tmp_path / "splits" / "CB" / "32-13")
    digest = hashlib.sha256((split / "manifest.json").read_bytes()).hexdigest()
    write(tmp_path / "runs" / "1.json", record(split_dir=str(split), split_manifest_sha256=digest))
    write(tmp_path / "runs" / "2.json", record(split_dir=str(tmp_path / "gone"), train_seed=2))
    assert len(collect([tmp_path / "runs"])) == 2  # same split, or a folder no longer here: fine
    manifest = json.loads((split / "manifest.json").read_text())
    write(split / "manifest.json", {**manifest, "dev_size": 8})
    with pytest.raises(PromptworthError, match=r"1 run record\(s\) were trained on a split that has changed since, "
                       r"e\.g\. .*1\.json \(.*32-13/manifest\.json\); delete them"):
        collect([tmp_path / "runs"])


def test_a_record_whose_split_rows_were_edited_is_an_error(tmp_path: Path) -> None:
    split = split_folder(tmp_path / "splits" / "CB" / "32-13")
    digest = hashlib.sha256((split / "manifest.json").read_bytes()).hexdigest()
    write(tmp_path / "runs" / "1.json", record(split_dir=str(split), split_manifest_sha256=digest))
    (split / "train.jsonl").write_text((split / "train.jsonl").read_text().replace('"label": 0', '"label": 1'))
    with pytest.raises(PromptworthError, match=r"run record .*1\.json: .*32-13/train\.jsonl has changed since its "
                       r"split was written"):
        collect([tmp_path / "runs"])


def test_a_record_of_another_task_than_its_split_is_an_error(tmp_path: Path) -> None:
    split = split_folder(tmp_path / "splits" / "MR" / "32-13", task="MR")
    digest = hashlib.sha256((split / "manifest.json").read_bytes()).hexdigest()
    write(tmp_path / "runs" / "1.json", record(task="SST-2", split_dir=str(split), split_manifest_sha256=digest))
    with pytest.raises(PromptworthError, match=r"1\.json: split folder .*32-13 holds a split of MR .*, not of SST-2"):
        collect([tmp_path / "runs"])


def test_each_split_folder_is_hashed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    split = split_folder(tmp_path / "splits" / "CB" / "32-13")
    digest = hashlib.sha256((split / "manifest.json").read_bytes()).hexdigest()
    for seed in range(5):
        write(tmp_path / "runs" / f"{seed}.json", record(split_dir=str(split), split_manifest_sha256=digest, train_seed=seed))
    hashed: list[str] = []
    real = files.sha256_file
    monkeypatch.setattr(split_files, "sha256_file", lambda path: hashed.append(Path(path).name) or real(path))
    assert len(collect([tmp_path / "runs"])) == 5
    assert sorted(n for n in hashed if n.endswith(".jsonl")) == ["dev.jsonl", "test.jsonl", "train.jsonl"]


def test_a_published_kshot_split_is_checked_too(tmp_path: Path, data_dir: Path) -> None:
    folder = tmp_path / "k-shot" / "SST-2" / "16-42"
    shutil.copytree(data_dir / "k-shot" / "SST-2" / "16-42", folder)
    write(tmp_path / "runs" / "1.json", record(task="SST-2", split_dir=str(folder), split_manifest_sha256=None))
    assert len(collect([tmp_path / "runs"])) == 1
    (folder / "dev.tsv").write_text((folder / "dev.tsv").read_text() + "one more row\t1\n")
    with pytest.raises(PromptworthError, match=r"16-42/dev\.tsv has changed since its split was written"):
        collect([tmp_path / "runs"])


@pytest.mark.parametrize(
    "text, key",
    [
        ('"score": NaN', "score"),
        ('"dev_score": Infinity', "dev_score"),
        ('"test": {"macro_f1": 0.6, "acc": -Infinity}', "test.acc"),
        ('"timing": {"wall_s": 1e999}', "timing.wall_s"),
        ('"dev_curve": [{"step": 50, "dev_score": NaN}]', r"dev_curve\[0\]\.dev_score"),
        ('"hyperparameters": {"learning_rate": NaN}', "hyperparameters.learning_rate"),
        ('"budgets": [{"steps": 50, "reached": true, "best_step": 50, "dev_score": 0.5, "score": NaN, "test": {}}]',
         r"budgets\[0\]\.score"),
    ],
)
def test_a_nan_or_infinite_number_anywhere_is_an_error_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    name = text.split('"')[1]
    base = {k: v for k, v in record().items() if k != name}
    path = write(tmp_path / "x.json", json.dumps(base)[:-1] + ", " + text + "}")
    with pytest.raises(PromptworthError, match=rf"x\.json: key '{key}' is not a finite number \(NaN or infinite\)"):
        collect([path])


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"score": 5.0, "test": {"macro_f1": 0.61, "acc": 0.8}},
         r"key 'score' is 5.0, but 'test.macro_f1' \(the record's metric\) is 0.61"),
        ({"score": 0.8, "test": {"macro_f1": 0.61, "acc": 0.8}}, r"key 'score' is 0.8, but 'test.macro_f1'"),  # acc's
        ({"test": {"acc": 0.8}}, r"key 'score' is 0.61, but 'test' has no macro_f1"),
        ({"test": {"macro_f1": 0.61, "acc": -0.2}}, r"key 'test.acc' is -0.2, outside the range of acc \(0 to 1\)"),
        ({"test": {"macro_f1": 0.61, "mcc": -1.5}}, r"key 'test.mcc' is -1.5, outside the range of mcc \(-1 to 1\)"),
        ({"dev_score": 1.5}, r"key 'dev_score' is 1.5, outside the range of macro_f1"),
        ({"dev_curve": [{"step": 50, "dev_score": 7}]}, r"key 'dev_curve\[0\].dev_score' is 7, outside"),
        ({"train_size": -5}, "key 'train_size' cannot be negative, got -5"),
        ({"dev_size": -1}, "key 'dev_size' cannot be negative"),
        ({"train_seed": -3}, "key 'train_seed' cannot be negative"),
        ({"best_step": -50}, "key 'best_step' cannot be negative"),
        ({"best_epochs": -0.5}, "key 'best_epochs' cannot be negative"),
        ({"best_examples_read": 33, "train_size": 32}, "key 'best_examples_read' is 33, more than the train_size 32"),
        ({"best_examples_read": 8.5}, "key 'best_examples_read' must be an integer"),
        ({"timing": {"wall_s": -12.5}}, "key 'timing.wall_s' cannot be negative"),
        ({"parameters": {"trainable": -1, "total": 5}}, "key 'parameters.trainable' cannot be negative"),
        ({"budgets": [{**BUDGET, "score": 0.9}]}, r"key 'budgets\[0\].score' is 0.9, but 'budgets\[0\].test.macro_f1'"),
        ({"budgets": [{**BUDGET, "dev_score": -0.5}]}, r"key 'budgets\[0\].dev_score' is -0.5, outside"),
    ],
)
def test_a_record_that_contradicts_itself_is_refused(tmp_path: Path, changes: dict, message: str) -> None:
    """A score beside another test score, a negative accuracy or size: the record is not a run's."""
    path = write(tmp_path / "x.json", record(**changes))
    with pytest.raises(PromptworthError, match=rf"x\.json: {message}"):
        collect([path])


def test_a_score_may_be_missing_and_a_correlation_negative(tmp_path: Path) -> None:
    write(tmp_path / "r" / "1.json", record(score=None))
    write(tmp_path / "r" / "2.json", record(task="STS-B", metric="pearson", test={"pearson": -0.25, "spearman": -0.1},
                                            score=-0.25, dev_score=-0.3, dev_curve=[]))
    table = collect([tmp_path / "r"])
    assert sorted(table["score"].fillna(99).tolist()) == [-0.25, 99]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"test": {"acc": "high"}}, "key 'test.acc' must be a number"),
        ({"timing": {"wall_s": "1 s"}}, "key 'timing.wall_s' must be a number"),
        ({"split_dir": 3}, "key 'split_dir' must be a string"),
        ({"parameters": [1, 2]}, "key 'parameters' must be an object"),
        ({"parameters": {"trainable": "all", "total": 5}}, "key 'parameters.trainable' must be a number"),
        ({"timing": {"wall_s": 1.0, "steps": "50"}}, "key 'timing.steps' must be a number"),
        ({"method_parts": {"objective": "prompt"}}, "key 'method_parts' must be an object with an objective and a tuning"),
        ({"stopped": "early"}, "key 'stopped' must be one of patience, cap or null, got 'early'"),
        ({"stopped": 1}, "key 'stopped' must be a string"),
        ({"budgets": {"50": 0.5}}, "key 'budgets' must be a list"),
        ({"budgets": [{"steps": 50, "score": 0.5}]}, r"key 'budgets\[0\]' must be an object with steps, reached"),
        ({"budgets": [{**BUDGET, "steps": "50"}]}, r"key 'budgets\[0\]' must be an object"),
        ({"budgets": [{**BUDGET, "reached": 1}]}, r"key 'budgets\[0\]' must be an object"),
        ({"budgets": [BUDGET, BUDGET]}, r"key 'budgets\[1\]': budget 50 appears twice"),
        ({"budgets": [{**BUDGET, "score": "high"}]}, r"key 'budgets\[0\].score' must be a number"),
        ({"budgets": [{**BUDGET, "test": {"acc": "high"}}]}, r"key 'budgets\[0\].test.acc' must be a number"),
    ],
)
def test_wrong_types_in_nested_keys(tmp_path: Path, changes: dict, message: str) -> None:
    path = write(tmp_path / "x.json", record(**changes))
    with pytest.raises(PromptworthError, match=message):
        collect([path])


def test_null_scores_stay_allowed(tmp_path: Path) -> None:
    path = write(tmp_path / "x.json", record(score=None, dev_score=None, test={"macro_f1": None}))
    assert math.isnan(collect([path]).score.iloc[0])


def test_read_table_errors(tmp_path: Path) -> None:
    with pytest.raises(PromptworthError, match="no such file"):
        read_table(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(PromptworthError, match="empty file"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "cols.csv").write_text("task,method\nCB,head\n")
    with pytest.raises(PromptworthError, match="missing column.*train_size, seed, score"):
        read_table(tmp_path / "cols.csv")
    (tmp_path / "rows.csv").write_text("task,method,train_size,seed,score\n")
    with pytest.raises(PromptworthError, match="no rows"):
        read_table(tmp_path / "rows.csv")


@pytest.mark.parametrize(
    "row, message",
    [
        ("CB,head,10,1-1,inf", r"line 3, column 'score': inf is not a finite number"),
        ("CB,head,10,1-1,-Infinity", r"line 3, column 'score': -inf is not a finite number"),
        ("CB,head,10,1-1,high", r"line 3, column 'score': 'high' is not a number"),
        ("CB,head,,1-1,0.5", r"line 3, column 'train_size': the cell is missing"),
        ("CB,head,ten,1-1,0.5", r"line 3, column 'train_size': 'ten' is not a number"),
    ],
)
def test_read_table_refuses_silent_numbers(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "runs.csv"
    path.write_text(f"task,method,train_size,seed,score\nCB,prompt,10,1-1,0.5\n{row}\n")
    with pytest.raises(PromptworthError, match=rf"runs\.csv: {message}"):
        read_table(path)


def test_read_table_keeps_missing_scores_and_test_metrics(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("task,method,train_size,seed,score,test_acc\nCB,prompt,10,1-1,,\nCB,head,10,1-1,0.5,0.25\n")
    table = read_table(path)
    assert math.isnan(table.score.iloc[0]) and table.test_acc.iloc[1] == 0.25
    path.write_text("task,method,train_size,seed,score,test_acc\nCB,prompt,10,1-1,0.5,1e999\n")
    with pytest.raises(PromptworthError, match=r"line 2, column 'test_acc': inf is not a finite number"):
        read_table(path)


def test_the_table_carries_each_runs_cost_and_aggregate_sums_it(tmp_path: Path, capsys) -> None:
    from promptworth.cli import main

    counted = {"wall_s": 10.0, "process_s": 16.0, "flops": {"train": 3 * 10**12, "eval": 10**12}}
    write(tmp_path / "r" / "a.json", record(schema_version=2, timing=counted))
    write(tmp_path / "r" / "b.json", record(schema_version=2, train_size=64, timing={**counted, "process_s": 4.0}))
    write(tmp_path / "r" / "old.json", record(train_size=128))  # schema 1: no cost counted
    table = collect([tmp_path / "r"])
    assert table["flops"].tolist()[:2] == [4e12, 4e12] and math.isnan(table["flops"].tolist()[2])
    assert main(["aggregate", str(tmp_path / "r"), "--out", str(tmp_path / "runs.csv")]) == 0
    assert ("compute: 2 runs on cpu: 8.0 TFLOP of model FLOPs in 0.01 h of process time, 400 GFLOP/s "
            "(1 runs without a FLOP count left out)") in capsys.readouterr().out
    assert read_table(tmp_path / "runs.csv")["device"].tolist() == ["cpu", "cpu", "cpu"]


def test_the_table_says_how_many_training_examples_a_run_read(tmp_path: Path) -> None:
    # 1,000 examples in batches of 8: an epoch is 125 steps; a run stopped at 120 read 960 of them
    settings = {"protocol": "steps", "batch_size": 8}
    for seed, size, steps in ((1, 1000, 120), (2, 1000, 125), (3, 10, 80), (4, 10, 0)):
        write(tmp_path / "r" / f"{seed}.json", record(schema_version=2, train_size=size, train_seed=seed,
                                                      hyperparameters=settings,
                                                      timing={"wall_s": 1.0, "train_s": 1.0, "steps": steps}))
    write(tmp_path / "r" / "old.json", record(train_seed=5))  # no steps recorded: unknown
    table = collect([tmp_path / "r"]).sort_values("train_seed")
    read = table["examples_read"].tolist()
    assert read[:4] == [960, 1000, 10, 0] and math.isnan(read[4])
    assert table["steps"].tolist()[:4] == [120, 125, 80, 0]


def test_aggregate_names_every_machine_a_resumed_study_ran_on(tmp_path: Path, capsys) -> None:
    from promptworth.cli import main

    counted = {"wall_s": 10.0, "process_s": 10.0, "flops": {"train": 10**12}}
    amd, intel = "cpu (AMD EPYC, 1 threads)", "cpu (Intel Xeon, 1 threads)"
    for name, size, device in (("a", 10, amd), ("b", 20, intel), ("c", 30, amd)):
        write(tmp_path / "r" / f"{name}.json", record(schema_version=2, train_size=size, timing=counted, device=device))
    no_device = record(schema_version=2, train_size=40, timing=counted)
    del no_device["device"]  # a record read back need not have it
    write(tmp_path / "r" / "d.json", no_device)
    assert main(["aggregate", str(tmp_path / "r"), "--out", str(tmp_path / "runs.csv")]) == 0
    assert (f"compute: 4 runs on {amd} (2), an unrecorded device (1), {intel} (1): 4.0 TFLOP"
            in capsys.readouterr().out)
    table = read_table(tmp_path / "runs.csv")
    assert table.sort_values("train_size")["device"].tolist() == [amd, intel, amd, ""]


def test_aggregate_states_the_study_level_mfu_over_the_studys_span(tmp_path: Path, capsys) -> None:
    from promptworth.cli import main

    # two runs side by side (both 20 s, the second ends 5 s later), then one alone, and after an hour's
    # pause (a study resumed in another session) one more: 65 s in all
    runs = (("a", "12:00:20", 20.0), ("b", "12:00:25", 20.0), ("c", "12:00:45", 20.0), ("d", "13:00:20", 20.0))
    for name, end, process in runs:
        timing = {"wall_s": 18.0, "process_s": process, "flops": {"train": 3 * 10**12, "eval": 10**12},
                  "finished_at": f"2026-12-02T{end}+00:00"}
        write(tmp_path / "r" / f"{name}.json", record(schema_version=2, train_size=len(name) * ord(name), timing=timing))
    assert main(["aggregate", str(tmp_path / "r"), "--out", str(tmp_path / "runs.csv"), "--peak-gflops", "500"]) == 0
    out = capsys.readouterr().out
    # 16 TFLOP over 80 s of process time (200 GFLOP/s) but over the 65 s span: 246 GFLOP/s, 0.49 of 500
    assert "16.0 TFLOP of model FLOPs in 0.02 h of process time, 200 GFLOP/s; 0.02 h in which runs were" in out
    assert "246 GFLOP/s, study-level MFU 0.49 of a 500 GFLOP/s peak" in out
    assert main(["aggregate", str(tmp_path / "r"), "--out", str(tmp_path / "x.csv"), "--peak-gflops", "nan"]) == 2


def test_aggregate_says_how_the_runs_stopped_and_which_ran_to_the_cap(tmp_path: Path, capsys) -> None:
    from promptworth.cli import main

    steps = {"wall_s": 1.0, "steps": 40}
    ends = [("prompt", 10, "patience"), ("prompt", 20, "cap"), ("head", 10, "patience"), ("head", 20, "patience"),
            ("head", 40, "cap"), ("prompt", 0, None),  # the zero-shot point, no step
            ("setfit", 10, "cap")]  # patience cannot stop SetFit (it selects nothing on dev): counted apart
    for method, size, stopped in ends:
        write(tmp_path / "r" / f"{method}-{size}.json",
              record(method=method, train_size=size, stopped=stopped, timing=steps if stopped else {"wall_s": 1.0}))
    assert main(["aggregate", str(tmp_path / "r"), "--out", str(tmp_path / "runs.csv")]) == 0
    out = capsys.readouterr().out
    assert ("stopped: 6 runs trained: 3 stopped by patience, 2 at the cap (40.0%): head 1, prompt 1; 1 that select "
            "nothing on dev ran to their end (setfit)") in out
    for path in (tmp_path / "r").glob("*.json"):
        path.unlink()
    write(tmp_path / "r" / "free.json", record(stopped=None, timing={"wall_s": 1.0}))
    assert main(["aggregate", str(tmp_path / "r"), "--out", str(tmp_path / "runs.csv")]) == 0
    assert "stopped: 1 runs; none took a training step" in capsys.readouterr().out


def test_a_cost_that_is_not_a_number_is_an_error(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.json", record(timing={"wall_s": 1.0, "flops": {"train": "many"}}))
    with pytest.raises(PromptworthError, match="key 'timing.flops.train' must be a number"):
        read_record(bad)


def test_the_table_names_each_runs_parts_parameters_step_time_and_memory(tmp_path: Path) -> None:
    parts = {"objective": "prompt", "tuning": "lora", "options": {"r": 8}}
    timing = {"wall_s": 30.0, "train_s": 20.0, "steps": 50, "peak_rss_gb": 2.5}
    write(tmp_path / "r" / "new.json", record(method="prompt-lora", method_parts=parts, timing=timing,
                                              parameters={"trainable": 460800, "total": 134975808}))
    # a record from before methods had parts: a built-in's parts come from the registry
    write(tmp_path / "r" / "old.json", record(method="head", template_name=None))
    table = collect([tmp_path / "r"]).set_index("method")
    assert table.loc["prompt-lora", ["objective", "tuning"]].tolist() == ["prompt", "lora"]
    assert table.loc["prompt-lora", "trainable_params"] == 460800 and table.loc["prompt-lora", "total_params"] == 134975808
    assert table.loc["prompt-lora", "step_s"] == 0.4 and table.loc["prompt-lora", "peak_rss_gb"] == 2.5
    assert table.loc["head", ["objective", "tuning"]].tolist() == ["head", "full"]
    assert pd.isna(table.loc["head", "trainable_params"]) and math.isnan(table.loc["head", "step_s"])
    out = tmp_path / "runs.csv"
    collect([tmp_path / "r"]).to_csv(out, index=False)
    assert "460800," in out.read_text() and "460800.0" not in out.read_text()  # counts stay integers
    assert read_table(out).set_index("method").loc["prompt-lora", "tuning"] == "lora"


def test_the_table_says_how_each_run_stopped(tmp_path: Path) -> None:
    """Records made before the key trained their whole budget: "cap" when they took a step."""
    steps = {"wall_s": 1.0, "train_s": 1.0, "steps": 10}
    write(tmp_path / "r" / "early.json", record(method="prompt", stopped="patience", timing=steps))
    write(tmp_path / "r" / "free.json", record(method="zeroshot", stopped=None, timing={**steps, "steps": 0}))
    write(tmp_path / "r" / "old.json", record(method="head", template_name=None, timing=steps))
    write(tmp_path / "r" / "old-free.json", record(method="majority", timing={**steps, "steps": 0}))
    write(tmp_path / "r" / "oldest.json", record(method="null"))  # no step count either
    out = tmp_path / "runs.csv"
    write_csv(collect([tmp_path / "r"]), out)
    stopped = read_table(out).set_index("method")["stopped"].to_dict()
    assert stopped == {"head": "cap", "majority": "", "null": "", "prompt": "patience", "zeroshot": ""}


def test_the_table_carries_each_runs_score_at_each_budget(tmp_path: Path) -> None:
    """One score_at_<B> column per budget any record has (in increasing order), empty for a run
    without it; they read back as numbers."""
    at_200 = {**BUDGET, "steps": 200, "reached": False, "best_step": 120, "score": 0.7,
              "test": {"macro_f1": 0.7}}
    write(tmp_path / "r" / "a.json", record(budgets=[BUDGET, at_200]))
    write(tmp_path / "r" / "b.json", record(method="head", template_name=None, budgets=None))
    write(tmp_path / "r" / "c.json", record(method="null"))  # before budgets: no key
    table = collect([tmp_path / "r"])
    assert list(table.columns) == [*BASE_COLUMNS, "score_at_50", "score_at_200", "test_acc", "test_macro_f1"]
    out = tmp_path / "runs.csv"
    write_csv(table, out)
    back = read_table(out).set_index("method")
    assert back.loc["prompt", ["score_at_50", "score_at_200"]].tolist() == [0.55, 0.7]
    assert back.loc[["head", "null"], "score_at_50"].isna().all()
    out.write_text(out.read_text().replace("0.55,", "high,", 1))
    with pytest.raises(PromptworthError, match="column 'score_at_50': 'high' is not a number"):
        read_table(out)


def test_docs_describe_every_key_of_the_record_definition() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "contracts.md").read_text(encoding="utf-8")
    section = text.split("## Run record")[1].split("\n## ")[0]
    assert not [key.name for key in records.KEYS if not re.search(rf"\b{key.name}\b", section)]


def test_training_writes_only_what_the_analysis_reads() -> None:
    written = {key.name: record()[key.name] if key.name in record() else None for key in records.KEYS}
    written.update(schema_version=records.SCHEMA_VERSION, model_sha256="ab", model_kind="mlm", model_dtype="fp32",
                   dev_size=32, test_size=300, train_loss={"first": 0.7, "last": 0.2, "mean_last_10": 0.3},
                   method_parts={"objective": "prompt", "tuning": "full", "options": {}},
                   parameters={"trainable": 5, "total": 5},
                   levers={"attention": "eager", "grad_clip": "in_optimizer", "frozen_features": "none",
                           "embedding_update": "touched_rows"})
    assert list(records.finish(dict(reversed(written.items())))) == [key.name for key in records.KEYS]
    assert records.finish({**written, "budgets": [BUDGET]})["budgets"] == [BUDGET]
    with pytest.raises(PromptworthError, match="key 'train_size' must be an integer"):
        records.finish({**written, "train_size": "32"})
    with pytest.raises(PromptworthError, match="non-finite number .* at train_loss.last; no record is written"):
        records.finish({**written, "train_loss": {"last": float("nan")}})
    with pytest.raises(PromptworthError, match="key 'model_dtype' must be one of fp32, bf16, fp16, got 'fp8'"):
        records.finish({**written, "model_dtype": "fp8"})
    with pytest.raises(PromptworthError, match="key 'model_hub' must be an object with an id, revision and commit"):
        records.finish({**written, "model_hub": {"id": "gpt2"}})
    with pytest.raises(AssertionError, match="missing \\['device'\\], unknown \\['extra'\\]"):
        records.finish({**{k: v for k, v in written.items() if k != "device"}, "extra": 1})


def test_records_citing_a_file_that_changed_are_refused(tmp_path: Path, monkeypatch) -> None:
    """A learning-rate selection, a search result or a pilot record cited by sha256: two records
    citing two versions of it, or one citing a version that is no longer the file, are an error
    (before: aggregated side by side)."""
    monkeypatch.chdir(tmp_path)
    selection = tmp_path / "lr" / "prompt.json"
    selection.parent.mkdir()
    selection.write_text('{"learning_rate": 0.001}', encoding="utf-8")
    sha = hashlib.sha256(selection.read_bytes()).hexdigest()
    cite = {"file": "lr/prompt.json", "sha256": sha, "learning_rate": 0.001}
    write(tmp_path / "r" / "1.json", record(lr_selection=cite))
    write(tmp_path / "r" / "2.json", record(lr_selection=cite, train_seed=2))
    assert len(collect([tmp_path / "r"])) == 2
    write(tmp_path / "r" / "2.json", record(lr_selection={**cite, "sha256": "0" * 64}, train_seed=2))
    with pytest.raises(PromptworthError, match=r"run records cite two versions of the learning-rate selection "
                                               r"lr/prompt.json: .*1.json \(sha256 [0-9a-f]{12}…\) and .*2.json"):
        collect([tmp_path / "r"])
    (tmp_path / "r" / "2.json").unlink()
    selection.write_text('{"learning_rate": 0.5}', encoding="utf-8")
    with pytest.raises(PromptworthError, match=r"cites the learning-rate selection lr/prompt.json with sha256 .* but "
                                               r"the file now has sha256 .*it changed after the run"):
        collect([tmp_path / "r"])
    pilot = {"file": "lr/prompt.json", "sha256": "1" * 64}
    write(tmp_path / "r" / "1.json", record(lr_selection={"file": "elsewhere.json", "sha256": sha, "pilot": pilot}))
    with pytest.raises(PromptworthError, match=r"cites the pilot run lr/prompt.json with sha256 111111111111…"):
        collect([tmp_path / "r"])
    write(tmp_path / "r" / "1.json", record(search={"file": "lr/prompt.json", "sha256": "2" * 64, "wall_s": 1.0}))
    with pytest.raises(PromptworthError, match=r"cites the search result lr/prompt.json"):
        collect([tmp_path / "r"])


def test_records_of_one_model_on_two_sets_of_weights_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "r" / "1.json", record(model_sha256="a" * 64))
    write(tmp_path / "r" / "2.json", record(model_sha256="a" * 64, train_seed=2))
    assert len(collect([tmp_path / "r"])) == 2
    write(tmp_path / "r" / "2.json", record(model_sha256="b" * 64, train_seed=2))
    with pytest.raises(PromptworthError, match=r"run records of model 'roberta-large' were trained on different "
                                               r"weights: .*1.json \(model_sha256 aaaaaaaaaaaa…\) and .*2.json"):
        collect([tmp_path / "r"])
