"""`promptworth pool` and its workers: a run gives the same record in a pool as alone, side by
side runs never share a worker, failures come back as the run's own, and a job that cannot reach
the pool trains in its own process."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tiny_models import sentiment_split, tiny_model

from promptworth.cli import build_parser, handler, main
from promptworth.cli.verbs import VERBS
from promptworth.training import pool as workers
from promptworth.training.cpu import cpu_has_fast_bf16

# what may differ between a run alone and the same run in a pool: its timing
TIMING_ONLY = {"timing"}


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return sentiment_split(tmp_path_factory.mktemp("split") / "32-1")


def _train(split: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--task", "SST-2", "--method", "prompt", "--split-dir", str(split),
        "--model", str(tiny_model("llama")), "--seed", "3", "--out", str(out), "--max-steps", "6",
        "--eval-every", "3", "--learning-rate", "1e-3", "--no-progress", "--precision", "fp32",
        "--threads", "1", "--test-limit", "8", *extra,
    ]


def _promptworth(*argv: str) -> list[str]:
    return [sys.executable, "-m", "promptworth", *argv]


def _pool(size: int, script: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``promptworth pool --size N -- sh -c SCRIPT``."""
    return subprocess.run(_promptworth("pool", "--size", str(size), "--", "sh", "-c", script),
                          cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def _without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING_ONLY}


