"""The GPU check: the default study and the training-step benchmark on one GPU, in a few minutes.

The GPU machine needs neither the data mirror nor SmolLM2's weights nor this project's
environment: ``prepare`` packs what the check reads into a small folder here, and ``run`` needs
only torch (a CUDA build) and transformers there. One command each:

  # here, in the project's environment, beside the data mirror (`make gpu-check` runs both steps)
  python benchmarks/gpu_check.py prepare                # -> build/gpu-check/ (about 4 MB)
  # there, in a copy of the working tree that holds build/gpu-check/ (no .venv needed)
  PYTHONPATH=src python benchmarks/gpu_check.py run     # -> benchmarks/results/gpu_check.json

``prepare`` writes SmolLM2-135M-Instruct's shape (checked against the converted folder's
config.json) and tokenizer (its tokenizer.json, not its 540 MB of weights), the rows of the SST-2
splits that the default study's records (reports/default-study) trained on and of the step
benchmark's split, and what each of those records did and took on this CPU. ``run`` builds a model
of that shape with random weights (seed 0), then on ``--device`` (default cuda: an error without one):

1. replay: every run of the default study (its 14 runs and 4 lr_grid pilots, prompt and head)
   trains exactly the steps its record took, with its dev evaluations and its test, at its
   settings: its time against the record's (this CPU's);
2. step: a training step at SST-2's study shape as benchmarks/train_step.py's ``real`` phase
   measures it (ladder size 300, data seed 1, batch 8, max length 128; the mean of the steps after
   the warmup), engines v2 to v5, bf16, fp16 and fp32, against the CPU's step in
   benchmarks/results/train_step.json; and the device's matmul peak (MFU);
3. share: 1, 2 and 4 runs side by side on the one GPU, each its own process: the steps per
   second they make together and each one's GPU memory (``promptworth pool --runs-per-gpu``);
4. methods: every built-in method that trains on this backbone without a search, 3 steps each (a
   method that refuses the setting, e.g. no demonstration fits in max_length, says so: refused).

A part that fails is recorded as its error and the others still run (exit status 1). ``run`` needs
torch, transformers and transformers' own dependencies (numpy, pyyaml, tqdm, tokenizers, safetensors),
nothing else of the project's (no datasets, no snakemake); it names what is missing, and imports
pure-Python wheels put into build/gpu-check/wheels/ (docs/performance.md, "GPU check").
``--tiny`` (a tiny random model, a couple of runs, a few steps) with ``--device cpu`` runs the same
code in a minute on a CPU (tests/test_gpu.py does; so does PROMPTWORTH_FAST=1).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from promptworth.errors import PromptworthError  # noqa: E402
from promptworth.files import write_json  # noqa: E402
from promptworth.study import tiny_variant as fast  # noqa: E402

BUNDLE = ROOT / "build" / "gpu-check"
OUT = HERE / "results" / "gpu_check.json"
RECORDS = ROOT / "reports" / "default-study"
STEP_RESULTS = HERE / "results" / "train_step.json"
TASK = "SST-2"
# what `run` imports besides the standard library (an import name, its package on PyPI)
NEEDED = {"torch": "torch", "transformers": "transformers", "numpy": "numpy", "yaml": "pyyaml", "tqdm": "tqdm",
          "tokenizers": "tokenizers", "safetensors": "safetensors"}
# SmolLM2-135M-Instruct's shape (LlamaForCausalLM); prepare checks it against the converted folder's config.json
SMOLLM2_SHAPE: dict[str, Any] = {
    "model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
    "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
    "max_position_embeddings": 8192, "rope_theta": 100000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt")
# the step benchmark's split: benchmarks/train_step.py's phase `real`
STEP_SPLIT = {"size": 300, "data_seed": 1, "dev_policy": "fixed", "dev_size": 32}
BATCH = 8


# ---------------------------------------------------------------------------------------------
# prepare (here: the project's environment and the data mirror)


def shape_of(config: Any) -> dict[str, Any]:
    """A transformers config's shape, as :data:`SMOLLM2_SHAPE` lists it (rope theta from either spelling)."""
    shape = {key: getattr(config, key, None) for key in SMOLLM2_SHAPE if key != "rope_theta"}
    shape["rope_theta"] = getattr(config, "rope_theta", None) or (getattr(config, "rope_parameters", None) or {}).get(
        "rope_theta")
    return shape


