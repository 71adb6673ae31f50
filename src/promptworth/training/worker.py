"""A worker process of a pool (``promptworth worker``): it serves the runs its clients hand over, one at a
time, and relays what each run prints to its client as it prints it (the job's log then shows the run's
progress lines while it trains, not when it ends)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import socket
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from promptworth.errors import PromptworthError
from promptworth.training import run
from promptworth.training.pool import POLL_S, receive_message, send_message
from promptworth.training.request import RunRequest
from promptworth.training.runtime import process_age_s


class Relay(io.TextIOBase):
    """A run's stdout and stderr: each write goes to the client at once (``{"output": text}``); once
    the client is gone (its job stopped), what the run prints goes nowhere."""

    def __init__(self, conn: socket.socket) -> None:
        super().__init__()
        self.conn = conn
        self.gone = False
        self.lock = threading.Lock()  # a write from another thread (a library's) never cuts into one

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self.lock:
            if text and not self.gone:
                try:
                    send_message(self.conn, {"output": text})
                except OSError:
                    self.gone = True
        return len(text)


def handle(job: dict[str, Any], startup_s: float, default_threads: int, conn: socket.socket) -> int:
    """Train one request in this process, as if it were its own process, its output relayed to the
    client on ``conn`` as it is printed; its exit status (as ``promptworth train`` exits: 0, the
    error's own status for a one-line error, 1 for any other)."""
    import torch

    os.chdir(job["cwd"])
    torch.set_num_threads(default_threads)  # a run without --threads gets torch's default, as alone
    # the run's share of this process: the client's life so far, plus this worker's start-up
    # for the first run it serves
    request = dataclasses.replace(RunRequest.from_json(job["request"]),
                                  started_at=float(job["started_at"]) - startup_s)
    output = Relay(conn)
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            run.train_to_file(request, Path(job["out"]))
            status = 0
        except PromptworthError as exc:
            print(f"promptworth: error: {exc}", file=sys.stderr)
            status = exc.exit_status
        except Exception:  # noqa: BLE001 - the run's failure is reported to its client
            traceback.print_exc()
            status = 1
    return status


def serve(path: Path) -> None:
    """Answer runs one at a time on the socket ``path`` until the pool that started this worker
    is gone (or the pool stops it)."""
    import torch

    startup_s = process_age_s()
    default_threads = torch.get_num_threads()
    parent = os.getppid()
    first = True
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen()
        server.settimeout(POLL_S * 5)
        while os.getppid() == parent:
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(None)
                request = receive_message(conn)
                if request is None:
                    continue
                status = handle(request, startup_s if first else 0.0, default_threads, conn)
                first = False
                with contextlib.suppress(OSError):  # a client killed meanwhile
                    send_message(conn, {"status": status})
