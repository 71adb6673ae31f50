"""Every built-in method on a tiny masked and a tiny causal backbone: it trains and evaluates,
a step changes exactly the parameters its tuning trains, the best state saves and restores, and
bad options are one clear error."""

from __future__ import annotations

import math
import re

import pytest
import torch
from tiny_models import sentiment_rows, tiny_model

from promptworth.data import tasks
from promptworth.errors import PromptworthError
from promptworth.methods import build, specs as method_specs, tunings
from promptworth.methods.features import model_inputs
from promptworth.training import loop, run as train, runtime
from promptworth.backbones import architecture, load as models
from promptworth.training.settings import TrainConfig

SST2 = tasks.get_task("SST-2")
KINDS = ("roberta", "llama")  # a masked and a causal backbone
# the methods that train (the tuning-free ones: tests/test_tuning_free.py)
# prompt-demo trains what prompt trains (tuning full); its demonstrations need the split first
# (see_split), so tests/test_demos.py trains it; setfit trains a sentence encoder of its own through
# the setfit package, not the step loop (tests/test_setfit.py)
BUILTINS = [spec.name for spec in method_specs.BUILTINS
            if spec.tuning_spec.steps and "demos" not in spec.extras and spec.backbone is None]


@pytest.fixture(scope="module")
def backbones():
    return {kind: models.open_backbone(str(tiny_model(kind))) for kind in ("bert", "roberta", "gpt2", "llama")}


def max_length(name: str | method_specs.MethodSpec) -> int:
    """Tokens per sequence in these tests: 48, but for a method whose own template (the irrelevant
    control's sentence) leaves no room in 48 of the tiny models' tokens."""
    spec = name if isinstance(name, method_specs.MethodSpec) else method_specs.builtin_methods().get(name)
    return 128 if spec is not None and spec.template is not None else 48


def _loaded(name: str | method_specs.MethodSpec, backbone, seed: int = 0):
    method = build.build_method(name, SST2, backbone, max_length(name))
    runtime.seed_everything(seed)
    return method, method.load_model()


def _layer_index(name: str) -> int | None:
    match = re.search(r"\.(?:layers?|h)\.(\d+)\.", name)
    return int(match.group(1)) if match else None


def _is_embedding(name: str) -> bool:
    return "embed" in name or ".wte." in name or ".wpe." in name


def _is_new_head(name: str) -> bool:
    return name.startswith(("classifier.", "score."))


def expected_trainable(spec: method_specs.MethodSpec, name: str, options: dict) -> bool:
    """What the tuning promises to train, from parameter names alone (independent of tunings.py)."""
    head = spec.objective == "head" and _is_new_head(name)
    if spec.tuning in ("full", "ptuning"):
        return True
    if spec.tuning == "lora":
        return "lora_" in name or head
    if spec.tuning == "bitfit":
        return name.endswith("bias") or head
    if spec.tuning == "frozen":
        return head
    if spec.tuning == "softprompt":
        return name == "soft_prompt.weight"
    if spec.tuning == "prefix":
        return name == "prefix.weight"
    if spec.tuning == "fixlayers":
        layer = _layer_index(name)
        return not _is_embedding(name) and (layer is None or layer >= options["layers"])
    raise AssertionError(spec.tuning)


