"""``full``: every weight trains (the model as loaded)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from promptworth.methods.tunings.base import TuningBehaviour


class Full(TuningBehaviour):
    def apply(self, model: torch.nn.Module, options: Mapping[str, Any], objective: str,
              prompt_ids: Sequence[int]) -> None:
        """Every weight trains (untouched: the model as loaded)."""
