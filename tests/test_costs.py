"""Snakemake's benchmarks of the training jobs -> ``tables/costs.csv`` (``promptworth costs``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from promptworth.analysis.costs import COLUMNS, RUN_COLUMNS
from promptworth.cli import main

REPO = Path(__file__).resolve().parents[1]
# A published run record (the first edition's, reports/v1/runs): the real thing the costs table
# names its rows by.
RECORD = sorted((REPO / "reports" / "v1" / "runs").rglob("*.json"))[0]
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
ROW = "38.17\t0:00:38\t381.38\t1934.75\t257.50\t275.95\t0.00\t0.02\t11.48\t4.53"


@pytest.fixture(scope="module")
def snakemake_benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A benchmark written by the installed Snakemake itself, of a job that holds ~80 MB for 1.5 s."""
    folder = tmp_path_factory.mktemp("bench")
    (folder / "Snakefile").write_text(
        'rule job:\n'
        '    output: "done"\n'
        '    benchmark: "job.tsv"\n'
        '    shell: "python -c \'import time; x = bytearray(80 * 2**20); time.sleep(1.5)\' && touch {output}"\n',
        encoding="utf-8",
    )
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--quiet"], cwd=folder, check=True,
                   capture_output=True, timeout=120)
    return folder / "job.tsv"


def costs(tmp_path: Path, runs: list[Path], benchmarks: list[Path], capsys) -> tuple[int, str, Path]:
    out = tmp_path / "tables" / "costs.csv"
    status = main(["costs", "--runs", *map(str, runs), "--benchmarks", *map(str, benchmarks), "--out", str(out)])
    return status, capsys.readouterr().err, out


