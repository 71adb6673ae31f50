"""Benchmark the study itself: the third edition's pipeline against the second edition's, on one
mini-study, side by side in one invocation.

The mini-study: SmolLM2-135M-Instruct on SST-2 and TREC, prompt and head, ladder sizes 10, 32, 100
and 320, data seeds 1 and 2, train seed 1 (32 runs a side), with the splits and training settings
of a study config (its ``splits`` and ``training`` sections; its lr_grid is not run: every run
trains at the config's ``training.learning_rate``). The two sides differ in the training setting
``engine`` (promptworth.training.engine) and nothing else unless ``--baseline-config`` gives the
second edition's side a protocol of its own:

- ``v2``: the second edition's pipeline (``engine: v2``, the settings of ``--baseline-config``,
  by default those of ``--config``);
- the third edition's (``--engine``, by default ``v4``, the study's; the settings of ``--config``).
  The side's key in the results is its engine (``sides.v4``, ``accuracy.v4``).

Each side runs the real workflow as ``make study`` does, in a results folder of its own:
``promptworth pool --size 2 -- snakemake --cores 2 --set-threads train=1`` (two 1-thread runs at
once, each handed to a long-lived worker). The model and the splits are built first, untimed;
each side's time is the ``runs`` target end to end. The sides run one after the other, v2 first.

What it reports (benchmarks/results/study_throughput.json):

- ``speedup``: the v2 side's wall time over the third edition's (the issue's target: at least 1.5);
  ``speedup_per_step``: the same for the mean training step (a run that patience stops at another
  step does other work), and ``speedup_eval``: evaluation seconds per evaluated FLOP;
- ``accuracy``: each side's mean test score over its runs, overall and by method, and the mean of
  the paired differences (the same run, the new side minus v2) with its 95% t-interval over the runs. The
  noise: the two engines round differently in bf16, so a run's trajectory departs from its v2 twin
  as it would under another training seed; ``equal_within_noise`` is true when the interval holds 0;
- each side's study MFU (the records' model FLOPs over its wall time and the 2048² matmul peak
  measured in this invocation, bf16 where the CPU has fast bf16), what its levers did in its runs
  (``sides.*.levers``), the CPU (its flags decide the precision) and the load average before and
  after: a measurement on a busy machine is no measurement.

Usage: python benchmarks/study_throughput.py [--out benchmarks/results/study_throughput.json]
       (a quick check of the machinery: --config config/studies/tiny.yaml --model resources/models/tiny-llama
        --tasks SST-2 --sizes 8 16 --data-seeds 1)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from promptworth.study import tiny_variant as fast
from promptworth.training import runtime
from promptworth.training.settings import ENGINES

ROOT = Path(__file__).resolve().parent.parent
CORES = 2
BASELINE = "v2"  # the second edition's training.engine; the other side's is --engine
TARGETS = {"speedup": 1.5}


def pooled(snakemake: list[str]) -> list[str]:
    """A side's command line (as ``make study`` runs a study)."""
    return ["promptworth", "pool", "--size", str(CORES), "--", *snakemake, "--set-threads", "train=1"]


def mini_study(config: Path, args: argparse.Namespace, results_dir: Path, engine: str) -> dict[str, Any]:
    """The mini-study's config: the splits and training of ``config`` with ``engine``, the benchmark's own runs."""
    study = yaml.safe_load(config.read_text(encoding="utf-8"))
    splits = {k: v for k, v in study["splits"].items() if k != "sizes_by_task"}
    methods = list(args.methods)
    return {
        "model": args.model, "training": {**study["training"], "engine": engine},
        "results_dir": str(results_dir), "tasks": args.tasks, "methods": methods, "train_seeds": [1],
        "splits": {**splits, "sizes": args.sizes, "data_seeds": args.data_seeds},
        **({"comparisons": ["prompt:head"]} if {"prompt", "head"} <= set(methods) else {}),
        **({"resources": study["resources"]} if "resources" in study else {}),
    }


