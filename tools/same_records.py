"""Do two commits train the same records? ``python -m tools.same_records --base layout-base``.

Trains a matrix of tiny runs (every built-in method on a causal and a masked tiny backbone, the
size-0 split, methods defined inline with options, searches, a learning-rate grid with a pilot
takeover) once with the package of ``--base`` and once with the package of this checkout, and
compares every output file byte for byte as ``json.dumps(..., indent=2)``, after dropping what
differs between any two runs: ``timing``, ``git_commit``, ``wall_s`` and the ``sha256`` citations
of files that hold those (``promptworth.training.record.VOLATILE_KEYS``, which ``promptworth
reproduce`` drops too). ``promptworth methods --json`` is compared too (but the prose ``source``
of each default, which names files that may have moved). Inputs (tiny models,
splits) are made once by the base commit and copied to both sides, so each side runs in a folder
of the same shape and every relative path a record names is the same.

Both sides run in one process each, every command through ``promptworth.cli.main`` (the stable
entry point), so the comparison costs two interpreter starts. Exit status 0: identical; 1: a
difference (a unified diff is printed). Float results differ across machines: compare on one.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptworth.training.record import VOLATILE_KEYS as VOLATILE, without_keys as without

REPO = Path(__file__).resolve().parents[1]
MODELS = ("llama", "bert")
STEPS = ["--max-steps", "3", "--eval-every", "1", "--batch-size", "4", "--eval-batch-size", "8",
         "--test-limit", "8", "--threads", "1", "--no-progress"]
SEARCH_STEPS = STEPS[:8] + STEPS[10:]  # a search has no test set to limit
# methods defined inline: (name, objective, tuning, options, extras)
DEFINED = (
    ("lora-r4", "prompt", "lora", ["r=4", "alpha=8"], []),
    ("soft-vocab", "prompt", "softprompt", ["tokens=4", "init=vocab"], []),
    ("prefix-4", "prompt", "prefix", ["tokens=4"], []),
    ("ptuning-lstm", "prompt", "ptuning", ["encoder=lstm", "tokens=4"], []),
    ("fix-1", "prompt", "fixlayers", ["layers=1"], []),
    ("context-2", "prompt", "none", ["demos=2"], ["context"]),
    ("null-calibrated", "null", "full", [], ["calibrate"]),
    ("demo-random", "prompt", "full", ["filter=random", "sets=2"], ["demos"]),
    ("head-lora-r2", "head", "lora", ["r=2"], []),
)

# run in each tree's own interpreter: every command through promptworth.cli.main
DRIVER = """
import contextlib, io, json, sys
import promptworth
from promptworth.cli import main
print("package:", promptworth.__file__, file=sys.stderr)
statuses = []
for argv, stdout in json.load(open(sys.argv[1])):
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            status = main(argv)
    except SystemExit as exc:
        status = exc.code
    statuses.append(status)
    if stdout:
        open(stdout, "w").write(out.getvalue())
json.dump(statuses, open(sys.argv[2], "w"))
"""

BUILD_INPUTS = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tiny_models import sentiment_rows, sentiment_split, write_split
sentiment_split(Path("splits/32-1"))
write_split(Path("splits/0-1"), [], sentiment_rows(16, 2), sentiment_rows(16, 3), size=0)
for seed in (1, 2):
    sentiment_split(Path(f"splits/pilot/16-{seed}"), n_train=16)
"""


@dataclass(frozen=True)
class Side:
    name: str
    src: Path
    folder: Path


def run(cmd: list[str], cwd: Path, src: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(src), "PROMPTWORTH_FAST": ""}
    subprocess.run(cmd, cwd=cwd, env=env, check=True)


def builtins(src: Path, cwd: Path) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-m", "promptworth", "methods", "--json"], cwd=cwd, env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def train(method: str, model: str, split: str, out: str, *extra: str) -> list[str]:
    return ["train", "--task", "SST-2", "--method", method, "--split-dir", split, "--model", f"models/{model}",
            "--seed", "1", *STEPS, *extra, "--out", out]


def defined(name: str, objective: str, tuning: str, options: list[str], extras: list[str]) -> list[str]:
    return ["--objective", objective, "--tuning", tuning, *(f"--option={o}" for o in options),
            *(f"--extra={e}" for e in extras)]


def commands(methods: list[dict[str, Any]]) -> list[list[str]]:
    """The matrix, as argv lists relative to a side's folder."""
    argvs: list[list[str]] = [["methods", "--json"], ["methods", "--json", "--model", "models/llama"]]
    for row in methods:
        name = row["method"]
        for model in MODELS:
            out = f"out/{name}-{model}.json"
            if any(e in ("autowords", "autotemplate") for e in row["extras"]):
                search = f"out/{name}-{model}.search.json"
                argvs.append(["search", "--task", "SST-2", "--method", name, "--split-dir", "splits/32-1", "--model",
                              f"models/{model}", "--seed", "1", *SEARCH_STEPS, "--out", search])
                argvs.append(train(name, model, "splits/32-1", out, "--search", search))
            else:
                argvs.append(train(name, model, "splits/32-1", out))
            if row["size_zero"]:
                argvs.append(train(name, model, "splits/0-1", f"out/{name}-{model}.zero.json"))
    for item in DEFINED:
        for model in MODELS:
            argvs.append(train(item[0], model, "splits/32-1", f"out/{item[0]}-{model}.json", *defined(*item)))
    argvs.append(train("prompt", "llama", "splits/32-1", "out/patience.json", "--patience", "1", "--max-steps", "6"))
    argvs.append(train("prompt", "bert", "splits/32-1", "out/fp32.json", "--precision", "fp32"))
    argvs.append(train("head", "llama", "splits/32-1", "out/budgets.json", "--schedule", "constant",
                       "--budgets", "1,2", "--max-steps", "4"))
    return argvs + lr_grid_commands()


