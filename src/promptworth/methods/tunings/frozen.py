"""``frozen``: only the new head trains (a linear probe of the frozen model)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from promptworth.methods.tunings.base import TuningBehaviour, head_names, set_trainable


class Frozen(TuningBehaviour):
    def apply(self, model: torch.nn.Module, options: Mapping[str, Any], objective: str,
              prompt_ids: Sequence[int]) -> None:
        head = head_names(model)
        set_trainable(model, lambda name: name in head)
