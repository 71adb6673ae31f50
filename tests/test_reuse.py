"""A study reuses a record only when it is what the study asks for (promptworth.study.reuse): a
record trained under other settings, at another selection, or deleted, trains again; aggregate
refuses what differs, naming the key; runs_dir reads only the study's runs.

The tiny study runs once (conftest.tiny_study); each test changes a copy and runs it again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny_study import HEAD, PROMPT, SELECTION, ZERO, snakemake, write_config

from promptworth.cli import main
from promptworth.files import sha256_file
from promptworth.study.reuse import asked, difference, reuse
from promptworth.study.load import load_study
from promptworth.study.planning import plan
from promptworth.study.published import STUDIES, published_study
from promptworth.study.config_file import schema_file



def study_of(configfile: Path):
    return load_study(yaml.safe_load(configfile.read_text(encoding="utf-8")), schema_file())


def steps(path: Path) -> int:
    return json.loads(path.read_text(encoding="utf-8"))["hyperparameters"]["max_steps"]


@pytest.mark.slow
def test_the_finished_tiny_study_reuses_every_record(tiny_study, monkeypatch):
    monkeypatch.chdir(tiny_study.folder)
    found = reuse(study_of(tiny_study.configfile))
    assert found.stale == {} and found.selections == {}
    again = snakemake(tiny_study.folder, tiny_study.configfile, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout, again.stdout[-2000:]


@pytest.mark.slow
def test_a_record_trained_under_other_settings_trains_again_from_another_working_folder(tiny_study, tmp_path):
    """Study B (max_steps 3) writes to study A's results_dir (max_steps 4) from a working folder of
    its own, where Snakemake has no memory of A's jobs (before: "Nothing to be done", and B's
    tables held A's records)."""
    study = tiny_study.copy(tmp_path / "a")
    other = tmp_path / "b"
    other.mkdir()
    shutil.copytree(study / "resources", other / "resources")  # the model B names (its own folder)
    configfile = write_config(other / "b.yaml", results_dir=str(study / "results"), training={"max_steps": 3})
    assert steps(study / HEAD) == 4
    # aggregate with B's study refuses A's records, naming the key that differs
    runs = [str(study / PROMPT), str(study / HEAD)]
    refused = snakemake(other, configfile, "-n")
    assert "[promptworth] 5 run record(s) are not what the study asks for; they train again" in refused.stderr
    assert "hyperparameters.max_steps is 4 in the record, the study asks for 3" in refused.stderr

    result = snakemake(other, configfile)
    assert result.returncode == 0, result.stderr[-3000:]
    assert steps(study / HEAD) == steps(study / PROMPT) == 3
    # the records moved aside are kept, under results/stale/ (never deleted)
    kept = study / "results" / "stale" / HEAD.relative_to("results")
    assert kept.is_file() and steps(kept) == 4
    table = pd.read_csv(study / "results" / "runs.csv")
    assert sorted(table["steps"]) == [0, 3, 3]  # the untrained prompt takes no step
    # the pilots of the selection trained again too (their settings changed), and it chose again
    pilots = sorted((study / "results" / "lr-grid").rglob("*.json"))
    assert len(pilots) == 2 and [steps(p) for p in pilots] == [3, 3]
    cited = json.loads((study / SELECTION).read_text())["runs"]
    assert sorted((other / run["file"]).resolve() for run in cited) == [p.resolve() for p in pilots]

    # A's own working folder now sees B's records as not its own, and says which key differs
    back = snakemake(study, study / "tiny.yaml", "-n")
    assert "hyperparameters.max_steps is 3 in the record, the study asks for 4" in back.stderr
    assert main(["aggregate", *runs, "--study", str(study / "tiny.yaml"), "--out", str(tmp_path / "x.csv")]) == 2


