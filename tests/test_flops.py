"""The model FLOPs a run records: counted from the model's shape, known answers, and what a run did."""

from __future__ import annotations

import json

import pytest
from tiny_models import sentiment_rows, sentiment_split, tiny_model

from promptworth.cli import main
from promptworth.data import tasks
from promptworth.backbones import flops, load as models
from promptworth.training import evaluation, loop
from promptworth.methods import build


def _load(kind: str, method_name: str = "prompt"):
    backbone = models.open_backbone(str(tiny_model(kind)))
    method = build.build_method(method_name, tasks.get_task("SST-2"), backbone, 64)
    return method, method.load_model()


@pytest.mark.parametrize(
    "kind, per_layer",
    [
        # llama: q and o (d x d), k and v (d x d/2: one key/value head of 16 for 2 heads), and
        # gate, up, down (d x ff)
        ("llama", 2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64),
        # GPT-2: c_attn (d x 3d), c_proj (d x d), c_fc (d x 4d), mlp c_proj (4d x d)
        ("gpt2", 32 * 96 + 32 * 32 + 32 * 128 + 128 * 32),
        # BERT: q, k, v, attention output, intermediate (d x ff), output (ff x d), the pooler aside
        ("bert", 4 * 32 * 32 + 2 * 32 * 64),
    ],
)
def test_non_embedding_params_are_the_blocks_linear_weights(kind, per_layer):
    _, model = _load(kind)
    shape = flops.model_shape(model)
    pooler = 32 * 32 if kind == "bert" and getattr(model.base_model, "pooler", None) is not None else 0
    assert shape.non_embedding_params == 2 * per_layer + pooler
    assert (shape.layers, shape.hidden) == (2, 32)
    assert shape.non_embedding_params < sum(p.numel() for p in model.parameters())  # embeddings left out


def test_forward_flops_known_answer():
    shape = flops.ModelShape(non_embedding_params=1000, layers=2, hidden=8)
    # two sequences of 3 and 5 tokens; 2 label-word rows read once per sequence
    blocks = 2 * 1000 * (3 + 5) + 4 * 2 * 8 * (3 * 3 + 5 * 5)
    assert flops.forward_flops(shape, [3, 5], output_rows=2, reads=2) == blocks + 2 * 8 * 2 * 2


def test_soft_prompt_vectors_go_through_the_blocks_and_a_prefix_only_through_attention():
    shape = flops.ModelShape(non_embedding_params=100, layers=2, hidden=4)
    # 3 tokens and 2 vectors: 5 positions through the weights, 5 x 5 attention scores
    assert flops.forward_flops(shape, [3], 0, 0, input_vectors=2) == 2 * 100 * 5 + 4 * 2 * 4 * 5 * 5
    # 3 tokens and a prefix of 3: the tokens attend to 6 keys
    assert flops.forward_flops(shape, [3], 0, 0, prefix=3) == 2 * 100 * 3 + 4 * 2 * 4 * 3 * 6


def test_a_prompt_on_a_causal_lm_computes_only_the_label_words_rows():
    method, _ = _load("llama")
    batch = method.collate([method.encode(row) for row in sentiment_rows(4, 1)])
    assert batch["restricted"] and batch["output_rows"] == 2 and batch["reads"] == 4  # great / terrible
    head, _ = _load("llama", "head")
    batch = head.collate([head.encode(row) for row in sentiment_rows(4, 1)])
    assert batch["output_rows"] == 2 and batch["reads"] == 4  # a 2-way classifier at one position


def test_the_record_counts_the_flops_of_every_batch_it_trained_and_evaluated(tmp_path):
    split = sentiment_split(tmp_path / "32-1")
    out = tmp_path / "run.json"
    argv = ["train", "--task", "SST-2", "--method", "prompt", "--split-dir", str(split), "--model",
            str(tiny_model("llama")), "--seed", "3", "--out", str(out), "--max-steps", "5", "--eval-every", "2",
            "--batch-size", "4", "--eval-batch-size", "16", "--max-length", "64", "--no-progress",
            "--precision", "fp32"]
    assert main(argv) == 0
    timing = json.loads(out.read_text())["timing"]

    # the same batches, built again from the rows: 5 training batches of the seed's order, and
    # dev at steps 2, 4, 5 plus test once
    method, model = _load("llama")
    shape = flops.model_shape(model)
    rows = {part: [json.loads(line) for line in (split / f"{part}.jsonl").read_text().splitlines()]
            for part in ("train", "dev", "test")}
    features = {part: [method.encode(row) for row in part_rows] for part, part_rows in rows.items()}
    order = loop.train_batches(len(features["train"]), 4, 3)
    trained = sum(3 * evaluation.batch_flops(method, shape, method.collate([features["train"][i] for i in next(order)]))
                  for _ in range(5))

    def evaluated(part: str) -> int:
        return sum(evaluation.batch_flops(method, shape, method.collate([features[part][i] for i in indices]))
                   for indices in evaluation.eval_batches(features[part], 16))

    assert timing["flops"] == {"train": trained, "eval": 3 * evaluated("dev") + evaluated("test")}
    assert timing["non_embedding_params"] == shape.non_embedding_params
    assert timing["process_s"] >= timing["wall_s"] > 0