def test_runs_in_a_pool_give_the_same_records_as_alone(split, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the study's folder: records name their split relative to it
    alone = tmp_path / "alone.json"
    assert main(_train(split, alone)) == 0
    # three runs on two workers: two side by side, then one on a worker that served a run before
    runs = [shlex.join(_promptworth(*_train(split, tmp_path / f"pooled-{i}.json"))) for i in range(3)]
    done = _pool(2, f"{runs[0]} & {runs[1]}; wait; {runs[2]}", tmp_path)
    assert done.returncode == 0, done.stderr
    expected = _without_timing(json.loads(alone.read_text()))
    assert json.loads(alone.read_text())["timing"]["pooled"] is False
    for i in range(3):
        record = json.loads((tmp_path / f"pooled-{i}.json").read_text())
        assert _without_timing(record) == expected
        assert record["timing"]["pooled"] is True  # the costs table leaves its client's measures out
        # the run's share of its worker: at least its own wall time, and never the pool's whole life
        assert record["timing"]["wall_s"] <= record["timing"]["process_s"] < 600
    # the worker's summary line reaches the client's output (Snakemake's log of the job)
    assert done.stderr.count("SST-2 prompt llama size 32") == 3


# Runs of different kinds, one after another through one worker: what one run sets up (a LoRA or
# prefix wrapper, demonstrations, bf16 autocast, the torch threads) must not leak into the next.
MIXED = {
    "lora": ("--method", "prompt-lora"),
    "prefix": ("--method", "prefix"),
    "demos": ("--method", "demo-random", "--objective", "prompt", "--extra", "demos", "--option", "filter=random",
              "--max-length", "96"),
    # bf16 autocast where the CPU has fast bf16 (elsewhere bf16 is refused: auto is fp32 there)
    "bf16": ("--method", "head", "--precision", "bf16" if cpu_has_fast_bf16() else "auto"),
    "plain": ("--method", "prompt", "--threads", "2"),
}


def _mixed(split: Path, out: Path, name: str) -> list[str]:
    argv = _train(split, out)
    argv[argv.index("--method"):argv.index("--method") + 2] = []
    return [*argv, *MIXED[name]]


@pytest.mark.slow
def test_one_worker_serving_runs_of_every_kind_gives_each_the_record_it_has_alone(split, tmp_path):
    """Each run alone in a fresh process, then all of them through one worker, twice over in
    another order: the records agree but for their timing."""
    for name in MIXED:
        alone = subprocess.run(_promptworth(*_mixed(split, tmp_path / f"alone-{name}.json", name)), cwd=tmp_path,
                               capture_output=True, text=True, timeout=600)
        assert alone.returncode == 0, alone.stderr[-2000:]
    order = [*MIXED, *reversed(MIXED)]
    script = "; ".join(shlex.join(_promptworth(*_mixed(split, tmp_path / f"pooled-{i}-{name}.json", name)))
                       for i, name in enumerate(order))
    done = _pool(1, f"set -e; {script}", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for i, name in enumerate(order):
        pooled = json.loads((tmp_path / f"pooled-{i}-{name}.json").read_text())
        alone = json.loads((tmp_path / f"alone-{name}.json").read_text())
        assert pooled["timing"]["pooled"] is True
        assert _without_timing(pooled) == _without_timing(alone), name


def test_a_failed_run_is_the_clients_error_and_the_worker_serves_on(split, tmp_path):
    bad = shlex.join(_promptworth(*_train(tmp_path / "missing-split", tmp_path / "bad.json")))
    good = shlex.join(_promptworth(*_train(split, tmp_path / "good.json")))
    done = _pool(1, f"{bad}; echo status=$?; {good}", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "status=2" in done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("promptworth: error:")]
    assert len(errors) == 1 and "missing-split" in errors[0]
    assert not (tmp_path / "bad.json").exists()
    assert json.loads((tmp_path / "good.json").read_text())["score"] is not None


def test_the_pool_exits_with_its_commands_status(tmp_path):
    assert _pool(1, "exit 3", tmp_path).returncode == 3


@pytest.mark.parametrize(
    "argv, message",
    [(["--size", "0", "--", "true"], "--size must be at least 1"),
     (["--size", "1"], "no command"),
     (["--size", "1", "--", "no-such-command-here"], "command not found")],
)
def test_bad_pool_arguments_are_one_clear_error(argv, message, capsys):
    assert main(["pool", *argv]) == 2
    assert message in capsys.readouterr().err


def test_without_a_reachable_worker_the_run_trains_here(split, tmp_path, monkeypatch, capsys):
    pool = tmp_path / "pool"
    pool.mkdir()
    monkeypatch.setenv(workers.POOL_ENV, str(pool))
    out = tmp_path / "here.json"
    assert main(_train(split, out)) == 0
    assert "training in this process" in capsys.readouterr().err
    assert json.loads(out.read_text())["train_size"] == 32


def test_a_pool_of_another_host_or_job_is_never_used(tmp_path, monkeypatch):
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "worker-0.sock").touch()  # would be tried (and fail to connect) if the owner matched
    workers.owner_path(pool).write_text(workers.owner(), encoding="utf-8")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # this client is a SLURM job; the pool is not
    assert workers.delegate(pool, {}) is None
    monkeypatch.delenv("SLURM_JOB_ID")
    workers.owner_path(pool).write_text("another-host slurm-job:", encoding="utf-8")
    assert workers.delegate(pool, {}) is None


def test_a_worker_that_dies_during_the_run_is_an_error(split, tmp_path):
    # the worker is killed while it trains (a pool stopped under a running job): once the run's first
    # progress line has come back from the worker (after its first step), however long the start took
    argv = [arg for arg in _train(split, tmp_path / "killed.json", "--max-steps", "400", "--progress-every", "0")
            if arg != "--no-progress"]
    run = shlex.join(_promptworth(*argv))
    script = (f"{run} 2> run.err & for i in $(seq 1200); do grep -q '^progress:' run.err 2>/dev/null && break; sleep 0.1; done; "
              "pkill -f 'promptworth worker --socket '\"$PROMPTWORTH_POOL\"; wait $!; echo status=$?; cat run.err >&2")
    done = _pool(1, script, tmp_path)
    assert "status=1" in done.stdout, done.stderr  # a run that failed (exit 1), not a bad input
    assert "stopped during the run" in done.stderr
    # the worker's log goes with the pool's folder: the message says what it held, never where
    assert "its last output:" in done.stderr or "it wrote nothing" in done.stderr
    assert ".log" not in done.stderr
    assert not (tmp_path / "killed.json").exists()


def test_a_worker_reports_a_failed_run_as_its_client_would(split, tmp_path, monkeypatch):
    """A run that diverges in a worker comes back with its client's exit status, 1, and error line."""
    import torch

    from promptworth.methods.objectives import prompt as prompt_objective
    from promptworth.training import worker
    from promptworth.training.request import RunRequest
    from promptworth.training.settings import TrainConfig

    monkeypatch.chdir(tmp_path)  # the worker works in its client's folder: this one, restored after
    monkeypatch.setattr(prompt_objective.PromptMethod, "loss", lambda self, scores, batch: scores.sum() * float("nan"))
    request = RunRequest(task="SST-2", method="prompt", split_dir=split, model=str(tiny_model("llama")), seed=1,
                         config=TrainConfig(max_steps=2, eval_every=0, precision="fp32"), progress=False)
    job = {"request": request.to_json(), "out": str(tmp_path / "nan.json"), "cwd": str(tmp_path),
           "started_at": time.time()}
    ours, client = socket.socketpair()  # the worker's end and its client's
    with ours, client:
        status = worker.handle(job, 0.0, torch.get_num_threads(), ours)
        ours.shutdown(socket.SHUT_WR)
        output = "".join(json.loads(line)["output"] for line in client.makefile("rb"))
    assert status == 1 and "promptworth: error: training loss is nan" in output
    assert not (tmp_path / "nan.json").exists()


def test_every_verb_has_a_handler_and_only_its_own_parser_is_built():
    parser = build_parser()
    assert set(parser._subparsers._group_actions[0].choices) == {verb.name for verb in VERBS}  # noqa: SLF001
    for verb in VERBS:
        assert callable(handler(verb.handler)), verb.name
        alone = build_parser([verb.name])
        assert set(alone._subparsers._group_actions[0].choices) == {verb.name}  # noqa: SLF001


def test_the_client_start_does_not_import_torch():
    # `promptworth train` in a pool is a thin client: its start-up is the saving
    code = ("import sys; from promptworth.cli import build_parser, handler; "
            "build_parser(['train']); handler('promptworth.cli.train:run_train'); "
            "print('torch' in sys.modules, 'pandas' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    assert done.stdout.split() == ["False", "False"]


def test_the_study_benchmark_runs_both_engines_side_by_side(tmp_path):
    # benchmarks/study_throughput.py on the tiny study: the second edition's engine and the third's (v4),
    # each as `make study` runs a study (a pool), the same runs paired
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "throughput.json"
    done = subprocess.run(
        [sys.executable, str(repo / "benchmarks" / "study_throughput.py"), "--config", "config/studies/tiny.yaml",
         "--model", "resources/models/tiny-llama", "--tasks", "SST-2", "--sizes", "8", "16", "--data-seeds", "1",
         "--engine", "v4", "--out", str(out)],
        cwd=repo, capture_output=True, text=True, timeout=900,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    v2, v4 = result["sides"]["v2"], result["sides"]["v4"]
    assert v2["runs"] == v4["runs"] == 4 and result["accuracy"]["paired"]["pairs"] == 4
    assert v2["levers"]["attention"] == {"sdpa": 4} and v4["levers"]["attention"] == {"eager": 4}
    assert v4["levers"]["training_batches"] == {"packed": 4} and "training_batches" not in v2["levers"]
    assert v2["hyperparameters"]["engine"] == "v2" and v4["hyperparameters"]["engine"] == "v4"
    assert result["speedup"] > 0 and 0 < result["study_mfu"]["v4"] < 1
    assert isinstance(result["accuracy"]["paired"]["equal_within_noise"], bool)
    assert result["peak"][result["peak"]["reference"]] > 0 and result["cpu"]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (its children, theirs, ...), from /proc."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _pool_folder(pids: list[int]) -> Path | None:
    for pid in pids:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(workers.POOL_ENV.encode() + b"="):
                return Path(item.split(b"=", 1)[1].decode())
    return None


def _wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("group", [False, True], ids=["pool", "process-group"])
def test_a_pool_stopped_during_training_stops_everything_and_the_study_resumes_the_rest(tmp_path, group):
    """SIGTERM to `promptworth pool` (or to its whole process group) while a run trains: the
    Snakemake it runs, the job and the workers stop, the pool's temporary folder goes, no partial
    record is left (before: Snakemake and the workers went on and finished the study in the
    background, and the folder stayed). Then the finished record is kept as it was and only the
    run that was stopped is trained again."""
    from tiny_study import HEAD, PROMPT, REPO as STUDY_REPO, write_config

    configfile = write_config(tmp_path / "tiny.yaml", lr_grid=None, training_by_method={"prompt": {"max_steps": 5000}})
    config = yaml.safe_load(configfile.read_text())
    del config["lr_grid"]
    config["splits"]["sizes"] = [8]  # head and a long prompt run, side by side
    configfile.write_text(yaml.safe_dump(config), encoding="utf-8")
    snakemake = [sys.executable, "-m", "snakemake", "--snakefile", str(STUDY_REPO / "Snakefile"), "--cores", "2",
                 "--configfile", str(configfile)]
    pool = subprocess.Popen(_promptworth("pool", "--size", "2", "--", *snakemake, "--", "runs"), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        # head's job has finished (Snakemake's log says so), prompt's trains on
        _wait_for(lambda: any("(Rule: train)" in log.read_text() for log in tmp_path.glob(".snakemake/log/*.log")),
                  300)
        assert (tmp_path / HEAD).is_file()
        _wait_for(lambda: (tmp_path / "results/logs/train/tiny-llama/SST-2/prompt/8-1-1.log").is_file(), 60)
        below = _descendants(pool.pid)
        folder = _pool_folder(below)
        assert folder is not None and folder.is_dir() and len(below) >= 4  # snakemake, a job, 2 workers
        finished = (tmp_path / HEAD).read_bytes()
        if group:
            os.killpg(pool.pid, signal.SIGTERM)
        else:
            pool.send_signal(signal.SIGTERM)
        _, err = pool.communicate(timeout=120)
    finally:
        if pool.poll() is None:
            os.killpg(pool.pid, signal.SIGKILL)
            pool.wait()
    assert pool.returncode == 128 + signal.SIGTERM or (group and pool.returncode == -signal.SIGTERM), err[-2000:]
    _wait_for(lambda: not any(map(_alive, below)), 30)
    assert not folder.exists()
    time.sleep(2)
    assert not (tmp_path / PROMPT).exists() and (tmp_path / HEAD).read_bytes() == finished
    # resuming: only the stopped run trains
    resumed = subprocess.run([*snakemake, "-n", "--rerun-incomplete", "--", "runs"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    trains = [line for line in resumed.stdout.splitlines() if line.strip().startswith("output:")]
    assert [line.split()[-1] for line in trains] == [str(PROMPT)]


def test_a_request_goes_to_a_worker_and_back_as_it_was():
    from promptworth.methods.specs import define, resolve
    from promptworth.training.request import RunRequest
    from promptworth.training.settings import TrainConfig

    defined = define({"name": "lora-r4", "objective": "prompt", "tuning": "lora", "options": {"r": 4},
                      "extras": ["calibrate"]})
    for method in (resolve("prompt-demo"), "head", defined):
        request = RunRequest(task="SST-2", method=method, split_dir=Path("splits/16-1"), model="tiny", seed=3,
                             config=TrainConfig(schedule="constant", eval_every=5, budgets=(10, 5)), test_limit=8,
                             search=Path("s.json"), lr_selection=None, progress=False)
        sent = json.loads(json.dumps(request.to_json()))
        spec = resolve(method) if isinstance(method, str) else method
        assert RunRequest.from_json(sent) == dataclasses.replace(request, method=spec)
