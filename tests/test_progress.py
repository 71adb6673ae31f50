"""`promptworth progress`: runs done and the estimate of the time left, also for resumed studies."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from promptworth.cli import main
from promptworth.cli.study import STRETCH_GAP_S, estimate


def test_sequential_runs_give_their_mean_duration_per_run_left():
    # three runs of 100 s one after another, finished at 100, 200, 300; 7 to go
    done, left = estimate([(100.0, 100.0), (200.0, 100.0), (300.0, 100.0)], total=10, now=300.0)
    assert done == 3
    assert left == pytest.approx(700.0)


def test_two_jobs_side_by_side_halve_the_time_left():
    records = [(100.0, 100.0), (100.0, 100.0), (200.0, 100.0), (200.0, 100.0)]
    done, left = estimate(records, total=8, now=200.0)
    assert (done, left) == (4, pytest.approx(200.0))


def test_a_pause_before_resuming_does_not_count():
    earlier = [(100.0, 100.0), (200.0, 100.0)]
    resumed_at = 200.0 + STRETCH_GAP_S + 5_000.0
    later = [(resumed_at + 50.0, 50.0), (resumed_at + 100.0, 50.0)]
    done, left = estimate(earlier + later, total=10, now=resumed_at + 100.0)
    assert done == 4
    assert left == pytest.approx(6 * 50.0)


def test_records_without_finish_time_count_as_done_and_give_the_mean_wall_time():
    done, left = estimate([(None, 30.0), (None, 90.0)], total=5, now=1e9)
    assert (done, left) == (2, pytest.approx(3 * 60.0))
    # with one timed run, that run's stretch sets the rate; the untimed ones still count as done
    done, left = estimate([(None, 30.0), (None, 90.0), (1_000.0, 40.0)], total=5, now=1_000.0)
    assert (done, left) == (3, pytest.approx(2 * 40.0))


def test_nothing_done_has_no_estimate():
    assert estimate([], total=4, now=0.0) == (0, None)


def _record(path: Path, wall_s: float, finished_at: float | None) -> None:
    timing: dict = {"wall_s": wall_s}
    if finished_at is not None:
        timing["finished_at"] = datetime.fromtimestamp(finished_at, timezone.utc).isoformat(timespec="seconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"timing": timing}), encoding="utf-8")


def test_cli_reads_finish_times_from_the_records_not_file_times(tmp_path, capsys):
    now = time.time()
    runs = tmp_path / "runs"
    # an old record checked out just now: its file time is now, its finish time days ago
    _record(runs / "SST-2" / "prompt" / "10-1-1.json", 60.0, now - 3 * 86_400)
    _record(runs / "SST-2" / "head" / "10-1-1.json", 60.0, now - 1)
    (runs / "SST-2" / "head" / "broken.json").write_text("{not json", encoding="utf-8")
    assert main(["progress", str(runs), "--total", "12", "--what", "training runs"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("[promptworth] 2/12 training runs done (17%); about ")
    minutes = float(line.split("about ")[1].split(" min")[0])
    # 10 runs left at the latest run's pace (about 61 s, plus the time this test takes to get here);
    # file times would give ~0 min, the days-old run ~36 hours
    assert 10 * 61 / 60 <= minutes < 20
    assert main(["progress", str(runs), "--total", "4", "--what", "pilot runs of the lr_grid"]) == 0
    assert capsys.readouterr().out.startswith("[promptworth] 2/4 pilot runs of the lr_grid done (50%); about ")


def test_cli_rejects_a_total_that_is_not_positive(tmp_path, capsys):
    assert main(["progress", str(tmp_path), "--total", "0", "--what", "training runs"]) == 2
    assert "--total must be positive" in capsys.readouterr().err


def test_more_records_than_the_study_has_is_said_so_not_counted(tmp_path, capsys):
    """Records of another study in the same folder (before: "8/2 runs done (400%)")."""
    for i in range(8):
        _record(tmp_path / "runs" / f"{i}-1-1.json", 10.0, time.time())
    assert main(["progress", str(tmp_path / "runs"), "--total", "2", "--what", "training runs"]) == 0
    out = capsys.readouterr().out
    assert "holds 8 records, more than the 2 training runs of this study" in out and "%" not in out
