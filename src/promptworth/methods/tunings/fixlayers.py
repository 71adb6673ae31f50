"""``fixlayers``: the embeddings and the lower layers frozen, the rest trains (LM-BFF's --fix_layers)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from promptworth.backbones.architecture import layer_count, transformer_layers
from promptworth.errors import PromptworthError
from promptworth.methods.tunings.base import TuningBehaviour


class FixLayers(TuningBehaviour):
    def apply(self, model: torch.nn.Module, options: Mapping[str, Any], objective: str,
              prompt_ids: Sequence[int]) -> None:
        layers = transformer_layers(model)
        n = options["layers"]
        frozen = {id(p) for layer in layers[:n] for p in layer.parameters()}
        for child in model.base_model.children():  # the embeddings (LM-BFF freezes them too)
            if any(isinstance(m, torch.nn.Embedding) for m in child.modules()) and child is not layers:
                frozen |= {id(p) for p in child.parameters()}
        for param in model.parameters():
            param.requires_grad_(id(param) not in frozen)

    def resolve_options(self, options: Mapping[str, Any], config: Any, where: str) -> dict[str, Any]:
        resolved = dict(options)
        total = layer_count(config)
        if resolved["layers"] is None:
            resolved["layers"] = total // 2
        if resolved["layers"] > total:
            raise PromptworthError(f"{where}: option layers is {resolved['layers']}, but the model has {total} layers")
        return resolved
