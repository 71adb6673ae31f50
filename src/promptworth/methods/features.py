"""An encoded row (:class:`Feature`) and a padded batch of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch


@dataclass
class Feature:
    """One encoded row: one or more token sequences plus what the method reads from them."""

    sequences: list[list[int]]
    label: float
    type_ids: list[list[int]] | None = None
    # prompt: (sequence, position, token, candidate) terms; candidate -> label
    terms: list[tuple[int, int, int, int]] = field(default_factory=list)
    candidate_label: list[int] = field(default_factory=list)
    # head: the position whose hidden state feeds the head, per sequence
    read: list[int] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        return sum(len(s) for s in self.sequences)


Batch = dict[str, Any]


def pad(sequences: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Right-pad to the longest sequence (dynamic padding)."""
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), value, dtype=torch.long)
    for i, seq in enumerate(sequences):
        out[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


def base_batch(features: Sequence[Feature], pad_id: int) -> Batch:
    sequences = [s for f in features for s in f.sequences]
    input_ids = pad(sequences, pad_id)
    attention = pad([[1] * len(s) for s in sequences], 0)
    batch: Batch = {
        "input_ids": input_ids,
        "attention_mask": attention,
        "labels": torch.tensor([f.label for f in features], dtype=torch.float),
        "n_examples": len(features),
        "n_tokens": int(attention.sum()),
    }
    if features[0].type_ids is not None:
        batch["token_type_ids"] = pad([t for f in features for t in f.type_ids], 0)
    return batch


def model_inputs(batch: Batch) -> dict[str, torch.Tensor]:
    keys = ("input_ids", "attention_mask", "token_type_ids")
    return {k: batch[k] for k in keys if k in batch}


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