def _steps(method, model, n: int, learning_rate: float = 1e-2) -> None:
    config = TrainConfig(learning_rate=learning_rate, precision="fp32")
    optimizer = loop.optimizer_for(model, config)
    model.train()
    batch = method.collate([method.encode(r) for r in sentiment_rows(8, 4)])
    for _ in range(n):
        method.loss(method.scores(model, batch), batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", BUILTINS)
def test_a_step_changes_what_the_tuning_trains_and_nothing_else(name, kind, backbones):
    method, model = _loaded(name, backbones[kind])
    spec = method.spec
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in before if expected_trainable(spec, n, method.options)}
    _steps(method, model, 2)  # LoRA's A gets a gradient once B is no longer zero
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= trainable, sorted(changed - trainable)  # frozen weights are bit-identical
    assert changed, name
    if spec.tuning == "lora":
        assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)
    if spec.objective == "head":
        assert any(_is_new_head(n) for n in changed)
    if spec.tuning == "fixlayers":
        top = architecture.layer_count(backbones[kind].config) - 1
        assert any(_layer_index(n) == top for n in changed)
    count = method.parameter_count
    assert count.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert count.total == sum(p.numel() for p in model.parameters())
    assert (count.trainable == count.total) == (spec.tuning in ("full", "ptuning"))
    if spec.tuning in ("softprompt", "ptuning"):
        assert any(n.startswith("soft_prompt.") for n in changed)
    if spec.tuning == "prefix":
        assert changed == {"prefix.weight"}


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
@pytest.mark.parametrize("name", ["prompt-lora", "head-bitfit", "prompt-fixlayers", "head-probe"])
def test_the_other_backbones_take_the_tunings_too(name, kind, backbones):
    method, model = _loaded(name, backbones[kind])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if expected_trainable(method.spec, n, method.options)}
    assert 0 < method.parameter_count.trainable < method.parameter_count.total


@pytest.mark.parametrize("name", ["prompt-bitfit", "head-bitfit"])
def test_bitfit_adds_zero_biases_that_change_nothing_at_the_start(name, backbones):
    """LLaMA's linear layers have no bias: BitFit gives them one at zero."""
    backbone = backbones["llama"]
    spec = method_specs.builtin_methods()[name]
    plain, plain_model = _loaded(method_specs.MethodSpec("plain", spec.objective), backbone)
    method, model = _loaded(name, backbone)
    added = [n for n, _ in model.named_parameters() if n.endswith("bias") and n not in dict(plain_model.named_parameters())]
    assert added and all(torch.count_nonzero(dict(model.named_parameters())[n]) == 0 for n in added)
    batch = method.collate([method.encode(r) for r in sentiment_rows(4, 5)])
    with torch.no_grad():
        got, expected = method.scores(model.eval(), batch), plain.scores(plain_model.eval(), batch)
    assert torch.allclose(got, expected, rtol=0, atol=1e-5)  # the kernels differ (addmm, mm), the sums not


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", BUILTINS)
def test_every_method_trains_and_evaluates(name, kind, backbones):
    spec = method_specs.builtin_methods()[name]
    method = build.build_method(name, SST2, backbones[kind], max_length(name))
    learning_rate = {"full": 3e-3, "fixlayers": 3e-3, "ptuning": 3e-3}.get(spec.tuning, 1e-2)
    config = TrainConfig(max_steps=24, learning_rate=learning_rate, batch_size=8, eval_every=8,
                               precision="fp32", warmup_ratio=0.1)
    features = {part: [method.encode(r) for r in sentiment_rows(n, s)] for part, n, s in
                (("train", 32, 1), ("dev", 8, 2), ("test", 16, 3))}
    runtime.seed_everything(0)
    model = method.load_model()
    result = loop.fit(method, model, features["train"], features["dev"], features["test"], SST2, config, 0,
                       torch.device("cpu"), "fp32", progress=False)
    assert len(result.losses) == 24 and all(math.isfinite(loss) for loss in result.losses)
    assert set(result.test) == {"acc", "f1", "macro_f1", "mcc"} and len(result.dev_curve) == 3


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", BUILTINS)
def test_steps_on_one_batch_lower_its_loss(name, kind, backbones):
    """The optimizer moves what trains the right way. One fixed batch, not fit's shuffled ones: a
    soft prompt on a random frozen model moves the loss too little to show through batch noise."""
    method, model = _loaded(name, backbones[kind])
    batch = method.collate([method.encode(r) for r in sentiment_rows(8, 4)])

    def loss() -> float:
        with torch.no_grad():
            return float(method.loss(method.scores(model.eval(), batch), batch))

    before = loss()
    _steps(method, model, 8, learning_rate=3e-3)
    assert loss() < before


