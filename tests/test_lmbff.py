"""LM-BFF's Table 3 beside ours: the transcribed numbers, the rows our runs fill, the verb."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from promptworth.analysis import lmbff as published
from promptworth.analysis.summary_plots import published_figure
from promptworth.analysis.table_format import MISSING, parse_markdown
from promptworth.cli import main
from promptworth.errors import PromptworthError

# the reference README's task headers, by our registry's task names
HEADERS = {"SST-2": "SST-2", "SST-5": "sst-5", "MR": "mr", "CR": "cr", "MPQA": "mpqa", "Subj": "subj", "TREC": "trec",
           "CoLA (MCC)": "CoLA", "MNLI": "MNLI", "MNLI-mm": "MNLI-mm", "SNLI": "SNLI", "QNLI": "QNLI", "RTE": "RTE",
           "MRPC (F1)": "MRPC", "QQP (F1)": "QQP", "STS-B (Pearson)": "STS-B"}


def reference_table(reference_dir: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """LM-BFF's Table 3 as the reference README prints it: (row key, task) -> (mean, std)."""
    text = (reference_dir / "README.md").read_text(encoding="utf-8")
    section = text.split("## LM-BFF headline results")[1].split("LM-BFF's protocol")[0]
    keys = [row.key for row in published.LMBFF_ROWS]
    found = {}
    for table in re.findall(r"\| method \|.*?(?=\n\n|\Z)", section, re.S):
        lines = table.strip().splitlines()
        header = [c.strip() for c in lines[0].strip("|").split("|")][1:]
        assert len(lines) - 2 == len(keys)  # the same rows, in the same order
        for key, line in zip(keys, lines[2:]):
            for name, cell in zip(header, [c.strip() for c in line.strip("|").split("|")][1:]):
                if cell != "–":
                    mean, _, std = cell.replace("−", "-").partition(" (")
                    found[key, HEADERS[name]] = (float(mean), float(std.rstrip(")")) if std else math.nan)
    return found


def test_the_transcribed_numbers_are_the_references(reference_dir):
    theirs, ours = reference_table(reference_dir), published.published()
    assert len(ours) == 143  # 9 rows x 16 columns, less STS-B's majority row
    assert ours.keys() == theirs.keys()
    for key, (mean, std) in theirs.items():
        assert ours[key][0] == mean and (ours[key][1] == std or math.isnan(std) and math.isnan(ours[key][1]))


def runs(rows: list[tuple[str, str, int, float, float]]) -> pd.DataFrame:
    """A tidy results table from (task, method, train_size, score, process_s), one seed each."""
    out = []
    for i, (task, method, size, score, seconds) in enumerate(rows):
        out.append({"task": task, "method": method, "model": "tiny", "train_size": size, "seed": f"{i}-1",
                    "metric": "acc", "score": score, "process_s": seconds})
    return pd.DataFrame(out)


