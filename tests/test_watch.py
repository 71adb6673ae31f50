"""Watching a run (promptworth.training.watch): progress lines at their interval, in a log and through
a pool's worker while the run trains; per-step metrics as CSV and TensorBoard event files; none of
it changes what the run computes."""

from __future__ import annotations

import csv
import importlib.util
import json
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from ci import unavailable
from tiny_models import sentiment_split, tiny_model

from promptworth.cli import main
from promptworth.training import loop, pool, watch, worker
from promptworth.training.request import RunRequest
from promptworth.training.settings import TrainConfig

# what a run with progress lines or metrics may differ in from one without: its timing, the files it names
OBSERVED = {"timing", "step_metrics", "weights"}
LINE_KEYS = {"step", "cap", "loss", "lr", "dev", "best", "best_step", "examples_read", "epochs", "elapsed_s"}


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return sentiment_split(tmp_path_factory.mktemp("split") / "32-1")


def _argv(split: Path, out: Path, *extra: str, method: str = "prompt") -> list[str]:
    return ["train", "--task", "SST-2", "--method", method, "--split-dir", str(split),
            "--model", str(tiny_model("llama")), "--seed", "3", "--out", str(out), "--max-steps", "6",
            "--eval-every", "2", "--learning-rate", "1e-3", "--precision", "fp32", "--threads", "1",
            "--test-limit", "8", *extra]


def _lines(text: str) -> list[dict[str, str]]:
    return [line for line in map(watch.read_progress_line, text.splitlines()) if line is not None]


def _observed_only(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in OBSERVED}


def test_progress_lines_come_at_their_interval_with_every_key(split, tmp_path, capsys):
    every_step = tmp_path / "every.json"
    assert main(_argv(split, every_step, "--progress-every", "0", "--patience", "2")) == 0
    lines = _lines(capsys.readouterr().err)
    record = json.loads(every_step.read_text())
    steps = record["timing"]["steps"]
    # one line after every step, then the last one, which says how training ended
    assert [line["step"] for line in lines] == [str(s) for s in range(1, steps + 1)] + [str(steps)]
    assert all(LINE_KEYS <= set(line) for line in lines) and {line["cap"] for line in lines} == {"6"}
    assert lines[-1]["stopped"] == record["stopped"] and "left_s" not in lines[-1]
    # a line follows its step, before that step's dev evaluation (steps 2, 4, 6): the next one shows it
    assert lines[1]["dev"] == lines[1]["best"] == "na"
    assert float(lines[2]["dev"]) == pytest.approx(record["dev_curve"][0]["dev_score"], abs=1e-4)
    assert {"left_s", "steps_per_s", "stop_from", "left_min_s"} <= set(lines[0])  # patience: both estimates
    assert float(lines[0]["loss"]) == pytest.approx(record["train_loss"]["first"], abs=1e-4)
    assert lines[steps - 1]["examples_read"] == "32"  # 6 steps of 8 read the 32 examples

    # the default interval, 30 s: the first step's line and the last one only (the run is shorter)
    default = tmp_path / "default.json"
    assert main(_argv(split, default, "--patience", "2")) == 0
    assert [line["step"] for line in _lines(capsys.readouterr().err)] == ["1", str(steps)]
    # --no-progress: no line; and none of it changes the record
    quiet = tmp_path / "quiet.json"
    assert main(_argv(split, quiet, "--patience", "2", "--no-progress")) == 0
    assert _lines(capsys.readouterr().err) == []
    assert _observed_only(json.loads(quiet.read_text())) == _observed_only(record)


