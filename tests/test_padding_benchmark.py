"""benchmarks/padding.py: the padded tokens of a run's training batches over their real ones, counted
as the training loop draws and collates the batches (docs/performance.md, "padding-free batches")."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from tiny_models import sentiment_rows, tiny_model

from promptworth.backbones import load
from promptworth.data import tasks
from promptworth.methods.build import build_method
from promptworth.training.loop import train_batches

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("padding_benchmark", REPO / "benchmarks" / "padding.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def method():
    return build_method("prompt", tasks.get_task("SST-2"), load.open_backbone(str(tiny_model("llama"))), 64)


def test_rows_of_one_length_have_no_padding(benchmark, method):
    row = sentiment_rows(1, seed=1)[0]
    rows = [{**row, "idx": i, "label": i % 2} for i in range(12)]
    counted = benchmark.padding(method, rows, seed=1, batch_size=4, steps=5)
    assert counted["padded_tokens"] == counted["real_tokens"] > 0 and counted["ratio"] == 1.0


def test_each_batch_is_padded_to_its_longest_row(benchmark, method):
    rows = sentiment_rows(6, seed=1, words=5) + sentiment_rows(6, seed=2, words=14)
    counted = benchmark.padding(method, rows, seed=3, batch_size=4, steps=5)
    lengths = [method.encode(row).n_tokens for row in rows]
    assert len(set(lengths)) > 1  # rows of several lengths: batches that mix them are padded
    batches = train_batches(len(rows), 4, 3)
    drawn = [next(batches) for _ in range(5)]
    assert counted["real_tokens"] == sum(lengths[i] for batch in drawn for i in batch)
    assert counted["padded_tokens"] == sum(len(batch) * max(lengths[i] for i in batch) for batch in drawn)
    assert counted["ratio"] == pytest.approx(counted["padded_tokens"] / counted["real_tokens"], abs=1e-4)
    assert counted["ratio"] > 1.0
