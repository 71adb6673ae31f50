"""Bad command-line inputs: one line ``promptworth: error: ...``, exit status 2, nothing written.

The table of inputs tried and their outcomes is ``docs/reliability.md``; each row names its test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import sentiment_rows, sentiment_split, tiny_model, write_split

from promptworth.cli import main
from promptworth.training import run as train


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return sentiment_split(tmp_path_factory.mktemp("split") / "32-1", n_train=8, n_eval=4)


def train_argv(split: Path, out: Path, *extra: str, method: str = "head") -> list[str]:
    return [
        "train", "--task", "SST-2", "--method", method, "--split-dir", str(split), "--model", str(tiny_model("llama")),
        "--seed", "1", "--out", str(out), "--max-steps", "2", "--eval-every", "0", "--no-progress",
        "--precision", "fp32", *extra,
    ]


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """These inputs must be refused before training starts."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(train, "run", refuse)


def error_of(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """The one error line of a command that must fail with status 2."""
    capsys.readouterr()  # drop what came before (a tiny model built for the test)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("promptworth: error: "), err
    return err[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--threads", "-1"), "--threads must be 0 (torch's default) or a positive number, got -1"),
        (("--test-limit", "0"), "--test-limit must be a positive number of rows, got 0"),
        (("--test-limit", "-3"), "--test-limit must be a positive number of rows, got -3"),
        (("--seed", "-1"), "--seed must be an integer from 0 to 4294967295, got -1"),
        (("--seed", str(2**64)), "--seed must be an integer from 0 to 4294967295"),
        (("--data-seed", "-7"), "--data-seed must be an integer from 0 to 4294967295, got -7"),
        (("--patience", "-1", "--eval-every", "1"), "training setting patience has an invalid value: -1"),
        (("--patience", "3"), "training setting patience 3 needs dev evaluations during training: eval_every is 0"),
    ],
)
def test_bad_train_numbers_fail_before_training(split, tmp_path, capsys, no_training, extra, message):
    out = tmp_path / "runs" / "run.json"
    assert message in error_of(train_argv(split, out, *extra), capsys)
    assert not list(tmp_path.iterdir())


def test_out_under_a_file_fails_before_training(split, tmp_path, capsys, no_training):
    (tmp_path / "taken").write_text("a file")
    line = error_of(train_argv(split, tmp_path / "taken" / "run.json"), capsys)
    assert "cannot write the run record run.json into" in line and "taken" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_out_that_is_a_folder_fails_before_training(split, tmp_path, capsys, no_training):
    (tmp_path / "run.json").mkdir()
    assert "run.json is a folder; give the name of the file to write" in error_of(
        train_argv(split, tmp_path / "run.json"), capsys
    )


def test_out_in_a_read_only_folder_fails_before_training(tmp_path):
    """The folder's mode forbids writing. Root writes anywhere (CI runs as root): there the command
    runs without the capability that lets root ignore a folder's mode (setpriv, util-linux), so the
    mode holds for it as for any user. The split and model do not exist: an error about them would
    mean the output was checked after them."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    argv = [sys.executable, "-m", "promptworth", "train", "--task", "SST-2", "--method", "head", "--split-dir",
            str(tmp_path / "no-split"), "--model", str(tmp_path / "no-model"), "--seed", "1", "--out",
            str(locked / "run.json")]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "as root the test needs setpriv (util-linux) to drop the capability to ignore a folder's mode"
        argv = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *argv]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == f"promptworth: error: cannot write the run record run.json into {locked}: " \
                                      "Permission denied"
        assert not list(locked.iterdir())
    finally:
        locked.chmod(0o755)


def test_a_failed_run_leaves_no_folder_it_created(split, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "run.json"
    assert "no template 'nope'" in error_of(train_argv(split, out, "--template", "nope", method="prompt"), capsys)
    assert not list(tmp_path.iterdir())


def test_the_split_must_be_of_the_task(split, tmp_path, capsys):
    out = tmp_path / "run.json"
    line = error_of(train_argv(split, out) + ["--task", "mr"], capsys)
    assert "holds a split of SST-2 (its manifest.json), not of mr" in line
    assert not out.exists()


def test_a_split_edited_after_its_manifest_is_refused(split, tmp_path, capsys):
    edited = tmp_path / "edited" / "32-1"
    edited.mkdir(parents=True)
    for path in split.iterdir():
        (edited / path.name).write_bytes(path.read_bytes())
    rows = (edited / "train.jsonl").read_text().replace('"label": 0', '"label": 1', 1)
    (edited / "train.jsonl").write_text(rows)
    out = tmp_path / "run.json"
    assert "train.jsonl has changed since its split was written" in error_of(
        train_argv(split, out) + ["--split-dir", str(edited)], capsys
    )
    assert not out.exists()


def test_a_split_without_a_manifest_cannot_be_verified(split, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    for part in ("train", "dev", "test"):
        (bare / f"{part}.jsonl").write_bytes((split / f"{part}.jsonl").read_bytes())
    line = error_of(train_argv(split, tmp_path / "run.json") + ["--split-dir", str(bare)], capsys)
    assert "cannot be verified" in line and "promptworth split" in line


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_head_on_an_empty_text_names_the_row(tmp_path, capsys, kind):
    rows = sentiment_rows(8, 1)
    rows[5]["text_a"] = ""
    folder = write_split(tmp_path / "split" / "8-1", rows, sentiment_rows(4, 2), sentiment_rows(4, 3))
    out = tmp_path / "run.json"
    argv = train_argv(folder, out) + ["--model", str(tiny_model(kind))]
    assert "SST-2 row idx 5: its input text is empty" in error_of(argv, capsys)
    assert not out.exists()


def test_max_length_beyond_the_model_is_refused(split, tmp_path, capsys):
    assert "is more than" in error_of(train_argv(split, tmp_path / "run.json", "--max-length", "100000"), capsys)


# ---------------------------------------------------------------------------------------------
# Output paths of the other verbs


def test_unwritable_outputs_of_every_verb(tmp_path, capsys, data_dir):
    taken = tmp_path / "taken"
    taken.write_text("a file")
    runs = tmp_path / "runs"
    runs.mkdir()
    lescao = tmp_path / "lescao.csv"
    lescao.write_text("training_points,CLF roberta seed 1 - test-acc-all-p\n10,0.5\n")
    cases = [
        (["kshot", "--out-dir", str(taken / "k"), "--tasks", "SST-2", "--seeds", "13"], "cannot write splits into"),
        (["kshot", "--out-dir", str(taken), "--tasks", "SST-2", "--seeds", "13"], "cannot write splits into"),
        (["split", "--task", "CB", "--sizes", "10", "--data-seed", "1", "--dev-size", "8", "--out-dir", str(taken)],
         "cannot write splits into"),
        (["import-lescao", str(lescao), "--out", str(taken / "x.csv")], "cannot write x.csv into"),
        (["import-lescao", str(lescao), "--out", str(tmp_path)], "is a folder; give the name of the file"),
        (["tiny-model", "--out-dir", str(taken / "m")], "cannot write the model folder m into"),
        (["tiny-model", "--out-dir", str(taken)], "exists and is not a model folder"),
        (["tiny-model", "--out-dir", str(runs.parent)], "exists and is not a model folder"),
        (["tiny-model", "--out-dir", str(tmp_path / "m"), "--positions", "0"], "a tiny model reads at least 1 position"),
        (["convert-model", "--out-dir", str(taken / "m")], "cannot write the model folder m into"),
    ]
    for argv, message in cases:
        assert message in error_of(argv, capsys), argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lescao.csv", "runs", "taken"]


def test_unwritable_outputs_of_the_analysis_verbs(tmp_path, capsys):
    record = {
        "schema_version": 1, "task": "CB", "method": "prompt", "model": "m", "template_name": "t", "train_size": 10,
        "data_seed": 1, "train_seed": 1, "metric": "acc", "score": 0.5, "dev_score": 0.5, "best_step": 1,
        "test": {"acc": 0.5}, "timing": {"wall_s": 1.0},
    }
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "r.json").write_text(json.dumps(record))
    (tmp_path / "runs.csv").write_text(
        "task,method,train_size,seed,score\nCB,prompt,10,1-1,0.5\nCB,head,10,1-1,0.4\nCB,prompt,20,1-1,0.6\n"
        "CB,head,20,1-1,0.5\n"
    )
    taken = tmp_path / "taken"
    taken.write_text("a file")
    cases = [
        (["aggregate", str(tmp_path / "runs"), "--out", str(taken / "runs.csv")], "cannot write runs.csv into"),
        (["aggregate", str(tmp_path / "runs"), "--out", str(tmp_path / "runs")], "is a folder"),
        (["tables", str(tmp_path / "runs.csv"), "--out-dir", str(taken)], "taken is a file, not a folder"),
        (["tables", str(tmp_path / "runs.csv"), "--out-dir", str(taken / "t")], "cannot write the folder t into"),
        (["figures", str(tmp_path / "runs.csv"), "--out-dir", str(taken)], "taken is a file, not a folder"),
    ]
    for argv, message in cases:
        assert message in error_of(argv, capsys), argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "runs.csv", "taken"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["kshot", "--out-dir", "{tmp}/k", "--tasks", "SST-2", "--seeds", "-1"], "a data seed must be an integer from 0"),
        (["kshot", "--out-dir", "{tmp}/k", "--tasks", "SST-2", "--seeds", str(2**40)], "a data seed must be an integer"),
        (["split", "--task", "CB", "--sizes", "10", "--data-seed", "-1", "--dev-size", "8", "--out-dir", "{tmp}/s"],
         "the data seed must be an integer from 0"),
        (["split", "--task", "CB", "--sizes", "10", "--data-seed", "1", "--dev-size", "8", "--test-limit", "0",
          "--out-dir", "{tmp}/s"], "test_limit must be positive"),
    ],
)
def test_bad_seeds_and_limits_of_the_data_verbs(tmp_path, capsys, data_dir, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert message in error_of(argv, capsys)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# Arguments of the analysis verbs (guards: these were already one-line errors)


@pytest.fixture
def runs_csv(tmp_path) -> Path:
    path = tmp_path / "runs.csv"
    rows = [f"CB,{m},{n},{s}-1,{0.4 + 0.01 * n / 10 + (0.1 if m == 'prompt' else 0) + 0.01 * s}"
            for m in ("prompt", "head") for n in (10, 20) for s in (1, 2)]
    path.write_text("task,method,train_size,seed,score\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    "argv, message",
    [
        (["advantage", "{csv}", "--levels", "0"], "the number of levels must be an integer from 1 to 1,000,000"),
        (["advantage", "{csv}", "--window-from", ":"], "bad --window-from ':'"),
        (["advantage", "{csv}", "--treatment", "head", "--baseline", "head"], "treatment and baseline are the same"),
        (["advantage", "{csv}", "--tasks", "NOPE"], "task(s) NOPE not in the results"),
        (["advantage", "{csv}", "--model", "nope"], "no 'model' column to filter by --model"),
        (["advantage", "{tmp}"], "no such file"),
        (["advantage", "{tmp}/absent.csv"], "no such file"),
        (["tables", "{csv}", "--out-dir", "{tmp}/t", "--comparisons", "prompt"], "bad comparison 'prompt'"),
        (["tables", "{csv}", "--out-dir", "{tmp}/t", "--comparisons", "prompt:nope"], "'nope' not in the results"),
        (["figures", "{csv}", "--out-dir", "{tmp}/f", "--treatment", "nope"], "method 'nope' not in the results"),
        (["tasks", "--data-dir", "{csv}"], "is not a folder"),
    ],
)
def test_bad_arguments_of_the_analysis_verbs(tmp_path, runs_csv, capsys, argv, message):
    argv = [a.replace("{csv}", str(runs_csv)).replace("{tmp}", str(tmp_path)) for a in argv]
    assert message in error_of(argv, capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.csv"]


def test_not_a_csv_is_one_line(tmp_path, capsys):
    path = tmp_path / "notes.csv"
    path.write_text("# notes\nsome, text\nmore, text, here\n")
    assert "not a readable CSV" in error_of(["advantage", str(path)], capsys)
    path.write_bytes(b"task,method,train_size,seed,score\n\xff,head,10,1-1,0.5\n")
    assert "not a readable CSV" in error_of(["advantage", str(path)], capsys)


def test_a_lescao_export_that_is_not_a_csv_is_one_line(tmp_path, capsys):
    path = tmp_path / "cb.csv"
    path.write_text("training_points,a\n10,1\n10,1,2,3\n")
    assert "not a readable CSV" in error_of(["import-lescao", str(path), "--out", str(tmp_path / "x.csv")], capsys)
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--seed", "abc"], "promptworth: error: train: argument --seed: invalid int value: 'abc'"),
        (["train", "--patience", "1.5"], "promptworth: error: train: argument --patience: invalid int value: '1.5'"),
        (["split", "--task", "CB"], "promptworth: error: split: the following arguments are required: --sizes"),
        (["bogus"], "promptworth: error: argument VERB: invalid choice: 'bogus'"),
    ],
)
def test_argument_errors_are_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def _split_argv(out: Path, *sizes: str) -> list[str]:
    return ["split", "--task", "CB", "--sizes", *sizes, "--data-seed", "1", "--dev-size", "8", "--out-dir", str(out)]


def test_outputs_never_delete_what_promptworth_did_not_write(tmp_path, capsys, data_dir):
    """A user's file in a split folder, a size folder or a model folder that is a link: refused
    before anything is published (before: `split` deleted the file with exit 0, and through a
    linked size folder published part of its output and crashed in rmtree)."""
    out = tmp_path / "splits"
    assert main(_split_argv(out, "10", "20")) == 0
    earlier = {p.name: p.read_bytes() for p in (out / "10-1").iterdir()}
    assert main(_split_argv(out, "10", "20")) == 0  # an earlier output of its own is replaced
    assert {p.name: p.read_bytes() for p in (out / "10-1").iterdir()} == earlier

    notes = out / "20-1" / "notes.txt"
    notes.write_text("mine", encoding="utf-8")
    assert "20-1 exists and holds 'notes.txt', which promptworth did not write there" in error_of(
        _split_argv(out, "10", "20"), capsys)
    assert notes.read_text() == "mine" and (out / "20-1" / "train.jsonl").is_file()
    notes.unlink()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine", encoding="utf-8")
    (out / "30-1").symlink_to(elsewhere, target_is_directory=True)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert "30-1 is a link: promptworth writes its folder only where none is" in error_of(
        _split_argv(out, "10", "30"), capsys)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before  # nothing published
    assert [p.name for p in elsewhere.iterdir()] == ["keep.txt"]
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]

    model = tmp_path / "model"
    assert main(["tiny-model", "--out-dir", str(model)]) == 0
    link = tmp_path / "model-link"
    link.symlink_to(model, target_is_directory=True)
    assert "model-link is a link: the model is written only where no folder is" in error_of(
        ["tiny-model", "--out-dir", str(link)], capsys)
    (model / "notes.txt").write_text("mine", encoding="utf-8")
    assert "model exists and holds 'notes.txt', which promptworth did not write there" in error_of(
        ["tiny-model", "--out-dir", str(model)], capsys)
    assert (model / "notes.txt").read_text() == "mine" and (model / "config.json").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--objective", "prompt", "--tuning", "lora", "--option", "r=4", "--option", "r=8"],
     "--option r is given twice (r=4 and r=8): give each option once"),
    (["--objective", "prompt", "--extra", "calibrate", "--extra", "calibrate"], "--extra calibrate is given twice"),
    (["--objective", "prompt", "--tuning", "lora", "--option", "r=64"],
     "method m: option r is 64, more than the model's hidden size 32"),
])
def test_a_method_defined_from_parts_is_checked_against_itself_and_the_model(split, tmp_path, capsys, extra, message):
    """(before: the last of a repeated --option won silently, and a LoRA rank above the hidden size trained)"""
    argv = train_argv(split, tmp_path / "run.json", *extra)
    argv[argv.index("--method") + 1] = "m"
    assert message in error_of(argv, capsys)
    assert not (tmp_path / "run.json").exists()
