"""The Python API (promptworth.api, docs/api.md): the same results as the commands and the workflow."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from tiny_models import tiny_model

import promptworth.api as pw
from promptworth.cli import main
from promptworth.errors import PromptworthError
from promptworth.training.record import read_record

REPO = Path(__file__).resolve().parents[1]
DEFAULT_STUDY = REPO / "reports" / "default-study"


@pytest.fixture
def published_runs(tmp_path, monkeypatch) -> Path:
    """The default study's published records, read from a folder without its splits (not checked)."""
    monkeypatch.chdir(tmp_path)
    return DEFAULT_STUDY / "runs"


def test_analyse_gives_the_published_tables_of_a_study(published_runs, tmp_path):
    analysis = pw.analyse(published_runs, REPO / "config" / "config.yaml", out_dir=tmp_path / "tables")
    assert len(analysis.runs) == len(list(published_runs.rglob("*.json")))
    published = pd.read_csv(DEFAULT_STUDY / "tables" / "advantage.csv")
    assert analysis.advantage[["advantage", "lower", "upper"]].to_numpy().tolist() == \
        published[["advantage", "lower", "upper"]].to_numpy().tolist()
    assert analysis.tables["advantage.md"] == (DEFAULT_STUDY / "tables" / "advantage.md").read_text(encoding="utf-8")
    assert sorted(path.name for path in (tmp_path / "tables").iterdir()) == sorted(analysis.tables)


def test_analyse_refuses_records_of_another_study(published_runs):
    with pytest.raises(PromptworthError, match="none of the run records .* is a run of the study"):
        pw.analyse(published_runs, REPO / "config" / "studies" / "tiny.yaml")


def test_advantage_of_a_dataframe_is_the_command_s(published_runs, tmp_path, capsys):
    runs = pw.analyse(published_runs, REPO / "config" / "config.yaml").runs
    # the four columns a table of one's own has (and the train seed: one per data seed here)
    mine = runs[["method", "train_size", "data_seed", "score"]].astype({"data_seed": int})
    result = pw.advantage(mine, "prompt", "head")
    published = json.loads((DEFAULT_STUDY / "advantage" / "prompt-vs-head.json").read_text(encoding="utf-8"))[0]
    assert result.loc[0, ["advantage", "lower", "upper"]].tolist() == \
        [published["advantage"], published["lower"], published["upper"]]
    # Le Scao & Rush's estimator, as `promptworth advantage --reduction max --interval loo` gives it
    runs.to_csv(tmp_path / "runs.csv", index=False)
    capsys.readouterr()
    assert main(["advantage", str(tmp_path / "runs.csv"), "--reduction", "max", "--interval", "loo", "--json"]) == 0
    command = json.loads(capsys.readouterr().out)[0]
    theirs = pw.advantage(mine, reduction="max", interval="loo")
    assert theirs.loc[0, "advantage"] == command["advantage"] and theirs.loc[0, "reduction"] == "max"
    with pytest.raises(PromptworthError, match="need a data_seed column"):
        pw.advantage(mine.drop(columns="data_seed"))


def test_split_then_train_one_run(tmp_path, data_dir):
    folders = pw.split("SST-2", [8, 16], data_seed=1, out_dir=tmp_path / "splits", dev_size=8, test_limit=16,
                       data_dir=data_dir)
    assert sorted(folders) == [8, 16] and (folders[8] / "manifest.json").is_file()
    record = pw.train("SST-2", "prompt", folders[8], model=str(tiny_model("gpt2")), seed=3, max_steps=2,
                      eval_every=0, precision="fp32", out=tmp_path / "run.json")
    assert (record["task"], record["method"], record["train_size"], record["train_seed"]) == ("SST-2", "prompt", 8, 3)
    assert record["hyperparameters"]["max_steps"] == 2 and record["timing"]["steps"] == 2
    assert read_record(tmp_path / "run.json") == json.loads(json.dumps(record))
    with pytest.raises(PromptworthError, match="unknown training setting 'max_step'"):
        pw.train("SST-2", "prompt", folders[8], model=str(tiny_model("gpt2")), max_step=2)