@pytest.mark.parametrize("every", ["-1", "nan"])
def test_a_bad_interval_is_one_clear_error(split, tmp_path, capsys, every):
    assert main(_argv(split, tmp_path / "x.json", "--progress-every", every)) == 2
    assert "--progress-every must be 0" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("step, stale, patience_from, expected", [
    (5, 0, 0, 30),    # patience 3, evaluations every 10: three more without a better score
    (20, 2, 0, 30),   # two already: one more
    (20, 5, 0, 30),   # more than patience already (before its minimum): the next evaluation
    (20, 5, 55, 60),  # but never before the minimum: the first evaluation from step 55 on
    (85, 0, 0, None),  # 110 is past the cap of 100: patience cannot stop it early
])
def test_the_earliest_stop_counts_the_evaluations_patience_still_needs(step, stale, patience_from, expected):
    assert watch.earliest_stop(step, 100, 10, 3, stale, patience_from) == expected
    assert watch.earliest_stop(step, 100, 10, 0, stale, patience_from) is None  # no patience


def test_a_progress_line_reads_back():
    line = watch.progress_line({"step": 3, "loss": 0.693147, "lr": 2e-05, "dev": None, "steps_per_s": 0.0})
    assert line == "progress: step=3 loss=0.6931 lr=2e-05 dev=na steps_per_s=0"
    assert watch.read_progress_line(line) == {"step": "3", "loss": "0.6931", "lr": "2e-05", "dev": "na",
                                              "steps_per_s": "0"}
    assert watch.read_progress_line("SST-2 prompt llama size 32: dev 0.5") is None


