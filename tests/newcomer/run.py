"""`make test-newcomer`: a fresh clone, set up as the README says, runs every command it shows.

1. Clone the repository (its committed HEAD) into a new folder, with ``shared/`` beside the clone
   holding the reference files but **no data mirror**, as a user on another machine has it; nothing
   of this checkout's environment leaks in (no .venv on PATH, no PROMPTWORTH_DATA). The data come
   by download, as the README says, into an empty download cache (``$XDG_CACHE_HOME`` in the work
   folder; pip keeps its own cache), from a copy of the original sources served on 127.0.0.1 as
   ``$PROMPTWORTH_DATA_ORIGIN``: LM-BFF's ``datasets.tar``, SuperGLUE's zips and FewGLUE's files,
   rebuilt from the mirror's files (``tests/data_origin.py``; no network).
2. Run, in the clone and in reading order, every command of the README's command table and every
   ``bash`` and ``python`` block of the README, ``docs/`` and the other READMEs
   (``python -m tools.doccheck commands``: read from the clone's files now, never copied here), with
   ``PROMPTWORTH_FAST=1``: the tiny variant of every long command (promptworth.study.tiny_variant). Each runs
   in a new bash with ``set -eo pipefail`` (a failing line fails it), after the blocks marked
   ``<!-- newcomer: setup -->`` before it (the README's: activate .venv). Rows and blocks marked
   ``<!-- newcomer: skip (why) -->`` are listed, not run.
3. Check the clone: ``python -m tools.doccheck check --outputs`` (every path the documents name exists,
   outputs of the commands included; every quoted figure agrees with its source), no committed
   file was changed by a command, and the data were downloaded from the served sources.

Last line: ``test-newcomer: PASS (...)`` or ``test-newcomer: FAIL (...)``; exit status 1 on failure.
Logs: results/newcomer/ (one per command). The clone is removed unless --keep.

  python tests/newcomer/run.py [--only REGEX] [--repo PATH] [--keep]

--only runs the commands matching REGEX (and the setup blocks) and skips the checks of step 3
(for development, and to show one command failing); --repo clones another repository (default:
this one).
pip installs from its cache or index as for any user (a newcomer's second clone is not cold);
the README's "Cold start" says what a first build downloads.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # tools/doccheck: the checkout's own, not shipped
sys.path.insert(0, str(ROOT / "tests"))  # data_origin: the sources rebuilt from the mirror

import data_origin  # noqa: E402
from promptworth.data import sources  # noqa: E402
from promptworth.study import tiny_variant as fast  # noqa: E402
from tools.doccheck import checker as readme  # noqa: E402

TIMEOUT_S = 30 * 60
# variables of this checkout's environment that a newcomer does not have
LEAKS = ("PROMPTWORTH_DATA", "PROMPTWORTH_DATA_ORIGIN", "PROMPTWORTH_REFERENCE", "PROMPTWORTH_POOL", "VIRTUAL_ENV",
         "PYTHONPATH", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")


def say(start: float, text: str) -> None:
    print(f"[test-newcomer {time.monotonic() - start:5.0f}s] {text}", flush=True)


def newcomer_env(origin: str, cache: Path) -> dict[str, str]:
    """This environment without what this checkout set up: its variables, any virtual
    environment's bin folder on PATH; plus the tiny variant, the served sources as the download
    origin and an empty cache folder (pip's cache stays where it was: pip works as for any user)."""
    env = {k: v for k, v in os.environ.items() if k not in LEAKS}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and not (Path(p).parent / "pyvenv.cfg").exists()]
    pip_cache = env.get("PIP_CACHE_DIR") or str(Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip")
    return {**env, "PATH": os.pathsep.join(path), fast.ENV: "1", sources.ORIGIN_ENV: origin,
            "XDG_CACHE_HOME": str(cache), "PIP_CACHE_DIR": pip_cache}


def shared_folder() -> Path:
    """The folder holding data/ and reference/ beside this checkout (as the README lays it out)."""
    data = os.environ.get("PROMPTWORTH_DATA")
    shared = Path(data).resolve().parent if data else (ROOT.parent / "shared").resolve()
    if not (shared / "data").is_dir():
        sys.exit(f"test-newcomer: no data mirror at {shared / 'data'}: lay shared/ beside the checkout")
    return shared


def clone(repo: Path, work: Path) -> Path:
    """A clone of ``repo`` in ``work/main``, with ``work/shared`` beside it: every entry of
    shared/ (links to them) but its data mirror."""
    main = work / "main"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(repo), str(main)], check=True)
    (work / "shared").mkdir()
    for entry in sorted(shared_folder().iterdir()):
        if entry.name != "data":
            (work / "shared" / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return main


def downloads(asked: list[str], cache: Path) -> tuple[str, list[str]]:
    """What the commands downloaded from the served sources, and a problem when they downloaded
    nothing (the documents' commands read data: the clone must have found it some other way)."""
    files = [p for p in cache.rglob("*") if p.is_file()] if cache.is_dir() else []
    line = f"{len(asked)} downloads from the served sources; {len(files)} files in the clone's data cache"
    return line, [] if asked and files else [f"no data were downloaded ({line})"]


def script(command: readme.Command, setups: list[str]) -> list[str]:
    """The command line that runs one command of the documents, after the setup blocks before it
    (a reader's shell: `source .venv/bin/activate`, ...)."""
    prelude = "\n".join(["set -eo pipefail", *setups])
    if command.kind == "python":  # the code is bash's $0: no quoting of it
        return ["bash", "-c", f'{prelude}\nexec python -c "$0"', command.text]
    return ["bash", "-c", f"{prelude}\n{command.text}"]


def run_command(command: readme.Command, setups: list[str], clone_dir: Path, env: dict[str, str],
                log: Path) -> tuple[bool, float]:
    begin = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        out.write(f"# {command.where}\n{command.text}\n# ---\n")
        out.flush()
        try:
            done = subprocess.run(script(command, setups), cwd=clone_dir, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=TIMEOUT_S)
            ok = done.returncode == 0
            out.write(f"\n# exit status {done.returncode}\n")
        except subprocess.TimeoutExpired:
            ok = False
            out.write(f"\n# timed out after {TIMEOUT_S} s\n")
    return ok, time.monotonic() - begin


def tail(log: Path, lines: int = 15) -> str:
    return "\n".join("      " + ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def changed_files(clone_dir: Path) -> list[str]:
    """Committed files a command changed or removed."""
    done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=clone_dir,
                          capture_output=True, text=True, check=True)
    return [line[3:] for line in done.stdout.splitlines()]


def setups_before(command: readme.Command, everything: list[readme.Command]) -> list[str]:
    """The setup blocks a reader has run before ``command``: those above it in its own document, and
    those of the documents read before it (the README's command table is run before the README's
    blocks, but a row of it comes after the set-up block above it). None before ``make`` commands
    alone: make builds .venv and puts it on PATH itself (the first ``make study`` runs before .venv exists)."""
    lines = [ln.strip() for ln in command.text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if lines and all(ln.startswith("make ") or ln == "make" for ln in lines):
        return []
    order = list(dict.fromkeys(c.doc for c in everything))
    return [c.text for c in everything if c.setup and c is not command and (
        c.line < command.line if c.doc == command.doc else order.index(c.doc) < order.index(command.doc))]


def run_commands(clone_dir: Path, env: dict[str, str], only: str | None, logs: Path,
                 start: float) -> tuple[int, int, list[str]]:
    """Run every command of the documents in reading order (those matching ``only``, and the
    setup blocks): ``(commands run, skipped, failures)``."""
    ran = skipped = 0
    failures: list[str] = []
    everything = readme.commands(clone_dir)
    for number, command in enumerate(everything, 1):
        first = command.text.splitlines()[0][:90]
        if only and not command.setup and not re.search(only, command.text):
            continue
        if command.skip:
            skipped += 1
            say(start, f"skip {command.where}: {first}  ({command.skip})")
            continue
        log = logs / f"{number:02d}-{command.doc.replace('/', '_')}-{command.line}.log"
        ok, seconds = run_command(command, setups_before(command, everything), clone_dir, env, log)
        ran += 1
        say(start, f"{'ok  ' if ok else 'FAIL'} {command.where} ({seconds:.0f} s): {first}")
        if not ok:
            failures.append(f"{command.where}: {first} (log: {log.relative_to(ROOT)})")
            print(tail(log), flush=True)
    return ran, skipped, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the commands matching this regular expression; no checks after")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the repository to clone (default: this one)")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = parser.parse_args()
    start = time.monotonic()
    logs = ROOT / "results" / "newcomer"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    work = Path(tempfile.mkdtemp(prefix="newcomer-"))
    try:
        clone_dir = clone(args.repo, work)
        head = subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=clone_dir, capture_output=True, text=True)
        say(start, f"fresh clone of {args.repo} ({head.stdout.strip()[:72]}) in {clone_dir}, no data mirror beside it")
        served = data_origin.build(shared_folder() / "data", work / "origin")
        with data_origin.serve(work / "origin") as (origin, asked):
            say(start, f"the original sources of {len(served)} tasks, rebuilt from the mirror, served at {origin}")
            env = newcomer_env(origin, work / "cache")
            ran, skipped, failures = run_commands(clone_dir, env, args.only, logs, start)
        line, problems = downloads(asked, work / "cache" / "promptworth" / "data")
        say(start, line)
        if not args.only:
            problems += readme.check(clone_dir, outputs=True)
            problems += [f"{name}: changed by a command the documents show" for name in changed_files(clone_dir)]
            for problem in problems:
                say(start, f"FAIL {problem}")
            failures += problems
        verdict = "PASS" if not failures and ran else "FAIL"
        checks = "" if args.only else "; paths, figures, committed files and downloads checked"
        print(f"test-newcomer: {verdict} ({ran} commands run, {skipped} skipped, {len(failures)} failures"
              f"{checks}; {time.monotonic() - start:.0f} s; logs in results/newcomer)")
        return 0 if verdict == "PASS" else 1
    finally:
        if args.keep:
            print(f"test-newcomer: the clone is kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
