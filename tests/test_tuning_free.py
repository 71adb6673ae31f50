"""LM-BFF's rows without training: the majority class, zero-shot prompting and its contextual
calibration (Zhao et al. 2021), on a tiny masked and a tiny causal backbone."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from tiny_models import sentiment_rows, tiny_model, write_split

from promptworth.cli import main
from promptworth.data import tasks
from promptworth.errors import PromptworthError
from promptworth.methods import build, registry, specs as method_specs
from promptworth.methods.objectives import majority
from promptworth.training import evaluation, loop
from promptworth.backbones import load as models
from promptworth.methods.extras import calibrate
from promptworth.training.settings import TrainConfig

SST2 = tasks.get_task("SST-2")
KINDS = ("roberta", "llama")
TUNING_FREE = [spec.name for spec in method_specs.BUILTINS if not spec.tuning_spec.steps]


@pytest.fixture(scope="module")
def backbones():
    return {kind: models.open_backbone(str(tiny_model(kind))) for kind in KINDS}


def test_the_tuning_free_builtins_are_lmbffs_reference_rows():
    assert TUNING_FREE == ["majority", "zeroshot", "zeroshot-calibrated", "icl", "icl-calibrated"]
    specs = method_specs.builtin_methods()
    assert specs["zeroshot-calibrated"].extras == ("calibrate",)
    assert specs["zeroshot"].strategy == "tuning-free prompting"
    assert specs["majority"].strategy == "reference (no model)"


def test_calibration_arithmetic():
    # content-free inputs average to p_cf = (0.8, 0.2); an input with p = (0.6, 0.4) becomes
    # q = normalise(0.6 / 0.8, 0.4 / 0.2) = (0.75, 2) / 2.75
    content_free = torch.log(torch.tensor([[0.7, 0.3], [0.9, 0.1]]))
    scores = torch.log(torch.tensor([[0.6, 0.4]])) + 5.0  # any offset: scores are logits
    calibrated = calibrate.calibrate(scores, content_free).exp()
    assert torch.allclose(calibrated, torch.tensor([[0.75 / 2.75, 2 / 2.75]]), atol=1e-6)
    # calibrating by a uniform reference changes nothing
    same = calibrate.calibrate(scores, torch.zeros(3, 2)).exp()
    assert torch.allclose(same, torch.tensor([[0.6, 0.4]]), atol=1e-6)


def test_the_majority_class_breaks_ties_by_label_order():
    assert majority.majority_class([1, 1, 0], 2) == 1
    assert majority.majority_class([0, 1, 1, 0], 2) == 0
    assert majority.majority_class([2, 1, 2, 1], 3) == 1
    assert majority.majority_class([], 3) == 0


def _fit(method, model, rows):
    features = {part: [method.encode(r) for r in rows[part]] for part in ("train", "dev", "test")}
    config = TrainConfig(max_steps=50, eval_every=10, eval_batch_size=5, precision="fp32")
    return loop.fit(method, model, features["train"], features["dev"], features["test"], SST2, config, 0,
                     torch.device("cpu"), "fp32", progress=False)


def _rows():
    # an unbalanced test set: 8 of 10 positive
    test = [row for row in sentiment_rows(14, 3) if row["label"] == 1] + sentiment_rows(6, 4)[:3]
    return {"train": sentiment_rows(16, 1), "dev": sentiment_rows(8, 2), "test": test}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["zeroshot", "zeroshot-calibrated"])
def test_zero_shot_takes_no_step_and_changes_no_weight(name, kind, backbones):
    method = build.build_method(name, SST2, backbones[kind], 48)
    model = method.load_model()
    assert method.parameter_count.trainable == 0 and method.parameter_count.total > 0
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = _fit(method, model, _rows())
    assert result.steps == 0 and result.losses == [] and result.train_flops == 0 and result.stopped is None
    assert result.best_step == 0 and [point["step"] for point in result.dev_curve] == [0]
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert set(result.test) == {"acc", "f1", "macro_f1", "mcc"}


@pytest.mark.parametrize("kind", KINDS)
def test_calibrated_predictions_are_the_calibrated_argmax_of_the_raw_scores(kind, backbones):
    """The loop's calibrated evaluation equals calibrating the plain zero-shot scores by hand with
    the scores of the three content-free inputs."""
    calibrated = build.build_method("zeroshot-calibrated", SST2, backbones[kind], 48)
    plain = build.build_method("zeroshot", SST2, backbones[kind], 48)
    model = plain.load_model().eval()
    rows = _rows()["test"]
    content_free = calibrated.content_free()
    assert len(content_free) == len(calibrate.CONTENT_FREE)
    with torch.no_grad():
        raw = plain.scores(model, plain.collate([plain.encode(r) for r in rows]))
        reference = plain.scores(model, plain.collate(content_free))
    expected = calibrate.calibrate(raw, reference).argmax(-1)
    shape = calibrated.model_shape(model)
    config = TrainConfig(eval_batch_size=3, precision="fp32")
    got = evaluation.evaluate(calibrated, model, [calibrated.encode(r) for r in rows], SST2, config, torch.device("cpu"),
                         "fp32", "test", shape, content_free)
    assert got.predictions == expected.float().tolist()
    uncalibrated = evaluation.evaluate(plain, model, [plain.encode(r) for r in rows], SST2, config, torch.device("cpu"),
                                  "fp32", "test", shape)
    assert uncalibrated.predictions == raw.argmax(-1).float().tolist()
    assert got.flops > uncalibrated.flops  # the content-free inputs are counted


def test_content_free_inputs_fill_every_field_the_template_reads(backbones):
    method = build.build_method("zeroshot-calibrated", tasks.get_task("RTE"), backbones["llama"], 64)
    texts = [method.tokenizer.decode(feature.sequences[0]) for feature in method.content_free()]
    assert texts[0].count("N/A") == 2 and "[MASK]" in texts[2]


def test_majority_predicts_the_evaluation_set_s_most_frequent_class(tmp_path):
    rows = _rows()
    split = write_split(tmp_path / "10-1", rows["train"], rows["dev"], rows["test"])
    out = tmp_path / "majority.json"
    argv = ["train", "--task", "SST-2", "--method", "majority", "--split-dir", str(split), "--model",
            str(tiny_model("llama")), "--seed", "1", "--out", str(out), "--no-progress",
            "--patience", "2"]  # a study's patience reaches a method that takes no step: nothing to stop
    assert main(argv) == 0
    record = json.loads(out.read_text())
    share = Counter(row["label"] for row in rows["test"]).most_common(1)[0][1] / len(rows["test"])
    assert record["score"] == share == 0.8
    assert record["method_parts"]["majority"]["evaluation"] == SST2.labels[1]
    # the training split is balanced: the tie goes to the label listed first
    assert record["method_parts"]["majority"]["train"] == SST2.labels[0]
    assert record["timing"]["steps"] == 0 and record["train_loss"] is None and record["stopped"] is None
    assert record["parameters"] == {"trainable": 0, "total": 0} and record["timing"]["flops"]["eval"] == 0


@pytest.mark.parametrize("definition, message", [
    ({"objective": "majority", "tuning": "lora"}, "does not combine with objective majority"),
    ({"objective": "head", "tuning": "none"}, "does not combine with objective head"),
    ({"objective": "head", "extras": ["calibrate"]}, "extra calibrate does not combine with objective head"),
    ({"objective": "prompt", "extras": ["fewshot"]}, "unknown extra 'fewshot'"),
    ({"objective": "prompt", "extras": "calibrate"}, "extras must be a list"),
    ({"objective": "prompt", "extras": ["calibrate", "calibrate"]}, "named twice"),
])
def test_bad_tuning_free_parts_are_one_clear_error(definition, message):
    with pytest.raises(PromptworthError, match=message):
        method_specs.define({"name": "mine", **definition})


@pytest.mark.parametrize("name, task", [("majority", "STS-B"), ("zeroshot-calibrated", "STS-B"),
                                        ("zeroshot-calibrated", "COPA")])
def test_tasks_without_classes_or_fixed_words_are_refused(name, task, backbones):
    with pytest.raises(PromptworthError, match=f"method {name}"):
        build.build_method(name, tasks.get_task(task), backbones["llama"], 64)


def test_a_method_defined_with_an_extra_reaches_train_from_a_study(tmp_path):
    import yaml

    from promptworth.study.load import load_study

    repo = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((repo / "config" / "config.yaml").read_text(encoding="utf-8"))
    config["methods"] = ["prompt", "head", {"name": "null-zeroshot-calibrated", "objective": "null",
                                            "tuning": "none", "extras": ["calibrate"]}]
    study = load_study(config, repo / "workflow" / "schemas" / "config.schema.yaml")
    flags = study.method_args("null-zeroshot-calibrated")
    assert flags == ["--objective", "null", "--tuning", "none", "--extra", "calibrate"]
    rows = _rows()
    split = write_split(tmp_path / "10-1", rows["train"], rows["dev"], rows["test"])
    out = tmp_path / "run.json"
    argv = ["train", "--task", "SST-2", "--method", "null-zeroshot-calibrated", *flags, "--split-dir", str(split),
            "--model", str(tiny_model("llama")), "--seed", "1", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["method_parts"] == {"objective": "null", "tuning": "none", "options": {}, "extras": ["calibrate"]}
    assert record["verbalizer"] and record["timing"]["steps"] == 0


def test_the_methods_verb_lists_the_tuning_free_methods_with_their_parts(capsys):
    assert main(["methods", "--model", str(tiny_model("llama"))]) == 0
    out = capsys.readouterr().out
    assert "prompt + none + calibrate" in out and "trainable 0 of 0\n" in out  # majority: no model, no share
    assert "extras: calibrate" in out


# ---------------------------------------------------------------------------------------------
# Size 0: the zero-shot point of a curve


def test_size_zero_is_the_methods_that_predict_untrained():
    specs = method_specs.builtin_methods()
    at_zero = [name for name, spec in specs.items() if spec.runs_at_size_zero]
    assert at_zero == ["prompt", "prompt-lora", "prompt-bitfit", "prompt-fixlayers", "zeroshot", "zeroshot-calibrated",
                       "prompt-irrelevant", "prompt-misleading"]
    assert "new head is untrained" in specs["head-lora"].size_zero_problem()
    assert "softprompt starts with new, untrained vectors" in specs["softprompt"].size_zero_problem()
    assert "extra demos reads training rows" in specs["prompt-demo"].size_zero_problem()
    assert "null verbalizer" in specs["null"].size_zero_problem()


def _size_zero_argv(split: Path, out: Path, method: str, kind: str = "llama") -> list[str]:
    return ["train", "--task", "SST-2", "--method", method, "--split-dir", str(split), "--model", str(tiny_model(kind)),
            "--seed", "1", "--out", str(out), "--no-progress", "--max-steps", "5", "--eval-every", "2",
            "--learning-rate", "1e-2", "--precision", "fp32", "--patience", "2"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_size_zero_run_takes_no_step_and_predicts_as_the_untrained_model(tmp_path, kind):
    """At size 0 a prompt method whose tuning starts as the pretrained model is that model: every
    one predicts exactly what tuning-free zero-shot prompting predicts, evaluated once on dev
    (step 0) and test, with nothing trained."""
    rows = _rows()
    split = write_split(tmp_path / "0-1", [], rows["dev"], rows["test"], size=0)
    records = {}
    for name in ("zeroshot", "prompt", "prompt-lora", "prompt-bitfit", "prompt-fixlayers"):
        out = tmp_path / f"{name}.json"
        assert main(_size_zero_argv(split, out, name, kind)) == 0
        records[name] = json.loads(out.read_text())
    for name, record in records.items():
        assert record["train_size"] == 0 and record["timing"]["steps"] == 0 and record["timing"]["train_s"] == 0
        assert record["stopped"] is None and record["train_loss"] is None and record["best_step"] == 0
        assert record["best_examples_read"] is None and record["best_epochs"] is None  # nothing read
        assert [point["step"] for point in record["dev_curve"]] == [0]
        assert record["hyperparameters"]["total_steps"] == 0 and record["timing"]["flops"]["train"] == 0
        assert record["test"] == records["zeroshot"]["test"], name
        assert record["dev_score"] == records["zeroshot"]["dev_score"], name
    assert records["prompt-lora"]["parameters"]["trainable"] > 0  # trainable, but not trained


@pytest.mark.parametrize("size, message", [
    (8, "the training split of .* is empty, but its manifest says size 8: only a size-0 split"),
    (None, "is empty, but it has no manifest that says size 0"),
])
def test_an_empty_training_split_of_another_size_is_an_error(tmp_path, capsys, size, message):
    rows = _rows()
    split = write_split(tmp_path / "8-1", [], rows["dev"], rows["test"], size=size)
    out = tmp_path / "run.json"
    assert main(_size_zero_argv(split, out, "prompt")) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("method, why", [("head", "its new head is untrained"), ("icl", "its extra context reads"),
                                         ("softprompt", "its tuning softprompt starts with new, untrained vectors")])
def test_a_method_that_needs_training_cannot_run_at_size_zero(tmp_path, capsys, method, why):
    rows = _rows()
    split = write_split(tmp_path / "0-1", [], rows["dev"], rows["test"], size=0)
    out = tmp_path / "run.json"
    assert main(_size_zero_argv(split, out, method)) == 2
    err = capsys.readouterr().err
    assert f"is a size-0 split (no training rows): method {method} cannot run untrained: {why}" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