def test_csv_metrics_hold_every_step_and_each_dev_evaluation(split, tmp_path, capsys):
    out = tmp_path / "runs" / "run.json"
    assert main(_argv(split, out, "--metrics", "csv", "--no-progress")) == 0
    record = json.loads(out.read_text())
    assert record["step_metrics"] == {"format": "csv", "path": "run.metrics.csv"}
    assert "metrics" not in record["hyperparameters"]  # not a hyperparameter: nothing it computes changes
    with open(out.parent / "run.metrics.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(watch.CSV_COLUMNS)
    assert [int(row["step"]) for row in rows] == list(range(1, 7))
    assert float(rows[0]["loss"]) == record["train_loss"]["first"] and float(rows[-1]["loss"]) == record["train_loss"]["last"]
    assert float(rows[0]["learning_rate"]) == 1e-3 and float(rows[-1]["learning_rate"]) < 1e-3  # the linear decay
    evaluated = [{"step": int(row["step"]), "dev_score": float(row["dev_score"])} for row in rows if row["dev_score"]]
    assert evaluated == record["dev_curve"]
    assert float(rows[-1]["best_dev_score"]) == record["dev_score"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["run.json", "run.metrics.csv"]  # nothing partial left
    plain = tmp_path / "plain.json"
    assert main(_argv(split, plain, "--no-progress")) == 0
    without = json.loads(plain.read_text())
    assert without["step_metrics"] is None and without["weights"] is None
    assert _observed_only(without) == _observed_only(record)


def test_a_method_that_takes_no_step_writes_its_one_dev_evaluation(split, tmp_path):
    out = tmp_path / "zero.json"
    assert main(_argv(split, out, "--metrics", "csv", "--save-weights", "--no-progress", method="zeroshot")) == 0
    record = json.loads(out.read_text())
    with open(tmp_path / "zero.metrics.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["step"], float(row["dev_score"])) for row in rows] == [("0", record["dev_score"])]
    assert record["weights"] == {"folder": None, "parameters": "none", "files": []}  # nothing trained
    assert not (tmp_path / "zero.weights").exists()


def test_tensorboard_metrics_are_event_files_tensorboard_reads(split, tmp_path):
    if importlib.util.find_spec("tensorboard") is None:
        unavailable("the package tensorboard is not installed (pip install -c constraints.txt '.[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb.json"
    assert main(_argv(split, out, "--metrics", "tensorboard", "--no-progress")) == 0
    record = json.loads(out.read_text())
    assert record["step_metrics"] == {"format": "tensorboard", "path": "tb.tensorboard"}
    events = EventAccumulator(str(tmp_path / "tb.tensorboard"))
    events.Reload()
    assert {"train/loss", "train/learning_rate", "dev/score", "dev/best"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 7))
    assert events.Scalars("train/loss")[0].value == pytest.approx(record["train_loss"]["first"], rel=1e-6)
    assert [(e.step, pytest.approx(e.value, abs=1e-6)) for e in events.Scalars("dev/score")] == [
        (point["step"], point["dev_score"]) for point in record["dev_curve"]]


def test_tensorboard_without_its_package_is_one_clear_error_before_training(split, tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    assert main(_argv(split, tmp_path / "tb.json", "--metrics", "tensorboard")) == 2
    assert "needs the package tensorboard" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_leaves_nothing_beside_its_record(split, tmp_path, monkeypatch, capsys):
    real = loop._train_step

    def fails_at_step_4(method, model, batch, step, *args, **kwargs):
        if step == 4:
            raise RuntimeError("the machine went away")
        return real(method, model, batch, step, *args, **kwargs)

    monkeypatch.setattr(loop, "_train_step", fails_at_step_4)
    out = tmp_path / "runs" / "failed.json"
    with pytest.raises(RuntimeError):
        main(_argv(split, out, "--metrics", "csv", "--save-weights", "--no-progress"))
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_an_output_name_taken_by_something_else_is_refused_before_training(split, tmp_path, capsys):
    (tmp_path / "run.weights").mkdir()
    (tmp_path / "run.weights" / "notes.txt").write_text("mine")
    assert main(_argv(split, tmp_path / "run.json", "--save-weights")) == 2
    assert "holds 'notes.txt', which no run wrote there" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.weights"]


# ---------------------------------------------------------------------------------------------
# In a pool: the worker relays what the run prints while it trains


def test_a_worker_relays_the_run_s_lines_while_it_trains(split, tmp_path, monkeypatch):
    """Each progress line reaches the client as it is printed: the first before the record exists."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "pooled.json"
    config = TrainConfig(max_steps=6, eval_every=2, learning_rate=1e-3, precision="fp32")
    request = RunRequest(task="SST-2", method="prompt", split_dir=split, model=str(tiny_model("llama")), seed=3,
                         config=config, test_limit=8, progress_every=0.0, started_at=0.0)
    job = {"request": request.to_json(), "out": str(out), "cwd": str(tmp_path), "started_at": 0.0}
    import torch

    server, client = socket.socketpair()
    seen: list[tuple[str, bool]] = []  # each output message, and whether the record existed when it came

    def read() -> None:
        with client.makefile("rb") as messages:
            for line in messages:
                message = json.loads(line)
                if "status" in message:
                    seen.append((f"status={message['status']}", out.exists()))
                    return
                seen.append((message["output"], out.exists()))

    reader = threading.Thread(target=read)
    reader.start()
    status = worker.handle(job, 0.0, torch.get_num_threads(), server)
    pool.send_message(server, {"status": status})
    reader.join(timeout=60)
    server.close()
    client.close()
    progress = [(text, existed) for text, existed in seen if text.startswith(watch.LINE_TAG)]
    assert status == 0 and seen[-1][0] == "status=0"
    assert len(progress) == 7 and not progress[0][1]  # 6 steps and the last line; the first before the record


@pytest.mark.slow
def test_a_pooled_run_s_progress_lines_reach_its_job_s_log(split, tmp_path):
    """As the workflow runs it: `promptworth train ... > log 2>&1` inside a pool."""
    log = tmp_path / "job.log"
    train = shlex.join([sys.executable, "-m", "promptworth", *_argv(split, tmp_path / "run.json", "--progress-every",
                                                                       "0")])
    done = subprocess.run([sys.executable, "-m", "promptworth", "pool", "--size", "1", "--", "sh", "-c",
                           f"{train} > {shlex.quote(str(log))} 2>&1"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    text = log.read_text()
    assert "training in this process" not in text  # the pool's worker trained it
    assert [line["step"] for line in _lines(text)] == ["1", "2", "3", "4", "5", "6", "6"]
    assert "SST-2 prompt llama size 32" in text  # and the summary line after them
