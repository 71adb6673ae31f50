"""A study killed hard leaves Snakemake's lock behind: `promptworth unlock-stale` (which `make study`,
`make publish` and `make figures` call first) releases it only when no Snakemake runs there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from promptworth.study import locks
from promptworth.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((REPO / "config" / "studies" / "tiny.yaml").read_text(encoding="utf-8"))


def snakemake_command(configfile: Path) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "1",
            "--configfile", str(configfile)]


def a_study(tmp_path: Path) -> Path:
    configfile = tmp_path / "tiny.yaml"
    configfile.write_text(yaml.safe_dump({**TINY, "results_dir": "results"}), encoding="utf-8")
    return configfile


def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


@pytest.mark.slow
def test_a_hard_killed_study_is_unlocked_and_resumes(tmp_path, monkeypatch, capsys):
    configfile = a_study(tmp_path)
    command = snakemake_command(configfile)
    first = subprocess.Popen([*command, "--", "prepare"], cwd=tmp_path, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: locks.has_locks(tmp_path), 120)
    os.killpg(first.pid, signal.SIGKILL)  # what an OOM kill or a lost session does
    first.wait()
    assert locks.has_locks(tmp_path)
    blocked = subprocess.run([*command, "--", "prepare"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert blocked.returncode != 0 and "LockException" in blocked.stdout + blocked.stderr

    monkeypatch.chdir(tmp_path)
    assert main(["unlock-stale", *command]) == 0
    assert "locked by a Snakemake that was killed" in capsys.readouterr().err  # a log line: stderr
    assert not locks.has_locks(tmp_path)
    resumed = subprocess.run([*command, "--", "prepare"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def test_a_live_snakemake_keeps_its_lock(tmp_path, monkeypatch, capsys):
    (tmp_path / locks.LOCK_DIR).mkdir(parents=True)
    (tmp_path / locks.LOCK_DIR / "0.input.lock").write_text("x\n", encoding="utf-8")
    # a process that calls itself snakemake, working in the study folder
    live = subprocess.Popen(["bash", "-c", "exec -a snakemake sleep 60"], cwd=tmp_path)
    try:
        wait_for(lambda: any(p.pid == live.pid for p in locks.snakemake_processes(tmp_path)), 10)
        monkeypatch.chdir(tmp_path)
        assert main(["unlock-stale", "snakemake-that-must-not-run"]) == 2
        err = capsys.readouterr().err
        assert f"another Snakemake is running in {tmp_path} (pid {live.pid}" in err
        assert locks.has_locks(tmp_path)
    finally:
        live.kill()
        live.wait()


def test_no_lock_means_nothing_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the command would fail if it ran: without a lock nothing is run
    assert main(["unlock-stale", "/nonexistent/snakemake"]) == 0


def test_a_snakemake_elsewhere_does_not_count(tmp_path):
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    live = subprocess.Popen(["bash", "-c", "exec -a snakemake sleep 60"], cwd=elsewhere)
    try:
        wait_for(lambda: any(p.pid == live.pid for p in locks.snakemake_processes(elsewhere)), 10)
        assert not any(p.pid == live.pid for p in locks.snakemake_processes(tmp_path))
    finally:
        live.kill()
        live.wait()
