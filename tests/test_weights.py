"""A run's fine-tuned weights (promptworth.training.weights): the reported checkpoint's, saved beside
the record and checksummed in it; loaded into a fresh model they give the run's test predictions
back. And what a study asks of the files beside a record (promptworth.training.outputs)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from ci import unavailable
from tiny_models import sentiment_rows, sentiment_split, tiny_model, tiny_sentence_encoder, write_split

from promptworth.cli import main
from promptworth.errors import PromptworthError
from promptworth.files import sha256_file
from promptworth.study.config_file import schema_file
from promptworth.study.load import load_study
from promptworth.study.planning import plan
from promptworth.study.reuse import Reuse, asked, difference, set_aside
from promptworth.training import evaluation, predictions, run as runs, runtime, weights
from promptworth.training.outputs import outputs_problem
from promptworth.training.request import RunRequest
from promptworth.training.settings import TrainConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return sentiment_split(tmp_path_factory.mktemp("split") / "32-1")


@pytest.fixture(scope="module")
def flat_dev_split(tmp_path_factory) -> Path:
    """A dev set no state of the model can score better on than the first (one sentence, once per
    label): the first evaluation stays the best, and the run trains on past it."""
    rows = sentiment_rows(32, 1)
    dev = [{**rows[0], "idx": 0, "label": 0}, {**rows[0], "idx": 1, "label": 1}]
    return write_split(tmp_path_factory.mktemp("flat") / "32-1", rows, dev, sentiment_rows(8, 3))


def _request(split: Path, method: str, model: str, max_steps: int = 6) -> RunRequest:
    config = TrainConfig(max_steps=max_steps, eval_every=2, learning_rate=1e-3, precision="fp32", schedule="constant",
                         save_weights=True)
    return RunRequest(task="SST-2", method=method, split_dir=split, model=model, seed=3, config=config, test_limit=8,
                      threads=1, progress=False)


def _reloaded(request: RunRequest, record_file: Path) -> tuple[list[float], dict[str, float], bool]:
    """Build the run's method and model afresh (another seed: another new head or LoRA start), load
    the saved weights, evaluate the test rows: the predictions, the metrics, and whether loading
    changed the fresh model."""
    setup = runs._prepare(request)
    runtime.seed_everything(request.seed + 100)
    model = setup.method.load_model()
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    weights.load_into(model, record_file)
    changed = any(not torch.equal(before[name], p) for name, p in model.named_parameters() if p.requires_grad)
    method = setup.method
    result = evaluation.evaluate(method, model, setup.features["test"], setup.task, setup.config, setup.device,
                                 setup.precision, "test", method.model_shape(model), method.content_free())
    return result.predictions, result.metrics, changed


@pytest.mark.parametrize("method, saved", [("prompt", "all"), ("prompt-lora", "trained"), ("head-lora", "trained"),
                                           ("prefix", "trained")])
def test_saved_weights_reload_into_a_fresh_model_and_give_the_run_s_predictions(split, tmp_path, method, saved):
    request = _request(split, method, str(tiny_model("llama")))
    out = tmp_path / "runs" / f"{method}.json"
    record = runs.train_to_file(request, out)
    entry = record["weights"]
    folder = out.parent / entry["folder"]
    assert entry["folder"] == f"{method}.weights" and entry["parameters"] == saved
    assert [item["file"] for item in entry["files"]] == ["weights.safetensors"]
    assert entry["files"][0]["sha256"] == sha256_file(folder / "weights.safetensors")
    assert entry["files"][0]["bytes"] == (folder / "weights.safetensors").stat().st_size
    mask = os.umask(0)
    os.umask(mask)
    assert (folder / "weights.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask  # a plain file, not safetensors' 0600
    assert "save_weights" not in record["hyperparameters"]
    from safetensors import safe_open

    with safe_open(str(folder / "weights.safetensors"), "pt") as handle:
        names, about = set(handle.keys()), handle.metadata()
    assert about["method"] == method and about["best_step"] == str(record["best_step"])
    trainable = record["parameters"]["trainable"]
    with safe_open(str(folder / "weights.safetensors"), "pt") as handle:
        assert sum(handle.get_tensor(name).numel() for name in names) == trainable  # what trained, each once
    if saved == "trained":
        assert trainable < record["parameters"]["total"] and all(("lora_" in n or "score" in n or "prefix" in n)
                                                                for n in names)
    predicted, metrics, changed = _reloaded(request, out)
    assert changed
    decoded = predictions.decode(record)
    assert predicted == decoded.predicted.tolist() and metrics == record["test"]


def test_the_weights_are_the_reported_checkpoint_s_not_the_last_step_s(flat_dev_split, tmp_path):
    """Dev never improves after step 2, so the run reports step 2's state and trains on to step 6:
    its weights are those of a run of 2 steps (a constant rate: the same first steps), bit for bit."""
    model = str(tiny_model("llama"))
    long = runs.train_to_file(_request(flat_dev_split, "prompt-lora", model, 6), tmp_path / "six.json")
    short = runs.train_to_file(_request(flat_dev_split, "prompt-lora", model, 2), tmp_path / "two.json")
    assert long["best_step"] == 2 and long["timing"]["steps"] == 6 and short["best_step"] == 2
    assert long["weights"]["files"][0]["sha256"] != ""
    from safetensors.torch import load_file

    six = load_file(str(tmp_path / "six.weights" / "weights.safetensors"))
    two = load_file(str(tmp_path / "two.weights" / "weights.safetensors"))
    assert six.keys() == two.keys() and all(torch.equal(six[name], two[name]) for name in six)


def test_setfit_saves_its_encoder_and_head_and_they_reload(tmp_path):
    for package in ("setfit", "sentence_transformers"):
        if importlib.util.find_spec(package) is None:
            unavailable(f"{package} is not installed (pip install --no-deps setfit==1.2.0 evaluate==0.4.6, or make)")
    split = write_split(tmp_path / "16-1", sentiment_rows(16, 1), sentiment_rows(16, 2), sentiment_rows(16, 3), size=16)
    request = RunRequest(task="SST-2", method="setfit", split_dir=split, model=str(tiny_sentence_encoder()), seed=1,
                         config=TrainConfig(save_weights=True), threads=1, progress=False)
    record = runs.train_to_file(request, tmp_path / "setfit.json")
    assert record["weights"]["parameters"] == "all"
    setup = runs._prepare(request)
    model = setup.method.load_model()
    weights.load_into(model, tmp_path / "setfit.json")
    texts = [setup.method.text(row) for row in setup.rows["test"]]
    assert setup.method.predict_texts(model, texts, 32).tolist() == predictions.decode(record).predicted.tolist()


def test_weights_that_differ_from_the_record_are_refused(split, tmp_path):
    request = _request(split, "prompt-lora", str(tiny_model("llama")))
    runs.train_to_file(request, tmp_path / "run.json")
    model = runs._prepare(request).method.load_model()
    path = tmp_path / "run.weights" / "weights.safetensors"
    path.write_bytes(path.read_bytes()[:-1] + b" ")
    with pytest.raises(PromptworthError, match="is not the one the run saved"):
        weights.load_into(model, tmp_path / "run.json")
    other = runs._prepare(_request(split, "prompt-bitfit", str(tiny_model("llama")))).method.load_model()
    runs.train_to_file(request, tmp_path / "run.json")  # saved again, whole
    with pytest.raises(PromptworthError, match="do not fit this model"):
        weights.load_into(other, tmp_path / "run.json")


def test_a_switch_flag_alone_is_on_and_the_workflow_s_text_reads_back(split, tmp_path, capsys):
    from promptworth.training.settings import training_args

    assert training_args({"save_weights": True, "metrics": "csv"}) == ["--metrics", "csv", "--save-weights", "true"]
    out = tmp_path / "on.json"
    assert main(["train", "--task", "SST-2", "--method", "prompt-lora", "--split-dir", str(split), "--model",
                 str(tiny_model("llama")), "--seed", "1", "--out", str(out), "--max-steps", "2", "--no-progress",
                 "--test-limit", "4", "--save-weights", "--precision", "fp32"]) == 0
    assert json.loads(out.read_text())["weights"]["parameters"] == "trained"
    assert main(["train", "--task", "SST-2", "--method", "prompt", "--split-dir", str(split), "--model", "x",
                 "--seed", "1", "--out", str(tmp_path / "no.json"), "--save-weights", "maybe"]) == 2
    assert "a switch such as --save-weights is true or false, got 'maybe'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# What a study asks of the files beside a record


def test_a_record_is_reused_unless_it_lacks_the_outputs_asked_for(tmp_path):
    old = {"task": "SST-2"}  # made before the keys: nothing beside it
    none = {"step_metrics": None, "weights": None}
    wrote = {"step_metrics": {"format": "csv", "path": "r.metrics.csv"},
             "weights": {"folder": "r.weights", "parameters": "trained", "files": []}}
    record_file = tmp_path / "r.json"
    for record in (old, none, wrote):  # asked for none: every record will do
        assert outputs_problem(record, record_file, {"metrics": "none", "save_weights": False}, True) is None
    assert outputs_problem(old, record_file, {"save_weights": True}, False) == (
        "weights is absent in the record, the study asks for training.save_weights")
    assert outputs_problem(none, record_file, {"metrics": "csv"}, False) == (
        "step_metrics is null in the record, the study asks for training.metrics csv")
    assert outputs_problem(wrote, record_file, {"metrics": "tensorboard"}, False).startswith("step_metrics is {")
    assert outputs_problem(wrote, record_file, {"metrics": "csv", "save_weights": True}, False) is None
    # the workflow makes a file that is gone again; aggregate cannot check it
    assert outputs_problem(wrote, record_file, {"save_weights": True}, True) == (
        f"its weights {tmp_path / 'r.weights'} is gone (it is made again)")


def test_published_records_are_reused_and_retrained_when_a_study_asks_for_weights(monkeypatch):
    """The second edition's records lack step_metrics and weights: reused at the new settings'
    defaults (no hyperparameter changed), trained again for a study that asks for either."""
    monkeypatch.chdir(REPO)
    config = yaml.safe_load((REPO / "config" / "studies" / "study-v2.yaml").read_text(encoding="utf-8"))
    config.update(results_dir="reports/v2")
    study = load_study(config, schema_file())
    run = next(r for r in plan(study) if r.size != 0 and Path(study.run_file(r)).is_file())
    record = json.loads(Path(study.run_file(run)).read_text(encoding="utf-8"))
    assert "weights" not in record and "save_weights" not in record["hyperparameters"]
    assert difference(study, asked(study, run), record, missing_is_stale=True) is None
    for setting, why in (({"save_weights": True}, "weights is absent in the record"),
                         ({"metrics": "tensorboard"}, "step_metrics is absent in the record")):
        asking = load_study({**config, "training": {**config["training"], **setting}}, schema_file())
        assert difference(asking, asked(asking, run), record, missing_is_stale=True).startswith(why)


def test_a_stale_record_takes_its_files_along_into_stale(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    config.update(results_dir="results")
    study = load_study(config, schema_file())
    record = Path(study.run_file(next(iter(plan(study)))))
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    (record.parent / f"{record.stem}.metrics.csv").write_text("step\n")
    (record.parent / f"{record.stem}.weights").mkdir()
    (record.parent / f"{record.stem}.weights" / "weights.safetensors").write_bytes(b"x")
    moved = set_aside(Reuse(stale={str(record): "why"}, selections={}), study)
    target = Path("results") / "stale" / record.relative_to("results")
    assert moved == [target] and list(record.parent.iterdir()) == []
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(
        [record.name, f"{record.stem}.metrics.csv", f"{record.stem}.weights"])
