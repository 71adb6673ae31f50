"""`promptworth train`: the run record, determinism, bad input, and a real SmolLM2 run."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch
from ci import unavailable
from tiny_models import sentiment_rows, sentiment_split, tiny_model, write_split

from promptworth.cli import main, options
from promptworth.errors import PromptworthError
from promptworth.methods import registry, specs as method_specs
from promptworth.methods.objectives import prompt as methods
from promptworth.training import evaluation, loop, runtime, settings as train_config
from promptworth.backbones import resolve
from promptworth.training.settings import TrainConfig

CONTRACT_KEYS = {
    "schema_version", "task", "method", "model", "model_sha256", "template", "template_name", "verbalizer",
    "train_size", "data_seed", "train_seed", "split_dir", "split_manifest_sha256", "hyperparameters",
    "dev_curve", "best_step", "dev_score", "metric", "test", "score", "timing", "device", "precision",
    "versions", "git_commit", "method_parts", "parameters", "stopped", "budgets", "predictions",
}
TIMING_KEYS = {"wall_s", "train_s", "eval_s", "steps", "steps_per_s", "tokens_per_s", "peak_rss_gb", "finished_at",
               "pooled"}


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return sentiment_split(tmp_path_factory.mktemp("split") / "32-1")


def _argv(split: Path, out: Path, model: str, method: str = "prompt", seed: int = 1, *extra: str) -> list[str]:
    return [
        "train", "--task", "SST-2", "--method", method, "--split-dir", str(split), "--model", model,
        "--seed", str(seed), "--out", str(out), "--max-steps", "6", "--eval-every", "3", "--learning-rate", "1e-3",
        "--no-progress", "--precision", "fp32", *extra,
    ]


def test_run_record_follows_the_contract(split, tmp_path):
    out = tmp_path / "runs" / "run.json"
    assert main(_argv(split, out, str(tiny_model("roberta")), "prompt", 1, "--data-seed", "7")) == 0
    record = json.loads(out.read_text())
    assert CONTRACT_KEYS <= set(record)
    assert TIMING_KEYS <= set(record["timing"])
    assert record["schema_version"] == 2
    assert record["template"] == "{text_a} It was {mask}." and record["template_name"] == "lmbff"
    assert record["verbalizer"] == {"0": "terrible", "1": "great"}
    assert record["train_size"] == 32 and record["data_seed"] == 7 and record["train_seed"] == 1
    assert [p["step"] for p in record["dev_curve"]] == [3, 6]
    assert record["score"] == record["test"]["acc"] and record["metric"] == "acc"
    assert record["hyperparameters"]["max_steps"] == 6 and record["hyperparameters"]["protocol"] == "steps"
    assert record["precision"] == "fp32"
    assert set(record["versions"]) == {"promptworth", "torch", "transformers", "datasets", "python"}
    assert not list(out.parent.glob(".*tmp"))  # no temporary file left behind


@pytest.mark.parametrize("method", ["prompt", "head", "majority", "zeroshot", "icl"])
def test_the_record_keeps_each_test_row_s_prediction_and_they_give_its_scores(split, tmp_path, method):
    from promptworth.data.rows import rows_sha256
    from promptworth.data.split_folder import load_split
    from promptworth.data.splits import test_indices
    from promptworth.training import metrics

    out = tmp_path / "run.json"
    assert main(_argv(split, out, str(tiny_model("llama")), method, 1, "--test-limit", "12", "--budgets", "3",
                      "--schedule", "constant")) == 0
    record = json.loads(out.read_text())
    rows = load_split("SST-2", split)["test"].to_list()
    rows = [rows[i] for i in test_indices(len(rows), 12)]
    kept = record["predictions"]
    assert kept["rows"] == record["test_size"] == 12 and kept["encoding"] == "base36"
    assert kept["rows_sha256"] == rows_sha256(rows)  # the rows of the test_limit subset, in order
    assert kept["gold"] == "".join(str(row["label"]) for row in rows)
    predicted = [int(digit) for digit in kept["predicted"]]
    # every test metric of the record, recomputed from the predictions and the test labels
    assert metrics.compute([row["label"] for row in rows], predicted, 2) == record["test"]
    assert sum(p == row["label"] for p, row in zip(predicted, rows)) / 12 == record["score"]


def test_a_regression_run_keeps_its_predictions_rounded_to_four_decimals(tmp_path):
    from promptworth.training import metrics

    def pairs(n: int, seed: int) -> list[dict]:
        return [{"idx": row["idx"], "text_a": row["text_a"], "text_b": row["text_a"], "label": (row["idx"] * 7 % 11) / 2}
                for row in sentiment_rows(n, seed)]

    folder = write_split(tmp_path / "sts" / "32-1", pairs(32, 1), pairs(16, 2), pairs(16, 3), task="STS-B")
    out = tmp_path / "sts.json"
    argv = _argv(folder, out, str(tiny_model("llama")), "head")
    argv[argv.index("--task") + 1] = "STS-B"
    assert main(argv) == 0
    record = json.loads(out.read_text())
    kept = record["predictions"]
    assert kept["encoding"] == "decimal4" and kept["rows"] == 16
    assert kept["gold"] == [row["label"] for row in pairs(16, 3)]
    assert all(value == round(value, 4) for value in kept["predicted"])
    recomputed = metrics.compute(kept["gold"], kept["predicted"], None)
    assert recomputed == pytest.approx(record["test"], abs=1e-3)


def test_record_names_the_method_s_parts_and_its_parameters(split, tmp_path, capsys):
    """A method's defaults apply unless a flag says otherwise; the counts agree with `promptworth methods`."""
    model = str(tiny_model("llama"))
    argv = _argv(split, tmp_path / "probe.json", model, "head-probe")
    del argv[argv.index("--learning-rate"):argv.index("--learning-rate") + 2]
    assert main(argv) == 0
    probe = json.loads((tmp_path / "probe.json").read_text())
    default = method_specs.builtin_methods()["head-probe"].training_defaults()["learning_rate"]
    assert default != TrainConfig().learning_rate  # the probe has a rate of its own
    assert probe["method"] == "head-probe" and probe["hyperparameters"]["learning_rate"] == default
    assert probe["method_parts"] == {"objective": "head", "tuning": "frozen", "options": {}, "extras": []}
    capsys.readouterr()
    assert main(["methods", "--model", model, "--json"]) == 0
    listed = {row["method"]: row for row in json.loads(capsys.readouterr().out)}
    assert probe["parameters"] == listed["head-probe"]["parameters"]
    assert 0 < probe["parameters"]["trainable"] < probe["parameters"]["total"]
    assert main(_argv(split, tmp_path / "full.json", model, "prompt")) == 0
    full = json.loads((tmp_path / "full.json").read_text())
    assert full["parameters"]["trainable"] == full["parameters"]["total"] == listed["prompt"]["parameters"]["total"]
    assert full["method_parts"] == {"objective": "prompt", "tuning": "full", "options": {}, "extras": []}
    # a method defined from parts on the command line, as a study's inline definition
    out = tmp_path / "lora.json"
    assert main(_argv(split, out, model, "prompt-lora-r2", 1, "--objective", "prompt", "--tuning", "lora",
                      "--option", "r=2", "--option", "dropout=0.1")) == 0
    lora = json.loads(out.read_text())
    assert lora["method"] == "prompt-lora-r2" and lora["hyperparameters"]["learning_rate"] == 1e-3  # the flag wins
    assert lora["method_parts"] == {"objective": "prompt", "tuning": "lora", "options": {"r": 2, "alpha": 16.0, "dropout": 0.1}, "extras": []}
    assert lora["parameters"]["trainable"] < listed["prompt-lora"]["parameters"]["trainable"]  # rank 2 < 8


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--tuning", "lora"), "give its --objective too"),
        (("--objective", "prompt", "--tuning", "lora", "--option", "r=0"), "option r must be an integer >= 1, got 0"),
        (("--objective", "prompt", "--tuning", "lora", "--option", "r"), "write KEY=VALUE"),
        (("--objective", "prompt", "--tuning", "frozen"), "tuning frozen does not combine with objective prompt"),
    ],
)
def test_a_bad_method_definition_is_one_clear_error(split, tmp_path, capsys, extra, message):
    out = tmp_path / "bad.json"
    assert main(_argv(split, out, str(tiny_model("bert")), "mine", 1, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_head_record_has_no_template(split, tmp_path):
    out = tmp_path / "head.json"
    assert main(_argv(split, out, str(tiny_model("gpt2")), "head")) == 0
    record = json.loads(out.read_text())
    assert record["template"] is None and record["verbalizer"] is None and record["method"] == "head"
    assert record["data_seed"] == 1  # from the folder name <size>-<seed>


def test_same_seed_same_record(split, tmp_path):
    records = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.json"
        assert main(_argv(split, out, str(tiny_model("llama")), "null", 5, "--test-limit", "8")) == 0
        records.append(json.loads(out.read_text()))
    a, b = records
    assert a["test"] == b["test"] and a["dev_curve"] == b["dev_curve"] and a["train_loss"] == b["train_loss"]
    assert a["test_size"] == 8


# ---------------------------------------------------------------------------------------------
# Early stopping: patience


@pytest.fixture(scope="module")
def flat_dev_split(tmp_path_factory) -> Path:
    """A dev set that no training can improve: one sentence twice, once per label, so that every
    state of the model scores exactly 0.5 accuracy on it."""
    rows = sentiment_rows(32, 1)
    dev = [{**rows[0], "idx": 0, "label": 0}, {**rows[0], "idx": 1, "label": 1}]
    return write_split(tmp_path_factory.mktemp("flat") / "32-1", rows, dev, sentiment_rows(8, 3))


def _trained_states(monkeypatch) -> dict[str, torch.Tensor]:
    """The model's trainable weights (flattened) at each evaluation of the runs that follow, by
    where it evaluated ("dev at step 2", "test")."""
    seen: dict[str, torch.Tensor] = {}
    evaluate = evaluation.evaluate

    def watched(method, model, features, task, config, device, precision, where, *rest, **kwargs):
        seen[where] = torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad]).clone()
        return evaluate(method, model, features, task, config, device, precision, where, *rest, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", watched)
    return seen


@pytest.mark.parametrize(
    "max_steps, patience, stopped, steps",
    [
        (12, 2, "patience", 6),  # best at step 2; steps 4 and 6 do not beat it: stop at 6 of 12
        (12, 0, "cap", 12),  # no patience: the whole budget
        (6, 2, "cap", 6),  # patience runs out at the last step: the budget ended the run anyway
    ],
)
def test_patience_stops_a_run_whose_dev_score_does_not_improve(flat_dev_split, tmp_path, monkeypatch,
                                                              max_steps, patience, stopped, steps):
    states = _trained_states(monkeypatch)
    out = tmp_path / "run.json"
    argv = _argv(flat_dev_split, out, str(tiny_model("llama")), "prompt", 1, "--eval-every", "2")
    argv[argv.index("--max-steps") + 1] = str(max_steps)
    assert main([*argv, "--patience", str(patience)]) == 0
    record = json.loads(out.read_text())
    assert record["stopped"] == stopped and record["timing"]["steps"] == steps
    assert [point["step"] for point in record["dev_curve"]] == list(range(2, steps + 1, 2))
    assert {point["dev_score"] for point in record["dev_curve"]} == {0.5}
    assert record["best_step"] == 2 and record["dev_score"] == 0.5  # the first best wins ties
    assert record["hyperparameters"]["patience"] == patience
    assert record["hyperparameters"]["total_steps"] == max_steps  # the schedule's length: the budget
    # the test set is evaluated with the best state (step 2), not the last one trained
    assert torch.equal(states["test"], states["dev at step 2"])
    assert not torch.equal(states["test"], states[f"dev at step {steps}"])


@pytest.mark.parametrize(
    "min_epochs, min_steps, stopped, steps",
    [
        (0, 0, "patience", 6),  # as without a minimum: best at step 2, no better at 4 and 6
        (1, 0, "patience", 16),  # 32 rows in batches of 2: every row read once at step 16
        (1, 20, "patience", 20),  # both minimums: the later one
        (0, 9, "patience", 10),  # the first evaluation from step 9 on
        (2, 0, "cap", 24),  # two epochs (32 steps) do not fit the 24-step budget: the cap ends it
    ],
)
def test_patience_waits_until_the_run_has_read_its_data_and_taken_its_minimum_steps(
        flat_dev_split, tmp_path, min_epochs, min_steps, stopped, steps):
    """A run whose dev score never improves would stop at step 6; with a minimum it trains on
    until it has read each example ``min_epochs`` times and taken ``min_steps`` steps, then stops
    at the first evaluation there (the evaluations before still count as not beating the best)."""
    out = tmp_path / "run.json"
    argv = _argv(flat_dev_split, out, str(tiny_model("llama")), "prompt", 1, "--eval-every", "2", "--batch-size", "2",
                 "--patience", "2", "--min-epochs-before-patience", str(min_epochs),
                 "--min-steps-before-patience", str(min_steps))
    argv[argv.index("--max-steps") + 1] = "24"
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["stopped"] == stopped and record["timing"]["steps"] == steps
    assert record["hyperparameters"]["min_epochs_before_patience"] == min_epochs
    assert record["hyperparameters"]["min_steps_before_patience"] == min_steps
    # the reported checkpoint is the first best (step 2): 2 batches of 2 of the 32 rows, 1/8 of an epoch
    assert (record["best_step"], record["best_examples_read"], record["best_epochs"]) == (2, 4, 0.125)


def test_the_record_says_what_its_reported_checkpoint_had_read(split, tmp_path):
    """32 rows in batches of 8: an epoch is 4 steps. The best dev state at step 3 had read 24 rows
    (three quarters of an epoch), at step 6 all of them (one and a half)."""
    out = tmp_path / "run.json"
    assert main(_argv(split, out, str(tiny_model("llama")), "head", 1, "--eval-every", "3")) == 0
    record = json.loads(out.read_text())
    expected = {3: (24, 0.75), 6: (32, 1.5)}[record["best_step"]]
    assert (record["best_examples_read"], record["best_epochs"]) == expected


def test_the_minimums_before_patience_are_counts_of_epochs_and_steps():
    config = TrainConfig(patience=3, batch_size=8, min_epochs_before_patience=2, min_steps_before_patience=100)
    assert config.patience_from(1000) == 250 and config.patience_from(10) == 100  # 125 steps an epoch; 2
    assert TrainConfig(patience=3).patience_from(1000) == 0  # by default patience may stop at any evaluation
    for name in ("min_epochs_before_patience", "min_steps_before_patience"):
        with pytest.raises(PromptworthError, match=f"training setting {name} has an invalid value: -1"):
            TrainConfig(**{name: -1})
        with pytest.raises(PromptworthError, match=f"training setting {name} must be an integer, got 0.5"):
            TrainConfig(**{name: 0.5})


@pytest.mark.slow
@pytest.mark.parametrize("method", ["prefix", "softprompt", "ptuning", "prompt-bitfit", "prompt-lora", "head-probe"])
def test_every_tuning_is_tested_in_its_best_dev_state_and_budgets_leave_its_training_alone(
        flat_dev_split, tmp_path, monkeypatch, method):
    """What trains differs per tuning (a prefix's keys, a soft prompt's vectors, P-tuning's
    encoder, biases, LoRA's matrices, a probe): the state kept at the best dev score is what the
    test set sees, and a budget's test of that state mid-run puts the training state back."""
    states = _trained_states(monkeypatch)

    def run(name: str, *extra: str) -> tuple[dict, dict[str, torch.Tensor]]:
        out = tmp_path / f"{name}.json"
        argv = _argv(flat_dev_split, out, str(tiny_model("llama")), method, 1, "--eval-every", "2", "--schedule",
                     "constant", "--learning-rate", "1e-2", *extra)
        argv[argv.index("--max-steps") + 1] = "8"
        states.clear()
        assert main(argv) == 0
        return json.loads(out.read_text()), dict(states)

    plain, seen = run("plain")
    assert plain["best_step"] == 2 and plain["timing"]["steps"] == 8  # flat dev: the first best wins ties
    assert torch.equal(seen["test"], seen["dev at step 2"])  # restored: the best state, not the last
    assert not torch.equal(seen["test"], seen["dev at step 8"])  # (it trained on after step 2)
    budgeted, swapped = run("budgeted", "--budgets", "4")
    assert torch.equal(swapped["test at budget 4"], swapped["dev at step 2"])  # the best state so far, swapped in
    for step in (4, 6, 8):  # and swapped out again: training goes on exactly as without the budget
        assert torch.equal(swapped[f"dev at step {step}"], seen[f"dev at step {step}"]), step
    assert budgeted["train_loss"] == plain["train_loss"] and budgeted["test"] == plain["test"]


@pytest.mark.parametrize("train_size, batch_size", [(10, 4), (12, 4), (7, 8), (1000, 8)])
def test_examples_read_counts_what_the_training_batches_visit(train_size, batch_size):
    from itertools import islice

    from promptworth.training.settings import examples_read

    for steps in (0, 1, 2, 3, 4, 120, 125, 126, 300):
        visited = {i for batch in islice(loop.train_batches(train_size, batch_size, 5), steps) for i in batch}
        assert examples_read(train_size, steps, batch_size) == len(visited), (steps, train_size, batch_size)


def test_patience_is_a_prefix_of_the_run_without_it(flat_dev_split, tmp_path):
    """Stopping early changes nothing of the steps taken: the same batches and learning rates."""
    runs = {}
    for patience in (0, 1):
        out = tmp_path / f"p{patience}.json"
        assert main([*_argv(flat_dev_split, out, str(tiny_model("gpt2")), "head", 3, "--eval-every", "2"),
                     "--patience", str(patience)]) == 0
        runs[patience] = json.loads(out.read_text())
    capped, early = runs[0], runs[1]
    assert (capped["stopped"], early["stopped"]) == ("cap", "patience")
    assert early["timing"]["steps"] == 4 and capped["timing"]["steps"] == 6
    assert early["dev_curve"] == capped["dev_curve"][:2]
    assert early["train_loss"]["first"] == capped["train_loss"]["first"]


def test_patience_needs_a_dev_set(tmp_path, capsys):
    rows = sentiment_rows(16, 1)
    split = write_split(tmp_path / "nodev-1", rows, [], sentiment_rows(4, 3))
    out = tmp_path / "run.json"
    assert main([*_argv(split, out, str(tiny_model("bert"))), "--patience", "2"]) == 2
    err = capsys.readouterr().err
    assert "patience 2 needs a dev split to watch" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"patience": -1}, "training setting patience has an invalid value: -1"),
        ({"patience": 1.5}, "training setting patience must be an integer, got 1.5"),
        ({"patience": True}, "training setting patience must be a finite number, got True"),
        ({"patience": 2, "eval_every": 0}, "patience 2 needs dev evaluations during training: eval_every is 0"),
        ({"max_steps": 10.0}, "training setting max_steps must be an integer, got 10.0"),
    ],
)
def test_bad_patience_settings_are_one_clear_error(settings, message):
    with pytest.raises(PromptworthError, match=message):
        TrainConfig(**settings)


