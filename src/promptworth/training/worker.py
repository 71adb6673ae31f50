"""A worker process of a pool (``promptworth worker``): it serves the runs its clients hand over, one at a time."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

from promptworth.errors import PromptworthError
from promptworth.training import run
from promptworth.training.pool import POLL_S, receive_message, send_message
from promptworth.training.request import RunRequest
from promptworth.training.runtime import process_age_s


def handle(job: dict[str, Any], startup_s: float, default_threads: int) -> dict[str, Any]:
    """Train one request in this process, as if it were its own process: its output and exit status
    (as ``promptworth train`` exits: 0, the error's own status for a one-line error, 1 for any other)."""
    import torch

    os.chdir(job["cwd"])
    torch.set_num_threads(default_threads)  # a run without --threads gets torch's default, as alone
    # the run's share of this process: the client's life so far, plus this worker's start-up
    # for the first run it serves
    request = dataclasses.replace(RunRequest.from_json(job["request"]),
                                  started_at=float(job["started_at"]) - startup_s)
    output = io.StringIO()
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
    return {"status": status, "output": output.getvalue()}


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
                reply = handle(request, startup_s if first else 0.0, default_threads)
                first = False
                with contextlib.suppress(OSError):  # a client killed meanwhile
                    send_message(conn, reply)
