"""``prefix``: prefix tuning (Li & Liang 2021; P-tuning v2): trainable keys and values at every
layer that every input token attends to, the model frozen."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from promptworth.backbones.architecture import layer_count
from promptworth.errors import PromptworthError
from promptworth.methods.tunings.base import TuningBehaviour, initial_tokens, set_trainable


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


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype the model computes in: autocast's where it is on, else the tensor's."""
    device = tensor.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else tensor.dtype


class PrefixTuning(TuningBehaviour):
    def apply(self, model: torch.nn.Module, options: Mapping[str, Any], objective: str,
              prompt_ids: Sequence[int]) -> None:
        """The keys and values start as the frozen model's own for real words (Li & Liang's advice
        over random ones), read from a cache the backbone fills."""
        from transformers import DynamicCache

        ids = initial_tokens(model, options, prompt_ids)[None]
        cache = DynamicCache()
        with torch.no_grad():
            model.base_model(input_ids=ids, attention_mask=torch.ones_like(ids), past_key_values=cache)
        if len(cache.layers) != layer_count(model.config):
            raise PromptworthError(f"prefix tuning needs a key/value cache in every layer, which {type(model).__name__} does not fill")
        keys_values = torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in cache.layers])
        model.add_module("prefix", Prefix(keys_values.float().clone()))
        set_trainable(model, lambda name: name.startswith("prefix."))

    def prefix_positions(self, options: Mapping[str, Any]) -> int:
        return options["tokens"]

    def hidden_states(self, model: torch.nn.Module, base: torch.nn.Module,
                      inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Every token also attends to the prefix's keys and values."""
        prefix = model.prefix
        mask = inputs["attention_mask"]
        rows = mask.shape[0]
        extended = {**inputs, "attention_mask": torch.cat([mask.new_ones(rows, prefix.tokens), mask], dim=1),
                    "past_key_values": prefix.cache(rows, _compute_dtype(prefix.weight))}
        return base(**extended).last_hidden_state