# ---------------------------------------------------------------------------------------------
# Step budgets: a long run's result at step B is the result of a B-step run


def _budget_run(split: Path, tmp_path: Path, name: str, max_steps: int, *extra: str) -> dict:
    out = tmp_path / f"{name}.json"
    argv = _argv(split, out, str(tiny_model("llama")), "prompt", 4, "--eval-every", "2", "--schedule", "constant", *extra)
    argv[argv.index("--max-steps") + 1] = str(max_steps)
    assert main(argv) == 0
    return json.loads(out.read_text())


def _result(record: dict) -> dict:
    """What a run ends with, in the shape of a budget's entry."""
    return {key: record[key] for key in ("best_step", "dev_score", "score", "test")}


@pytest.mark.parametrize("dev", ["learnable", "flat"])  # flat: the best state is step 2's, swapped in at 8
def test_a_budget_s_result_is_that_of_a_run_of_that_many_steps(split, flat_dev_split, tmp_path, dev):
    folder = split if dev == "learnable" else flat_dev_split
    long = _budget_run(folder, tmp_path, "long", 10, "--budgets", "8,4")
    plain = _budget_run(folder, tmp_path, "plain", 10)
    short = {steps: _budget_run(folder, tmp_path, f"steps{steps}", steps) for steps in (4, 8)}
    assert [entry["steps"] for entry in long["budgets"]] == [4, 8] and plain["budgets"] is None
    for entry in long["budgets"]:
        assert entry == {"steps": entry["steps"], "reached": True, **_result(short[entry["steps"]])}
    if dev == "flat":
        assert long["budgets"][1]["best_step"] == 2
    # the budgets' evaluations change nothing of the run itself
    for key in ("dev_curve", "best_step", "dev_score", "test", "train_loss", "stopped"):
        assert long[key] == plain[key], key
    assert long["hyperparameters"]["budgets"] == [4, 8] and long["hyperparameters"]["schedule"] == "constant"
    # and their cost counts: one test pass each (a run of B steps: B / 2 dev passes and one test pass),
    # except that a budget which tested the run's final best state is its final result: no second pass
    cost = {name: record["timing"]["flops"]["eval"] for name, record in (("long", long), ("plain", plain))}
    dev_pass = (short[8]["timing"]["flops"]["eval"] - short[4]["timing"]["flops"]["eval"]) // 2
    test_pass = short[4]["timing"]["flops"]["eval"] - 2 * dev_pass
    final_tested = [entry["steps"] for entry in long["budgets"] if entry["best_step"] == long["best_step"]]
    assert test_pass > 0 and cost["long"] - cost["plain"] == (2 - bool(final_tested)) * test_pass
    if dev == "flat":  # best at step 2 to the end: budget 4 tested it
        assert final_tested == [4, 8] and cost["long"] - cost["plain"] == test_pass


