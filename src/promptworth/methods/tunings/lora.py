"""``lora``: low-rank updates of the attention weights (Hu et al. 2021), and a new head."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from promptworth.backbones.architecture import hidden_size
from promptworth.errors import PromptworthError
from promptworth.methods.tunings.base import TuningBehaviour, new_head, peft_package, set_trainable


class Lora(TuningBehaviour):
    def apply(self, model: torch.nn.Module, options: Mapping[str, Any], objective: str,
              prompt_ids: Sequence[int]) -> None:
        peft = peft_package()
        head = new_head(model, objective)
        config = peft.LoraConfig(r=options["r"], lora_alpha=options["alpha"], lora_dropout=options["dropout"])
        try:
            peft.inject_adapter_in_model(config, model)
        except ValueError as exc:  # e.g. no default target modules for this architecture
            raise PromptworthError(f"LoRA cannot be added to {type(model).__name__}: {str(exc).splitlines()[0]}") from None
        set_trainable(model, lambda name: "lora_" in name or name in head)

    def resolve_options(self, options: Mapping[str, Any], config: Any, where: str) -> dict[str, Any]:
        resolved = dict(options)
        width = hidden_size(config)
        if resolved["r"] > width:
            raise PromptworthError(f"{where}: option r is {resolved['r']}, more than the model's hidden size {width}: "
                                   "a LoRA update of that rank is no low-rank update (it adds more weights than it "
                                   f"adapts); give r of at most {width}")
        return resolved
