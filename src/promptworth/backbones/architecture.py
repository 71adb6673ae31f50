"""What the code reads of a model, whatever its config spells: masked or causal, layers, hidden
size, position limit, where its LM head and its blocks are.

Generic policies, not per-model quirks: sequences are right-padded (the head objective reads the
last real token explicitly); tied embeddings are counted and snapshotted once."""

from __future__ import annotations

from typing import Any

import torch

from promptworth.backbones.registry import Kind, MLM_TYPES
from promptworth.errors import PromptworthError


def detect_kind(config: Any) -> Kind:
    """``mlm`` or ``causal`` from a transformers config (architectures, then model type). An
    encoder-decoder model (BART, T5, ...: ``config.is_encoder_decoder``) is refused: the methods
    read a label from a masked LM's mask or a causal LM's next token, and neither is its decoder's."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    named = getattr(config, "architectures", None) or []
    model_type = getattr(config, "model_type", None)
    if getattr(config, "is_encoder_decoder", False):
        raise PromptworthError(
            f"model type {model_type!r} ({', '.join(named) or 'no architecture named'}) is an encoder-decoder model: "
            "promptworth fine-tunes masked LMs (BERT, RoBERTa, ...) and causal LMs (GPT-2, Llama, SmolLM2, ...) "
            "only; give one of those")
    architectures = [a.lower() for a in named]
    if any("causallm" in a or "lmhead" in a for a in architectures):
        return "causal"
    if any("maskedlm" in a or "forpretraining" in a for a in architectures):
        return "mlm"
    if model_type in MLM_TYPES:
        return "mlm"
    if getattr(config, "is_decoder", False) or model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "mlm"
    raise PromptworthError(f"cannot tell whether model type {model_type!r} is a masked or a causal LM")


def lm_parts(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(backbone, lm_head)`` of a ``*ForMaskedLM`` / ``*ForCausalLM``: the head is the top-level
    child holding the output embeddings (``lm_head``, BERT's ``cls``)."""
    base = model.base_model
    output = model.get_output_embeddings()
    for _, child in model.named_children():
        if child is not base and any(module is output for module in child.modules()):
            return base, child
    raise PromptworthError(f"cannot find the language-model head of {type(model).__name__}")


# RoBERTa-style models number positions from after the padding index.
PADDING_OFFSET_MODELS = ("roberta", "xlm-roberta", "camembert")


def position_limit(config: Any) -> int | None:
    """The most tokens a backbone's position embeddings take (None: its config does not say);
    a longer sequence would fail inside the model."""
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or isinstance(positions, bool):
        return None
    if getattr(config, "model_type", None) in PADDING_OFFSET_MODELS:
        positions -= (getattr(config, "pad_token_id", None) or 0) + 1
    return positions


def transformer_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The backbone's blocks: the module list with one entry per hidden layer."""
    config = model.config
    count = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    for module in model.base_model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise PromptworthError(f"cannot find the {count} layers of {type(model).__name__}")


def layer_count(config: Any) -> int:
    return int(getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer"))


def hidden_size(config: Any) -> int:
    return int(getattr(config, "hidden_size", None) or getattr(config, "n_embd"))