@pytest.mark.slow
def test_a_deleted_record_and_a_deleted_selection_train_again(tiny_study, tmp_path):
    """(before: "Nothing to be done", and runs.csv kept the deleted run's row)"""
    study = tiny_study.copy(tmp_path / "study")
    old_head = json.loads((study / HEAD).read_text())["timing"]["finished_at"]
    (study / HEAD).unlink()
    (study / SELECTION).unlink()  # config/README.md: delete it to choose again
    dry = snakemake(study, study / "tiny.yaml", "-n")
    assert "its learning-rate selection results/lr/tiny-llama/SST-2/prompt.json is gone" in dry.stderr
    result = snakemake(study, study / "tiny.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (study / HEAD).is_file() and (study / SELECTION).is_file()
    assert json.loads((study / HEAD).read_text())["timing"]["finished_at"] >= old_head
    prompt = json.loads((study / PROMPT).read_text())
    assert prompt["lr_selection"]["sha256"] == sha256_file(study / SELECTION)
    table = pd.read_csv(study / "results" / "runs.csv")
    assert sorted(table["method"]) == ["head", "prompt", "prompt"]


@pytest.mark.slow
def test_an_edited_selection_is_refused_by_the_runs_that_read_it(tiny_study, tmp_path):
    """A selection whose learning_rate is set to a rate its pilots did not choose: the runs citing
    the old file train again, and their training refuses the file (before: trained at 0.5)."""
    study = tiny_study.copy(tmp_path / "study")
    selection = json.loads((study / SELECTION).read_text())
    (study / SELECTION).write_text(json.dumps({**selection, "learning_rate": 0.5}), encoding="utf-8")
    result = snakemake(study, study / "tiny.yaml")
    assert result.returncode != 0
    assert "lr_selection.sha256" in result.stderr and "it changed after the run" in result.stderr
    log = (study / "results/logs/train/tiny-llama/SST-2/prompt/8-1-1.log").read_text()
    assert "its learning_rate 0.5 does not follow from its own pilot scores" in log
    assert not (study / PROMPT).exists() and (study / "results" / "stale" / PROMPT.relative_to("results")).is_file()


@pytest.mark.slow
def test_runs_dir_reads_only_the_study_s_runs(tiny_study, tmp_path, capsys):
    """A stray record of a method the study does not have, under its runs_dir (before: it landed
    in runs.csv, the tables and the figures)."""
    study = tiny_study.copy(tmp_path / "study")
    runs = study / "results" / "runs"
    stray = runs / "tiny-llama" / "SST-2" / "prompt-lora" / "8-1-1.json"
    stray.parent.mkdir(parents=True)
    shutil.copy(runs / PROMPT.relative_to("results/runs"), stray)
    configfile = write_config(study / "figures.yaml", runs_dir=str(runs), results_dir=str(tmp_path / "out"))
    result = snakemake(study, configfile)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"promptworth: warning: 1 file(s) under runs_dir {runs} are not records of the study's runs and are left " \
           f"out: {stray}" in result.stderr
    table = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert sorted(table["method"]) == ["head", "prompt", "prompt"]
    # a record deleted from runs_dir: the table is made again without it (a file that is gone is
    # nothing Snakemake sees; before: "Nothing to be done", and runs.csv kept its row)
    (runs / ZERO.relative_to("results/runs")).unlink()
    again = snakemake(study, configfile)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"[promptworth] {tmp_path / 'out' / 'runs.csv'} is made again: it holds 3 runs, runs_dir 2 records" in \
        again.stderr
    assert sorted(pd.read_csv(tmp_path / "out" / "runs.csv")["train_size"]) == [8, 8]
    # aggregate itself: a warning, or with --strays error an error
    out = tmp_path / "agg.csv"
    assert main(["aggregate", str(runs), "--study", str(configfile), "--out", str(out)]) == 0
    assert "1 file(s) are not records of the study's runs" in capsys.readouterr().err
    assert main(["aggregate", str(runs), "--study", str(configfile), "--strays", "error", "--out", str(out)]) == 2
    assert "(--strays error)" in capsys.readouterr().err


# config, its results_dir, the fewest records it has: every set whose records are committed
# (promptworth.study.published; the third edition's records are committed as they finish)
PUBLISHED = [(study.config.as_posix(), study.folder.as_posix(), 14 if study.complete else 0) for study in STUDIES]


@pytest.mark.parametrize("name, results, least", PUBLISHED)
def test_every_published_record_is_what_its_config_asks_for(name, results, least, monkeypatch):
    """`make publish` resumes the published study and `make figures` redraws it: none of their
    committed records (nor pilots, nor selections) may look like another study's, or they would
    train again (or be refused)."""
    from tiny_study import REPO

    monkeypatch.chdir(REPO)
    config = yaml.safe_load((REPO / name).read_text(encoding="utf-8"))
    config.update(results_dir=results)
    config.pop("runs_dir", None)
    study = load_study(config, schema_file())
    found = reuse(study)
    assert found.stale == {} and found.selections == {}
    assert sum(Path(study.run_file(run)).is_file() for run in plan(study)) >= least


def test_the_tiny_variant_reads_published_records_as_they_were_trained(monkeypatch):
    """`PROMPTWORTH_FAST=1 make figures` re-reads the published records (runs_dir): the tiny
    variant shrinks what a study trains, never what it asks of records it only reads."""
    from tiny_study import REPO

    from promptworth.study import tiny_variant as fast
    from promptworth.study.reuse import asked

    monkeypatch.chdir(REPO)
    config = yaml.safe_load((REPO / "config" / "studies" / "study-v2.yaml").read_text(encoding="utf-8"))
    config.update(runs_dir="reports/v2/runs")
    monkeypatch.setenv(fast.ENV, "1")
    study = load_study(fast.study_config(config), schema_file())
    first = next(iter(plan(study)))
    asks = asked(study, first)
    assert asks.values["hyperparameters.max_steps"] == config["training"]["max_steps"]
    # its own small splits and selections (results/fast/...) are not what the records trained on
    assert (asks.split_folder, asks.selection, asks.search) == (None, None, None)
    assert reuse(study).stale == {}


def test_a_record_from_before_a_training_setting_trained_at_its_default(monkeypatch):
    """Published records lack the minimums before patience (issue 30): they are reused by a study
    that leaves them at their defaults, and train again for one that asks for more."""
    from tiny_study import REPO

    monkeypatch.chdir(REPO)
    v2 = published_study("v2")
    config = yaml.safe_load(v2.config.read_text(encoding="utf-8"))
    config.update(results_dir=v2.folder.as_posix())
    study = load_study(config, schema_file())
    run = next(r for r in plan(study) if r.size != 0 and Path(study.run_file(r)).is_file())
    record = json.loads(Path(study.run_file(run)).read_text(encoding="utf-8"))
    assert "min_epochs_before_patience" not in record["hyperparameters"]
    assert difference(study, asked(study, run), record, missing_is_stale=True) is None
    config["training"]["min_epochs_before_patience"] = 1
    stricter = load_study(config, schema_file())
    assert difference(stricter, asked(stricter, run), record, missing_is_stale=True) == (
        "hyperparameters.min_epochs_before_patience is absent in the record (its default 0), the study asks for 1")