def lr_grid_commands() -> list[list[str]]:
    """Pilots at two rates on two pilot splits, the selection, and two runs at the chosen rate:
    one that repeats a pilot (its record is taken over) and one that does not (it trains)."""
    argvs, pilots = [], []
    for rate in ("0.0001", "0.001"):
        for seed in (1, 2):
            out = f"out/pilot-{rate}-{seed}.json"
            pilots.append(out)
            argvs.append(train("prompt", "llama", f"splits/pilot/16-{seed}", out, "--learning-rate", rate))
    argvs.append(["select-lr", *pilots, "--task", "SST-2", "--method", "prompt", "--size", "16",
                  "--rates", "0.0001", "0.001", "--out", "out/selection.json"])
    argvs.append(train("prompt", "llama", "splits/pilot/16-1", "out/takeover.json",
                       "--learning-rate-from", "out/selection.json"))
    argvs.append(train("prompt", "llama", "splits/32-1", "out/at-chosen-rate.json",
                       "--learning-rate-from", "out/selection.json"))
    return argvs


# A methods listing's ``source`` is prose that names the files a default was chosen with, which
# follow the files when they move (config/studies/, issue 29).
LISTING_PROSE = {"source"}


def canonical(path: Path) -> str:
    """A file as compared: JSON outputs without the keys that differ between any two runs of the
    same code (VOLATILE), a `promptworth methods --json` listing without its prose (LISTING_PROSE)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.dumps(without(json.loads(text), VOLATILE), indent=2) + "\n"
    if path.name.startswith("methods-"):
        return json.dumps(without(json.loads(text), LISTING_PROSE), indent=2) + "\n"
    return text


def differences(base: Path, current: Path) -> list[str]:
    found = []
    names = sorted({p.relative_to(base) for p in base.rglob("*") if p.is_file()}
                   | {p.relative_to(current) for p in current.rglob("*") if p.is_file()})
    for name in names:
        a, b = base / name, current / name
        if not (a.is_file() and b.is_file()):
            found.append(f"{name}: only in {'base' if a.is_file() else 'current'}\n")
            continue
        left, right = canonical(a), canonical(b)
        if left.encode() != right.encode():
            found.extend(difflib.unified_diff(left.splitlines(True), right.splitlines(True), f"base/{name}",
                                              f"current/{name}"))
    return found


def checkout(ref: str, into: Path) -> Path:
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(into), ref], check=True)
    return into


def compare(base_ref: str, scratch: Path) -> list[str]:
    base_tree = checkout(base_ref, scratch / "base-tree")
    try:
        inputs = scratch / "inputs"
        inputs.mkdir()
        for kind in MODELS:
            run([sys.executable, "-m", "promptworth", "tiny-model", "--kind", kind, "--out-dir", f"models/{kind}"],
                inputs, base_tree / "src")
        run([sys.executable, "-c", BUILD_INPUTS, str(base_tree / "tests")], inputs, base_tree / "src")
        argvs = commands(builtins(base_tree / "src", inputs))
        sides = (Side("base", base_tree / "src", scratch / "base"), Side("current", REPO / "src", scratch / "current"))
        for side in sides:
            shutil.copytree(inputs, side.folder)
            (side.folder / "out").mkdir()
            jobs = [(argv, f"out/methods-{i}.txt" if argv[0] == "methods" else None) for i, argv in enumerate(argvs)]
            (scratch / "argv.json").write_text(json.dumps(jobs), encoding="utf-8")
            run([sys.executable, "-c", DRIVER, str(scratch / "argv.json"), str(scratch / f"{side.name}.status")],
                side.folder, side.src)
        statuses = [json.loads((scratch / f"{side.name}.status").read_text()) for side in sides]
        found = [f"exit statuses differ: {statuses}\n"] if statuses[0] != statuses[1] else []
        if any(statuses[0]):
            found.append(f"commands failed: {[a for a, s in zip(argvs, statuses[0]) if s]}\n")
        return found + differences(sides[0].folder / "out", sides[1].folder / "out")
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="layout-base", help="the commit to compare with (default %(default)s)")
    parser.add_argument("--keep", type=Path, help="keep the scratch folder here (default: a temporary one)")
    args = parser.parse_args(argv)
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="same-records-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        found = compare(args.base, scratch.resolve())
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.writelines(found)
    print("same records" if not found else "records differ", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
