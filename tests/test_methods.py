"""Methods: scores are what they claim to be, every method learns a toy task on every backbone."""

from __future__ import annotations

import random

import pytest
import torch
from tiny_models import KINDS, sentiment_rows, tiny_model

from promptworth.data import tasks
from promptworth.errors import PromptworthError
from promptworth.training import loop, run as train, runtime
from promptworth.backbones import load as models
from promptworth.methods import build
from promptworth.training.settings import TrainConfig

SST2 = tasks.get_task("SST-2")


@pytest.fixture(scope="module")
def backbones():
    return {kind: models.open_backbone(str(tiny_model(kind))) for kind in KINDS}


def test_unknown_method(backbones):
    with pytest.raises(PromptworthError, match="unknown method 'lora'.*prompt, head, null"):
        build.build_method("lora", SST2, backbones["bert"], 64)


def test_head_ignores_the_template(backbones):
    method = build.build_method("head", SST2, backbones["bert"], 64, "lmbff")
    assert method.describe() == {"template": None, "template_name": None, "verbalizer": None}


def test_null_needs_null_words(backbones):
    with pytest.raises(PromptworthError, match="no null_words"):
        build.build_method("null", tasks.get_task("COPA"), backbones["llama"], 64)


@torch.no_grad()
def _full_logprobs(model, ids: list[int]) -> torch.Tensor:
    return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_causal_scores_are_teacher_forced_logprobs(kind, backbones):
    backbone = backbones[kind]
    torch.manual_seed(0)
    method = build.build_method("prompt", SST2, backbone, 64)
    model = method.load_model().eval()
    rows = sentiment_rows(3, 5)
    batch = method.collate([method.encode(r) for r in rows])
    with torch.no_grad():
        scores = method.scores(model, batch)
    tok = backbone.tokenizer
    for i, row in enumerate(rows):
        prefix = tok(row["text_a"] + " It was", add_special_tokens=False)["input_ids"]
        expected = []
        for word in ("terrible", "great"):
            ids = tok(" " + word, add_special_tokens=False)["input_ids"]
            logp = _full_logprobs(model, prefix + ids[:-1])
            expected.append(sum(logp[len(prefix) - 1 + j, t] for j, t in enumerate(ids)))
        expected = torch.stack(expected)
        if batch["restricted"]:  # raw logits: equal up to a per-row constant
            assert torch.allclose(torch.softmax(scores[i], -1), torch.softmax(expected, -1), atol=1e-5)
        else:
            assert torch.allclose(scores[i], expected, atol=1e-4)


def test_causal_single_token_words_use_restricted_logits(backbones):
    backbone = backbones["llama"]
    tok = backbone.tokenizer
    single = [w for w in ("the", "movie", "it", "is", "a", "was") if len(tok(" " + w, add_special_tokens=False)["input_ids"]) == 1]
    assert len(single) >= 2
    task = tasks.TaskSpec(**{**SST2.__dict__, "label_words": {"0": single[0], "1": single[1]}})
    method = build.build_method("prompt", task, backbone, 64)
    model = method.load_model().eval()
    rows = sentiment_rows(4, 6)
    batch = method.collate([method.encode(r) for r in rows])
    assert batch["restricted"]
    with torch.no_grad():
        scores = method.scores(model, batch)
        for i, row in enumerate(rows):
            ids = method.encoder.encode(row).input_ids
            logp = _full_logprobs(model, ids)[-1]
            expected = torch.stack([logp[w[0][0]] for w in method.encoder.encode(row).words])
            assert torch.allclose(torch.softmax(scores[i], -1), torch.softmax(expected, -1), atol=1e-5)


def test_mlm_multi_token_words_use_several_masks(backbones):
    backbone = backbones["bert"]
    copa = tasks.get_task("COPA")
    method = build.build_method("prompt", copa, backbone, 64)
    row = {"idx": 0, "text_a": "the movie was dull .", "choice1": "It was bad", "choice2": "It was really very good",
           "question": "effect", "label": 1}
    feature = method.encode(row)
    ids = feature.sequences[0]
    mask = backbone.tokenizer.mask_token_id
    assert ids.count(mask) == 5  # the longer choice has 5 tokens
    model = method.load_model().eval()
    with torch.no_grad():
        scores = method.scores(model, method.collate([feature]))
        logp = _full_logprobs(model, ids)
    start = ids.index(mask)
    tok = backbone.tokenizer
    for label, choice in enumerate(["it was bad", "it was really very good"]):
        word = tok(" " + choice, add_special_tokens=False)["input_ids"]
        expected = sum(logp[start + j, t] for j, t in enumerate(word))
        assert torch.allclose(scores[0, label], expected, atol=1e-4)


