"""How much of a training batch is padding: the padded tokens of the study's training batches over
their real ones, per task and method (the measure behind "padding-free batches" in docs/performance.md).

No timing: every number here is a count, the same on any machine. For each task, the ladder's split
at ``--size`` examples on each data seed is drawn into a temporary folder as the study draws it (dev
policy fixed, 128 dev rows); the method is set up on the model with the study's ``max_length``, the
training rows are encoded as a run encodes them, and the first ``--steps`` batches are drawn and
collated as the training loop draws them (``train_batches`` with the train seed): a batch is padded
to its longest sequence, so its tokens are ``batch x longest`` where the sequences hold ``n_tokens``.

Usage: python benchmarks/padding.py [--tasks SST-2 mr subj trec RTE] [--out benchmarks/results/padding.json]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from promptworth import api
from promptworth.backbones import load
from promptworth.data.split_folder import load_split
from promptworth.data.tasks import get_task
from promptworth.files import write_json
from promptworth.methods.build import build_method
from promptworth.study import tiny_variant as fast
from promptworth.training.loop import train_batches

ROOT = Path(__file__).resolve().parents[1]


def padding(method, rows: list[dict], seed: int, batch_size: int, steps: int) -> dict:
    """Padded and real tokens of the first ``steps`` training batches of one run."""
    method.see_split({"train": rows, "dev": [], "test": []}, seed)
    features = [method.encode(row) for row in rows]
    batches = train_batches(len(features), batch_size, seed)
    padded = real = 0
    for step in range(1, steps + 1):
        batch = method.collate([method.train_feature(features, i, step) for i in next(batches)])
        padded += batch["input_ids"].numel()
        real += batch["n_tokens"]
    return {"padded_tokens": padded, "real_tokens": real, "ratio": round(padded / real, 4)}


def measure(task_name: str, method_name: str, args: argparse.Namespace) -> dict:
    task, backbone = get_task(task_name), load.open_backbone(args.model)
    method = build_method(method_name, task, backbone, args.max_length)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            split = api.split(task_name, [args.size], seed, Path(folder) / task_name, dev_policy="fixed", dev_size=128)[args.size]
            rows = load_split(task_name, split)["train"].to_list()
            runs.append({"data_seed": seed, **padding(method, rows, args.train_seed, args.batch_size, args.steps)})
    return {"ratio": round(sum(r["padded_tokens"] for r in runs) / sum(r["real_tokens"] for r in runs), 4),
            "real_tokens_per_batch": round(statistics.mean(r["real_tokens"] for r in runs) / args.steps, 1),
            "padded_tokens_per_batch": round(statistics.mean(r["padded_tokens"] for r in runs) / args.steps, 1),
            "runs": runs}


def table(results: dict[str, dict[str, dict]]) -> str:
    lines = ["| task | method | real tokens a batch | padded tokens a batch | padded / real |", "|---|---|---:|---:|---:|"]
    for task, by_method in results.items():
        for method, result in by_method.items():
            lines.append(f"| {task} | {method} | {result['real_tokens_per_batch']:,.1f} "
                         f"| {result['padded_tokens_per_batch']:,.1f} | {result['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resources/models/smollm2-135m-instruct")
    parser.add_argument("--tasks", nargs="+", default=["SST-2", "mr", "subj", "trec", "RTE"])
    parser.add_argument("--methods", nargs="+", default=["prompt", "head"])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=fast.output(ROOT / "benchmarks" / "results" / "padding.json", ROOT))
    args = parser.parse_args()
    results = {task: {method: measure(task, method, args) for method in args.methods} for task in args.tasks}
    write_json(args.out, {"model": args.model, "size": args.size, "data_seeds": args.seeds, "train_seed": args.train_seed,
                          "batch_size": args.batch_size, "max_length": args.max_length, "steps": args.steps,
                          "results": results})
    print(table(results), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
