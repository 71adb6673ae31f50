"""``bitfit``: only the biases train (Ben Zaken et al. 2022), and a new head."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from promptworth.methods.tunings.base import TuningBehaviour, new_head, set_trainable


class BitFit(TuningBehaviour):
    def apply(self, model: torch.nn.Module, options: Mapping[str, Any], objective: str,
              prompt_ids: Sequence[int]) -> None:
        head = new_head(model, objective)
        output = model.get_output_embeddings()
        for module in model.base_model.modules():
            if isinstance(module, torch.nn.Linear) and module.bias is None and module is not output:
                # zero: the model computes what it did before training
                module.bias = torch.nn.Parameter(torch.zeros(module.out_features, dtype=module.weight.dtype))
        set_trainable(model, lambda name: name.endswith("bias") or name in head)
