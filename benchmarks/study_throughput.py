"""Benchmark the study itself: one fixed mini-study, run twice in one invocation, the old way and
the way ``make study`` runs it now.

The mini-study: SST-2 and TREC, prompt and head, ladder sizes 10, 30, 100 and 300, data seeds 1
and 2, train seed 1 (32 runs), with the published study's splits and training settings (the
``splits`` and ``training`` sections of config/studies/study-v1.yaml, the first edition's fixed-step
protocol, read from there). Each side runs the
real workflow, Snakemake included, into a results folder of its own:

- ``baseline``: as the pipeline ran before the worker pool: ``snakemake --cores 2`` with 2 threads
  per training job, so one run at a time, each in a process of its own;
- ``pooled``: as ``make study`` runs it: ``promptworth pool --size 2 -- snakemake --cores 2
  --set-threads train=1``: two 1-thread runs at once, each handed to a long-lived worker.

The model and the splits are built first, untimed; each side's time is the ``runs`` target end to
end. Both sides run the code of this checkout (its faster command-line start helps the baseline
too, so the speed-up is if anything understated).

MFU = the model FLOPs of all training and evaluation tokens (the records' ``timing.flops``; see
promptworth.backbones.flops) / the side's wall time / the reference peak: a 2048 x 2048 bf16 matmul with 2
threads, best of several, measured in this invocation (fp32 where the CPU has no fast bf16).

Usage: python benchmarks/study_throughput.py [--out benchmarks/results/study_throughput.json]
       (a quick check of the machinery: --config config/studies/tiny.yaml --tasks SST-2 --sizes 8 --data-seeds 1)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from promptworth.study import tiny_variant as fast
from promptworth.training import runtime

ROOT = Path(__file__).resolve().parent.parent
CORES = 2
TARGETS = {"speedup_vs_baseline": 2.5, "study_mfu": 0.40}


def side_commands(snakemake: list[str], side: str) -> list[str]:
    """The command line of one side (without the config)."""
    if side == "baseline":
        return [*snakemake, "--set-threads", f"train={CORES}"]
    return ["promptworth", "pool", "--size", str(CORES), "--", *snakemake, "--set-threads", "train=1"]


def mini_study(config: Path, tasks: list[str], sizes: list[int], data_seeds: list[int], results_dir: Path) -> dict:
    """The mini-study's config: the splits and training of ``config``, the benchmark's own runs."""
    study = yaml.safe_load(config.read_text(encoding="utf-8"))
    splits = {k: v for k, v in study["splits"].items() if k != "sizes_by_task"}
    return {
        **{k: study[k] for k in ("model", "training") if k in study},
        "results_dir": str(results_dir), "tasks": tasks, "methods": ["prompt", "head"], "train_seeds": [1],
        "splits": {**splits, "sizes": sizes, "data_seeds": data_seeds}, "comparisons": ["prompt:head"],
        **({"resources": study["resources"]} if "resources" in study else {}),
    }


def snakemake_base() -> list[str]:
    return ["snakemake", "--cores", str(CORES), "--workflow-profile", "workflow/profiles/local",
            "--snakefile", str(ROOT / "Snakefile")]


def run_side(side: str, config_file: Path, log: Path) -> float:
    """Prepare (untimed), then train every run; the training's wall seconds."""
    base = [*snakemake_base(), "--configfile", str(config_file)]
    with open(log, "a", encoding="utf-8") as out:
        subprocess.run([*base, "--", "prepare"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=True)
        start = time.perf_counter()
        subprocess.run([*side_commands(base, side), "--", "runs"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                       check=True)
    return time.perf_counter() - start


def read_records(results_dir: Path) -> dict[str, dict]:
    return {str(p.relative_to(results_dir / "runs")): json.loads(p.read_text(encoding="utf-8"))
            for p in sorted((results_dir / "runs").rglob("*.json"))}


def compare(baseline: dict[str, dict], pooled: dict[str, dict]) -> bool | dict[str, Any]:
    """True when every run's test score and dev curve are the same on both sides; otherwise the
    largest difference and the runs that differ."""
    if baseline.keys() != pooled.keys():
        return {"identical": False, "why": "the sides trained different runs",
                "only_baseline": sorted(baseline.keys() - pooled.keys()), "only_pooled": sorted(pooled.keys() - baseline.keys())}
    differ, largest = [], 0.0
    for name, old in baseline.items():
        new = pooled[name]
        if old["score"] != new["score"] or old["dev_curve"] != new["dev_curve"]:
            differ.append(name)
            largest = max(largest, abs(old["score"] - new["score"]))
    if not differ:
        return True
    return {"identical": False, "largest_score_difference": largest, "runs": differ,
            "why": "matmul results can depend on the thread count on this CPU (1 thread per run vs 2)"}


def study_flops(records: dict[str, dict]) -> int:
    return sum(r["timing"]["flops"]["train"] + r["timing"]["flops"]["eval"] for r in records.values())


def measure_peak() -> dict[str, Any]:
    from promptworth.backbones import flops
    from promptworth.training import run as train

    peaks = flops.matmul_peaks(runtime.cpu_has_fast_bf16(), CORES)
    fast = peaks["bf16_matmul_2048_gflops"] is not None
    return {**peaks, "reference": "bf16_matmul_2048_gflops" if fast else "fp32_matmul_2048_gflops"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "studies" / "study-v1.yaml",
                        help="the study whose splits and training settings the mini-study uses")
    parser.add_argument("--tasks", nargs="+", default=["SST-2", "trec"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10, 30, 100, 300])
    parser.add_argument("--data-seeds", nargs="+", type=int, default=[1, 2])
    # PROMPTWORTH_FAST=1 (promptworth.study.tiny_variant): the workflow makes the mini-study tiny; written under results/fast/
    parser.add_argument("--out", type=Path, default=fast.output(ROOT / "benchmarks" / "results" / "study_throughput.json", ROOT))
    parser.add_argument("--keep", type=Path, help="keep both sides' results folders here (default: removed)")
    args = parser.parse_args()
    if shutil.which("promptworth") is None or shutil.which("snakemake") is None:
        sys.exit("promptworth and snakemake must be on PATH (activate .venv)")
    work = Path(tempfile.mkdtemp(prefix="study-throughput-"))
    load_before = os.getloadavg()
    peak = measure_peak()
    sides: dict[str, dict[str, Any]] = {}
    for side in ("baseline", "pooled"):
        results_dir = work / side
        config_file = work / f"{side}.yaml"
        config_file.write_text(yaml.safe_dump(mini_study(args.config, args.tasks, args.sizes, args.data_seeds,
                                                         results_dir)), encoding="utf-8")
        wall = run_side(side, config_file, work / f"{side}.log")
        records = read_records(results_dir)
        sides[side] = {"wall_s": wall, "runs": len(records), "flops": study_flops(records),
                       "command": " ".join(side_commands(["snakemake ..."], side)),
                       "process_s": sum(r["timing"]["process_s"] for r in records.values()), "records": records}
        print(f"{side}: {len(records)} runs in {wall:.0f} s", file=sys.stderr)
    reference = peak[peak["reference"]] * 1e9
    baseline, pooled = sides["baseline"], sides["pooled"]
    from promptworth.training.runtime import cpu_model_name

    results = {
        "cpu": cpu_model_name(),
        "speedup_vs_baseline": baseline["wall_s"] / pooled["wall_s"],
        "study_mfu": pooled["flops"] / pooled["wall_s"] / reference,
        "baseline_study_mfu": baseline["flops"] / baseline["wall_s"] / reference,
        "same_results": compare(baseline["records"], pooled["records"]),
        "peak": peak,
        "mini_study": {"config": str(args.config.resolve().relative_to(ROOT)) if args.config.resolve().is_relative_to(ROOT)
                       else str(args.config), "tasks": args.tasks, "sizes": args.sizes, "data_seeds": args.data_seeds,
                       "methods": ["prompt", "head"], "train_seeds": [1]},
        "sides": {name: {k: v for k, v in side.items() if k != "records"} for name, side in sides.items()},
        "load_average": {"before": load_before, "after": os.getloadavg(), "cpus": os.cpu_count()},
        "targets": TARGETS,
    }
    results["met"] = {"speedup_vs_baseline": results["speedup_vs_baseline"] >= TARGETS["speedup_vs_baseline"],
                      "study_mfu": results["study_mfu"] >= TARGETS["study_mfu"]}
    if args.keep:
        shutil.copytree(work, args.keep, dirs_exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: results[k] for k in ("cpu", "speedup_vs_baseline", "study_mfu", "baseline_study_mfu",
                                              "same_results", "met")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
