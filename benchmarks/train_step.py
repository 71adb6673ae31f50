"""Benchmark one training step: promptworth's loop vs ``transformers.Trainer`` (fp32 and bf16).

SmolLM2-135M-Instruct, SST-2 K=16 (seed 42) training rows, the prompt method (``<s> It was
great/terrible``), batch 8, every sequence exactly ``--length`` tokens (short sentences are
followed by the next ones, long ones cut), so neither side pays for padding. Each side runs in its
own process (clean peak RSS) for ``--warmup`` + ``--steps`` steps; the median of the measured
step times counts, and the sides alternate for ``--rounds`` rounds, each keeping its best round
(the machine is shared: the best round is the least disturbed one). The Trainer side is the plain Hugging Face way to train the same method: the
model's full-vocabulary logits at every position, the label words' logits read at the answer.

MFU = the model FLOPs the step really does (``promptworth.backbones.flops``: non-embedding matmuls, attention
and the label words' rows of the output layer, forward and backward) / step time / the machine's
matmul peak in the precision the step runs in: a 2048 x 2048 matmul with 2 threads, best of
several, measured by this script (bf16 where the CPU has fast bf16, else fp32; a CPU without
avx512_bf16 or AMX emulates bf16 at a few GFLOP/s, so neither the bf16 peak nor the Trainer's bf16
side is measured there). The step is also measured at the study's real shapes: SST-2 and TREC
batches as the published study samples them (ladder size 300, data seed 1, batch 8, max length 128).

Usage: python benchmarks/train_step.py [--steps 6] [--length 64] [--engine v2|v3] [--out benchmarks/results/train_step.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from promptworth.study import tiny_variant as fast
from promptworth.data import split_folder
from promptworth.backbones import registry
from promptworth.methods import build
from promptworth.training import evaluation, loop, runtime
from promptworth.training.settings import TrainConfig

HERE = Path(__file__).resolve().parent
THREADS = 2
BATCH = 8
TARGETS = {"speedup_vs_hf_trainer": 2.5, "speedup_vs_hf_trainer_bf16": 1.2, "mfu": 0.55, "peak_rss_gb": 4.0}


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _kshot_rows() -> list[dict]:
    """The training rows of LM-BFF's SST-2 split 16-42, sampled as LM-BFF's sampler does (byte for
    byte) from SST-2's pool: the data mirror's, or one downloaded from the original source."""
    from promptworth.data.kshot import kshot
    from promptworth.data.split_folder import load_split

    with tempfile.TemporaryDirectory() as tmp:
        folder = kshot(Path(tmp) / "k-shot", ["SST-2"], seeds=[42])["SST-2"][42]
        return load_split("SST-2", folder)["train"].to_list()


def equal_length_rows(length: int, tokenizer) -> list[dict]:
    """SST-2 training rows whose prompt is at least ``length`` tokens (sentences chained)."""
    rows = _kshot_rows()
    texts = [r["text_a"] for r in rows]
    out = []
    for i, row in enumerate(rows):
        text, j = row["text_a"], i + 1
        while len(tokenizer(text + " It was", add_special_tokens=False)["input_ids"]) < length + 2:
            text += " " + texts[j % len(texts)]
            j += 1
        out.append({**row, "text_a": text})
    return out


def _setup(length: int):
    import torch

    from promptworth.data import tasks
    from promptworth.methods.objectives import prompt as methods
    from promptworth.backbones import load as models

    torch.set_num_threads(THREADS)
    backbone = models.open_backbone(registry.SMOLLM2)
    task = tasks.get_task("SST-2")
    method = build.build_method("prompt", task, backbone, length)
    rows = equal_length_rows(length, backbone.tokenizer)
    features = [method.encode(r) for r in rows]
    assert {len(f.sequences[0]) for f in features} == {length}, "sequences must all be --length tokens"
    return task, method, features


# ---------------------------------------------------------------------------------------------
# Phases (each in its own process)


def phase_peak(args: argparse.Namespace) -> dict:
    import torch

    from promptworth.backbones import flops
    from promptworth.training import run as train

    return {**flops.matmul_peaks(runtime.cpu_has_fast_bf16(), THREADS), "cpu": runtime.describe_device(torch.device("cpu"))}


def phase_ours(args: argparse.Namespace) -> dict:
    import torch

    from promptworth.training import run as train

    runtime.tune_allocator()
    task, method, features = _setup(args.length)
    config = TrainConfig(max_steps=args.warmup + args.steps, batch_size=BATCH, eval_every=0,
                               max_length=args.length, precision="auto", engine=args.engine)
    device = torch.device("cpu")
    precision = runtime.resolve_precision(config.precision, device)
    runtime.seed_everything(0)
    model = method.load_model()
    params = sum(p.numel() for p in model.parameters())
    embedding_params = model.get_input_embeddings().weight.numel()
    result = loop.fit(method, model, features, [], [], task, config, 0, device, precision, progress=False)
    times = result.step_seconds[args.warmup:]
    profile = _profile(method, model, features, config, precision) if args.profile else None
    return {"step_s": statistics.median(times), "step_times_s": times, "precision": precision,
            "params": params, "embedding_params": embedding_params, "tokens_per_step": BATCH * args.length,
            # every step has the same shape: the same FLOPs
            "flops_per_step": result.train_flops // config.max_steps, "peak_rss_gb": _rss_gb(), "profile": profile}


def phase_real(args: argparse.Namespace) -> dict:
    """Steps at the published study's shapes: SST-2 and TREC batches as its runs sample them."""
    import torch

    from promptworth import api
    from promptworth.data import tasks
    from promptworth.backbones import flops, load as models
    from promptworth.methods.objectives import prompt as methods
    from promptworth.training import run as train

    runtime.tune_allocator()
    torch.set_num_threads(THREADS)
    backbone = models.open_backbone(registry.SMOLLM2)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("SST-2", "trec"):
            folder = api.split(name, [300], 1, Path(tmp) / name, dev_policy="fixed", dev_size=32)[300]
            task = tasks.get_task(name)
            method = build.build_method("prompt", task, backbone, 128)
            features = [method.encode(row) for row in split_folder.load_split(name, folder)["train"].to_list()]
            config = TrainConfig(max_steps=args.warmup + args.steps, batch_size=BATCH, eval_every=0,
                                       max_length=128, precision="auto", engine=args.engine)
            precision = runtime.resolve_precision(config.precision, torch.device("cpu"))
            runtime.seed_everything(1)
            model = method.load_model()
            result = loop.fit(method, model, features, [], [], task, config, 1, torch.device("cpu"), precision,
                               progress=False)
            # the same batches again (fit's order for seed 1), for the FLOPs of the measured steps
            shape = flops.model_shape(model)
            order = loop.train_batches(len(features), BATCH, 1)
            per_step = [flops.BACKWARD_FACTOR * evaluation.batch_flops(method, shape, method.collate([features[i] for i in next(order)]))
                        for _ in range(config.max_steps)]
            order = loop.train_batches(len(features), BATCH, 1)
            tokens = [sum(features[i].n_tokens for i in next(order)) for _ in range(config.max_steps)]
            measured = slice(args.warmup, None)
            seconds = sum(result.step_seconds[measured])
            out[name] = {"steps": args.steps, "mean_tokens_per_step": statistics.mean(tokens[measured]),
                         "step_s": seconds / args.steps, "flops_per_step": sum(per_step[measured]) / args.steps,
                         "precision": precision}
    return out


