"""``promptworth reproduce``: retrain a published study into a fresh folder, then compare its records
and advantages with the published ones (:mod:`promptworth.analysis.reproduction`; docs/reproducing.md)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from promptworth.cli.output import Output
from promptworth.errors import PromptworthError, RunFailed

# where a reproduction goes by default: <this>/<study>
DEFAULT_ROOT = Path("results/reproduce")
REPORT = "reproduction"  # reproduction.md, reproduction.json
STDERR = 2  # the file descriptor the study's own output goes to: stdout is the verb's result


def out_folder(given: Path | None, name: str) -> Path:
    """The reproduction's folder: ``given``, else results/reproduce/<name>; never inside reports/."""
    from promptworth.study.published import PUBLISHED_ROOT

    folder = given or DEFAULT_ROOT / name
    if folder.resolve().is_relative_to(PUBLISHED_ROOT.resolve()):
        raise PromptworthError(f"--out-dir {folder} is inside {PUBLISHED_ROOT}/, where the published records are: "
                               f"give a fresh folder (default {DEFAULT_ROOT}/{name})")
    return folder


def train(command: list[str], config: Path, folder: Path) -> int:
    """Run the study ``config`` with its results in ``folder``: ``command`` (how a study runs, e.g.
    make's ``promptworth pool ... -- snakemake ...``, split into words, never through a shell) with
    the config and results folder added (its output goes to stderr, as a verb's log lines do)."""
    from promptworth.study.config_file import check_configfiles

    full = [*command, "--configfile", str(config), "--config", f"results_dir={folder.as_posix()}"]
    check_configfiles(full)  # a config that would run code is refused before Snakemake reads it
    print(f"[promptworth] reproduce: {' '.join(full)}", file=sys.stderr, flush=True)
    try:
        return subprocess.run(full, env=os.environ.copy(), stdout=STDERR, check=False).returncode
    except OSError as exc:
        raise PromptworthError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None


def comparisons(config: Path) -> list:
    from promptworth.analysis.advantage import Comparison
    from promptworth.study.load import read_study

    study = read_study(config)
    return [Comparison(treatment, baseline) for treatment, baseline in study.comparisons]


def run_reproduce(args: argparse.Namespace) -> Output:
    from promptworth.analysis.reproduction import record_files, reproduction
    from promptworth.analysis.reproduction_report import as_json, markdown, verdict
    from promptworth.files import write_texts
    from promptworth.study import tiny_variant
    from promptworth.study.published import published_study

    study = published_study(args.study)
    folder = out_folder(args.out_dir, study.name)
    command = shlex.split(args.run or "")
    if command:
        status = train(command, study.config, folder)
        if status != 0:
            raise RunFailed(f"the study stopped (exit {status}); rerun to resume it")
    if not record_files(folder):
        raise PromptworthError(f"{folder}: no run records to compare; train the study there first (make reproduce "
                               f"STUDY={study.name}, or this command with --run and the study's command line)")
    note = ("Tiny variant (PROMPTWORTH_FAST=1): the reproduction trained a tiny random model, whose records cannot "
            "match the published ones; this checks that the command runs, and its exit status is 0."
            if tiny_variant.enabled() else "")
    rep = reproduction(study.name, study.folder, folder, comparisons(study.config))
    data = as_json(rep, note)
    write_texts(folder, {f"{REPORT}.md": markdown(rep, note),
                         f"{REPORT}.json": json.dumps(data, indent=2, allow_nan=False) + "\n"})
    if note:
        print(tiny_variant.notice(), file=sys.stderr)
    # the tiny variant's records cannot match: it checks that the command runs
    return Output(data, f"[promptworth] {verdict(rep)} -> {folder / REPORT}.md", status=0 if note or rep.agrees else 1)
