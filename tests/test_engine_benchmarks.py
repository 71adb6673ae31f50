"""The engine's benchmarks: benchmarks/padding.py (the padded tokens of a run's training batches over
their real ones, counted as the training loop draws and collates the batches) and
benchmarks/engine_steps.py (two engines' training steps side by side), on tiny models."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
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


@pytest.mark.parametrize("first, second, lever, value", [
    ("v3", "v4", "training_batches", "packed"),
    ("v4", "v5", "attention", "eager_by_sequence"),
])
def test_engine_steps_times_both_engines_on_the_same_batches(tmp_path, first, second, lever, value):
    out = tmp_path / "steps.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "engine_steps.py"), "--model", str(tiny_model("llama")),
         "--engines", first, second, "--cases", "SST-2:10", "--steps", "2", "--warmup", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    case = result["cases"]["SST-2:10"]
    assert result["engines"] == [first, second] and result["threads"] == 1
    assert case[second]["levers"][lever] == value and case[first]["levers"].get(lever) != value
    assert case[first]["median_step_s"] > 0 and case[second]["median_step_s"] > 0
    assert case["ratio_median"] == pytest.approx(case[first]["median_step_s"] / case[second]["median_step_s"], abs=1e-3)
    assert case["padded_over_real_tokens"] >= 1.0