def _profile(method, model, features, config, precision) -> list[dict]:
    """Self CPU time of the top operators in one more training step."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from promptworth.training import run as train

    from promptworth.training import engine

    run_engine = engine.set_up(model, method, config)  # fit set it up already: the same levers again
    optimizer = loop.optimizer_for(model, config, run_engine.leave_out())
    batch = method.collate(features[:BATCH])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with runtime.autocast(torch.device("cpu"), precision):
            loss = method.loss(method.scores(model, batch), batch)
        loss.backward()
        run_engine.step(optimizer, [p for p in model.parameters() if p.requires_grad])
        optimizer.zero_grad(set_to_none=True)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:15]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    return [{"op": e.key, "self_ms": round(e.self_cpu_time_total / 1e3, 2), "share": round(e.self_cpu_time_total / total, 3),
             "calls": e.count} for e in events]


def phase_hf(args: argparse.Namespace, bf16: bool) -> dict:
    import torch
    import torch.nn.functional as F
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from promptworth.backbones import load as models

    task, method, features = _setup(args.length)
    label_ids = [words[0][0] for words in method.encoder.words_for({})]
    torch.manual_seed(0)
    lm = models.load_model(method.backbone.ref, "causal_lm")

    class PromptLM(torch.nn.Module):
        """The prompt method the plain way: full LM logits, label words read at the answer."""

        def __init__(self) -> None:
            super().__init__()
            self.lm = lm
            self.register_buffer("label_ids", torch.tensor(label_ids), persistent=False)

        def forward(self, input_ids, attention_mask, labels):
            logits = self.lm(input_ids=input_ids, attention_mask=attention_mask).logits
            scores = logits[:, -1, :].index_select(-1, self.label_ids)
            return {"loss": F.cross_entropy(scores.float(), labels), "logits": scores}

    data = [{"input_ids": f.sequences[0], "attention_mask": [1] * len(f.sequences[0]), "labels": int(f.label)}
            for f in features]

    class Times(TrainerCallback):
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def on_train_begin(self, *a, **k):
            self.stamps.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            self.stamps.append(time.perf_counter())

    timer = Times()
    with tempfile.TemporaryDirectory() as tmp:
        arguments = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=BATCH, max_steps=args.warmup + args.steps,
            learning_rate=1e-5, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
            logging_strategy="no", bf16=bf16, seed=0,
        )
        trainer = Trainer(model=PromptLM(), args=arguments, train_dataset=data, callbacks=[timer])
        trainer.train()
    steps = [b - a for a, b in zip(timer.stamps, timer.stamps[1:])]
    times = steps[args.warmup:]
    return {"step_s": statistics.median(times), "step_times_s": times, "bf16": bf16,
            "optim": str(arguments.optim), "peak_rss_gb": _rss_gb()}


PHASES = {
    "peak": phase_peak,
    "ours": phase_ours,
    "real": phase_real,
    "hf_fp32": lambda a: phase_hf(a, bf16=False),
    "hf_bf16": lambda a: phase_hf(a, bf16=True),
}


# ---------------------------------------------------------------------------------------------
# Driver


def _run_phase(name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--phase", name, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--length", str(args.length), "--engine", args.engine] + (["--profile"] if args.profile else [])
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"phase {name} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["phase_wall_s"] = round(time.perf_counter() - start, 1)
    print(f"{name}: {json.dumps({k: v for k, v in result.items() if k not in ('profile', 'step_times_s')})}", file=sys.stderr)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=6, help="measured steps per side")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured first steps")
    parser.add_argument("--length", type=int, default=64, help="tokens per sequence")
    parser.add_argument("--profile", action="store_true", help="add an operator profile of our step")
    parser.add_argument("--engine", choices=("v2", "v3"), default="v2",
                        help="our step's training.engine (promptworth.training.engine; the committed results: v2)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per side (best counts)")
    # PROMPTWORTH_FAST=1 (promptworth.study.tiny_variant): a step or two, written under results/fast/
    parser.add_argument("--out", type=Path, default=fast.output(HERE / "results" / "train_step.json", HERE.parent))
    args = parser.parse_args()
    args.steps, args.warmup, args.rounds = fast.small(args.steps, fast.STEPS), fast.small(args.warmup, 1), fast.small(args.rounds, 1)
    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return 0
    load_before = os.getloadavg()
    peak = _run_phase("peak", args)
    fast_bf16 = peak["bf16_matmul_2048_gflops"] is not None
    # the machine is shared: alternate the sides for --rounds rounds and keep each side's best round
    sides = ["ours", "hf_fp32", "hf_bf16"] if fast_bf16 else ["ours", "hf_fp32"]
    rounds: dict[str, list[dict]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name in sides:
            rounds[name].append(_run_phase(name, args))
    best = {name: min(rounds[name], key=lambda r: r["step_s"]) for name in sides}
    ours, hf_fp32, hf_bf16 = best["ours"], best["hf_fp32"], best.get("hf_bf16")
    real = _run_phase("real", args)
    load_after = os.getloadavg()
    # the reference peak: a 2048^2 matmul in the precision our step runs in
    reference = "bf16_matmul_2048_gflops" if ours["precision"] == "bf16" else "fp32_matmul_2048_gflops"
    peak_flops = peak[reference] * 1e9
    flops = ours["flops_per_step"]
    results = {
        "setup": {"model": "smollm2-135m-instruct", "task": "SST-2 16-42 train", "method": "prompt", "batch_size": BATCH,
                  "length": args.length, "threads": THREADS, "steps": args.steps, "warmup": args.warmup,
                  "engine": args.engine,
                  "rounds": args.rounds},
        "speedup_vs_hf_trainer": hf_fp32["step_s"] / ours["step_s"],
        # None where the CPU emulates bf16 (the Trainer's bf16 side is not measured there)
        "speedup_vs_hf_trainer_bf16": hf_bf16["step_s"] / ours["step_s"] if hf_bf16 else None,
        # the FLOPs done (promptworth.backbones.flops) over the reference peak; embeddings do no matmul work
        "mfu": flops / ours["step_s"] / peak_flops,
        "mfu_reference_peak": reference,
        "study_shapes": {name: {**shape, "mfu": shape["flops_per_step"] / shape["step_s"] / peak_flops}
                         for name, shape in real.items() if isinstance(shape, dict)},
        "peak_rss_gb": ours["peak_rss_gb"],
        "tokens_per_s": ours["tokens_per_step"] / ours["step_s"],
        "model_tflops_per_step": flops / 1e12,
        "achieved_gflops": flops / ours["step_s"] / 1e9,
        "peak": peak,
        "ours": ours,
        "hf_trainer": hf_fp32,
        "hf_trainer_bf16": hf_bf16,
        "rounds_step_s": {name: [r["step_s"] for r in runs] for name, runs in rounds.items()},
        "load_average": {"before": load_before, "after": load_after, "cpus": os.cpu_count()},
        "targets": TARGETS,
    }
    results["met"] = {
        "speedup_vs_hf_trainer": results["speedup_vs_hf_trainer"] >= TARGETS["speedup_vs_hf_trainer"],
        "speedup_vs_hf_trainer_bf16": None if hf_bf16 is None
        else results["speedup_vs_hf_trainer_bf16"] >= TARGETS["speedup_vs_hf_trainer_bf16"],
        "mfu": results["mfu"] >= TARGETS["mfu"],
        "peak_rss_gb": results["peak_rss_gb"] <= TARGETS["peak_rss_gb"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    summary = {k: round(v, 3) for k, v in results.items() if isinstance(v, float)}
    print(json.dumps({**summary, "met": results["met"], "load_average": results["load_average"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
