"""``softprompt``: trainable vectors before every input sequence, the model frozen (Lester et al. 2021)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from promptworth.methods.tunings.base import TuningBehaviour, initial_tokens, set_trainable


class SoftPrompt(torch.nn.Module):
    """Trainable vectors that :meth:`SoftPromptTuning.hidden_states` places before every input sequence."""

    def __init__(self, vectors: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(vectors)

    def vectors(self) -> torch.Tensor:
        return self.weight


class SoftPromptTuning(TuningBehaviour):
    def apply(self, model: torch.nn.Module, options: Mapping[str, Any], objective: str,
              prompt_ids: Sequence[int]) -> None:
        ids = initial_tokens(model, options, prompt_ids)
        model.add_module("soft_prompt", SoftPrompt(model.get_input_embeddings().weight.detach()[ids].clone()))
        set_trainable(model, lambda name: name.startswith("soft_prompt."))

    def input_vectors(self, options: Mapping[str, Any]) -> int:
        return options["tokens"]

    def hidden_states(self, model: torch.nn.Module, base: torch.nn.Module,
                      inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The prompt's vectors go before each sequence and their states are dropped again, so
        positions stay the input's."""
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        embeds = base.get_input_embeddings()(ids)
        vectors = model.soft_prompt.vectors()
        rows, n = ids.shape[0], vectors.shape[0]
        vectors = vectors.to(embeds.dtype).unsqueeze(0).expand(rows, -1, -1)
        extended = {"inputs_embeds": torch.cat([vectors, embeds], dim=1),
                    "attention_mask": torch.cat([mask.new_ones(rows, n), mask], dim=1)}
        if "token_type_ids" in inputs:
            types = inputs["token_type_ids"]
            extended["token_type_ids"] = torch.cat([types.new_zeros(rows, n), types], dim=1)
        return base(**extended).last_hidden_state[:, n:]
