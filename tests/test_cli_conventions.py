"""The command line's conventions, checked over every verb of the table (``promptworth.cli.verbs``),
so that a new verb keeps them (docs/contributing.md, "Adding a verb"): exit statuses, ``--json``
on every verb that prints a result (and nothing else on stdout), ``--out`` a file and folders
``--...-dir``, one list syntax, internal verbs hidden, ``--version``.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from tiny_models import hub_cache_model, sentiment_split, tiny_model

from promptworth import __version__
from promptworth.cli import build_parser, handler, main
from promptworth.cli.options import FILE, FOLDER, RenamedFlag, config_from_args
from promptworth.cli.verbs import VERBS, Verb
from promptworth.methods.objectives import prompt as prompt_objective

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "src" / "promptworth" / "cli"
DEFAULT_STUDY = REPO / "reports" / "default-study"


def verb_parser(verb: Verb) -> argparse.ArgumentParser:
    return build_parser([verb.name])._subparsers._group_actions[0].choices[verb.name]  # noqa: SLF001


def options_of(verb: Verb) -> list[argparse.Action]:
    return [a for a in verb_parser(verb)._actions if not isinstance(a, argparse._HelpAction)]  # noqa: SLF001


# ---------------------------------------------------------------------------------------------
# The table's conventions


def test_out_is_a_file_and_a_folder_option_ends_in_dir():
    wrong = []
    for verb in VERBS:
        for action in options_of(verb):
            flags, single = action.option_strings, action.nargs is None
            old = getattr(action, "old", None)
            for flag in flags:
                if flag == "--out" and flag != old and (action.metavar != FILE or not single):
                    wrong.append(f"{verb.name} {flag}: --out takes one FILE")
                if flag.startswith("--out") and flag not in ("--out", "--out-dir"):
                    wrong.append(f"{verb.name} {flag}: an output is --out FILE or --out-dir FOLDER")
                if flag.endswith("-dir") and (action.metavar != FOLDER or not single):
                    wrong.append(f"{verb.name} {flag}: a --...-dir option takes one FOLDER")
            if flags and action.metavar == FOLDER and single and not flags[0].endswith("-dir"):
                wrong.append(f"{verb.name} {flags[0]}: an option taking one FOLDER is named --...-dir")
            if old is not None and not isinstance(action, RenamedFlag):
                wrong.append(f"{verb.name} {flags[0]}: an old name is kept by RenamedFlag")
    assert wrong == []


def test_a_list_is_one_option_and_its_values_space_separated():
    wrong = []
    for verb in VERBS:
        for action in options_of(verb):
            name = (action.option_strings or [action.dest])[0]
            # (argparse's extend action, which takes nargs, is a kind of its append action)
            if isinstance(action, (argparse._AppendAction, argparse._AppendConstAction)) \
                    and not isinstance(action, argparse._ExtendAction):  # noqa: SLF001
                wrong.append(f"{verb.name} {name}: a repeated flag; take nargs='+' (action='extend' to allow both)")
            if re.search(r"\bcommas?\b|comma-separated", action.help or "", re.IGNORECASE):
                wrong.append(f"{verb.name} {name}: a comma-separated list; take space-separated values (nargs)")
    assert wrong == []


def test_the_verbs_that_print_a_result_take_json_and_print_only_through_main():
    for verb in VERBS:
        flags = {flag for action in options_of(verb) for flag in action.option_strings}
        assert ("--json" in flags) == verb.prints, verb.name
        returns = inspect.signature(handler(verb.handler)).return_annotation
        assert (returns == "Output") == verb.prints, f"{verb.name}: {returns}"
    # stdout is main's: a handler module prints to stderr only (log lines, warnings)
    stray = []
    for path in sorted(CLI.glob("*.py")):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print" \
                    and not any(keyword.arg == "file" for keyword in node.keywords):
                stray.append(f"{path.name}:{node.lineno}")
    assert stray == []


def test_internal_verbs_are_left_out_of_help_and_still_run(capsys):
    hidden = {verb.name for verb in VERBS if verb.hidden}
    assert "worker" in hidden  # the pool's worker: started by `promptworth pool`, never by hand
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    listed = capsys.readouterr().out
    assert done.value.code == 0
    for verb in VERBS:
        assert (f"\n    {verb.name} " in listed or f"\n    {verb.name}\n" in listed) != verb.hidden, verb.name
    with pytest.raises(SystemExit) as done:
        main(["worker", "--help"])
    assert done.value.code == 0 and "--socket" in capsys.readouterr().out


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"promptworth {__version__}"


def test_a_renamed_out_still_works_and_says_it_is_deprecated(tmp_path, capsys):
    assert main(["tiny-model", "--kind", "llama", "--out", str(tmp_path / "m")]) == 0
    captured = capsys.readouterr()
    assert (tmp_path / "m" / "config.json").is_file() and captured.out.strip() == str(tmp_path / "m")
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert warnings == ["promptworth: warning: promptworth tiny-model --out is the old name of --out-dir, deprecated: "
                        "write --out-dir"]


def test_a_list_option_reads_its_values_space_separated_and_repeated():
    parser = build_parser(["train"])
    common = ["train", "--task", "SST-2", "--method", "m", "--split-dir", "s", "--seed", "1", "--out", "r.json"]
    budgets = ["--schedule", "constant", "--eval-every", "50"]  # what budgets need
    spaced = parser.parse_args([*common, "--objective", "prompt", "--option", "r=4", "alpha=8", "--extra", "calibrate",
                                *budgets, "--budgets", "50", "200"])
    repeated = parser.parse_args([*common, "--objective", "prompt", "--option", "r=4", "--option", "alpha=8",
                                  "--extra", "calibrate", *budgets, "--budgets", "50,200"])  # as the workflow passes it
    for args in (spaced, repeated):
        assert args.option == ["r=4", "alpha=8"] and args.extra == ["calibrate"]
        assert config_from_args(args).budgets == (50, 200)


# ---------------------------------------------------------------------------------------------
# Exit statuses: 0 done, 1 a run failed, 2 bad input or usage


def test_exit_statuses(tmp_path, monkeypatch, capsys):
    split = sentiment_split(tmp_path / "split" / "16-1", n_train=8, n_eval=4)
    train = ["train", "--task", "SST-2", "--method", "prompt", "--split-dir", str(split), "--model",
             str(tiny_model("gpt2")), "--seed", "1", "--max-steps", "2", "--eval-every", "0", "--no-progress",
             "--precision", "fp32"]
    assert main([*train, "--out", str(tmp_path / "done.json")]) == 0  # done
    # bad input: a PromptworthError (a split folder that is not there), before anything trains
    assert main([*train[:6], str(tmp_path / "absent"), *train[7:], "--out", str(tmp_path / "x.json")]) == 2
    assert main(["advantage", str(tmp_path / "absent.csv")]) == 2
    # usage: argparse (a missing required option, an unknown verb) exits 2 itself
    for argv in (["train", "--task", "SST-2"], ["no-such-verb"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 2
    # a run that failed: it diverged (RunFailed), one line as an error, no record
    monkeypatch.setattr(prompt_objective.PromptMethod, "loss", lambda self, scores, batch: scores.sum() * float("nan"))
    capsys.readouterr()
    assert main([*train, "--out", str(tmp_path / "nan.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("promptworth: error: training loss is nan")
    assert not (tmp_path / "nan.json").exists()


# ---------------------------------------------------------------------------------------------
# --json: one document on stdout, the same result as the text


def json_of(argv: list[str], capsys) -> object:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_of_the_listing_and_model_verbs(tmp_path, monkeypatch, capsys):
    tasks = json_of(["tasks", "--data-dir", str(tmp_path)], capsys)
    assert tasks["data_dir"] == str(tmp_path) and {"SST-2", "CB", "RTE"} <= {row["task"] for row in tasks["tasks"]}
    assert {(row["pool_here"], row["eval_here"]) for row in tasks["tasks"]} == {("no", "no")}  # an empty mirror
    assert {row["method"] for row in json_of(["methods"], capsys)} >= {"prompt", "head", "null"}
    tiny = json_of(["tiny-model", "--out-dir", str(tmp_path / "m")], capsys)
    assert tiny == {"kind": "llama", "positions": 256, "out_dir": str(tmp_path / "m")}
    assert json.loads((tmp_path / "m" / "config.json").read_text())["max_position_embeddings"] == 256
    # the tiny variant's study model (rule tiny_model) reads in-context learning's long contexts
    json_of(["tiny-model", "--out-dir", str(tmp_path / "m"), "--positions", "2048"], capsys)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["max_position_embeddings"] == 2048
    converted = json_of(["convert-model", "--out-dir", str(tmp_path / "m"), "--force"], capsys)
    assert converted == {"model": "smollm2-135m-instruct", "out_dir": str(tmp_path / "m"), "converted": False}
    runs = tmp_path / "runs"
    shutil.copytree(DEFAULT_STUDY / "runs", runs)
    total = len(list(runs.rglob("*.json")))
    progress = json_of(["progress", str(runs), "--total", str(total + 2), "--what", "training runs"], capsys)
    assert progress["done"] == progress["records"] == total and progress["left_s"] > 0
    monkeypatch.chdir(tmp_path)  # a study with nothing finished here
    plan = json_of(["plan", "--configfile", str(REPO / "config" / "config.yaml")], capsys)
    assert plan["finished_runs"] == 0 and plan["runs_left"] == len([j for j in plan["jobs"] if j["what"] == "run"]) > 0


def test_json_of_the_data_verbs(tmp_path, data_dir, capsys):
    split = json_of(["split", "--task", "CB", "--sizes", "8", "16", "--data-seed", "1", "--dev-size", "8",
                     "--out-dir", str(tmp_path / "CB"), "--data-dir", str(data_dir)], capsys)
    assert split == {"task": "CB", "splits": {"8": str(tmp_path / "CB" / "8-1"), "16": str(tmp_path / "CB" / "16-1")}}
    kshot = json_of(["kshot", "--out-dir", str(tmp_path / "k"), "--tasks", "SST-2", "--seeds", "13",
                     "--data-dir", str(data_dir)], capsys)
    assert kshot["splits"] == {"SST-2": {"13": str(tmp_path / "k" / "SST-2" / "16-13")}} and kshot["skipped"] == []
    fetched = json_of(["fetch-data", "--tasks", "SST-2", "--data-dir", str(data_dir)], capsys)  # a mirror: checked only
    assert [(row["file"], row["path"], row["downloaded"]) for row in fetched] == [
        (name, str(data_dir / name), False) for name in ("original/SST-2/train.tsv", "original/SST-2/dev.tsv")]


def test_json_of_the_analysis_verbs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the records' splits (results/splits/...) are not here: not checked
    table = tmp_path / "runs.csv"
    aggregate = json_of(["aggregate", str(DEFAULT_STUDY / "runs"), "--out", str(table)], capsys)
    assert aggregate["runs"] == len(pd.read_csv(table)) > 0 and aggregate["out"] == str(table)
    advantage = json_of(["advantage", str(table)], capsys)
    assert [(row["treatment"], row["baseline"], row["task"]) for row in advantage] == [("prompt", "head", "SST-2")]
    tables = json_of(["tables", str(table), "--out-dir", str(tmp_path / "tables")], capsys)
    assert tables["files"] == sorted(path.name for path in (tmp_path / "tables").iterdir())
    assert "advantage.md" in tables["files"]
    lmbff = json_of(["lmbff-table", str(REPO / "reports" / "lmbff" / "runs.csv"), "--out-dir", str(tmp_path / "lmbff")],
                    capsys)
    assert lmbff["files"] == sorted(path.name for path in (tmp_path / "lmbff").iterdir()) and lmbff["rows"]
    paired = json_of(["paired", str(DEFAULT_STUDY / "runs"), "--out-dir", str(tmp_path / "paired")], capsys)
    assert paired["files"] == ["paired.csv", "paired.md"]
    costs = json_of(["costs", "--runs", "--benchmarks", "--out", str(tmp_path / "costs.csv")], capsys)
    assert costs == {"out": str(tmp_path / "costs.csv"), "runs": 0}
    budgets = json_of(["budgets", str(REPO / "reports" / "v2" / "runs.csv"), "--comparisons", "prompt:head",
                       "--tables-dir", str(tmp_path / "bt"), "--figures-dir", str(tmp_path / "bf")], capsys)
    assert budgets["budgets"] == ["40", "200", "converged"]  # the second edition's budgets, then convergence
    assert {row["budget"] for row in budgets["advantage"]} == set(budgets["budgets"])
    assert budgets["files"] == sorted(path.name for folder in ("bt", "bf") for path in (tmp_path / folder).iterdir())


def test_json_of_figures_and_import_lescao(tmp_path, reference_dir, capsys):
    lescao = json_of(["import-lescao", str(reference_dir / "lescao2021" / "cb.csv"), "--out",
                      str(tmp_path / "cb.csv")], capsys)
    assert lescao["tasks"] == ["CB"] and lescao["runs"] == len(pd.read_csv(tmp_path / "cb.csv"))
    figures = json_of(["figures", str(tmp_path / "cb.csv"), "--out-dir", str(tmp_path / "figures")], capsys)
    assert figures["files"] == sorted(path.name for path in (tmp_path / "figures").iterdir())
    assert "overview.png" in figures["files"]


def test_json_of_protocol_flops_and_reproduce(tmp_path, monkeypatch, capsys):
    runs = DEFAULT_STUDY / "runs"
    total = len(list(runs.rglob("*.json")))
    protocol = json_of(["protocol", str(runs), "--out-dir", str(tmp_path / "p")], capsys)
    assert protocol["files"] == ["protocol.csv", "protocol.md"] and protocol["runs"] == total
    assert [(row["method"], row["runs"]) for row in protocol["rows"]] == \
        [(row["method"], row["runs"]) for row in pd.read_csv(tmp_path / "p" / "protocol.csv").to_dict("records")]
    flops = json_of(["flops", str(runs), "--tables-dir", str(tmp_path / "t"), "--figures-dir", str(tmp_path / "f")],
                    capsys)
    assert flops["runs"] == total
    assert flops["files"] == sorted(path.name for folder in ("t", "f") for path in (tmp_path / folder).iterdir())
    # reproduce: a copy of the published records where the verb looks for the reproduction agrees with them
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    for folder in ("reports/default-study", "results/reproduce/default-study"):
        for sub in ("runs", "lr-grid"):
            shutil.copytree(DEFAULT_STUDY / sub, tmp_path / folder / sub)
    monkeypatch.chdir(tmp_path)
    reproduced = json_of(["reproduce", "default-study"], capsys)
    written = tmp_path / "results" / "reproduce" / "default-study" / "reproduction.json"
    assert reproduced == json.loads(written.read_text(encoding="utf-8")) and reproduced["agrees"]


def test_json_of_prefetch(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    hub_cache_model(tmp_path / "hf-cache", "tiny-org/tiny-llama", "llama", commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the commit is cached: nothing is asked of the hub
    pin = tmp_path / "pin.json"
    pinned = json_of(["prefetch", "--model", f"tiny-org/tiny-llama@{commit}", "--out", str(pin)], capsys)
    assert pinned == {**json.loads(pin.read_text(encoding="utf-8")), "out": str(pin)}
    assert pinned["hub"]["commit"] == commit and len(pinned["model_sha256"]) == 64