def check_smollm2_shape(config: Any, folder: Path) -> None:
    found = shape_of(config)
    wrong = [key for key, value in SMOLLM2_SHAPE.items()
             if not (math.isclose(found[key], value, rel_tol=1e-6) if isinstance(value, float) else found[key] == value)]
    if wrong:
        differences = ", ".join(f"{key} {found[key]!r} (expected {SMOLLM2_SHAPE[key]!r})" for key in wrong)
        raise PromptworthError(f"{folder}/config.json is not SmolLM2-135M-Instruct's shape: {differences}")


def copy_tokenizer(source: Path, target: Path) -> None:
    """The tokenizer's files, its class spelled so that transformers 4 and 5 both load it."""
    target.mkdir(parents=True)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    settings = json.loads((target / "tokenizer_config.json").read_text(encoding="utf-8"))
    settings["tokenizer_class"] = "PreTrainedTokenizerFast"
    (target / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def check_tokenizer(source: Path, copied: Path, texts: list[str]) -> None:
    """The copied tokenizer gives every text the ids the model's own gives it."""
    from transformers import AutoTokenizer

    theirs, ours = AutoTokenizer.from_pretrained(source), AutoTokenizer.from_pretrained(copied)
    for text in texts:
        if theirs(text)["input_ids"] != ours(text)["input_ids"]:
            raise PromptworthError(f"the tokenizer copied from {source} tokenizes {text[:60]!r} otherwise")


def split_rows(spec: Any, data_dir: Path | None) -> tuple[dict[str, list[dict]], str | None]:
    """The rows of one split (written as the study's `promptworth split` writes it) and its manifest's sha256."""
    from promptworth.data import split_folder, splits

    with tempfile.TemporaryDirectory() as tmp:
        folder = splits.ladder(TASK, spec, Path(tmp) / TASK, data_dir)[spec.sizes[0]]
        data = split_folder.load_split(TASK, folder)
        return {part: data[part].to_list() for part in ("train", "dev", "test")}, split_folder.manifest_sha256(folder)


def study_runs(tiny: bool) -> list[dict[str, Any]]:
    """What each record of the default study did and took (pilots included); tiny: one prompt and one head run that train."""
    runs = []
    for path in sorted(RECORDS.glob("*/**/*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or "timing" not in record:
            continue
        timing = record["timing"]
        runs.append({
            "record": path.relative_to(ROOT).as_posix(), "method": record["method"], "train_size": record["train_size"],
            "data_seed": record["data_seed"], "train_seed": record["train_seed"],
            "split": f"{record['train_size']}-{record['data_seed']}", "manifest_sha256": record["split_manifest_sha256"],
            "hyperparameters": record["hyperparameters"], "steps": timing["steps"],
            "dev_evaluations": len(record["dev_curve"]),
            "cpu": {"device": record["device"], "precision": record["precision"], "train_s": timing["train_s"],
                    "eval_s": timing["eval_s"], "wall_s": timing["wall_s"]},
        })
    if tiny:
        runs = [next(r for r in runs if r["method"] == method and r["steps"]) for method in ("prompt", "head")]
    return runs


def prepare(args: argparse.Namespace) -> int:
    """Write the bundle: the model's shape and tokenizer, the splits' rows, the runs to replay."""
    import yaml
    from transformers import AutoConfig

    from promptworth.backbones.registry import SMOLLM2
    from promptworth.backbones.resolve import resolve_model
    from promptworth.data.splits import LadderSpec
    from promptworth.files import publish_folder, staging_folder

    study = yaml.safe_load((ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))["splits"]
    runs = study_runs(args.tiny)
    with tempfile.TemporaryDirectory() as tmp, staging_folder(args.bundle, "the GPU check's bundle") as staging:
        if args.tiny:
            from promptworth.backbones.tiny_models import build_tiny_model

            source = build_tiny_model("llama", Path(tmp) / "tiny-llama")
            shape = shape_of(AutoConfig.from_pretrained(source))
        else:
            source = Path(args.model_dir or resolve_model(SMOLLM2).path)
            check_smollm2_shape(AutoConfig.from_pretrained(source), source)
            shape = dict(SMOLLM2_SHAPE)
        copy_tokenizer(source, staging / "tokenizer")
        splits, matches = {}, {}
        for key in sorted({run["split"] for run in runs}):
            size, seed = (int(part) for part in key.split("-"))
            spec = LadderSpec(sizes=(size,), data_seed=seed, dev_policy=study["dev_policy"],
                              dev_size=study.get("dev_size"), test_limit=study.get("test_limit"))
            splits[key], sha = split_rows(spec, args.data_dir)
            matches[key] = all(run["manifest_sha256"] == sha for run in runs if run["split"] == key)
        step_spec = LadderSpec(sizes=(STEP_SPLIT["size"],), data_seed=STEP_SPLIT["data_seed"],
                               dev_policy=STEP_SPLIT["dev_policy"], dev_size=STEP_SPLIT["dev_size"])
        step_rows = split_rows(step_spec, args.data_dir)[0]["train"]
        check_tokenizer(source, staging / "tokenizer", [row["text_a"] for rows in splits.values() for row in rows["train"]])
        publish_folder(staging / "tokenizer", args.bundle / "tokenizer")
    # last: a bundle with a check.json is whole (wheels/, if any, stays as it is)
    write_json(args.bundle / "check.json", {
        "tiny": args.tiny, "shape": shape, "model": "tiny-llama" if args.tiny else SMOLLM2,
        "made_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "runs": runs, "splits": splits,
        "splits_match_records": matches, "step_rows": step_rows})
    size_mb = sum(path.stat().st_size for path in args.bundle.rglob("*") if path.is_file()) / 1024**2
    print(f"{args.bundle}: {len(runs)} runs on {len(splits)} splits, {size_mb:.1f} MB; unmatched splits: "
          f"{[key for key, same in matches.items() if not same] or 'none'}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------
# run (there: torch and transformers only)


def missing_modules(bundle: Path) -> list[str]:
    """What `run` needs and cannot import; pure-Python wheels in the bundle's wheels/ are put on the path first."""
    for wheel in sorted((bundle / "wheels").glob("*.whl")):
        sys.path.append(str(wheel))  # a wheel is a zip: Python imports pure-Python packages from it
    return [package for name, package in NEEDED.items() if importlib.util.find_spec(name) is None]


def random_model(bundle: Path, shape: dict[str, Any], out: Path) -> tuple[Path, int]:
    """A model folder of ``shape`` with random weights (seed 0) and the bundle's tokenizer; its parameters."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from transformers.utils import logging

    settings = {key: value for key, value in shape.items() if key != "model_type"}
    config = AutoConfig.for_model(shape["model_type"], **settings)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    logging.disable_progress_bar()
    model.save_pretrained(out)
    for path in (bundle / "tokenizer").iterdir():
        shutil.copy2(path, out / path.name)
    return out, sum(p.numel() for p in model.parameters())


def train_config(hyperparameters: dict[str, Any], **changes: Any) -> Any:
    """A record's training settings as a TrainConfig, with ``changes``."""
    import dataclasses

    from promptworth.training.settings import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    settings = {k: v for k, v in hyperparameters.items() if k in known}
    return TrainConfig(**{**settings, "budgets": (), **changes})


def fit_run(backbone: Any, method_name: str, config: Any, rows: dict[str, list], seed: int, device: Any) -> dict:
    """Set up and train one run as promptworth.training.run does (its rows given): what it did and took."""
    from promptworth.data.tasks import get_task
    from promptworth.methods.build import build_method
    from promptworth.training import loop, runtime

    start = time.perf_counter()
    task = get_task(TASK)
    method = build_method(method_name, task, backbone, config.max_length)
    method.see_split(rows, seed)
    features = {name: [method.encode(row) for row in part] for name, part in rows.items()}
    runtime.seed_everything(seed)
    runtime.reset_gpu_peak(device)
    model = method.load_model().to(device)
    precision = method.fixed_precision or runtime.resolve_precision(config.precision, device)
    set_up = time.perf_counter() - start
    result = loop.fit(method, model, features["train"], features["dev"], features["test"], task, config, seed, device,
                      precision, progress=False)
    return {"precision": precision, "steps": result.steps, "dev_evaluations": len(result.dev_curve),
            "set_up_s": set_up, "train_s": result.train_s, "eval_s": result.eval_s,
            "wall_s": time.perf_counter() - start, "score": result.test.get(task.metric),
            "step_seconds": result.step_seconds, "train_flops": result.train_flops, "levers": result.levers,
            **runtime.gpu_peak(device)}


def part_replay(context: dict[str, Any]) -> dict[str, Any]:
    """Each run of the default study, the steps and evaluations its record did: time here against the record's."""
    bundle, tiny = context["bundle"], context["tiny"]
    rows_out = []
    for run in bundle["runs"]:
        rows = bundle["splits"][run["split"]]
        changes: dict[str, Any] = {"patience": 0, "max_steps": max(run["steps"], 1), "min_steps": 0}
        if tiny:
            changes.update(max_steps=min(changes["max_steps"], 2), max_length=64)
            rows = {"train": rows["train"], "dev": rows["dev"][:16], "test": rows["test"][:24]}
        done = fit_run(context["backbone"], run["method"], train_config(run["hyperparameters"], **changes), rows,
                       run["train_seed"], context["device"])
        same = done["steps"] == run["steps"] and done["dev_evaluations"] == run["dev_evaluations"]
        rows_out.append({key: run[key] for key in ("record", "method", "train_size", "data_seed", "steps")}
                        | {"same_work": same, "cpu": run["cpu"]}
                        | {k: v for k, v in done.items() if k not in ("step_seconds", "train_flops", "score")})
    totals = {side: {key: sum((r["cpu"] if side == "cpu" else r)[key] for r in rows_out)
                     for key in ("train_s", "eval_s", "wall_s")} for side in ("cpu", "here")}
    study = json.loads((RECORDS / "make_study.json").read_text(encoding="utf-8"))
    return {"runs": rows_out, "totals": totals, "all_same_work": all(r["same_work"] for r in rows_out),
            "speedup": {key: ratio(totals["cpu"][key], totals["here"][key]) for key in ("train_s", "eval_s", "wall_s")},
            "cpu_study": {"wall_s": study["wall_s"], "what": study["what"], "cpu": study["cpu"]},
            "splits_match_records": bundle["splits_match_records"]}


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def step_variant(context: dict[str, Any], engine: str, precision: str) -> dict[str, Any]:
    """Training steps at SST-2's study shape (train_step.py's phase `real`): the mean after the warmup."""
    from promptworth.training import runtime

    warmup, steps = context["warmup"], context["steps"]
    config = train_config({}, max_steps=warmup + steps, batch_size=BATCH, eval_every=0, max_length=context["length"],
                          precision=precision, engine=engine)
    try:
        runtime.resolve_precision(precision, context["device"])
    except PromptworthError as exc:
        return {"engine": engine, "precision": precision, "skipped": str(exc)}
    done = fit_run(context["backbone"], "prompt", config, {"train": context["bundle"]["step_rows"], "dev": [], "test": []},
                   STEP_SPLIT["data_seed"], context["device"])
    measured = done["step_seconds"][warmup:]
    step_s = sum(measured) / len(measured)
    flops = done["train_flops"] / done["steps"]  # near the measured steps' (train_step.py counts those alone)
    peak = context["peaks"].get(done["precision"])
    return {"engine": engine, "precision": precision, "ran_in": done["precision"], "step_s": step_s,
            "median_step_s": sorted(measured)[len(measured) // 2], "flops_per_step": flops,
            "achieved_tflops": flops / step_s / 1e12, "mfu": flops / step_s / peak if peak else None,
            "levers": done["levers"], **({"gpu_peak_gb": done["gpu_peak_gb"]} if "gpu_peak_gb" in done else {})}


def matmul_peaks(device: Any, tiny: bool) -> dict[str, float]:
    """The device's matmul FLOP/s in each precision: an n x n matmul, best of 5 rounds of 10."""
    import torch

    n = 256 if tiny else 8192
    peaks = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
        if device.type == "cpu" and name == "fp16":
            continue
        a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
        best = math.inf
        for _ in range(6):  # the first round warms up
            sync(device)
            start = time.perf_counter()
            for _ in range(10):
                a @ b
            sync(device)
            best = min(best, time.perf_counter() - start)
        peaks[name] = 10 * 2 * n**3 / best
    return peaks


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def part_step(context: dict[str, Any]) -> dict[str, Any]:
    context["peaks"] = matmul_peaks(context["device"], context["tiny"])
    variants = [step_variant(context, engine, precision)
                for engine, precision in (("v2", "auto"), ("v3", "auto"), ("v4", "auto"), ("v5", "auto"), ("v3", "fp16"), ("v2", "fp32"))]
    cpu = json.loads(STEP_RESULTS.read_text(encoding="utf-8"))
    reference = {**cpu["study_shapes"][TASK], "device": cpu["peak"]["cpu"], "engine": cpu["setup"].get("engine", "v2"),
                 "record": STEP_RESULTS.relative_to(ROOT).as_posix()}
    like = next(v for v in variants if v["engine"] == reference["engine"] and v["precision"] == "auto")
    return {"shape": {"task": TASK, **STEP_SPLIT, "batch_size": BATCH, "max_length": context["length"],
                      "warmup": context["warmup"], "steps": context["steps"]},
            "matmul_peak_tflops": {k: v / 1e12 for k, v in context["peaks"].items()}, "variants": variants,
            "cpu": reference, "speedup_vs_cpu": ratio(reference["step_s"], like["step_s"])}


def share_child(model_dir: str, device_text: str, rows: list, config_items: dict, barrier: Any, queue: Any) -> None:
    """One of several runs side by side: set up, wait for the others, train; what it took."""
    try:
        import torch

        from promptworth.backbones import load
        from promptworth.training import runtime

        device = runtime.pick_device(device_text)
        if device.type == "cpu":
            torch.set_num_threads(1)
        backbone = load.open_backbone(model_dir)
        barrier.wait(timeout=600)
        done = fit_run(backbone, "prompt", train_config({}, **config_items), {"train": rows, "dev": [], "test": []},
                       STEP_SPLIT["data_seed"], device)
        measured = done["step_seconds"][config_items["max_steps"] // 4:]
        extra = {}
        if device.type == "cuda":
            free, total = torch.cuda.mem_get_info(device)
            extra = {"gpu_reserved_gb": torch.cuda.max_memory_reserved(device) / 1024**3,
                     "gpu_used_gb": (total - free) / 1024**3, "gpu_total_gb": total / 1024**3}
        queue.put({"step_s": sum(measured) / len(measured), **extra,
                   **{k: done[k] for k in ("gpu_peak_gb",) if k in done}})
    except BaseException:  # noqa: BLE001 - reported to the parent, which records it
        barrier.abort()
        queue.put({"error": traceback.format_exc()[-2000:]})


def collect(queue: Any, processes: list, timeout_s: float) -> list[dict[str, Any]]:
    """What each process put on ``queue``; an error as soon as one ends without (killed: out of
    memory, a crash) or the time is up, the others stopped then."""
    import queue as queues

    runs: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(runs) < len(processes):
        try:
            runs.append(queue.get(timeout=2))
            continue
        except queues.Empty:
            pass
        dead = [process.exitcode for process in processes if process.exitcode not in (None, 0)]
        if dead or time.monotonic() > deadline:
            for process in processes:
                process.kill()
            raise RuntimeError(f"{len(processes)} runs at once: " + (
                f"a process ended with exit code {dead[0]} and no result" if dead else f"no result in {timeout_s:.0f} s"))
    for process in processes:
        process.join(timeout=60)
    return runs


def part_share(context: dict[str, Any]) -> dict[str, Any]:
    """K runs at once on the device (each its own process): their steps per second together, each one's memory."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    steps = 8 if context["tiny"] else 40
    items = {"max_steps": steps, "batch_size": BATCH, "eval_every": 0, "max_length": context["length"]}
    rounds = []
    for count in ((1, 2) if context["tiny"] else (1, 2, 4)):
        barrier, queue = spawn.Barrier(count), spawn.Queue()
        processes = [spawn.Process(target=share_child, args=(str(context["model_dir"]), context["device_text"],
                                                             context["bundle"]["step_rows"], items, barrier, queue))
                     for _ in range(count)]
        for process in processes:
            process.start()
        runs = collect(queue, processes, timeout_s=900)
        errors = [run["error"] for run in runs if "error" in run]
        if errors:
            raise RuntimeError(f"{count} runs at once: {errors[0]}")
        rounds.append({"at_once": count, "runs": runs, "steps_per_s": sum(1 / run["step_s"] for run in runs)})
    single = rounds[0]["runs"][0]
    fit = (int(0.95 * single["gpu_total_gb"] // single["gpu_used_gb"]) if single.get("gpu_used_gb") else None)
    return {"steps_per_run": steps, "rounds": rounds,
            "throughput_vs_one": {str(r["at_once"]): ratio(r["steps_per_s"], rounds[0]["steps_per_s"]) for r in rounds},
            "runs_that_fit_by_memory": fit}


def part_methods(context: dict[str, Any]) -> list[dict[str, Any]]:
    """Every built-in method that trains on this backbone without a search: a few steps and a test."""
    from promptworth.data.tasks import get_task
    from promptworth.methods.build import build_method
    from promptworth.methods.registry import search_kind
    from promptworth.methods.specs import builtin_methods

    split = next(key for key in context["bundle"]["splits"] if not key.startswith("0-"))
    rows = context["bundle"]["splits"][split]
    rows = {"train": rows["train"], "dev": rows["dev"][:16], "test": rows["test"][:32]}
    config = train_config({}, max_steps=1 if context["tiny"] else 3, batch_size=BATCH, eval_every=0,
                          max_length=context["length"])
    out = []
    for name, spec in builtin_methods().items():
        if spec.backbone is not None or search_kind(spec) is not None:
            why = f"its own backbone ({spec.backbone})" if spec.backbone else "a search's result first"
            out.append({"method": name, "status": "skipped", "detail": f"needs {why}"})
            continue
        try:  # a method this backbone cannot carry says so when it is built (e.g. a masked LM's objective)
            build_method(name, get_task(TASK), context["backbone"], config.max_length)
        except PromptworthError as exc:
            out.append({"method": name, "status": "skipped", "detail": str(exc)[:500]})
            continue
        try:
            done = fit_run(context["backbone"], name, config, rows, 1, context["device"])
            out.append({"method": name, "status": "ok", "precision": done["precision"], "steps": done["steps"],
                        "wall_s": done["wall_s"]})
        except PromptworthError as exc:  # a setting the method refuses (e.g. no demonstration fits max_length)
            out.append({"method": name, "status": "refused", "detail": str(exc)[:500]})
        except Exception as exc:  # noqa: BLE001 - the check records each method's failure and goes on
            out.append({"method": name, "status": "failed", "detail": f"{type(exc).__name__}: {exc}"[:500]})
    return out


PARTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "replay": part_replay, "step": part_step, "share": part_share, "methods": part_methods,
}


def environment(device: Any) -> dict[str, Any]:
    import platform

    import torch
    import transformers

    from promptworth import __version__
    from promptworth.training import devices, runtime

    info: dict[str, Any] = {"device": runtime.describe_device(device), "ran_on_gpu": device.type == "cuda",
                            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                                         "cuda": torch.version.cuda, "transformers": transformers.__version__,
                                         "promptworth": __version__}}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                       "memory_gb": props.total_memory / 1024**3, "visible": torch.cuda.device_count(),
                       "cuda_visible_devices": devices.visible_entries(os.environ)}
        info["versions"]["cudnn"] = torch.backends.cudnn.version()
    return info


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.5g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def run(args: argparse.Namespace) -> int:
    """Every part of the check on ``--device``; the results file (a part that fails: its error)."""
    missing = missing_modules(args.bundle)
    if missing:
        raise PromptworthError(
            f"missing: {', '.join(missing)}. Download their wheels where there is a network (docs/performance.md, "
            f"\"GPU check\"): pip download --no-deps --only-binary=:all: --python-version "
            f"{sys.version_info.major}.{sys.version_info.minor} --platform manylinux2014_x86_64 -d {args.bundle}/wheels "
            f"{' '.join(missing)}")
    if not (args.bundle / "check.json").is_file():
        raise PromptworthError(f"no bundle at {args.bundle}: run `python benchmarks/gpu_check.py prepare"
                               f"{' --tiny' if args.tiny else ''}` first, where the data mirror is")
    import torch

    from promptworth.backbones import load
    from promptworth.training import runtime

    start = time.perf_counter()
    bundle = json.loads((args.bundle / "check.json").read_text(encoding="utf-8"))
    device = runtime.pick_device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"what": __doc__.splitlines()[0], "tiny": bundle["tiny"], **environment(device)}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        model_dir, params = random_model(args.bundle, bundle["shape"], Path(tmp) / "model")
        result["model"] = {"shape": bundle["shape"], "params": params, "like": bundle["model"],
                           "weights": "random (seed 0): the real weights do not travel; the time is the shape's"}
        context = {"bundle": bundle, "tiny": bundle["tiny"], "device": device, "device_text": args.device,
                   "backbone": load.open_backbone(str(model_dir)), "model_dir": model_dir,
                   "length": 64 if bundle["tiny"] else 128, "warmup": 1 if bundle["tiny"] else 5,
                   "steps": 2 if bundle["tiny"] else 30}
        for name in args.parts:
            part_start = time.perf_counter()
            try:
                result[name] = PARTS[name](context)
            except Exception:  # noqa: BLE001 - one part's failure is recorded; the others still run
                result[name] = {"error": traceback.format_exc()[-3000:]}
            print(f"gpu-check: {name} done in {time.perf_counter() - part_start:.0f} s", file=sys.stderr, flush=True)
    result["wall_s"] = time.perf_counter() - start
    result["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result["git_commit"] = runtime.git_commit()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, rounded(result))
    failed = [name for name in args.parts if isinstance(result[name], dict) and "error" in result[name]]
    failed += [f"method {m['method']}" for m in result.get("methods", []) if m.get("status") == "failed"]
    print(f"gpu-check: {result['device']}, {result['wall_s']:.0f} s -> {args.out}"
          + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("prepare", "run"))
    parser.add_argument("--tiny", action="store_true", default=fast.enabled(),
                        help="a tiny random model, a couple of runs, a few steps (PROMPTWORTH_FAST=1: always)")
    parser.add_argument("--bundle", type=Path, default=fast.output(BUNDLE, ROOT), help="the folder prepare writes")
    parser.add_argument("--model-dir", type=Path, help="prepare: SmolLM2's converted folder (default: the project's)")
    parser.add_argument("--data-dir", type=Path, help="prepare: the data mirror (default: $PROMPTWORTH_DATA)")
    parser.add_argument("--device", default="auto" if fast.enabled() else "cuda",
                        help="run: cuda (default), cuda:N, cpu or auto (PROMPTWORTH_FAST=1: auto)")
    parser.add_argument("--threads", type=int, default=0, help="run on a CPU: torch threads (0: torch's default)")
    parser.add_argument("--parts", nargs="+", choices=tuple(PARTS), default=list(PARTS), help="run: which parts")
    parser.add_argument("--out", type=Path, default=fast.output(OUT, ROOT), help="run: the results file")
    args = parser.parse_args()
    try:
        return prepare(args) if args.action == "prepare" else run(args)
    except PromptworthError as exc:
        print(f"gpu_check: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
