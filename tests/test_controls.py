"""The third edition's rows without a split policy of their own: the controls on the prompt's meaning
(Webson & Pavlick 2022: the irrelevant template, misleading label words) and calibrated in-context
learning (icl-calibrated), on the tiny models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from tiny_models import sentiment_rows, tiny_model, write_split

from promptworth.backbones import load as models
from promptworth.cli import main
from promptworth.data import tasks
from promptworth.errors import PromptworthError
from promptworth.methods import build, specs as method_specs
from promptworth.methods.templates import parse_template
from promptworth.study.load import load_study
from promptworth.training.search_candidates import pool_templates

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SST2 = tasks.get_task("SST-2")
CONTROLLED = [name for name, spec in tasks.registry().items() if spec.misleading_words or spec.control_templates]


@pytest.fixture(scope="module")
def backbones():
    return {kind: models.open_backbone(str(tiny_model(kind))) for kind in ("roberta", "llama")}


# ---------------------------------------------------------------------------------------------
# The registry's controls


def test_the_controls_are_defined_for_the_edition_s_single_sentence_tasks():
    assert CONTROLLED == ["SST-2", "mr", "subj", "trec"]


@pytest.mark.parametrize("name", CONTROLLED)
def test_misleading_words_are_the_label_words_each_given_to_another_label(name):
    spec = tasks.get_task(name)
    words, misleading = spec.label_words, spec.misleading_words
    assert sorted(misleading.values()) == sorted(words.values())
    assert all(misleading[label] != words[label] for label in spec.labels)
    if len(spec.labels) == 2:  # Webson & Pavlick's reversed targets: swapped
        assert misleading == {spec.labels[0]: words[spec.labels[1]], spec.labels[1]: words[spec.labels[0]]}


@pytest.mark.parametrize("name", CONTROLLED)
def test_a_control_template_is_no_default_nor_a_search_candidate(name):
    spec = tasks.get_task(name)
    irrelevant = spec.control_templates["irrelevant"]
    template = parse_template(irrelevant)
    assert template.fields == ("text_a",) and not template.fields_after_slot()  # a causal LM reads it too
    assert irrelevant not in spec.templates.values() and irrelevant not in pool_templates(spec)


# ---------------------------------------------------------------------------------------------
# The methods


def test_the_control_methods_are_built_ins_that_name_their_parts():
    specs = method_specs.builtin_methods()
    irrelevant, misleading = specs["prompt-irrelevant"], specs["prompt-misleading"]
    assert (irrelevant.objective, irrelevant.tuning, irrelevant.template) == ("prompt", "full", "irrelevant")
    assert (misleading.objective, misleading.tuning, misleading.template) == ("misleading", "full", None)
    assert irrelevant.runs_at_size_zero and misleading.runs_at_size_zero  # both read the pretrained LM head


@pytest.mark.parametrize("kind", ["roberta", "llama"])
@pytest.mark.parametrize("task", ["SST-2", "trec"])
def test_misleading_words_encode_the_other_labels_tokens(kind, task, backbones):
    spec = tasks.get_task(task)
    prompt = build.build_method("prompt", spec, backbones[kind], 64)
    misleading = build.build_method("prompt-misleading", spec, backbones[kind], 64)
    row = {"idx": 0, "text_a": "the movie was good .", "label": 0}
    ids, swapped = prompt.encoder.encode(row), misleading.encoder.encode(row)
    assert swapped.input_ids == ids.input_ids  # the same template, the same input
    labels = len(spec.labels)
    assert swapped.words == [ids.words[(label + 1) % labels] for label in range(labels)]  # swapped, or shifted by one
    assert len({tuple(map(tuple, words)) for words in ids.words}) == labels  # real, distinct token ids


def test_the_irrelevant_template_is_read_whatever_the_run_asks_for_its_other_methods(backbones):
    method = build.build_method("prompt-irrelevant", SST2, backbones["llama"], 64)
    assert method.describe()["template_name"] == "irrelevant"
    assert method.describe()["template"] == SST2.control_templates["irrelevant"]
    with pytest.raises(PromptworthError, match="method prompt-irrelevant reads the task's template 'irrelevant' .* "
                                               "the run asks for template 'lmbff'"):
        build.build_method("prompt-irrelevant", SST2, backbones["llama"], 64, "lmbff")


def test_a_task_without_misleading_words_or_the_control_template_is_one_clear_error(backbones):
    cola = tasks.get_task("CoLA")
    with pytest.raises(PromptworthError, match="task CoLA has no misleading_words: method 'prompt-misleading' cannot run"):
        build.build_method("prompt-misleading", cola, backbones["llama"], 64)
    with pytest.raises(PromptworthError, match="task CoLA has no template 'irrelevant'"):
        build.build_method("prompt-irrelevant", cola, backbones["llama"], 64)


def _study(tmp_path, tasks_, methods, **changes):
    config = yaml.safe_load((REPO / "config" / "studies" / "tiny.yaml").read_text(encoding="utf-8"))
    config.update(tasks=tasks_, methods=methods, results_dir=str(tmp_path / "results"), comparisons=["prompt:head"],
                  **changes)
    return load_study(config, SCHEMA)


@pytest.mark.parametrize("method, message", [
    ("prompt-misleading", "config: method prompt-misleading needs misleading_words, which task CB has none of"),
    ("prompt-irrelevant", "config: method prompt-irrelevant reads template 'irrelevant', which task CB has not"),
    ({"name": "cb-irrelevant", "objective": "null", "template": "irrelevant"},
     "config: method cb-irrelevant reads template 'irrelevant', which task CB has not"),
    ({"name": "head-irrelevant", "objective": "head", "template": "irrelevant"},
     "config: methods\\[2\\]: method head-irrelevant: objective head reads no template"),
])
def test_a_study_refuses_a_control_its_task_lacks(tmp_path, method, message):
    with pytest.raises(PromptworthError, match=message):
        _study(tmp_path, ["SST-2", "CB"], ["prompt", "head", method])


def test_a_study_passes_each_method_s_template_to_its_runs(tmp_path):
    study = _study(tmp_path, ["SST-2", "trec"], ["prompt", "head", "prompt-irrelevant"], templates={"trec": "qa"})
    assert study.template_for("trec", "prompt") == "qa" and study.template_for("trec", "prompt-irrelevant") == "irrelevant"
    assert study.template_for("SST-2", "prompt") is None and study.template_for("SST-2", "head") is None


# ---------------------------------------------------------------------------------------------
# Runs: the record names the template and the words


def _argv(split: Path, out: Path, method: str, *flags: str) -> list[str]:
    return ["train", "--task", "SST-2", "--method", method, "--split-dir", str(split), "--model",
            str(tiny_model("llama")), "--seed", "1", "--out", str(out), "--no-progress", "--max-steps", "4",
            "--eval-every", "2", "--batch-size", "4", "--learning-rate", "1e-3", "--precision", "fp32", *flags]


def _train(tmp_path: Path, split: Path, method: str, *flags: str) -> dict:
    out = tmp_path / f"{method}-{split.name}.json"
    assert main(_argv(split, out, method, *flags)) == 0
    return json.loads(out.read_text())


def _rows():
    return {"train": sentiment_rows(16, 1), "dev": sentiment_rows(8, 2), "test": sentiment_rows(24, 3)}


def test_control_runs_record_their_template_and_words(tmp_path):
    rows = _rows()
    split = write_split(tmp_path / "16-1", rows["train"], rows["dev"], rows["test"])
    irrelevant = _train(tmp_path, split, "prompt-irrelevant")
    assert irrelevant["template_name"] == "irrelevant" and irrelevant["template"] == SST2.control_templates["irrelevant"]
    assert irrelevant["verbalizer"] == {"0": "terrible", "1": "great"} and irrelevant["timing"]["steps"] == 4
    misleading = _train(tmp_path, split, "prompt-misleading")
    assert misleading["template_name"] == "lmbff" and misleading["verbalizer"] == {"0": "great", "1": "terrible"}
    assert misleading["method_parts"]["objective"] == "misleading" and misleading["timing"]["steps"] == 4


def test_misleading_words_reverse_every_zero_shot_prediction_of_a_binary_task(tmp_path):
    """At size 0 the misleading words score each label with the other's word: every prediction of
    the untrained model flips, so the two accuracies add up to one."""
    rows = _rows()
    split = write_split(tmp_path / "0-1", [], rows["dev"], rows["test"], size=0)
    zeroshot, misleading = (_train(tmp_path, split, name) for name in ("zeroshot", "prompt-misleading"))
    assert misleading["train_size"] == 0 and misleading["timing"]["steps"] == 0
    assert misleading["test"]["acc"] == pytest.approx(1 - zeroshot["test"]["acc"])
    assert misleading["dev_score"] == pytest.approx(1 - zeroshot["dev_score"])


def test_the_command_line_refuses_another_template_for_the_irrelevant_control(tmp_path, capsys):
    rows = _rows()
    split = write_split(tmp_path / "16-1", rows["train"], rows["dev"], rows["test"])
    out = tmp_path / "run.json"
    assert main(_argv(split, out, "prompt-irrelevant", "--template", "lmbff")) == 2
    err = capsys.readouterr().err
    assert "method prompt-irrelevant reads the task's template 'irrelevant'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# Calibrated in-context learning


def test_icl_calibrated_shows_every_training_example_and_calibrates_beside_them(tmp_path):
    rows = _rows()
    split = write_split(tmp_path / "16-1", rows["train"], rows["dev"], rows["test"])
    record = _train(tmp_path, split, "icl-calibrated")
    parts = record["method_parts"]
    assert parts["extras"] == ["context", "calibrate"] and parts["tuning"] == "none"
    assert parts["demonstrations"]["listed"] == 16 and parts["demonstrations"]["used"] == {"min": 16, "max": 16, "mean": 16}
    assert record["hyperparameters"]["max_length"] == 256 and record["timing"]["steps"] == 0
    narrow = _train(tmp_path, split, "icl-calibrated", "--max-length", "96")  # fewer fit: the record says how many
    used = narrow["method_parts"]["demonstrations"]["used"]
    assert narrow["method_parts"]["demonstrations"]["listed"] == 16 and 1 <= used["min"] <= used["max"] < 16


def test_icl_calibrated_has_no_size_zero_point_of_its_own():
    spec = method_specs.builtin_methods()["icl-calibrated"]
    assert "extra context reads training rows" in spec.size_zero_problem()
    assert method_specs.builtin_methods()["zeroshot-calibrated"].runs_at_size_zero


def test_the_methods_verb_names_the_controls_template_and_what_a_task_lacks(capsys):
    assert main(["methods", "--model", str(tiny_model("llama")), "--task", "CB"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^prompt-irrelevant +prompt \+ full \(template irrelevant\) +fixed-prompt LM tuning$", out, re.M)
    assert "not on CB: task CB has no misleading_words: method 'prompt-misleading' cannot run on it" in out
    assert "not on CB: task CB has no template 'irrelevant'" in out
    assert "trainable 0 of" in out  # the other methods are counted as before