def benchmark(tmp_path: Path, text: str, name: str = "run.tsv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_real_benchmark_becomes_one_row_named_by_its_run(tmp_path, snakemake_benchmark, capsys):
    status, err, out = costs(tmp_path, [RECORD], [snakemake_benchmark], capsys)
    assert status == 0, err
    table = pd.read_csv(out)
    assert list(table.columns) == list(COLUMNS)
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    row = table.iloc[0]
    assert {name: row[name] for name in RUN_COLUMNS} == {name: record[name] for name in RUN_COLUMNS}
    assert 1.5 <= row["wall_s"] < 60
    assert row["max_rss_mb"] >= 80  # the job held 80 MB
    assert row["cpu_s"] >= 0 and row["mean_load"] >= 0


def test_rows_follow_the_runs_and_unmeasured_values_stay_empty(tmp_path, capsys):
    measured = benchmark(tmp_path, f"{HEADER}\n{ROW}\n", "a.tsv")
    # a job that ended before Snakemake's first sample: only its wall time is known
    instant = benchmark(tmp_path, f"{HEADER}\n0.0100\t0:00:00\tNA\tNA\tNA\tNA\t-\t-\tNA\tNA\n", "b.tsv")
    status, err, out = costs(tmp_path, [RECORD, RECORD], [measured, instant], capsys)
    assert status == 0, err
    table = pd.read_csv(out)
    assert table["wall_s"].tolist() == [38.17, 0.01]
    assert table.loc[0, "max_rss_mb"] == 381.38 and table.loc[0, "io_out_mb"] == 0.02
    assert table.loc[1, ["max_rss_mb", "cpu_s", "io_in_mb"]].isna().all()


def test_a_pooled_run_keeps_its_jobs_wall_time_and_its_own_peak_not_its_clients_processes(tmp_path, capsys):
    record = json.loads(RECORD.read_text(encoding="utf-8"))  # the first edition's: made before `pooled`
    runs = []
    for pooled in (True, False):
        changed = {**record, "train_seed": int(pooled), "timing": {**record["timing"], "pooled": pooled,
                                                                     "peak_rss_gb": 3.25}}
        runs.append(tmp_path / f"pooled-{pooled}.json")
        runs[-1].write_text(json.dumps(changed), encoding="utf-8")
    measured = benchmark(tmp_path, f"{HEADER}\n{ROW}\n")
    status, err, out = costs(tmp_path, [*runs, RECORD], [measured] * 3, capsys)
    assert status == 0, err
    table = pd.read_csv(out, dtype={"pooled": "string"})
    assert table["pooled"].fillna("").tolist() == ["true", "false", ""]  # empty: the record does not say
    assert table["wall_s"].tolist() == [38.17] * 3
    # the pool's client held 381 MB and used 4.5 CPU seconds: not what training took
    assert table.loc[0, ["cpu_s", "mean_load", "max_rss_mb", "max_pss_mb", "io_out_mb"]].isna().all()
    assert table.loc[1, "max_rss_mb"] == 381.38 and table.loc[1, "cpu_s"] == 4.53
    assert table["peak_rss_gb"].tolist()[:2] == [3.25, 3.25]


def test_extended_benchmarks_are_read_too(tmp_path, capsys):
    # `snakemake --benchmark-extended` appends columns (job id, rule, wildcards, ...): ignored
    extended = benchmark(tmp_path, f"{HEADER}\tjobid\trule_name\n{ROW}\t7\ttrain\n")
    status, err, out = costs(tmp_path, [RECORD], [extended], capsys)
    assert status == 0, err
    assert pd.read_csv(out)["max_rss_mb"].tolist() == [381.38]


def test_no_runs_give_a_table_of_columns_only(tmp_path, capsys):
    # a resumed study whose runs were all trained before benchmarks were recorded
    status, err, out = costs(tmp_path, [], [], capsys)
    assert status == 0, err
    assert out.read_text(encoding="utf-8").strip() == ",".join(COLUMNS)


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "no such benchmark file"),
        ("", "empty file"),
        (f"{HEADER}\n", "expected one benchmark row, found 0"),
        (f"{HEADER}\n{ROW}\n{ROW}\n", "expected one benchmark row, found 2"),
        (HEADER.replace("max_rss", "rss") + f"\n{ROW}\n", "missing benchmark column(s) max_rss"),
        (f"{HEADER}\n{ROW.rsplit(chr(9), 1)[0]}\n", "the row has 9 fields, the header 10"),
        (f"{HEADER}\n{ROW.replace('381.38', 'lots')}\n", "column 'max_rss' is 'lots', not a non-negative number"),
        (f"{HEADER}\n{ROW.replace('381.38', '-3')}\n", "column 'max_rss' is '-3'"),
        (f"{HEADER}\n{ROW.replace('381.38', 'inf')}\n", "column 'max_rss' is 'inf'"),
        (f"{HEADER}\n{ROW.replace('38.17', 'NA')}\n", "column 's' is 'NA'"),  # the wall time is always measured
        (b"s\th:m:s\n\xff\xfe\n", "cannot read"),
    ],
)
def test_a_bad_benchmark_is_one_line_and_writes_nothing(tmp_path, capsys, text, message):
    path = tmp_path / "bad.tsv"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text, encoding="utf-8")
    good = benchmark(tmp_path, f"{HEADER}\n{ROW}\n", "good.tsv")
    status, err, out = costs(tmp_path, [RECORD, RECORD], [good, path], capsys)
    assert status == 2
    assert err.startswith("promptworth: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not out.parent.exists()  # not even the folder: nothing partial


def test_a_bad_run_record_or_a_missing_pair_is_one_line(tmp_path, capsys):
    good = benchmark(tmp_path, f"{HEADER}\n{ROW}\n")
    not_a_record = tmp_path / "x.json"
    not_a_record.write_text("{}", encoding="utf-8")
    status, err, out = costs(tmp_path, [not_a_record], [good], capsys)
    assert status == 2 and "missing key 'schema_version'" in err and err.count("\n") == 1
    status, err, out = costs(tmp_path, [RECORD, RECORD], [good], capsys)
    assert status == 2 and "2 run records but 1 benchmarks" in err
    assert not out.exists()


def test_an_existing_table_stays_whole_when_an_input_is_bad(tmp_path, capsys):
    good = benchmark(tmp_path, f"{HEADER}\n{ROW}\n")
    status, _, out = costs(tmp_path, [RECORD], [good], capsys)
    assert status == 0
    before = out.read_bytes()
    status, _, _ = costs(tmp_path, [RECORD], [tmp_path / "missing.tsv"], capsys)
    assert status == 2
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == ["costs.csv"]  # no temp file left
