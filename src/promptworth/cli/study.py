"""Study verbs: ``progress`` (runs done and an estimate of the time left)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from promptworth.errors import PromptworthError


def register(subparsers: argparse._SubParsersAction) -> None:
    progress = subparsers.add_parser(
        "progress",
        help="print how many runs of a study are done and about how long the rest will take",
    )
    progress.add_argument("runs_dir", type=Path, help="folder of the study's run records")
    progress.add_argument("--total", type=int, required=True, help="number of runs in the study")
    progress.set_defaults(handler=run_progress)


def estimate(records: list[tuple[float, float]], total: int, now: float) -> tuple[int, float | None]:
    """Runs done and seconds left, from (finish time, wall seconds) of each finished run.

    The rate is measured over the study's elapsed time so far, so jobs running side by side
    count as they should.
    """
    done = len(records)
    if done == 0:
        return 0, None
    started = min(finished - wall for finished, wall in records)
    elapsed = max(now - started, 1e-9)
    return done, elapsed / done * max(total - done, 0)


def run_progress(args: argparse.Namespace) -> int:
    if args.total <= 0:
        raise PromptworthError(f"--total must be positive, got {args.total}")
    records = []
    for path in args.runs_dir.rglob("*.json"):
        try:
            wall = float(json.loads(path.read_text(encoding="utf-8"))["timing"]["wall_s"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        records.append((path.stat().st_mtime, wall))
    done, left = estimate(records, args.total, time.time())
    share = 100 * done / args.total
    eta = "" if left is None else f"; about {left / 60:.1f} min left"
    print(f"[promptworth] {done}/{args.total} training runs done ({share:.0f}%){eta}", flush=True)
    return 0
