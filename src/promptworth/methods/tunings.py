"""Tunings: which parameters of a loaded model train, and what is added to it (the behaviour of
:data:`promptworth.methods.registry.TUNINGS`).

:func:`prepare` runs once, right after the method has loaded its model (and a new head has been
initialised from the train seed): it adds a tuning's parameters (LoRA's updates, BitFit's missing
biases) and sets ``requires_grad`` of every parameter. The training loop then trains exactly the
parameters that require a gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from promptworth.errors import PromptworthError
from promptworth.methods.registry import TUNINGS
from promptworth.backbones.architecture import hidden_size, layer_count, transformer_layers


@dataclass(frozen=True)
class ParameterCount:
    trainable: int
    total: int

    def as_dict(self) -> dict[str, int]:
        return {"trainable": self.trainable, "total": self.total}


def count_parameters(model: torch.nn.Module) -> ParameterCount:
    """Parameters of ``model``, each counted once (tied weights too)."""
    params = list(model.parameters())  # unique: a tied weight appears once
    return ParameterCount(trainable=sum(p.numel() for p in params if p.requires_grad),
                          total=sum(p.numel() for p in params))


def head_names(model: torch.nn.Module) -> set[str]:
    """Names of the parameters outside the backbone (``base_model``): a sequence classifier's new
    head, or a language model's output layer (without its tied embedding)."""
    base = {id(p) for p in model.base_model.parameters()}
    return {name for name, p in model.named_parameters() if id(p) not in base}


def _peft() -> Any:
    """The PEFT package (LoRA, P-tuning's prompt encoder), or a clear error without it."""
    try:
        import peft
    except ImportError:
        raise PromptworthError("this tuning needs the package peft: pip install -c constraints.txt peft") from None
    return peft


def _set_trainable(model: torch.nn.Module, trainable: Callable[[str], bool]) -> None:
    for name, param in model.named_parameters():
        param.requires_grad_(trainable(name))


def _full(model: torch.nn.Module, options: Mapping[str, Any], objective: str, prompt_ids: Sequence[int]) -> None:
    """Every weight trains (untouched: the model as loaded)."""


def _frozen(model: torch.nn.Module, options: Mapping[str, Any], objective: str, prompt_ids: Sequence[int]) -> None:
    head = head_names(model)
    _set_trainable(model, lambda name: name in head)


def _none(model: torch.nn.Module, options: Mapping[str, Any], objective: str, prompt_ids: Sequence[int]) -> None:
    _set_trainable(model, lambda name: False)


def _new_head(model: torch.nn.Module, objective: str) -> set[str]:
    """What trains besides a tuning's own parameters: the new head of the head objective; a
    language model's own output layer stays as pretrained."""
    return head_names(model) if objective == "head" else set()


def _lora(model: torch.nn.Module, options: Mapping[str, Any], objective: str, prompt_ids: Sequence[int]) -> None:
    peft = _peft()
    head = _new_head(model, objective)
    config = peft.LoraConfig(r=options["r"], lora_alpha=options["alpha"], lora_dropout=options["dropout"])
    try:
        peft.inject_adapter_in_model(config, model)
    except ValueError as exc:  # e.g. no default target modules for this architecture
        raise PromptworthError(f"LoRA cannot be added to {type(model).__name__}: {str(exc).splitlines()[0]}") from None
    _set_trainable(model, lambda name: "lora_" in name or name in head)


def _bitfit(model: torch.nn.Module, options: Mapping[str, Any], objective: str, prompt_ids: Sequence[int]) -> None:
    head = _new_head(model, objective)
    output = model.get_output_embeddings()
    for module in model.base_model.modules():
        if isinstance(module, torch.nn.Linear) and module.bias is None and module is not output:
            # zero: the model computes what it did before training
            module.bias = torch.nn.Parameter(torch.zeros(module.out_features, dtype=module.weight.dtype))
    _set_trainable(model, lambda name: name.endswith("bias") or name in head)