def test_copa_head_is_multiple_choice(backbones):
    copa = tasks.get_task("COPA")
    method = build.build_method("head", copa, backbones["roberta"], 64)
    row = {"idx": 0, "text_a": "the movie was dull .", "choice1": "It was bad", "choice2": "It was good",
           "question": "effect", "label": 0}
    feature = method.encode(row)
    assert len(feature.sequences) == 2
    torch.manual_seed(0)
    model = method.load_model().eval()
    with torch.no_grad():
        scores = method.scores(model, method.collate([feature, feature]))
    assert scores.shape == (2, 2)


@pytest.mark.parametrize("name", ["prompt", "head"])
def test_regression_sts_b(name, backbones):
    sts = tasks.get_task("STS-B")
    method = build.build_method(name, sts, backbones["llama"], 64, "qa" if name == "prompt" else None)
    rows = [{"idx": i, "text_a": "a man is fun .", "text_b": "a dog is fun .", "label": float(i)} for i in range(4)]
    torch.manual_seed(0)
    model = method.load_model()
    batch = method.collate([method.encode(r) for r in rows])
    scores = method.scores(model, batch)
    loss = method.loss(scores, batch)
    assert torch.isfinite(loss)
    predictions = method.predict(scores.detach())
    assert predictions.shape == (4,)
    if name == "prompt":
        assert ((predictions >= 0) & (predictions <= 5)).all()


def _train_toy(method_name: str, backbone, steps: int = 24, seed: int = 0, sizes: tuple[int, int] = (32, 16),
               learning_rate: float = 3e-3, shuffle: bool = False) -> loop.TrainResult:
    """``method_name`` trained on the learnable toy SST-2 (``sizes``: training and test rows; with
    ``shuffle`` the training labels are shuffled, so that nothing links them to the words)."""
    method = build.build_method(method_name, SST2, backbone, 48)
    config = TrainConfig(max_steps=steps, learning_rate=learning_rate, batch_size=8, eval_every=0,
                               precision="fp32", warmup_ratio=0.1)
    rows = {"train": sentiment_rows(sizes[0], 1), "dev": sentiment_rows(8, 2), "test": sentiment_rows(sizes[1], 3)}
    if shuffle:
        labels = [row["label"] for row in rows["train"]]
        random.Random(seed).shuffle(labels)
        rows["train"] = [{**row, "label": label} for row, label in zip(rows["train"], labels)]
    features = {name: [method.encode(r) for r in part] for name, part in rows.items()}
    runtime.seed_everything(seed)
    model = method.load_model()
    return loop.fit(method, model, features["train"], features["dev"], features["test"], SST2, config, seed,
                     torch.device("cpu"), "fp32", progress=False)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method_name", ["prompt", "head", "null"])
def test_every_method_learns_on_every_backbone(kind, method_name, backbones):
    result = _train_toy(method_name, backbones[kind])
    first, last = sum(result.losses[:4]) / 4, sum(result.losses[-4:]) / 4
    assert last < first, (kind, method_name, result.losses)
    assert set(result.test) == {"acc", "f1", "macro_f1", "mcc"}


@pytest.mark.parametrize("kind, method_name, learning_rate, least", [
    *((kind, name, 3e-3, 0.85) for kind in KINDS for name in ("prompt", "head")),
    ("llama", "null", 3e-3, 0.85), ("llama", "prompt-lora", 1e-2, 0.7),  # LoRA trains a few weights: slower
])
def test_a_method_learns_the_toy_task_well_above_chance(kind, method_name, learning_rate, least, backbones):
    """Test accuracy on 64 balanced held-out rows (chance: 0.5), after 60 steps on 64 rows whose
    label a word tells; trained on shuffled labels, the same run stays near chance (so the score
    comes from what it learned of the labels, not from the evaluation)."""
    learned = _train_toy(method_name, backbones[kind], steps=60, sizes=(64, 64), learning_rate=learning_rate)
    assert learned.test["acc"] >= least, (kind, method_name, learned.test)
    if (kind, method_name) == ("llama", "prompt"):
        shuffled = _train_toy(method_name, backbones[kind], steps=60, sizes=(64, 64), shuffle=True)
        assert shuffled.test["acc"] <= 0.7, shuffled.test