@pytest.mark.parametrize("name", BUILTINS)
def test_bf16_autocast_runs_every_method(name, backbones):
    method, model = _loaded(name, backbones["llama"])
    batch = method.collate([method.encode(r) for r in sentiment_rows(4, 5)])
    with runtime.autocast(torch.device("cpu"), "bf16"):
        loss = method.loss(method.scores(model, batch), batch)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert torch.isfinite(loss) and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["prompt", "prompt-lora", "head-probe", "prompt-fixlayers"])
def test_the_best_state_keeps_only_what_trains_and_restores_it(name, backbones):
    method, model = _loaded(name, backbones["roberta"])
    snapshot = loop._Snapshot()
    snapshot.save(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(snapshot.state) == trainable | {n for n, _ in model.named_buffers()}
    saved = {n: p.detach().clone() for n, p in model.named_parameters()}
    _steps(method, model, 2)
    snapshot.restore(model)
    for n, p in model.named_parameters():
        assert torch.equal(p, saved[n]), n


@pytest.mark.parametrize(
    "definition, message",
    [
        ({"objective": "prompt", "tuning": "lora", "options": {"r": 0}}, "option r must be an integer >= 1, got 0"),
        ({"objective": "prompt", "tuning": "lora", "options": {"rank": 4}}, "'rank' is not an option of its parts (tuning lora: r, alpha, dropout)"),
        ({"objective": "prompt", "tuning": "lora", "options": {"dropout": 1.5}}, "option dropout must be a number >= 0 and < 1"),
        ({"objective": "prompt", "tuning": "frozen"}, "tuning frozen does not combine with objective prompt"),
        ({"objective": "prompt", "tuning": "fixlayers", "options": {"layers": 2.5}}, "option layers must be an integer"),
        ({"objective": "answer", "tuning": "full"}, "unknown objective 'answer'"),
        ({"objective": "head", "tuning": "adapters"}, "unknown tuning 'adapters'"),
    ],
)
def test_bad_parts_or_options_are_one_clear_error(definition, message):
    with pytest.raises(PromptworthError, match=re.escape(message)):
        method_specs.define({"name": "mine", **definition})


def test_too_many_frozen_layers_is_an_error_naming_the_model_s_layers(backbones):
    spec = method_specs.define({"name": "mine", "objective": "prompt", "tuning": "fixlayers", "options": {"layers": 3}})
    layers = architecture.layer_count(backbones["llama"].config)
    assert layers < 3
    with pytest.raises(PromptworthError, match=f"option layers is 3, but the model has {layers} layers"):
        build.build_method(spec, SST2, backbones["llama"], 48)


def test_fixlayers_freezes_half_the_layers_by_default_and_takes_a_number(backbones):
    backbone = backbones["roberta"]
    total = architecture.layer_count(backbone.config)
    assert build.build_method("prompt-fixlayers", SST2, backbone, 48).options == {"layers": total // 2}
    spec = method_specs.define({"name": "fix-all", "objective": "prompt", "tuning": "fixlayers", "options": {"layers": total}})
    method, model = _loaded(spec, backbone)
    assert not any(p.requires_grad for n, p in model.named_parameters() if _layer_index(n) is not None)
    assert method.parts() == {"objective": "prompt", "tuning": "fixlayers", "options": {"layers": total}, "extras": []}


def test_a_soft_prompt_starts_from_the_template_s_words_and_goes_before_the_input(backbones):
    backbone = backbones["llama"]
    method, model = _loaded("softprompt", backbone)
    words = backbone.tokenizer("It was .", add_special_tokens=False)["input_ids"]  # "{text_a} It was {mask}."
    ids = [words[i % len(words)] for i in range(method.options["tokens"])]
    assert method.options == {"tokens": 16, "init": "template"}
    assert torch.equal(model.soft_prompt.weight, model.get_input_embeddings().weight[ids])
    row = sentiment_rows(1, 5)[0]
    feature = method.encode(row)
    with torch.no_grad():
        got = method.tuning.hidden_states(model, model.base_model, {"input_ids": torch.tensor(feature.sequences),
                                                                 "attention_mask": torch.ones(1, len(feature.sequences[0]), dtype=torch.long)})
        embeds = torch.cat([model.soft_prompt.weight, model.get_input_embeddings()(torch.tensor(feature.sequences[0]))])
        expected = model.base_model(inputs_embeds=embeds[None]).last_hidden_state[:, len(ids):]
    assert got.shape == (1, len(feature.sequences[0]), backbone.config.hidden_size)
    assert torch.allclose(got, expected, atol=1e-6)
    vocab = method_specs.define({"name": "sp-vocab", "objective": "prompt", "tuning": "softprompt",
                                 "options": {"tokens": 4, "init": "vocab"}})
    _, other = _loaded(vocab, backbone)
    assert other.soft_prompt.weight.shape == (4, backbone.config.hidden_size)
    with pytest.raises(PromptworthError, match="option init must be one of template, vocab, got 'zeros'"):
        method_specs.define({"name": "sp", "objective": "prompt", "tuning": "softprompt", "options": {"init": "zeros"}})
    with pytest.raises(PromptworthError, match="tuning softprompt does not combine with objective head"):
        method_specs.define({"name": "sp", "objective": "head", "tuning": "softprompt"})


def test_ptuning_s_prompt_comes_from_an_encoder_and_the_model_trains_too(backbones):
    method, model = _loaded("ptuning", backbones["roberta"])
    vectors = model.soft_prompt.vectors()
    assert vectors.shape == (8, backbones["roberta"].config.hidden_size) and vectors.requires_grad
    assert all(p.requires_grad for p in model.parameters())
    lstm = method_specs.define({"name": "pt-lstm", "objective": "prompt", "tuning": "ptuning",
                                "options": {"encoder": "lstm", "tokens": 3}})
    _, other = _loaded(lstm, backbones["roberta"])
    assert any(isinstance(m, torch.nn.LSTM) for m in other.soft_prompt.modules())
    assert other.soft_prompt.vectors().shape[0] == 3


def test_a_prefix_is_the_cache_of_the_template_s_words_on_a_causal_lm(backbones):
    """Started from the template's words, a prefix on a causal LM is exactly those words' key/value
    cache: the input's states are those of the words followed by the input."""
    backbone = backbones["llama"]
    spec = method_specs.define({"name": "pre4", "objective": "prompt", "tuning": "prefix", "options": {"tokens": 4}})
    method, model = _loaded(spec, backbone)
    words = backbone.tokenizer("It was .", add_special_tokens=False)["input_ids"]
    ids = [words[i % len(words)] for i in range(4)]
    config = backbone.config
    assert model.prefix.weight.shape == (architecture.layer_count(config), 2, config.num_key_value_heads, 4,
                                         config.hidden_size // config.num_attention_heads)
    features = [method.encode(row) for row in sentiment_rows(3, 5)]
    batch = method.collate(features)  # right-padded: rows of different lengths
    assert batch["attention_mask"].min() == 0
    with torch.no_grad():
        got = method.tuning.hidden_states(model, model.base_model, model_inputs(batch))
        rows = batch["input_ids"].shape[0]
        expected = model.base_model(
            input_ids=torch.cat([torch.tensor(ids).expand(rows, -1), batch["input_ids"]], dim=1),
            attention_mask=torch.cat([torch.ones(rows, 4, dtype=torch.long), batch["attention_mask"]], dim=1),
        ).last_hidden_state[:, 4:]
    real = batch["attention_mask"].bool()
    assert torch.allclose(got[real], expected[real], atol=1e-5)


@pytest.mark.parametrize("kind", ["roberta", "bert", "gpt2", "llama"])
def test_a_prefix_changes_what_every_backbone_computes_and_trains_under_bf16(kind, backbones):
    method, model = _loaded("prefix", backbones[kind])
    batch = method.collate([method.encode(r) for r in sentiment_rows(4, 5)])
    plain, plain_model = _loaded(method_specs.MethodSpec("plain", "prompt"), backbones[kind])
    with torch.no_grad():
        assert not torch.allclose(method.scores(model.eval(), batch), plain.scores(plain_model.eval(), batch))
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = method.loss(method.scores(model, batch), batch)
    loss.backward()
    assert model.prefix.weight.grad is not None and model.prefix.weight.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.named_parameters() if n != "prefix.weight")
