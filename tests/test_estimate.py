"""A study's estimate before it runs (``promptworth plan``, promptworth.study.estimate): the steps
the protocol predicts, the seconds finished records calibrate, what it cannot estimate, and the
verb. The reference records are written here, with step and row times that follow a known rule,
so that the estimate can be checked against that rule."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_results import record
from tiny_models import sentiment_rows, tiny_model, write_split

from promptworth.cli import main
from promptworth.errors import PromptworthError
from promptworth.study.calibration import Here, patience_floor, sample_of
from promptworth.study.estimate import estimate_study, predicted_steps
from promptworth.study.estimate_report import study_summary, summary_lines, table
from promptworth.study.load import load_study
from promptworth.training.record import read_record
from promptworth.training.settings import TrainConfig

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SMOLLM2, GEMMA = "smollm2-135m-instruct", "gemma3-270m"
HERE = Here("AMD EPYC", 1, "bf16")

# The rule the reference records follow: a step of smollm2's full tuning takes 0.5 s plus 0.01 s a
# token, an evaluated row 0.002 s a token, a run 3 s besides; SST-2 has 20 tokens an example, TREC 10.
TOKENS = {"SST-2": 20.0, "trec": 10.0}
STEP = {(SMOLLM2, "full"): (0.5, 0.01), (SMOLLM2, "lora"): (0.2, 0.005), (GEMMA, "full"): (1.0, 0.02)}
ROW_PER_TOKEN, OVERHEAD = 0.002, 3.0
SETTINGS = {"protocol": "steps", "max_steps": 400, "eval_every": 20, "patience": 3, "batch_size": 8,
            "eval_batch_size": 32, "max_length": 128, "learning_rate": 2e-5, "schedule": "constant",
            "precision": "auto"}


def timed_record(model: str, task: str, method: str, tuning: str, size: int, steps: int, *,
                 device: str = "cpu (AMD EPYC, 1 threads)", dev: int = 32, test: int = 100, **changes: Any) -> dict:
    """A schema-2 record of a run of ``steps`` steps whose times follow the rule above."""
    batch = size / math.ceil(size / 8) if size else 1.0
    intercept, slope = STEP[(model, tuning)]
    per_step = TOKENS[task] * batch
    train_s = steps * (intercept + slope * per_step)
    evaluations = steps // 20 if steps else 1
    eval_s = (evaluations * dev + test) * ROW_PER_TOKEN * TOKENS[task]
    objective = "head" if method.startswith("head") else "prompt"
    return record(
        schema_version=2, model_sha256=None, task=task, method=method, model=model, template=None, template_name=None,
        method_parts={"objective": objective, "tuning": tuning, "extras": []}, train_size=size, dev_size=dev,
        test_size=test, data_seed=1, train_seed=1, split_dir=None, split_manifest_sha256=None, metric="acc",
        test={"acc": 0.8}, score=0.8, hyperparameters=SETTINGS, stopped="patience" if steps else None,
        dev_curve=[{"step": 20 * (i + 1), "dev_score": 0.7} for i in range(evaluations)] if steps
        else [{"step": 0, "dev_score": 0.7}], best_step=max(steps - 60, 0), dev_score=0.7,
        timing={"wall_s": train_s + eval_s, "train_s": train_s, "eval_s": eval_s, "steps": steps,
                "tokens_per_s": per_step * steps / train_s if steps else 0.0,
                "process_s": train_s + eval_s + OVERHEAD},
        device=device, precision="bf16", **changes)


def write(folder: Path, content: dict | str, name: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def reference(folder: Path) -> Path:
    """Finished runs of smollm2's full tuning on SST-2 and TREC at 100 examples: patience stopped
    them 1 and 3 evaluations past their earliest stop (step 80)."""
    for task in TOKENS:
        for steps, name in ((100, "a"), (140, "b")):
            write(folder, timed_record(SMOLLM2, task, "head", "full", 100, steps), f"{task}/head/{name}.json")
        write(folder, timed_record(SMOLLM2, task, "prompt", "full", 0, 0), f"{task}/prompt/zero.json")
    return folder


def study(tmp_path: Path, **changes: Any):
    config = {"results_dir": str(tmp_path / "results"), "model": SMOLLM2, "tasks": ["SST-2", "trec"],
              "methods": ["prompt", "head"], "train_seeds": [1],
              "splits": {"kind": "ladder", "sizes": [0, 100], "data_seeds": [1], "dev_policy": "fixed",
                         "dev_size": 32, "test_limit": 100},
              "training": dict(SETTINGS), **changes}
    return load_study(config, SCHEMA)


def expected_seconds(model: str, tuning: str, task: str, size: int, steps: float) -> float:
    """The rule, for a run the estimate should find: its steps, its dev and test rows, its overhead."""
    intercept, slope = STEP[(model, tuning)]
    batch = size / math.ceil(size / 8) if size else 1.0
    rows = (max(1.0, steps / 20) if steps else 1.0) * 32 + 100
    return OVERHEAD + steps * (intercept + slope * TOKENS[task] * batch) + rows * ROW_PER_TOKEN * TOKENS[task]


# ---------------------------------------------------------------------------------------------
# Steps


@pytest.mark.parametrize("settings, size, takes_steps, extras, expected", [
    ({}, 0, True, [2.0], (0.0, 0, 0.0)),  # size 0: the zero-shot point takes no step
    ({}, 100, False, [2.0], (0.0, 0, 0.0)),  # a tuning-free method takes none either
    ({"max_steps": 300}, 100, True, [2.0], (300.0, 300, 0.0)),  # no patience: the whole budget
    ({"protocol": "epochs", "epochs": 10, "min_steps": 20, "max_steps": 50}, 10, True, [], (20.0, 20, 0.0)),
    ({"protocol": "epochs", "epochs": 10, "min_steps": 20, "max_steps": 50}, 100, True, [], (50.0, 50, 0.0)),
    ({"patience": 3, "eval_every": 20}, 100, True, [], (80.0, 80, 0.0)),  # the best at 20, 3 more evaluations
    ({"patience": 3, "eval_every": 20}, 100, True, [1.0, 3.0], (120.0, 80, 0.0)),  # plus 2 on average
    ({"patience": 3, "eval_every": 20, "min_steps_before_patience": 150}, 100, True, [], (160.0, 160, 0.0)),
    # one epoch of 1,000 examples in batches of 8 is 125 steps: the evaluation at 140
    ({"patience": 3, "eval_every": 20, "min_epochs_before_patience": 1}, 1000, True, [], (140.0, 140, 0.0)),
    # one run of two would pass the 200-step budget: it ends at the cap
    ({"patience": 3, "eval_every": 20, "max_steps": 200}, 100, True, [1.0, 9.0], (150.0, 80, 0.5)),
    # two epochs of 1,000 examples do not fit a 200-step budget: every run ends at the cap
    ({"patience": 3, "eval_every": 20, "max_steps": 200, "min_epochs_before_patience": 2}, 1000, True, [1.0],
     (200.0, 200, 1.0)),
])
def test_the_protocol_predicts_a_run_s_steps(settings, size, takes_steps, extras, expected):
    plan = predicted_steps(TrainConfig(**settings), size, takes_steps, extras)
    assert (plan.steps, plan.minimum, plan.cap_share) == expected


@pytest.fixture(scope="module")
def flat_dev_split(tmp_path_factory) -> Path:
    """A dev set no training improves (one sentence once per label): patience stops at the earliest."""
    rows = sentiment_rows(32, 1)
    dev = [{**rows[0], "idx": 0, "label": 0}, {**rows[0], "idx": 1, "label": 1}]
    return write_split(tmp_path_factory.mktemp("flat") / "32-1", rows, dev, sentiment_rows(8, 3))


@pytest.mark.parametrize("min_epochs, min_steps", [(1, 0), (0, 9), (2, 0)])
def test_the_earliest_stop_is_where_the_training_loop_stops(flat_dev_split, tmp_path, min_epochs, min_steps):
    """A real run that never improves on dev stops where :func:`patience_floor` says (16: one epoch
    of 32 rows in batches of 2; 10: the evaluation from step 9; the cap, 24: two epochs do not fit),
    and its record, read back as a sample, went on for no evaluation past it."""
    out = tmp_path / "run.json"
    assert main(["train", "--task", "SST-2", "--method", "prompt", "--split-dir", str(flat_dev_split),
                 "--model", str(tiny_model("llama")), "--seed", "1", "--out", str(out), "--max-steps", "24",
                 "--eval-every", "2", "--batch-size", "2", "--patience", "2", "--learning-rate", "1e-3",
                 "--min-epochs-before-patience", str(min_epochs), "--min-steps-before-patience", str(min_steps),
                 "--no-progress", "--precision", "fp32"]) == 0
    run = read_record(out)
    settings = TrainConfig(max_steps=24, eval_every=2, batch_size=2, patience=2, min_epochs_before_patience=min_epochs,
                           min_steps_before_patience=min_steps)
    assert predicted_steps(settings, 32, True, []).steps == run["timing"]["steps"] == patience_floor(settings, 32)
    assert sample_of(run, 1).extra_evaluations == 0


# ---------------------------------------------------------------------------------------------
# Seconds, from reference folders


def test_an_estimate_from_a_reference_folder_follows_its_records(tmp_path):
    found = estimate_study(study(tmp_path), [reference(tmp_path / "ref")], HERE, at_once=2)
    assert len(found.runs) == 6 and not found.pilots and found.finished_runs == 0
    for estimate in found.runs:
        job = estimate.job
        steps = 120.0 if job.size else 0.0  # the earliest stop (80) and 2 evaluations past it, the records' mean
        assert estimate.plan.steps == pytest.approx(steps) and not estimate.why
        assert estimate.seconds == pytest.approx(expected_seconds(SMOLLM2, "full", job.task, job.size, steps))
    total = sum(e.seconds for e in found.runs)
    text = "\n".join(summary_lines(found))
    assert f"estimate: {total / 3600:.1f} h CPU" in text
    assert f"{total / 2 / 3600:.1f} h on the clock at 2 at a time" in text
    assert "extrapolated: 0% of it" in text
    assert f"calibrated on 6 finished records: 6 in {tmp_path / 'ref'} (AMD EPYC, 1 thread(s), bf16: 6)" in text
    assert "note:" not in text  # the records' CPU, threads and precision are this study's


def test_the_study_s_own_records_come_first_and_count_as_finished(tmp_path):
    plan = study(tmp_path)
    own = Path(plan.results_dir) / "runs" / SMOLLM2 / "SST-2" / "head" / "100-1-1.json"
    # the study's own run took twice the rule's time a step (another day on the machine)
    slow = timed_record(SMOLLM2, "SST-2", "head", "full", 100, 100)
    timing = slow["timing"]
    slow["timing"] = {**timing, "train_s": 2 * timing["train_s"], "tokens_per_s": timing["tokens_per_s"] / 2,
                      "process_s": timing["process_s"] + timing["train_s"]}
    write(own.parent, slow, own.name)
    found = estimate_study(plan, [reference(tmp_path / "ref")], HERE, at_once=1)
    assert found.finished_runs == 1 and len(found.runs) == 5
    trec = next(e for e in found.runs if e.job.task == "trec" and e.job.size == 100)
    own_step = slow["timing"]["train_s"] / 100 / (TOKENS["SST-2"] * 100 / 13)  # one task: through zero
    assert trec.plan.steps == 100  # its one run went on 1 evaluation past the earliest stop: the study's own say so
    assert trec.seconds == pytest.approx(OVERHEAD + 100 * own_step * TOKENS["trec"] * 100 / 13
                                         + (5 * 32 + 100) * ROW_PER_TOKEN * TOKENS["trec"])
    summary = study_summary(plan, found)
    assert "6 runs: 1 finished, 5 to train" in summary
    assert f"1 in {plan.results_dir}/runs (the study's own)" in summary


def test_setfit_s_steps_are_an_epoch_of_its_pairs_and_it_evaluates_dev_once(tmp_path):
    """SetFit's steps read pairs (2 x 20 per training example, 16 a step: 2.5 steps an example, 250
    at 100 examples), not examples, and patience never stops it; it scores dev once, at the end. A
    finished run at 32 examples (80 steps of 1.2 s, its 32 dev and 100 test rows in 1.32 s) times
    those at 10 and 100, whose steps are as full (16 pairs)."""
    hyperparameters = {"protocol": "epochs", "max_steps": 10000, "min_steps": 0, "epochs": 1.0, "learning_rate": 2e-5,
                       "batch_size": 16, "eval_batch_size": 32, "warmup_ratio": 0.1, "weight_decay": 0.01,
                       "max_length": 256}
    train_s, eval_s = 80 * 1.2, 1.32
    finished = record(
        schema_version=2, model_sha256=None, task="SST-2", method="setfit", model="all-minilm-l6-v2", template=None,
        template_name=None, method_parts={"objective": "setfit", "tuning": "contrastive", "options": {"pairs": 20},
                                          "extras": []},
        train_size=32, dev_size=32, test_size=100, data_seed=1, train_seed=1, split_dir=None,
        split_manifest_sha256=None, metric="acc", test={"acc": 0.8}, score=0.8, hyperparameters=hyperparameters,
        stopped="cap", dev_curve=[{"step": 80, "dev_score": 0.7}], best_step=80, dev_score=0.7,
        timing={"wall_s": train_s + eval_s, "train_s": train_s, "eval_s": eval_s, "steps": 80,
                "tokens_per_s": 16 * 2 * TOKENS["SST-2"] * 80 / train_s, "process_s": train_s + eval_s + OVERHEAD},
        device="cpu (AMD EPYC, 1 threads)", precision="fp32")
    write(tmp_path / "ref", finished, "SST-2/setfit/32-1-1.json")
    plan = study(tmp_path, tasks=["SST-2"], methods=["setfit", "head"], comparisons=["setfit:head"], splits={
        "kind": "ladder", "sizes": [10, 100], "data_seeds": [1], "dev_policy": "fixed", "dev_size": 32,
        "test_limit": 100})
    found = estimate_study(plan, [tmp_path / "ref"], HERE, at_once=1)
    by_size = {e.job.size: e for e in found.runs if e.job.method == "setfit"}
    assert {size: (e.plan.steps, e.plan.cap_share) for size, e in by_size.items()} == {10: (25.0, 0.0),
                                                                                      100: (250.0, 0.0)}
    for size, estimate in by_size.items():
        assert estimate.seconds == pytest.approx(OVERHEAD + estimate.plan.steps * 1.2 + eval_s)


def test_a_record_of_a_part_this_version_does_not_know_reads_as_examples():
    """A newer record's tuning (not in this version's registry) calibrates as a run whose steps
    read examples (its batch: 100 examples in batches of 8), not as an error."""
    newer = timed_record(SMOLLM2, "SST-2", "head", "full", 100, 100)
    newer["method_parts"] = {"objective": "head", "tuning": "from-a-newer-version", "options": {"x": 1}, "extras": []}
    assert sample_of(newer, 0).batch == pytest.approx(100 / 13)


def test_a_study_with_no_record_to_time_says_so(tmp_path):
    plan = study(tmp_path)
    summary = study_summary(plan, estimate_study(plan, [], HERE, at_once=2))
    assert "6 runs: 0 finished, 6 to train" in summary and "estimate: none yet" in summary


def test_a_method_without_reference_has_no_estimate_and_is_named(tmp_path):
    plan = study(tmp_path, methods=["prompt", "head", "head-lora"], lr_grid={"rates": {"head": [4e-5, 1.6e-4]},
                                                                             "size": 100})
    found = estimate_study(plan, [reference(tmp_path / "ref")], HERE, at_once=2)
    missing = [e for e in found.trained if e.seconds is None]
    assert [(e.job.method, e.job.task) for e in missing] == [("head-lora", "SST-2"), ("head-lora", "trec")]
    assert all(e.missing == f"no record of {SMOLLM2} training lora" for e in missing)
    text = "\n".join(summary_lines(found))
    assert f"no estimate for 2 of them: {SMOLLM2} head-lora: 2 (no record of {SMOLLM2} training lora)" in text
    assert f"{SMOLLM2}  SST-2  head-lora  1     0       120    0.00   none for 1: no record" in table(found)
    # the head's run at the pilot size and seeds repeats a pilot: it takes over the pilot's record
    repeated = [e for e in found.runs if e.job.repeats_pilot]
    assert [(e.job.task, e.seconds) for e in repeated] == [("SST-2", 0.0), ("trec", 0.0)]
    assert len(found.pilots) == 4 and "4 runs, 2 of them a pilot repeated" not in text
    assert f"for {len(found.runs)} runs, 2 of them a pilot repeated" in text


def test_what_no_record_of_the_task_or_model_holds_is_extrapolated_and_says_how(tmp_path):
    folder = reference(tmp_path / "ref")
    for tuning, method in (("lora", "head-lora"),):
        write(folder, timed_record(SMOLLM2, "SST-2", method, tuning, 100, 100), f"lora/{method}.json")
    write(folder, timed_record(GEMMA, "SST-2", "head", "full", 100, 100), "gemma/head.json")
    plan = study(tmp_path, model=[SMOLLM2, GEMMA], tasks=["SST-2", "mr"],
                 methods=["prompt", "head", "head-lora"])
    found = estimate_study(plan, [folder], HERE, at_once=2)
    mr = next(e for e in found.runs if (e.job.model, e.job.task, e.job.method) == (SMOLLM2, "mr", "head"))
    assert mr.why == (f"mr's tokens: the mean of {SMOLLM2}'s other tasks",)
    lora = next(e for e in found.runs if (e.job.model, e.job.task, e.job.method) == (GEMMA, "SST-2", "head-lora"))
    assert lora.why == (f"{GEMMA} lora from {SMOLLM2}'s, times the two models' ratio on full",)
    intercept, slope = STEP[(SMOLLM2, "lora")]
    ratio = (1.0 + 0.02 * 20 * 100 / 13) / (0.5 + 0.01 * 20 * 100 / 13)  # gemma's full step over smollm2's
    rows = lora.plan.steps / 20 * 32 + 100
    assert lora.seconds - OVERHEAD - rows * ROW_PER_TOKEN * 20 == pytest.approx(
        lora.plan.steps * ratio * (intercept + slope * 20 * 100 / 13))
    text = "\n".join(summary_lines(found))
    share = sum(e.seconds for e in found.trained if e.why) / sum(e.seconds for e in found.trained)
    assert f"extrapolated: {100 * share:.0f}% of it (" in text and "mr's tokens: the mean of" in text


def test_records_of_another_cpu_threads_or_precision_are_named(tmp_path):
    folder = tmp_path / "ref"
    for task in TOKENS:
        write(folder, timed_record(SMOLLM2, task, "head", "full", 100, 100, device="cpu (Intel Xeon, 2 threads)"),
              f"{task}.json")
    found = estimate_study(study(tmp_path), [folder], Here("AMD EPYC", 1, "fp32"), at_once=2)
    text = "\n".join(summary_lines(found))
    assert "note: records with another CPU (Intel Xeon) than this study's runs (AMD EPYC)" in text
    assert "note: records with another threads a run (2) than this study's runs (1)" in text
    assert "note: records with another precision (bf16) than this study's runs (fp32)" in text


# ---------------------------------------------------------------------------------------------
# The verb


def config_file(tmp_path: Path, **changes: Any) -> Path:
    config = {"results_dir": str(tmp_path / "results"), "model": SMOLLM2, "tasks": ["SST-2", "trec"],
              "methods": ["prompt", "head"], "train_seeds": [1],
              "splits": {"kind": "ladder", "sizes": [0, 100], "data_seeds": [1], "dev_policy": "fixed",
                         "dev_size": 32, "test_limit": 100}, "training": SETTINGS, **changes}
    return write(tmp_path, yaml.safe_dump(config), "study.yaml")


def test_plan_prints_the_table_and_the_estimate_running_nothing(tmp_path, capsys):
    ref = reference(tmp_path / "ref")
    assert main(["plan", "--configfile", str(config_file(tmp_path)), "--reference", str(ref),
                 "--at-once", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["model", "task", "method", "runs", "pilots", "steps", "CPU", "h", "estimate"]
    assert lines[1].split()[:6] == [SMOLLM2, "SST-2", "prompt", "2", "0", "120"]  # size 0 and 100
    summary = [line for line in lines if line.startswith("[promptworth]")]
    assert lines[-1 - len(summary)].split()[:3] == ["total", "6", "0"]
    assert "[promptworth] 6 runs: 0 finished, 6 to train" in out and "h on the clock at 2 at a time" in out
    assert not (tmp_path / "results").exists()  # nothing ran, nothing was written


@pytest.mark.parametrize("args, message", [
    (["--reference", "{tmp}/nowhere"], "--reference {tmp}/nowhere: no such folder"),
    (["--at-once", "0"], "--at-once must be at least 1, got 0"),
    (["--threads", "-1"], "--threads must be at least 1, got -1"),
    (["--reference", "{tmp}/bad"], "{tmp}/bad/lr.json: missing key 'schema_version'"),
])
def test_plan_refuses_what_it_cannot_read_with_one_error(tmp_path, capsys, args, message):
    write(tmp_path / "bad", {"learning_rate": 1e-5}, "lr.json")  # a selection file, not a run record
    argv = ["plan", "--configfile", str(config_file(tmp_path)), *[a.format(tmp=tmp_path) for a in args]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("promptworth: error: ") and message.format(tmp=tmp_path) in err
    assert len(err.strip().splitlines()) == 1


def test_a_broken_record_of_the_study_s_own_is_left_out_of_the_estimate(tmp_path):
    plan = study(tmp_path)
    write(Path(plan.results_dir) / "runs", "{not json", f"{SMOLLM2}/SST-2/head/100-1-1.json")
    found = estimate_study(plan, [reference(tmp_path / "ref")], HERE, at_once=2,
                           stale={f"{plan.results_dir}/runs/{SMOLLM2}/SST-2/head/100-1-1.json"})
    assert len(found.runs) == 6 and all(e.seconds is not None for e in found.runs)
    with pytest.raises(PromptworthError, match="not valid JSON"):
        estimate_study(plan, [Path(plan.results_dir) / "runs"], HERE, at_once=2)


def test_the_searches_a_run_applies_are_named_not_estimated(tmp_path):
    plan = study(tmp_path, methods=["prompt", "head", "prompt-autowords"])
    found = estimate_study(plan, [reference(tmp_path / "ref")], HERE, at_once=2)
    searching = [e for e in found.runs if e.job.searches]
    assert [(e.job.method, e.job.task) for e in searching] == [("prompt-autowords", "SST-2"), ("prompt-autowords", "trec")]
    assert all(e.seconds is not None for e in searching)  # the run itself is estimated
    assert ("not estimated: the searches (rule search) that 2 runs apply (prompt-autowords 2); the runs themselves "
            "are") in "\n".join(summary_lines(found))