class SoftPrompt(torch.nn.Module):
    """Trainable vectors that :func:`backbone_states` places before every input sequence."""

    def __init__(self, vectors: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(vectors)

    def vectors(self) -> torch.Tensor:
        return self.weight


class EncodedPrompt(torch.nn.Module):
    """P-tuning's prompt: vectors that a prompt encoder makes from ``tokens`` trainable embeddings."""

    def __init__(self, encoder: torch.nn.Module, tokens: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.register_buffer("indices", torch.arange(tokens)[None], persistent=False)

    def vectors(self) -> torch.Tensor:
        return self.encoder(self.indices)[0]


def _ptuning(model: torch.nn.Module, options: Mapping[str, Any], objective: str, prompt_ids: Sequence[int]) -> None:
    peft = _peft()
    hidden = model.get_input_embeddings().weight.shape[1]
    config = peft.PromptEncoderConfig(
        num_virtual_tokens=options["tokens"], token_dim=hidden, encoder_hidden_size=hidden, num_transformer_submodules=1,
        encoder_reparameterization_type=peft.PromptEncoderReparameterizationType[options["encoder"].upper()],
    )
    model.add_module("soft_prompt", EncodedPrompt(peft.PromptEncoder(config), options["tokens"]))


def _initial_tokens(model: torch.nn.Module, options: Mapping[str, Any], prompt_ids: Sequence[int]) -> torch.Tensor:
    """The ``tokens`` real tokens a soft prompt or a prefix starts from: the template's words,
    cycled (``init: template``, where the method has a template), else random vocabulary tokens
    drawn from the train seed."""
    n = options["tokens"]
    if options["init"] == "template" and prompt_ids:
        return torch.tensor([prompt_ids[i % len(prompt_ids)] for i in range(n)])
    return torch.randint(model.get_input_embeddings().weight.shape[0], (n,))


def _softprompt(model: torch.nn.Module, options: Mapping[str, Any], objective: str, prompt_ids: Sequence[int]) -> None:
    ids = _initial_tokens(model, options, prompt_ids)
    model.add_module("soft_prompt", SoftPrompt(model.get_input_embeddings().weight.detach()[ids].clone()))
    _set_trainable(model, lambda name: name.startswith("soft_prompt."))


class Prefix(torch.nn.Module):
    """Prefix tuning's trainable keys and values: ``tokens`` positions at every layer that every
    input token attends to (Li & Liang 2021; P-tuning v2, Liu et al. 2022)."""

    def __init__(self, keys_values: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(keys_values)  # (layers, 2, key/value heads, tokens, head size)

    @property
    def tokens(self) -> int:
        return self.weight.shape[3]

    def cache(self, rows: int, dtype: torch.dtype) -> Any:
        """The prefix as the key/value cache of a batch of ``rows`` sequences; the layers append
        the batch's own keys and values to it."""
        from transformers import DynamicCache

        per_row = self.weight.to(dtype).unsqueeze(2).expand(-1, -1, rows, -1, -1, -1)
        return DynamicCache(ddp_cache_data=[(layer[0], layer[1]) for layer in per_row])


def _prefix(model: torch.nn.Module, options: Mapping[str, Any], objective: str, prompt_ids: Sequence[int]) -> None:
    """The keys and values start as the frozen model's own for real words (Li & Liang's advice
    over random ones), read from a cache the backbone fills."""
    from transformers import DynamicCache

    ids = _initial_tokens(model, options, prompt_ids)[None]
    cache = DynamicCache()
    with torch.no_grad():
        model.base_model(input_ids=ids, attention_mask=torch.ones_like(ids), past_key_values=cache)
    if len(cache.layers) != layer_count(model.config):
        raise PromptworthError(f"prefix tuning needs a key/value cache in every layer, which {type(model).__name__} does not fill")
    keys_values = torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in cache.layers])
    model.add_module("prefix", Prefix(keys_values.float().clone()))
    _set_trainable(model, lambda name: name.startswith("prefix."))


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype the model computes in: autocast's where it is on, else the tensor's."""
    device = tensor.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else tensor.dtype


def backbone_states(model: torch.nn.Module, base: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The backbone's last hidden states of ``inputs``; with a prefix, every token also attends to
    its keys and values; with a soft prompt, the prompt's vectors go before each sequence and their
    states are dropped again, so positions stay the input's."""
    prefix = getattr(model, "prefix", None)
    if prefix is not None:  # every token also attends to the prefix's keys and values
        mask = inputs["attention_mask"]
        rows = mask.shape[0]
        extended = {**inputs, "attention_mask": torch.cat([mask.new_ones(rows, prefix.tokens), mask], dim=1),
                    "past_key_values": prefix.cache(rows, _compute_dtype(prefix.weight))}
        return base(**extended).last_hidden_state
    prompt = getattr(model, "soft_prompt", None)
    if prompt is None:
        return base(**inputs).last_hidden_state
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    embeds = base.get_input_embeddings()(ids)
    vectors = prompt.vectors()
    rows, n = ids.shape[0], vectors.shape[0]
    vectors = vectors.to(embeds.dtype).unsqueeze(0).expand(rows, -1, -1)
    extended = {"inputs_embeds": torch.cat([vectors, embeds], dim=1),
                "attention_mask": torch.cat([mask.new_ones(rows, n), mask], dim=1)}
    if "token_type_ids" in inputs:
        types = inputs["token_type_ids"]
        extended["token_type_ids"] = torch.cat([types.new_zeros(rows, n), types], dim=1)
    return base(**extended).last_hidden_state[:, n:]


def input_vectors(tuning: str, options: Mapping[str, Any]) -> int:
    """Vectors a tuning places before every sequence (a soft prompt's): they go through every layer."""
    return options["tokens"] if tuning in ("softprompt", "ptuning") else 0


def prefix_positions(tuning: str, options: Mapping[str, Any]) -> int:
    """Key/value positions a tuning adds at every layer (a prefix's)."""
    return options["tokens"] if tuning == "prefix" else 0


def _fixlayers(model: torch.nn.Module, options: Mapping[str, Any], objective: str, prompt_ids: Sequence[int]) -> None:
    layers = transformer_layers(model)
    n = options["layers"]
    frozen = {id(p) for layer in layers[:n] for p in layer.parameters()}
    for child in model.base_model.children():  # the embeddings (LM-BFF freezes them too)
        if any(isinstance(m, torch.nn.Embedding) for m in child.modules()) and child is not layers:
            frozen |= {id(p) for p in child.parameters()}
    for param in model.parameters():
        param.requires_grad_(id(param) not in frozen)


TuningFunction = Callable[[torch.nn.Module, Mapping[str, Any], str, Sequence[int]], None]
TUNING_FUNCTIONS: dict[str, TuningFunction] = {
    "full": _full, "lora": _lora, "bitfit": _bitfit, "fixlayers": _fixlayers, "frozen": _frozen,
    "softprompt": _softprompt, "prefix": _prefix, "ptuning": _ptuning, "none": _none,
}


def resolve_options(tuning: str, options: Mapping[str, Any], config: Any, where: str) -> dict[str, Any]:
    """Options with the defaults that depend on the model filled in, checked against it."""
    resolved = dict(options)
    if tuning == "fixlayers":
        total = layer_count(config)
        if resolved["layers"] is None:
            resolved["layers"] = total // 2
        if resolved["layers"] > total:
            raise PromptworthError(f"{where}: option layers is {resolved['layers']}, but the model has {total} layers")
    if tuning == "lora":
        width = hidden_size(config)
        if resolved["r"] > width:
            raise PromptworthError(f"{where}: option r is {resolved['r']}, more than the model's hidden size {width}: "
                                   "a LoRA update of that rank is no low-rank update (it adds more weights than it "
                                   f"adapts); give r of at most {width}")
    return resolved


def prepare(
    model: torch.nn.Module, tuning: str, options: Mapping[str, Any], objective: str, prompt_ids: Sequence[int] = ()
) -> ParameterCount:
    """Apply ``tuning`` to ``model`` in place; the parameters that then train and all of them.
    ``prompt_ids``: the template's own tokens (a soft prompt may start from them)."""
    TUNING_FUNCTIONS[tuning](model, options, objective, prompt_ids)
    count = count_parameters(model)
    if count.trainable == 0 and TUNINGS[tuning].steps:
        raise PromptworthError(f"tuning {tuning} leaves nothing to train in {type(model).__name__}")
    return count
