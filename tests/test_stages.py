"""A study's ``stages``: the order its runs train in (promptworth.study.planning.stages), the config's
checks of them, and ``promptworth stages`` / ``run-stages``, which run a command stage by stage."""

from __future__ import annotations

import copy
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from promptworth.cli import main
from test_results import record
from promptworth.errors import PromptworthError
from promptworth.study.load import load_study
from promptworth.study.planning import plan, stages
from promptworth.study.stage import REST

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
ROWS = yaml.safe_load((REPO / "tests" / "edition3_rows.yaml").read_text(encoding="utf-8"))
# the rows study's runs, by their stage below: prompt and head first, then the rest of data seed 1
STAGES = [{"name": "core", "methods": ["prompt", "head"]}, {"name": "seed-1", "data_seeds": [1]}]


def _rows(stages_config, **changes):
    config = {**copy.deepcopy(ROWS), "stages": stages_config, **changes}
    return load_study(config, SCHEMA)


def test_the_published_study_trains_its_core_answer_first_and_setfit_last():
    study = load_study(yaml.safe_load((REPO / "config" / "studies" / "study.yaml").read_text(encoding="utf-8")),
                       SCHEMA)
    ordered = stages(study)
    assert [name for name, _ in ordered] == ["core", "rows", "gemma", "train-seed-2", "setfit"]
    every = [run for _, runs in ordered for run in runs]
    assert sorted(map(repr, every)) == sorted(map(repr, plan(study)))  # each run once, none left out
    core = dict(ordered)["core"]
    assert {(run.model, run.method, run.train_seed) for run in core} == {
        ("smollm2-135m-instruct", "prompt", 1), ("smollm2-135m-instruct", "head", 1)}
    assert {run.task for run in core} == {"SST-2", "mr", "subj", "trec", "RTE"}
    assert {run.data_seed for run in core} == {1, 2, 3, 4, 5}
    assert {run.method for run in dict(ordered)["setfit"]} == {"setfit"}
    assert {run.train_seed for run in dict(ordered)["train-seed-2"]} == {2}


def test_a_run_is_in_the_first_stage_that_takes_it_and_the_rest_train_last():
    ordered = stages(_rows(STAGES))
    assert [name for name, _ in ordered] == ["core", "seed-1", REST]
    by_stage = {name: runs for name, runs in ordered}
    assert {run.method for run in by_stage["core"]} == {"prompt", "head"}
    assert {run.data_seed for run in by_stage["seed-1"]} == {1} and not {"prompt", "head"} & {
        run.method for run in by_stage["seed-1"]}
    assert {run.data_seed for run in by_stage[REST]} == {2}
    assert Counter(run for _, runs in ordered for run in runs) == Counter(plan(_rows(STAGES)))


def test_a_study_without_stages_trains_in_one():
    study = load_study(copy.deepcopy(ROWS), SCHEMA)
    assert stages(study) == [(REST, plan(study))]


@pytest.mark.parametrize("stages_config, message", [
    ([{"name": "rest"}], "config: stages: 'rest' is the stage of the runs no stage takes; name yours otherwise"),
    ([{"name": "a"}, {"name": "a", "tasks": ["trec"]}], "config: stages: two stages are named 'a'"),
    ([{"name": "a", "methods": ["setfit"]}], "config: stages.a.methods names 'setfit', which no run of the study has"),
    ([{"name": "a", "models": ["smollm2-135m-instruct"]}], "config: stages.a.models names 'smollm2-135m-instruct', "
                                                           "which no run of the study has (its runs': tiny-llama)"),
    ([{"name": "a", "sizes": [32]}], "config: stages.a.sizes names 32, which no run of the study has"),
    ([{"name": "a"}, {"name": "b", "tasks": ["trec"]}], "config: stages.b takes no run: the stages before it take "
                                                          "each of its runs"),
])
def test_a_stage_that_cannot_be_run_is_one_clear_error(stages_config, message):
    with pytest.raises(PromptworthError) as error:
        _rows(stages_config)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("stage, message", [
    ({"name": "Core"}, "does not match"),
    ({"name": "a", "colour": "red"}, "Additional properties are not allowed"),
    ({"methods": ["prompt"]}, "'name' is a required property"),
])
def test_a_stage_of_the_wrong_shape_is_refused_by_the_schema(stage, message):
    with pytest.raises(PromptworthError) as error:
        _rows([stage])
    assert message in str(error.value)