def test_our_runs_fill_lmbffs_rows_and_rows_of_our_own():
    table = runs([
        ("SST-2", "prompt", 32, 0.80, 100.0), ("SST-2", "prompt", 32, 0.90, 120.0),
        ("SST-2", "head", 32, 0.60, 50.0), ("SST-2", "head", 6888, 0.85, 3000.0),
        ("SST-2", "majority", 32, 0.509, 6.0), ("SST-2", "zeroshot-calibrated", 32, 0.7, 20.0),
    ])
    frame = published.published_frame(table)
    row = frame[(frame["row"] == "prompt") & (frame["task"] == "SST-2")].iloc[0]
    assert row["mean"] == pytest.approx(0.85) and row["std"] == pytest.approx(0.05) and row["n_runs"] == 2
    assert (row["published_mean"], row["published_std"]) == (92.7, 0.9) and row["process_s"] == 220.0
    # the head at the larger size is LM-BFF's full-data row, not its K-shot one
    full = frame[frame["row"] == "finetune-full"].iloc[0]
    assert full["mean"] == pytest.approx(0.85) and full["published_mean"] == 95.0
    assert frame[frame["row"] == "finetune"].iloc[0]["mean"] == pytest.approx(0.60)
    header, rows = parse_markdown(published.published_markdown(frame))
    assert header == ["row", "model", "SST-2 ours", "SST-2 LM-BFF", "CPU h (runs)"]
    assert {r[1] for r in rows} == {"tiny"}
    by_label = {r[0]: r[2:] for r in rows}
    assert by_label["majority class (`majority`)"] == ["50.9", "50.9", f"{6 / 3600:.2f} (1)"]
    assert by_label["prompt-based fine-tuning, manual template (`prompt`)"][:2] == ["85.0 (5.0)", "92.7 (0.9)"]
    assert by_label["in-context learning (GPT-3 style), no training (`icl`)"] == [MISSING, "84.8 (1.3)", MISSING]
    assert by_label["ours: zeroshot-calibrated"] == ["70.0", MISSING, f"{20 / 3600:.2f} (1)"]
    # a search method's searches count in its row's time
    searched = runs([("SST-2", "prompt-autotemplate", 32, 0.9, 100.0)]).assign(search_s=[500.0])
    frame = published.published_frame(pd.concat([table.assign(search_s=0.0), searched], ignore_index=True))
    assert frame[frame["row"] == "autotemplate"].iloc[0]["process_s"] == 600.0
    assert frame[frame["row"] == "prompt"].iloc[0]["process_s"] == 220.0
    assert [r[0] for r in rows][-1] == "ours: zeroshot-calibrated"  # after all of LM-BFF's rows


def test_more_than_the_kshot_and_full_sizes_is_an_error():
    table = runs([("SST-2", "head", size, 0.6, 1.0) for size in (32, 64, 6888)])
    with pytest.raises(PromptworthError, match="task SST-2 has runs at 3 training sizes"):
        published.published_frame(table)


def test_the_verb_writes_the_table_and_figure_at_once(tmp_path):
    path = tmp_path / "runs.csv"
    runs([("trec", "prompt", 96, 0.6, 10.0), ("trec", "head", 96, 0.5, 10.0)]).to_csv(path, index=False)
    out = tmp_path / "paper"
    assert main(["lmbff-table", str(path), "--out-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["lmbff.csv", "lmbff.md", "lmbff.pdf", "lmbff.png", "lmbff.tex"]
    assert (out / "lmbff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "bad.csv"
    runs([("trec", "prompt", 96, np.nan, 10.0)]).to_csv(bad, index=False)
    assert main(["lmbff-table", str(bad), "--out-dir", str(tmp_path / "nothing")]) == 2
    assert not (tmp_path / "nothing").exists()


def test_each_model_fills_the_rows_of_its_own():
    table = runs([("SST-2", "prompt", 32, 0.80, 100.0), ("SST-2", "head", 32, 0.60, 50.0)])
    large = runs([("SST-2", "prompt", 32, 0.90, 300.0)]).assign(model="large")
    frame = published.published_frame(pd.concat([table, large], ignore_index=True))
    prompt = frame[frame["row"] == "prompt"]
    assert prompt[["model", "mean", "process_s"]].values.tolist() == [["tiny", 0.80, 100.0], ["large", 0.90, 300.0]]
    header, rows = parse_markdown(published.published_markdown(frame))
    by_row = {(r[0], r[1]): r[2:] for r in rows}
    assert by_row["fine-tuning with a head (`head`)", "large"][0] == MISSING  # no head on the large model
    assert by_row["prompt-based fine-tuning, manual template (`prompt`)", "large"][:2] == ["90.0", "92.7 (0.9)"]
    figure = published_figure(frame)  # a bar per row and model
    assert len(figure.axes[0].get_yticklabels()) == 2 * len(published.LMBFF_ROWS)
    # a row not run is no bar (never a bar at 0 %) but the words "not run"; the axis says what it is
    ax = figure.axes[0]
    assert len(ax.patches) == 3 and all(bar.get_width() > 50 for bar in ax.patches)
    assert sum(text.get_text() == "not run" for text in ax.texts) == 2 * len(published.LMBFF_ROWS) - 3
    assert ax.get_xlabel() == "test score (x100)"
