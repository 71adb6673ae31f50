"""A pool of long-lived training processes, so that the runs of a study do not each pay for an
interpreter start, the imports of torch and transformers, and the backbone's set-up.

``promptworth pool --size N -- COMMAND ...`` starts N workers, runs COMMAND (a Snakemake study)
with ``PROMPTWORTH_POOL`` naming the pool's folder, stops the workers when COMMAND ends and exits
with COMMAND's status. Inside it, ``promptworth train`` is a thin client: it parses and checks its
command line, hands the training request (:class:`promptworth.training.request.RunRequest`) to a
free worker and prints what the worker reports. Snakemake still sees one job per run,
with its own log, benchmark and retries.

Without a pool, or when no worker can be reached, ``promptworth train`` trains in its own process.
A job of a cluster never uses a pool of another job or of the login node, even on the same host:
the pool's ``owner`` file names the host and the SLURM job it runs in, and a client delegates only
when both are its own. A worker trains the request with the very same code
(:func:`promptworth.training.run.train_to_file`), so the record is the same either way; only the timing differs (``timing.process_s`` is
the run's share of the worker: its own time, plus the worker's start-up for the first run it
serves).

GPUs: with ``--runs-per-gpu K`` the pool spreads its workers over the GPUs it sees, K to a GPU:
each worker's ``CUDA_VISIBLE_DEVICES`` names one GPU (:func:`promptworth.training.devices.worker_gpus`),
so a run on it with ``--device auto`` or ``cuda`` trains there, and at most K runs share a GPU. Without
it every worker sees what the pool sees (a run with ``--device auto`` takes the first GPU).

Protocol, one connection per run: the client sends one JSON line ``{"request", "out", "cwd",
"started_at"}``; the worker answers with a JSON line ``{"output"}`` for each thing the run prints,
as it prints it (the client writes it to its stderr at once: the job's log), and a last one
``{"status"}`` when the run has ended. A client holds an exclusive ``flock`` on the worker's
``.lock`` file for the whole run, so two runs never share a worker.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from promptworth.errors import PromptworthError, RunFailed
from promptworth.training import devices
from promptworth.training.runtime import process_start

POOL_ENV = "PROMPTWORTH_POOL"
# How long a worker may take to import torch and transformers and start listening.
READY_TIMEOUT_S = 300.0
# How often a client looks again when every worker is busy, and a worker whether its pool lives.
POLL_S = 0.2


def socket_path(pool: Path, index: int) -> Path:
    return pool / f"worker-{index}.sock"


def lock_path(socket_file: Path) -> Path:
    return socket_file.with_suffix(".lock")


def log_path(socket_file: Path) -> Path:
    return socket_file.with_suffix(".log")


def log_tail(path: Path) -> str:
    """The last line a worker wrote to its log, for a message (the log lives in the pool's
    temporary folder, which goes when the pool stops: a message must not send anyone there)."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return f"its last output: {lines[-1].strip()[:300]}" if lines else "it wrote nothing"


def owner() -> str:
    """Where this process runs: the host and the SLURM job (none outside SLURM)."""
    return f"{socket.gethostname()} slurm-job:{os.environ.get('SLURM_JOB_ID', '')}"


def owner_path(pool: Path) -> Path:
    return pool / "owner"


def send_message(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall((json.dumps(message) + "\n").encode("utf-8"))


def relayed_status(conn: socket.socket) -> int | None:
    """Write each ``{"output"}`` message of a worker to stderr as it comes; the run's exit status
    (its last message), None when the worker closed the connection first."""
    with conn.makefile("rb") as messages:
        for line in messages:
            message = json.loads(line.decode("utf-8"))
            if "status" in message:
                return int(message["status"])
            sys.stderr.write(message["output"])
            sys.stderr.flush()
    return None


def receive_message(conn: socket.socket) -> dict[str, Any] | None:
    """One JSON line; None when the other side closed the connection first."""
    chunks = []
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            return json.loads(b"".join(chunks).decode("utf-8"))


# ---------------------------------------------------------------------------------------------
# The client: `promptworth train` inside a pool


def delegate(pool: Path, job: Mapping[str, Any]) -> int | None:
    """Run ``job`` (a training request as JSON and the record file it writes:
    ``{"request", "out"}``) on a free worker of ``pool``, print its output and return its exit
    status; None when no worker of the pool can be reached (then train here)."""
    try:
        if owner_path(pool).read_text(encoding="utf-8") != owner():
            return None  # another host's or another job's pool: its workers are not this job's
    except OSError:
        return None
    request = {**job, "cwd": os.getcwd(), "started_at": process_start()}
    sockets = sorted(pool.glob("worker-*.sock"))
    while sockets:
        busy = False
        for path in sockets:
            with open(lock_path(path), "a+") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    busy = True  # another run holds it: it is alive
                    continue
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                    try:
                        conn.connect(str(path))
                    except OSError:
                        continue  # a worker that has stopped
                    send_message(conn, request)
                    status = relayed_status(conn)
                if status is None:
                    raise RunFailed(
                        f"the pool's worker {path.name} stopped during the run ({log_tail(log_path(path))}); "
                        "no record is written"
                    )
                return status
        if not busy:
            return None
        time.sleep(POLL_S)
    return None


# ---------------------------------------------------------------------------------------------
# The pool


def start_workers(folder: Path, size: int, gpus: Sequence[str] = ()) -> list[subprocess.Popen]:
    """``size`` workers; with ``gpus`` (one per worker) each sees only its own GPU."""
    env = {k: v for k, v in os.environ.items() if k != POOL_ENV}  # a worker never delegates
    workers = []
    for index in range(size):
        path = socket_path(folder, index)
        lock_path(path).touch()
        own = {devices.CUDA_VISIBLE_DEVICES: gpus[index]} if gpus else {}
        with open(log_path(path), "w", encoding="utf-8") as log:
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "promptworth", "worker", "--socket", str(path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env={**env, **own},
            ))
    return workers