def run_side(config_file: Path, log: Path) -> float:
    """Prepare (untimed), then train every run; the training's wall seconds."""
    base = ["snakemake", "--cores", str(CORES), "--workflow-profile", "workflow/profiles/local",
            "--snakefile", str(ROOT / "Snakefile"), "--configfile", str(config_file)]
    with open(log, "a", encoding="utf-8") as out:
        subprocess.run([*base, "--", "prepare"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=True)
        start = time.perf_counter()
        subprocess.run([*pooled(base), "--", "runs"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def read_records(results_dir: Path) -> dict[str, dict]:
    return {str(p.relative_to(results_dir / "runs")): json.loads(p.read_text(encoding="utf-8"))
            for p in sorted((results_dir / "runs").rglob("*.json"))}


def side_summary(wall: float, records: dict[str, dict], engine: str) -> dict[str, Any]:
    """What a side did: its time, work and scores, summed over its records."""
    wrong = sorted(name for name, r in records.items() if r["hyperparameters"].get("engine", "v2") != engine)
    if wrong:
        sys.exit(f"side {engine}: records of another engine: {wrong[:3]}")
    timing = [r["timing"] for r in records.values()]
    scores = [r["score"] for r in records.values() if r["score"] is not None]
    by_method: dict[str, list[float]] = {}
    for r in records.values():
        if r["score"] is not None:
            by_method.setdefault(r["method"], []).append(r["score"])
    return {
        "wall_s": wall, "runs": len(records), "engine": engine,
        "flops": sum(t["flops"]["train"] + t["flops"]["eval"] for t in timing),
        "eval_flops": sum(t["flops"]["eval"] for t in timing),
        "process_s": sum(t["process_s"] for t in timing), "train_s": sum(t["train_s"] for t in timing),
        "eval_s": sum(t["eval_s"] for t in timing), "steps": sum(t["steps"] for t in timing),
        "mean_score": statistics.fmean(scores) if scores else None,
        "mean_score_by_method": {m: statistics.fmean(v) for m, v in sorted(by_method.items())},
        "precision": sorted({r["precision"] for r in records.values()}),
        # each lever the side's records name (an engine without a lever does not name it)
        "levers": {lever: dict(Counter(str((r.get("levers") or {}).get(lever)) for r in records.values()))
                   for lever in sorted({name for r in records.values() for name in r.get("levers") or {}})},
        "hyperparameters": _shared_settings(records),
    }


def _shared_settings(records: dict[str, dict]) -> dict[str, Any]:
    """The training settings every record of a side has (the learning rate and step count included)."""
    settings = [r["hyperparameters"] for r in records.values()]
    return {k: v for k, v in settings[0].items() if all(s.get(k) == v for s in settings)} if settings else {}


def paired_accuracy(old: dict[str, dict], new: dict[str, dict]) -> dict[str, Any]:
    """The two sides' test scores run by run: the mean paired difference (new - old), its standard
    deviation and its 95% t-interval over the runs both sides trained with a score."""
    from scipy import stats

    pairs = [(old[k]["score"], new[k]["score"]) for k in sorted(old.keys() & new.keys())
             if old[k]["score"] is not None and new[k]["score"] is not None]
    differences = [b - a for a, b in pairs]
    result: dict[str, Any] = {"pairs": len(pairs), "identical_runs": sum(d == 0 for d in differences),
                              "only_baseline": sorted(old.keys() - new.keys()), "only_new": sorted(new.keys() - old.keys())}
    if len(differences) < 2:
        return {**result, "mean_difference": statistics.fmean(differences) if differences else None,
                "interval_95": None, "equal_within_noise": None}
    mean, sd = statistics.fmean(differences), statistics.stdev(differences)
    half = float(stats.t.ppf(0.975, len(differences) - 1)) * sd / math.sqrt(len(differences))
    return {**result, "mean_difference": mean, "sd_difference": sd, "interval_95": [mean - half, mean + half],
            "largest_difference": max(differences, key=abs), "equal_within_noise": mean - half <= 0 <= mean + half}


def measure_peak() -> dict[str, Any]:
    from promptworth.backbones import flops

    peaks = flops.matmul_peaks(runtime.cpu_has_fast_bf16(), CORES)
    return {**peaks, "reference": "bf16_matmul_2048_gflops" if peaks["bf16_matmul_2048_gflops"] else "fp32_matmul_2048_gflops"}


def cpu_flags() -> dict[str, bool]:
    """The flags that decide the precision (training.runtime) and where the time goes."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore").split())
    except OSError:
        flags = set()
    return {flag: flag in flags for flag in ("avx512_bf16", "amx_bf16", "avx512f", "avx2")}


def relative(path: Path) -> str:
    return str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else str(path)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "studies" / "study.yaml",
                        help="the study whose splits and training settings the mini-study uses (the new side's)")
    parser.add_argument("--baseline-config", type=Path,
                        help="the v2 side's study (its splits and training); default: --config")
    parser.add_argument("--engine", default="v4", choices=[e for e in ENGINES if e != BASELINE],
                        help="the new side's training.engine (default: the third edition's, v4)")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tasks", nargs="+", default=["SST-2", "trec"])
    parser.add_argument("--methods", nargs="+", default=["prompt", "head"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10, 32, 100, 320])
    parser.add_argument("--data-seeds", nargs="+", type=int, default=[1, 2])
    # PROMPTWORTH_FAST=1 (promptworth.study.tiny_variant): the workflow makes the mini-study tiny; written under results/fast/
    parser.add_argument("--out", type=Path, default=fast.output(ROOT / "benchmarks" / "results" / "study_throughput.json", ROOT))
    parser.add_argument("--keep", type=Path, help="keep both sides' results folders here (default: removed)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if shutil.which("promptworth") is None or shutil.which("snakemake") is None:
        sys.exit("promptworth and snakemake must be on PATH (activate .venv)")
    configs = {BASELINE: args.baseline_config or args.config, args.engine: args.config}
    work = Path(tempfile.mkdtemp(prefix="study-throughput-"))
    load_before = os.getloadavg()
    peak = measure_peak()
    sides: dict[str, dict[str, Any]] = {}
    records: dict[str, dict[str, dict]] = {}
    for engine in configs:
        results_dir = work / engine
        config_file = work / f"{engine}.yaml"
        config_file.write_text(yaml.safe_dump(mini_study(configs[engine], args, results_dir, engine)), encoding="utf-8")
        wall = run_side(config_file, work / f"{engine}.log")
        records[engine] = read_records(results_dir)
        sides[engine] = {**side_summary(wall, records[engine], engine), "config": relative(configs[engine])}
        print(f"{engine}: {len(records[engine])} runs in {wall:.0f} s", file=sys.stderr)
    reference = peak[peak["reference"]] * 1e9
    old, new = sides[BASELINE], sides[args.engine]
    accuracy = paired_accuracy(records[BASELINE], records[args.engine])
    results = {
        "cpu": runtime.cpu_model_name(), "cpu_flags": cpu_flags(),
        "speedup": old["wall_s"] / new["wall_s"],
        "speedup_per_step": (old["train_s"] / old["steps"]) / (new["train_s"] / new["steps"])
        if old["steps"] and new["steps"] else None,
        "speedup_eval": (old["eval_s"] / old["eval_flops"]) / (new["eval_s"] / new["eval_flops"])
        if old["eval_flops"] and new["eval_flops"] and new["eval_s"] else None,
        "accuracy": {BASELINE: old["mean_score"], args.engine: new["mean_score"], "by_method": {
            BASELINE: old["mean_score_by_method"], args.engine: new["mean_score_by_method"]}, "paired": accuracy,
            "noise": f"95% t-interval of the mean paired difference ({args.engine} - {BASELINE}) over the runs: the engines round "
                     "differently in bf16, so a run's trajectory departs from its v2 twin as under another "
                     "training seed"},
        "study_mfu": {engine: side["flops"] / side["wall_s"] / reference for engine, side in sides.items()},
        "peak": peak,
        "mini_study": {"model": args.model, "tasks": args.tasks, "methods": args.methods, "sizes": args.sizes,
                       "data_seeds": args.data_seeds, "train_seeds": [1], "command": " ".join(pooled(["snakemake ..."]))},
        "sides": sides,
        "load_average": {"before": load_before, "after": os.getloadavg(), "cpus": os.cpu_count()},
        "targets": TARGETS,
    }
    results["met"] = {"speedup": results["speedup"] >= TARGETS["speedup"],
                      "accuracy_equal_within_noise": accuracy["equal_within_noise"]}
    if args.keep:
        shutil.copytree(work, args.keep, dirs_exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: results[k] for k in ("cpu", "speedup", "speedup_per_step", "speedup_eval", "met")}
                     | {"accuracy": {k: results["accuracy"][k] for k in configs}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
