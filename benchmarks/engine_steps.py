"""Training steps of two engines side by side: the CPU time of one training step at the study's
shapes, each engine's model stepping through the same batches in turn (the order swapped every
step), so that other work on the machine weighs on both sides alike.

For each case (task and ladder size), the ladder's split on data seed 1 is drawn into a temporary
folder as the study draws it; each engine gets its own copy of the model, set up as a run sets it
up (``training.engine.set_up``), with the study's training settings (batch 8, ``max_length`` 128,
bf16 where the CPU has fast bf16), and both take the training loop's own step
(``training.loop._train_step``) on the batches the loop draws (train seed 1). The first
``--warmup`` steps are left out; the result is each side's median and mean step in CPU seconds
(``time.process_time``: one thread, what a pool's worker spends) and their ratio.

Usage: python benchmarks/engine_steps.py [--engines v4 v5] [--cases SST-2:100 trec:10 mr:1000 RTE:100]
       [--out benchmarks/results/engine_steps_<first>_<second>.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from promptworth import api
from promptworth.backbones import load
from promptworth.data.split_folder import load_split
from promptworth.data.tasks import get_task
from promptworth.files import write_json
from promptworth.methods.build import build_method
from promptworth.study import tiny_variant as fast
from promptworth.training import engine, loop, runtime
from promptworth.training.settings import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def set_up_side(name: str, task_name: str, rows: list[dict], args: argparse.Namespace, precision: str) -> dict:
    """One engine's model, method, optimizer and encoded rows, as a run sets them up."""
    method = build_method(args.method, get_task(task_name), load.open_backbone(args.model), args.max_length)
    method.see_split({"train": rows, "dev": [], "test": []}, args.train_seed)
    model = method.load_model()
    config = TrainConfig(engine=name, learning_rate=args.learning_rate, schedule="constant", max_steps=1000,
                         batch_size=args.batch_size, max_length=args.max_length, precision=precision)
    run_engine = engine.set_up(model, method, config, precision)
    optimizer, scheduler = loop._optimization(model, config, config.max_steps, run_engine)
    return {"method": method, "model": model, "config": config, "engine": run_engine, "optimizer": optimizer,
            "scheduler": scheduler, "params": [p for p in model.parameters() if p.requires_grad],
            "features": [method.encode(row) for row in rows]}


def measure(task_name: str, size: int, args: argparse.Namespace, precision: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        split = api.split(task_name, [size], 1, Path(folder) / task_name, dev_policy="fixed", dev_size=128)[size]
        rows = load_split(task_name, split)["train"].to_list()
    sides = {name: set_up_side(name, task_name, rows, args, precision) for name in args.engines}
    batches = loop.train_batches(len(rows), args.batch_size, args.train_seed)
    seconds: dict[str, list[float]] = {name: [] for name in args.engines}
    tokens = []
    for step in range(1, args.warmup + args.steps + 1):
        indices = next(batches)
        for name in (args.engines if step % 2 else args.engines[::-1]):
            side = sides[name]
            side["model"].train()
            batch = side["method"].collate([side["method"].train_feature(side["features"], i, step) for i in indices])
            if name == args.engines[0]:
                tokens.append((batch["input_ids"].numel(), batch["n_tokens"]))
            batch = side["engine"].training_batch(batch)
            start = time.process_time()
            loop._train_step(side["method"], side["model"], batch, step, side["config"], side["optimizer"],
                             side["scheduler"], side["params"], torch.device("cpu"), precision, side["engine"])
            if step > args.warmup:
                seconds[name].append(time.process_time() - start)
    first, second = args.engines
    result = {name: {"median_step_s": round(statistics.median(values), 4), "mean_step_s": round(statistics.fmean(values), 4),
                     "levers": sides[name]["engine"].levers} for name, values in seconds.items()}
    result["ratio_median"] = round(result[first]["median_step_s"] / result[second]["median_step_s"], 3)
    result["ratio_mean"] = round(result[first]["mean_step_s"] / result[second]["mean_step_s"], 3)
    result["padded_over_real_tokens"] = round(sum(p for p, _ in tokens) / sum(r for _, r in tokens), 3)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs=2, default=["v4", "v5"], help="the two sides (the ratio: first over second)")
    parser.add_argument("--cases", nargs="+", default=["SST-2:100", "trec:10", "mr:1000", "RTE:100"],
                        help="TASK:SIZE, each a ladder split of data seed 1")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--method", default="prompt")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/engine_steps_<first>_<second>.json")
    args = parser.parse_args()
    if args.out is None:
        args.out = fast.output(ROOT / "benchmarks" / "results" / f"engine_steps_{args.engines[0]}_{args.engines[1]}.json", ROOT)
    torch.set_num_threads(1)
    precision = runtime.resolve_precision("auto", torch.device("cpu"))
    load_before = os.getloadavg()
    cases = {}
    for case in args.cases:
        task_name, size = case.rsplit(":", 1)
        cases[case] = measure(task_name, int(size), args, precision)
        print(f"{case}: {args.engines[0]} {cases[case][args.engines[0]]['median_step_s']} s, "
              f"{args.engines[1]} {cases[case][args.engines[1]]['median_step_s']} s a step: {cases[case]['ratio_median']}x")
    write_json(args.out, {"cpu": runtime.cpu_model_name(), "precision": precision, "threads": 1, "model": args.model,
                          "method": args.method, "engines": args.engines, "steps": args.steps, "warmup": args.warmup,
                          "load_average": {"before": load_before, "after": os.getloadavg(), "cpus": os.cpu_count()},
                          "cases": cases})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