def gpus_of_workers(size: int, runs_per_gpu: int) -> list[str]:
    """Each worker's GPU at ``runs_per_gpu`` workers to a GPU (0: none given, every worker sees the
    pool's GPUs); the GPUs are CUDA_VISIBLE_DEVICES's, else the driver's count (torch is imported then only)."""
    if not runs_per_gpu:
        return []

    def count() -> int:
        import torch

        return torch.cuda.device_count()

    return devices.worker_gpus(size, runs_per_gpu, devices.visible_gpus(os.environ, count))


def wait_ready(folder: Path, workers: list[subprocess.Popen], timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    for index, worker in enumerate(workers):
        path = socket_path(folder, index)
        while not path.exists():
            if worker.poll() is not None:
                tail = log_path(path).read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
                raise PromptworthError(f"worker {index} of the pool failed to start: {' '.join(tail) or 'no output'}")
            if time.monotonic() > deadline:
                raise PromptworthError(f"worker {index} of the pool did not start within {timeout_s:.0f} s")
            time.sleep(POLL_S)


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


class PoolStopped(Exception):
    """The pool got a signal to stop (SIGTERM, SIGINT, SIGHUP)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# Signals that stop a pool, and how long its command may take to stop its jobs after one.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOP_GRACE_S = 60.0


def _raise_stopped(signum: int, frame: Any) -> None:
    raise PoolStopped(signum)


def _ignore(signums: Sequence[int]) -> None:
    for signum in signums:
        signal.signal(signum, signal.SIG_IGN)


def stop_command(child: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """Stop the pool's command: an interrupt first (Snakemake then cancels its jobs, as on Ctrl-C),
    a kill when it has not stopped within ``grace_s``."""
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def run_pool(size: int, command: Sequence[str], runs_per_gpu: int = 0) -> int:
    """Run ``command`` with a pool of ``size`` workers (``runs_per_gpu`` of them to a GPU, 0: each
    sees the pool's GPUs); its exit status. A signal that stops the
    pool (:data:`STOP_SIGNALS`) stops the command and the workers too, and the pool's temporary
    folder goes in every case; the status is then 128 + the signal's number."""
    if size < 1:
        raise PromptworthError(f"--size must be at least 1, got {size}")
    if runs_per_gpu < 0:
        raise PromptworthError(f"--runs-per-gpu must be at least 1 (or 0: not given), got {runs_per_gpu}")
    if not command:
        raise PromptworthError("no command to run in the pool (promptworth pool --size N -- COMMAND ...)")
    if shutil.which(command[0]) is None:
        raise PromptworthError(f"command not found: {command[0]}")
    gpus = gpus_of_workers(size, runs_per_gpu)  # before anything starts: too few GPUs is an error
    # a short folder: a UNIX socket's path holds at most 107 bytes
    folder = Path(tempfile.mkdtemp(prefix="promptworth-pool-"))
    workers: list[subprocess.Popen] = []
    child: subprocess.Popen | None = None
    previous = {signum: signal.signal(signum, _raise_stopped) for signum in STOP_SIGNALS}
    try:
        owner_path(folder).write_text(owner(), encoding="utf-8")
        workers = start_workers(folder, size, gpus)
        wait_ready(folder, workers)
        child = subprocess.Popen(list(command), env={**os.environ, POOL_ENV: str(folder)})
        return child.wait()
    except PoolStopped as stopped:
        _ignore(STOP_SIGNALS)  # stopping: a second signal must not leave the workers or the folder behind
        # the workers first: a run stopped in a worker writes no record (its client then fails),
        # while a worker left running would finish the run after its job is gone
        stop_workers(workers)
        if child is not None:
            stop_command(child)
        print(f"promptworth: the pool was stopped ({stopped}): its command and its workers are stopped",
              file=sys.stderr, flush=True)
        return 128 + stopped.signum
    finally:
        _ignore(STOP_SIGNALS)
        try:
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()
            stop_workers(workers)
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