def test_same_seed_same_metrics(backbones):
    a = _train_toy("head", backbones["bert"], steps=6, seed=3)
    b = _train_toy("head", backbones["bert"], steps=6, seed=3)
    c = _train_toy("head", backbones["bert"], steps=6, seed=4)
    assert a.losses == b.losses and a.test == b.test and a.dev_curve == b.dev_curve
    assert a.losses != c.losses  # the seed picks head init and batch order


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("text", ["", "   "])
def test_head_on_an_empty_text_is_an_error_naming_the_row(kind, text, backbones):
    """A causal head would read a padding position; a masked head a bare [CLS]: neither reads the row."""
    method = build.build_method("head", SST2, backbones[kind], 64)
    with pytest.raises(PromptworthError, match=r"SST-2 row idx 17: its input text is empty"):
        method.encode({"idx": 17, "text_a": text, "label": 1})
    pair = build.build_method("head", tasks.get_task("RTE"), backbones[kind], 64)
    assert pair.encode({"idx": 3, "text_a": "", "text_b": "a dog .", "label": 0}).sequences[0]  # one text suffices


@pytest.mark.parametrize("kind, limit", [("bert", 256), ("roberta", 256), ("gpt2", 256), ("llama", 256)])
def test_max_length_beyond_the_models_positions_is_an_error(kind, limit, backbones):
    """A longer sequence would fail with an IndexError inside the model, maybe hours into a run."""
    for name in ("prompt", "head"):
        assert build.build_method(name, SST2, backbones[kind], limit).max_length == limit
        with pytest.raises(PromptworthError, match=rf"max_length {limit + 1} is more than .* reads \({limit} positions\)"):
            build.build_method(name, SST2, backbones[kind], limit + 1)
    method = build.build_method("head", SST2, backbones[kind], limit)
    feature = method.encode({"idx": 0, "text_a": " ".join(["good"] * 400), "label": 1})
    assert len(feature.sequences[0]) == limit
    model = method.load_model().eval()
    with torch.no_grad():
        method.scores(model, method.collate([feature]))  # the longest sequence allowed runs


@pytest.mark.parametrize("tuning, tokens, max_length, message", [
    ("softprompt", 300, 64, r"method m puts 300 positions before the input \(its option tokens\), but llama reads 256 "
                            r"positions in all; lower the option tokens"),
    ("softprompt", 200, 64, r"training setting max_length 64 and the 200 positions method m puts before the input \(its "
                            r"option tokens\) exceed the 256 positions llama reads: lower training setting max_length "
                            r"\(--max-length, a study's training.max_length\) to at most 56, or the option tokens"),
    ("prefix", 256, 8, r"method m puts 256 positions before the input"),
])
def test_tokens_a_tuning_adds_beyond_the_models_positions_are_a_clear_error(backbones, tuning, tokens, max_length,
                                                                           message):
    """(before: "... reads (-44 positions); lower --max-length": a negative count, and advice that
    could not help when the tokens alone fill the model)"""
    from promptworth.methods import specs as method_specs

    spec = method_specs.define({"name": "m", "objective": "prompt", "tuning": tuning, "options": {"tokens": tokens}},
                               "test")
    with pytest.raises(PromptworthError, match=message):
        build.build_method(spec, SST2, backbones["llama"], max_length)


def test_tokens_and_max_length_that_fill_the_model_exactly_fit(backbones):
    from promptworth.methods import specs as method_specs

    spec = method_specs.define({"name": "m", "objective": "prompt", "tuning": "softprompt", "options": {"tokens": 200}},
                               "test")
    assert build.build_method(spec, SST2, backbones["llama"], 56).max_length == 56