def test_budgets_a_run_does_not_reach_take_its_final_result(flat_dev_split, tmp_path):
    capped = _budget_run(flat_dev_split, tmp_path, "capped", 6, "--budgets", "2,6,10")
    assert [(b["steps"], b["reached"]) for b in capped["budgets"]] == [(2, True), (6, True), (10, False)]
    for entry in capped["budgets"][1:]:  # the last step and beyond: the run's own result
        assert {key: entry[key] for key in _result(capped)} == _result(capped)
    # patience stops the run at step 6 (best at 2, then two evaluations without a better one)
    early = _budget_run(flat_dev_split, tmp_path, "early", 12, "--budgets", "4,10", "--patience", "2")
    assert early["stopped"] == "patience" and early["timing"]["steps"] == 6
    assert [(b["steps"], b["reached"]) for b in early["budgets"]] == [(4, True), (10, False)]
    assert {key: early["budgets"][1][key] for key in _result(early)} == _result(early)


def test_a_method_that_takes_no_step_has_its_one_result_at_every_budget(split, tmp_path):
    out = tmp_path / "free.json"
    argv = _argv(split, out, str(tiny_model("llama")), "zeroshot", 4, "--eval-every", "2", "--schedule", "constant",
                 "--budgets", "2,4")
    assert main(argv) == 0
    free = json.loads(out.read_text())
    assert free["timing"]["steps"] == 0 and free["stopped"] is None
    assert [(b["steps"], b["reached"]) for b in free["budgets"]] == [(2, False), (4, False)]
    assert all({key: b[key] for key in _result(free)} == _result(free) for b in free["budgets"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--budgets", "5"), "budgets: 5 is not a multiple of eval_every 3"),
        (("--budgets", "3,x"), "budgets must be step counts separated by commas (e.g. 50,200), got '3,x'"),
        (("--budgets", "3", "--schedule", "linear"), "budgets 3 needs schedule constant and warmup_ratio 0"),
        (("--budgets", "3", "--warmup-ratio", "0.1"), "budgets 3 needs schedule constant and warmup_ratio 0"),
        (("--budgets", "3,3"), "budgets names a budget twice"),
        (("--budgets", "0"), "budgets must hold positive whole numbers of steps, got 0"),
    ],
)
def test_bad_budgets_are_one_clear_error(split, tmp_path, capsys, extra, message):
    out = tmp_path / "bad.json"
    assert main([*_argv(split, out, str(tiny_model("bert"))), "--schedule", "constant", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_budgets_need_a_dev_set(tmp_path, capsys):
    split = write_split(tmp_path / "nodev-1", sentiment_rows(16, 1), [], sentiment_rows(4, 3))
    out = tmp_path / "run.json"
    assert main([*_argv(split, out, str(tiny_model("bert"))), "--schedule", "constant", "--budgets", "3"]) == 2
    err = capsys.readouterr().err
    assert "budgets 3 need a dev split to select on" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_budgets_are_one_flag_and_one_config_key():
    from promptworth.training.settings import config_from_mapping, training_args

    parser = argparse.ArgumentParser()
    options.add_options(parser, options.training())
    args = parser.parse_args(["--budgets", "200, 50", "--eval-every", "50", "--schedule", "constant"])
    assert options.config_from_args(args).budgets == (50, 200) and TrainConfig().budgets == ()
    settings = {"budgets": [200, 50], "eval_every": 50, "schedule": "constant"}
    flags = training_args(settings)
    assert flags == ["--schedule", "constant", "--eval-every", "50", "--budgets", "50,200"]
    assert options.config_from_args(parser.parse_args(flags)) == config_from_mapping(settings)
    with pytest.raises(PromptworthError, match="budgets must be a list of step counts"):
        config_from_mapping({"budgets": "50"})


@pytest.mark.parametrize(
    "change, message",
    [
        (("--method", "lora"), "unknown method"),
        (("--model", "/nonexistent/model"), "does not exist"),
        (("--model", "smollm2-135m-instruct", "--task", "nope"), "unknown task"),
        (("--template", "nope"), "no template 'nope'"),
        (("--learning-rate", "-1"), "learning_rate"),
    ],
)
def test_bad_input_is_one_clear_error_and_no_json(split, tmp_path, capsys, change, message):
    out = tmp_path / "bad.json"
    argv = _argv(split, out, str(tiny_model("bert")))
    for flag, value in zip(change[::2], change[1::2]):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_missing_short_name_model_says_how_to_convert(monkeypatch, tmp_path):
    from promptworth.backbones import load as models

    monkeypatch.chdir(tmp_path)
    with pytest.raises(PromptworthError, match="convert-model"):
        resolve.resolve_model("smollm2-135m-instruct", root=tmp_path)


def test_nan_loss_is_an_error_and_no_json(split, tmp_path, monkeypatch, capsys):
    def nan_loss(self, scores, batch):
        return scores.sum() * float("nan")

    monkeypatch.setattr(methods.PromptMethod, "loss", nan_loss)
    out = tmp_path / "nan.json"
    assert main(_argv(split, out, str(tiny_model("gpt2")))) == 1  # a run that failed, not a bad input
    assert "loss is nan" in capsys.readouterr().err
    assert not out.exists()


def poisoned(scores, nth: int, value: float):
    """``scores`` of a method, but evaluation call number ``nth`` returns only ``value``s."""
    calls = []

    def wrapped(method, model, batch):
        result = scores(method, model, batch)
        if not model.training:
            calls.append(1)
            if len(calls) == nth:
                return result * 0 + value
        return result

    return wrapped


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("nth, where", [(1, "dev at step 3"), (2, "dev at step 6"), (3, "test")])
def test_a_non_finite_score_in_any_evaluation_fails_the_run(split, tmp_path, monkeypatch, capsys, value, nth, where):
    """NaN scores would be predicted as class 0 and give a plausible accuracy: the run must fail."""
    monkeypatch.setattr(methods.PromptMethod, "scores", poisoned(methods.PromptMethod.scores, nth, value))
    out = tmp_path / "poisoned.json"
    assert main(_argv(split, out, str(tiny_model("gpt2")))) == 1
    err = capsys.readouterr().err
    assert f"scores on {where} are not finite" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_weights_that_blow_up_on_the_last_step_fail_the_run(split, tmp_path, monkeypatch, capsys):
    """The training loss of the last step is finite; the update after it is not."""
    make_schedule = loop.linear_schedule

    def exploding_schedule(optimizer, warmup, total):
        scheduler = make_schedule(optimizer, warmup, total)
        step = scheduler.step

        def step_then_explode():  # runs right after each optimizer step
            step()
            if scheduler.last_epoch == total:
                with torch.no_grad():
                    for group in optimizer.param_groups:
                        for param in group["params"]:
                            param.fill_(float("inf"))

        scheduler.step = step_then_explode
        return scheduler

    monkeypatch.setattr(loop, "linear_schedule", exploding_schedule)
    out = tmp_path / "exploded.json"
    assert main(_argv(split, out, str(tiny_model("llama")), "head")) == 1
    assert "scores on dev at step 6 are not finite" in capsys.readouterr().err
    assert not out.exists()


def test_a_non_finite_number_never_reaches_a_record(split, tmp_path, monkeypatch, capsys):
    """A finite loss whose float() overflows (or any other number) must not reach the record."""
    monkeypatch.setattr(runtime, "peak_rss_gb", lambda: float("inf"))
    out = tmp_path / "inf.json"
    assert main(_argv(split, out, str(tiny_model("gpt2")))) == 1
    assert "non-finite number (NaN or inf) at timing.peak_rss_gb" in capsys.readouterr().err
    assert not out.exists()


def test_the_record_names_the_model_by_its_weights_and_no_machine_path(split, tmp_path, monkeypatch):
    import hashlib

    from promptworth.files import sha256_file

    model = tiny_model("llama")
    study = tmp_path / "study"
    study.mkdir()
    monkeypatch.chdir(study)
    out = study / "runs" / "run.json"
    assert main(_argv(split, out, str(model), "prompt")) == 0
    record = json.loads(out.read_text())
    weights = sorted(model.glob("*.safetensors"))
    expected = hashlib.sha256("".join(f"{p.name} {sha256_file(p)}\n" for p in weights).encode()).hexdigest()
    assert record["model"] == model.name and record["model_sha256"] == expected
    assert "model_path" not in record
    assert record["split_dir"] == os.path.relpath(split, study)  # relative to the study's folder
    text = out.read_text()
    assert str(tmp_path) not in text and str(model.parent) not in text


def test_flags_match_the_config_fields():
    parser = argparse.ArgumentParser()
    options.add_options(parser, options.training())
    args = parser.parse_args(["--learning-rate", "2e-5", "--protocol", "epochs", "--max-steps", "30", "--patience", "4"])
    config = options.config_from_args(args)
    assert config.learning_rate == 2e-5 and config.protocol == "epochs" and config.batch_size == 8
    assert config.patience == 4 and TrainConfig().patience == 0  # off unless set
    with pytest.raises(SystemExit):
        parser.parse_args(["--precision", "fp8"])


@pytest.mark.parametrize(
    "settings, size, steps",
    [
        ({"protocol": "steps", "max_steps": 100}, 32, 100),
        ({"protocol": "epochs", "epochs": 10, "min_steps": 50, "max_steps": 2000}, 32, 50),  # 40 -> clamped up
        ({"protocol": "epochs", "epochs": 10, "min_steps": 5, "max_steps": 2000}, 33, 50),  # ceil(33/8)=5 per epoch
        ({"protocol": "epochs", "epochs": 10, "min_steps": 5, "max_steps": 20}, 1000, 20),
    ],
)
def test_total_steps(settings, size, steps):
    assert TrainConfig(**settings).total_steps(size) == steps


def test_schedule_warms_up_then_decays_to_zero():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    schedule = loop.linear_schedule(optimizer, warmup=2, total=10)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] < rates[1] < rates[2] and rates[2] == max(rates)
    assert rates[-1] < rates[-2] and optimizer.param_groups[0]["lr"] == 0.0


def test_constant_schedule_keeps_the_rate_after_its_warmup():
    def rates(warmup_ratio: float, total: int = 10) -> list[float]:
        param = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.SGD([param], lr=2.0)
        config = TrainConfig(schedule="constant", warmup_ratio=warmup_ratio, max_steps=total)
        schedule = loop.learning_rate_schedule(optimizer, config, total)
        seen = []
        for _ in range(total):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return seen

    assert rates(0.0) == [2.0] * 10
    assert rates(0.0, 40)[:10] == rates(0.0)  # no step's rate depends on the run's length
    warm = rates(0.2)  # two warmup steps
    assert warm[0] < warm[1] < warm[2] and warm[2:] == [2.0] * 8


def test_metrics():
    from promptworth.training import metrics

    got = metrics.compute([0, 1, 1, 0], [0, 1, 0, 0], 2)
    assert got["acc"] == 0.75 and abs(got["f1"] - 2 / 3) < 1e-9
    assert abs(got["mcc"] - 0.5773502691896258) < 1e-9
    assert metrics.compute([0, 1, 2], [0, 1, 2], 3)["macro_f1"] == 1.0
    assert abs(metrics.compute([1.0, 2.0, 3.0], [2.0, 4.0, 7.0], None)["pearson"] - 0.9933992677987828) < 1e-9


# ---------------------------------------------------------------------------------------------
# SmolLM2-135M-Instruct, when its package is installed


@pytest.fixture(scope="module")
def smollm2_parameters(smollm2_dir) -> dict[str, object]:
    """Each method's parameter counts on SmolLM2 as ``promptworth methods --model`` lists them."""
    from promptworth.cli.methods import method_rows

    return {row["method"]: row.get("parameters") for row in method_rows(str(smollm2_dir), "SST-2")}


# setfit trains its own sentence encoder (tests/test_setfit.py); one test a method, each within the timeout
CAUSAL_BUILTINS = [spec.name for spec in method_specs.BUILTINS if spec.backbone is None]


@pytest.mark.smollm2
@pytest.mark.slow
@pytest.mark.parametrize("name", CAUSAL_BUILTINS)
def test_smollm2_trains_on_sst2_kshot_with_every_builtin_method(name, smollm2_dir, smollm2_parameters, data_dir, tmp_path):
    """Every built-in method trains on SmolLM2 (bf16 where the CPU has it), and its record's
    parameter counts are those ``promptworth methods --model`` lists."""
    split = data_dir / "k-shot" / "SST-2" / "16-42"
    if not split.is_dir():
        unavailable("SST-2 K-shot split not in the data mirror")
    spec = method_specs.builtin_methods()[name]
    out = tmp_path / f"{name}.json"
    common = ["--task", "SST-2", "--method", name, "--split-dir", str(split), "--model", str(smollm2_dir),
              "--seed", "1", "--max-steps", "1", "--eval-every", "1", "--no-progress", "--threads", "2"]
    found = []
    if registry.search_kind(spec):  # its search first (fine-tunes of one step)
        found = ["--search", str(tmp_path / f"{name}.search.json")]
        assert main(["search", *common, "--out", found[1]]) == 0
    assert main(["train", *common, *found, "--out", str(out), "--test-limit", "8"]) == 0
    record = json.loads(out.read_text())
    assert record["model_kind"] == "causal" and record["data_seed"] == 42 and record["test_size"] == 8
    assert 0.0 <= record["score"] <= 1.0 and record["timing"]["steps"] == (1 if spec.tuning_spec.steps else 0)
    assert record["parameters"] == smollm2_parameters[name]
    assert record["method_parts"]["tuning"] == spec.tuning


@pytest.mark.gemma3
@pytest.mark.slow
def test_gemma3_trains_on_sst2_kshot_with_prompt_and_head(gemma3_conversion, data_dir, tmp_path):
    """Gemma-3-270M, converted, trains one step with the prompt and with a head; LM-BFF's SST-2
    label words are one token each in its tokenizer."""
    from promptworth.backbones import load as models

    folder = gemma3_conversion[0]
    split = data_dir / "k-shot" / "SST-2" / "16-42"
    if not split.is_dir():
        unavailable("SST-2 K-shot split not in the data mirror")
    tokenizer = models.open_backbone(str(folder)).tokenizer
    assert [len(tokenizer(word, add_special_tokens=False).input_ids) for word in (" great", " terrible")] == [1, 1]
    for method in ("prompt", "head"):
        out = tmp_path / f"{method}.json"
        assert main(["train", "--task", "SST-2", "--method", method, "--split-dir", str(split), "--model", str(folder),
                     "--seed", "1", "--max-steps", "1", "--test-limit", "8", "--no-progress", "--threads", "2",
                     "--out", str(out)]) == 0, method
        record = json.loads(out.read_text())
        assert record["model_kind"] == "causal" and record["test_size"] == 8 and record["timing"]["steps"] == 1
        assert 0.0 <= record["score"] <= 1.0 and record["method"] == method


def test_best_state_snapshot_restores_tied_weights():
    model = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 5, bias=False))
    model[1].weight = model[0].weight  # tied
    model.register_buffer("counter", torch.zeros(1))
    snapshot = loop._Snapshot()
    snapshot.save(model)
    before = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model.counter.add_(3)
    snapshot.restore(model)
    assert torch.equal(model[0].weight, before) and model[1].weight is model[0].weight
    assert model.counter.item() == 0 and len(snapshot.state) == 2


def test_best_state_snapshot_keeps_only_trainable_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    model[0].requires_grad_(False)
    snapshot = loop._Snapshot()
    snapshot.save(model)
    assert set(snapshot.state) == {"1.weight", "1.bias"}
    saved = model[1].weight.detach().clone()
    with torch.no_grad():
        model[1].weight.add_(1.0)
    snapshot.restore(model)
    assert torch.equal(model[1].weight, saved)
