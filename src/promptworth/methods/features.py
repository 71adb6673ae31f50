"""An encoded row (:class:`Feature`), a padded batch of them, and the same batch packed."""

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


def pack(batch: Batch) -> Batch:
    """A padded batch's sequences side by side in one row, without padding: ``position_ids``
    restart at each sequence, which transformers' causal models read as separate sequences (each
    attends to itself only), and ``sequence_starts`` says where each begins. The rest of the batch
    (labels, read positions, counts) stays as it is."""
    mask = batch["attention_mask"].bool()
    lengths = mask.sum(dim=1)
    packed = {key: value for key, value in batch.items() if key not in ("input_ids", "attention_mask")}
    packed.update(
        input_ids=batch["input_ids"][mask].unsqueeze(0),  # row by row: the sequences in order
        position_ids=torch.cat([torch.arange(n) for n in lengths.tolist()]).unsqueeze(0),
        sequence_starts=torch.cumsum(lengths, 0) - lengths,
    )
    return packed


def flat_index(batch: Batch, sequence: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Where position ``position`` of sequence ``sequence`` is in the batch's hidden states
    flattened to (tokens, hidden size): a packed batch's sequences start where ``sequence_starts``
    says, a padded one's every ``width`` tokens."""
    if "sequence_starts" in batch:
        return batch["sequence_starts"][sequence] + position
    return sequence * batch["input_ids"].shape[1] + position


def model_inputs(batch: Batch) -> dict[str, Any]:
    """The backbone's arguments: a packed batch's positions, without a cache (with one,
    transformers would not read the restarting positions as separate sequences)."""
    if "sequence_starts" in batch:
        return {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "use_cache": False}
    keys = ("input_ids", "attention_mask", "token_type_ids")
    return {k: batch[k] for k in keys if k in batch}


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