def _config_file(tmp_path: Path) -> Path:
    config = {**copy.deepcopy(ROWS), "results_dir": str(tmp_path / "results"), "stages": STAGES}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _recorder(tmp_path: Path, fail_on: str | None = None) -> list[str]:
    """A command that appends its arguments to calls.jsonl, and fails when they name ``fail_on``."""
    script = ("import json, sys; open(sys.argv[1], 'a').write(json.dumps(sys.argv[2:]) + '\\n'); "
              f"sys.exit(3 if {fail_on!r} and any({fail_on!r} in a for a in sys.argv[2:]) else 0)")
    return ["--", sys.executable, "-c", script, str(tmp_path / "calls.jsonl")]


def _calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_run_stages_runs_the_command_once_per_stage_with_its_record_files(tmp_path, capsys):
    configfile = _config_file(tmp_path)
    by_stage = {name: [run for run in runs] for name, runs in stages(_rows(STAGES))}
    assert main(["run-stages", "--configfile", str(configfile), *_recorder(tmp_path)]) == 0
    calls = _calls(tmp_path)
    assert [len(call) - 1 for call in calls] == [len(by_stage[name]) for name in ("core", "seed-1", REST)]
    assert all(call[0] == "--" for call in calls)
    assert all("/prompt/" in f or "/head/" in f for f in calls[0][1:])
    assert calls[0][1] == f"{tmp_path}/results/runs/tiny-llama/SST-2/prompt/0-1-1.json"
    assert "[promptworth] stage core: 20 of its 20 runs to train" in capsys.readouterr().err

    # a stage whose records are all there is passed over; --stage runs the named ones only
    for file in calls[0][1:]:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        Path(file).write_text(json.dumps(record(device="cpu (Intel Xeon, 1 threads)", precision="fp32")))
    (tmp_path / "calls.jsonl").unlink()
    assert main(["run-stages", "--configfile", str(configfile), "--stage", "core", "seed-1",
                 *_recorder(tmp_path)]) == 0
    assert [call[1:] for call in _calls(tmp_path)] == [calls[1][1:]]
    assert "[promptworth] stage core: its 20 runs are finished" in capsys.readouterr().err

    assert main(["stages", "--configfile", str(configfile), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stages"] == [
        {"stage": "core", "runs": 20, "finished": 20, "made_on": {"cpu (Intel Xeon, 1 threads), fp32": 20}},
        {"stage": "seed-1", "runs": len(by_stage["seed-1"]), "finished": 0, "made_on": {}},
        {"stage": REST, "runs": len(by_stage[REST]), "finished": 0, "made_on": {}}]
    assert main(["stages", "--configfile", str(configfile)]) == 0
    assert "core      20 of   20 runs finished (cpu (Intel Xeon, 1 threads), fp32: 20)\n" in capsys.readouterr().out

    # a finished record that is not one is one clear error
    Path(calls[0][1]).write_text("{}")
    assert main(["stages", "--configfile", str(configfile)]) == 2
    assert f"{calls[0][1]}: " in capsys.readouterr().err


def test_run_stages_stops_at_the_first_stage_that_fails(tmp_path, capsys):
    configfile = _config_file(tmp_path)
    assert main(["run-stages", "--configfile", str(configfile), *_recorder(tmp_path, fail_on="/null/")]) == 3
    assert len(_calls(tmp_path)) == 2  # core, then seed-1 (which holds null's runs) fails: rest never runs
    assert "[promptworth] stage seed-1 failed (exit 3); the stages after it did not run" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--stage", "gemma"], "--stage gemma: the study has no stage 'gemma' (its stages, in order: core, seed-1, rest)"),
    ([], "run-stages needs the study's command after --"),
])
def test_run_stages_refuses_what_it_cannot_run(tmp_path, capsys, argv, message):
    configfile = _config_file(tmp_path)
    command = [] if not argv else _recorder(tmp_path)
    assert main(["run-stages", "--configfile", str(configfile), *argv, *command]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "calls.jsonl").exists()


def test_the_tiny_variant_trains_in_one_stage(monkeypatch, capsys):
    """Under PROMPTWORTH_FAST=1 (make test-newcomer's `make publish`) the study's stages name models,
    tasks and seeds the tiny variant cuts: it trains in one stage."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("PROMPTWORTH_FAST", "1")
    assert main(["stages", "--configfile", "config/studies/study.yaml", "--json"]) == 0
    assert [row["stage"] for row in json.loads(capsys.readouterr().out)["stages"]] == [REST]
