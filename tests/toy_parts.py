"""A toy tuning and a toy extra, defined outside the package: docs/contributing.md shows them as the
worked examples of a new tuning and a new extra, and tests/test_new_parts.py trains with them."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from promptworth.methods.extras.base import ExtraBehaviour
from promptworth.methods.prompt_encoding import EncodedPrompt
from promptworth.methods.tunings.base import TuningBehaviour, new_head, set_trainable


class Norms(TuningBehaviour):
    """Only the layer norms train (and a new head, for the head objective)."""

    def apply(self, model: torch.nn.Module, options: Mapping[str, Any], objective: str,
              prompt_ids: Sequence[int]) -> None:
        head = new_head(model, objective)
        set_trainable(model, lambda name: "norm" in name.lower() or name in head)


class Shout(ExtraBehaviour):
    """Every text field upper-cased before the row is encoded."""

    def encodings(self, method: Any, row: Mapping[str, Any]) -> list[EncodedPrompt]:
        loud = {key: value.upper() if isinstance(value, str) else value for key, value in row.items()}
        return [method.encoder.encode(loud)]
