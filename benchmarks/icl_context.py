"""The context in-context learning needs: the input lengths and forward FLOPs of ``icl-calibrated``.

No timing: every number here is a count, the same on any machine. For each task and training-set
size, the ladder's splits of the study (dev policy fixed, 128 dev rows, at most ``--test-limit``
test rows) on each data seed are drawn into a temporary folder; the method (prompt + none +
context + calibrate) is set up on SmolLM2 with a ``max_length`` of the model's whole context, so
that every demonstration of the training set is in it (``demos`` 32: the whole training set at
sizes 10 and 32), and every dev and test input and the three content-free inputs of calibration
are measured in tokens. FLOPs are ``promptworth.backbones.flops.forward_flops`` of each input
(blocks, attention and the label words' rows), summed over the run's inputs: what the record's
``timing.flops.eval`` counts for the run.

Usage: python benchmarks/icl_context.py [--seeds 1 2 3 4 5] [--out benchmarks/results/icl_context.json] (the
table beside it, icl_context.md, is the one docs/methods.md includes)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from promptworth import api
from promptworth.backbones import flops, load
from promptworth.backbones.architecture import position_limit
from promptworth.data.split_folder import load_split
from promptworth.data.tasks import get_task
from promptworth.files import write_json
from promptworth.methods.build import build_method
from promptworth.study import tiny_variant as fast

ROOT = Path(__file__).resolve().parents[1]
METHOD = "icl-calibrated"
LIMITS = (256, 512, 1024, 2048)  # max_length settings: the share of inputs each would cut demonstrations from


def _lengths(method, rows: dict, seed: int) -> list[int]:
    """Token lengths of a run's inputs, every demonstration in context: dev, test, content-free."""
    method.see_split(rows, seed)
    context = method.extras[-1]  # the extras in the registry's order: calibrate, context
    inputs = [*rows["dev"], *rows["test"]]
    lengths = [method.encoder.length(*context.demo_input(row, context.context)) for row in inputs]
    return lengths + [len(feature.sequences[0]) for feature in method.content_free()]


def measure(task_name: str, size: int, seeds: list[int], model: str, test_limit: int, train_seed: int) -> dict:
    task, backbone = get_task(task_name), load.open_backbone(model)
    limit = position_limit(backbone.config)
    method = build_method(METHOD, task, backbone, limit)
    shape = flops.model_shape(load.load_model(backbone.ref, "causal_lm"))
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in seeds:
            split = api.split(task_name, [size], seed, Path(folder) / task_name, dev_policy="fixed", dev_size=128,
                              test_limit=test_limit)[size]
            data = load_split(task_name, split)
            lengths = _lengths(method, {part: data[part].to_list() for part in ("train", "dev", "test")}, train_seed)
            runs.append({"data_seed": seed, "inputs": len(lengths), "max_tokens": max(lengths),
                         "mean_tokens": round(statistics.mean(lengths), 1),
                         "eval_flops": sum(flops.forward_flops(shape, [n], task.num_labels, 1) for n in lengths)})
            for cut in LIMITS:
                runs[-1][f"share_over_{cut}"] = round(sum(n > cut for n in lengths) / len(lengths), 4)
    return {"template": method.template_name, "model_positions": limit, "max_tokens": max(r["max_tokens"] for r in runs),
            "mean_tokens": round(statistics.mean(r["mean_tokens"] for r in runs), 1), "inputs": runs[0]["inputs"],
            "eval_tflops": round(statistics.mean(r["eval_flops"] for r in runs) / 1e12, 1), "runs": runs}


def table(results: dict[str, dict[str, dict]]) -> str:
    """The results as a markdown table (docs/methods.md includes it)."""
    lines = ["| task (template) | size | longest input, tokens | mean | forward TFLOP a run | inputs a run |",
             "|---|---:|---:|---:|---:|---:|"]
    for task, by_size in results.items():
        for size, result in by_size.items():
            lines.append(f"| {task} (`{result['template']}`) | {size} | {result['max_tokens']:,} | {result['mean_tokens']:,.0f} "
                         f"| {result['eval_tflops']:,.0f} | {result['inputs']:,} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resources/models/smollm2-135m-instruct")
    parser.add_argument("--tasks", nargs="+", default=["SST-2", "trec"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10, 32])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--test-limit", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=fast.output(ROOT / "benchmarks" / "results" / "icl_context.json", ROOT))
    args = parser.parse_args()
    results = {task: {str(size): measure(task, size, args.seeds, args.model, args.test_limit, args.train_seed)
                      for size in args.sizes} for task in args.tasks}
    write_json(args.out, {"method": METHOD, "model": args.model, "data_seeds": args.seeds, "train_seed": args.train_seed,
                          "test_limit": args.test_limit, "results": results})
    args.out.with_suffix(".md").write_text(table(results), encoding="utf-8")
    print(table(results), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
