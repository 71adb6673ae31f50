"""``ptuning``: P-tuning (Liu et al. 2021): a soft prompt made by a prompt encoder from trainable
embeddings; the model trains too."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from promptworth.methods.tunings.base import peft_package
from promptworth.methods.tunings.softprompt import SoftPromptTuning


class EncodedPrompt(torch.nn.Module):
    """P-tuning's prompt: vectors that a prompt encoder makes from ``tokens`` trainable embeddings."""

    def __init__(self, encoder: torch.nn.Module, tokens: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.register_buffer("indices", torch.arange(tokens)[None], persistent=False)

    def vectors(self) -> torch.Tensor:
        return self.encoder(self.indices)[0]


class PTuning(SoftPromptTuning):
    def apply(self, model: torch.nn.Module, options: Mapping[str, Any], objective: str,
              prompt_ids: Sequence[int]) -> None:
        peft = peft_package()
        hidden = model.get_input_embeddings().weight.shape[1]
        config = peft.PromptEncoderConfig(
            num_virtual_tokens=options["tokens"], token_dim=hidden, encoder_hidden_size=hidden, num_transformer_submodules=1,
            encoder_reparameterization_type=peft.PromptEncoderReparameterizationType[options["encoder"].upper()],
        )
        model.add_module("soft_prompt", EncodedPrompt(peft.PromptEncoder(config), options["tokens"]))
