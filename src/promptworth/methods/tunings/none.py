"""``none``: nothing trains; the model predicts as pretrained (tuning-free prompting)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from promptworth.methods.tunings.base import TuningBehaviour, set_trainable


class NoTuning(TuningBehaviour):
    def apply(self, model: torch.nn.Module, options: Mapping[str, Any], objective: str,
              prompt_ids: Sequence[int]) -> None:
        set_trainable(model, lambda name: False)
