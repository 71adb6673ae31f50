"""A frozen backbone's features, computed once per distinct sequence and kept for the run.

A head over a frozen backbone (the linear probe: tuning ``frozen``) reads, at every step and every
evaluation, the backbone's hidden state at one position of each sequence; nothing before the head
changes, so the state of a sequence is the same each time. :class:`FrozenFeatures` keeps each
sequence's state the first time a batch needs it: a batch then holds only the sequences not seen
before (their tokens are the work left, and what the FLOP count counts), and the states of all its
sequences are the kept ones. A method keeps them only where that gives the very states it would
compute again: :meth:`promptworth.methods.objectives.base.Method.frozen_features`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from promptworth.methods.features import Batch, Feature, pad

# A sequence and the position read from it: the same tokens read at the same place give the same state.
Key = tuple[tuple[int, ...], int]


def dropout_free(model: torch.nn.Module) -> bool:
    """Whether ``model`` drops nothing in training mode: no dropout module with a positive rate and
    no positive ``*dropout*`` rate in its config (attention dropout is a rate, not a module)."""
    if any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()):
        return False
    config = getattr(model, "config", None)
    rates = [value for name, value in vars(config).items() if "dropout" in name] if config is not None else []
    return not any(isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0 for rate in rates)


class FrozenFeatures:
    """The kept states, by sequence and read position."""

    def __init__(self) -> None:
        self.states: dict[Key, torch.Tensor] = {}

    def collate(self, features: Sequence[Feature], pad_id: int) -> Batch:
        """A batch of ``features`` whose model inputs are only the sequences with no kept state yet
        (each once; none: an empty input)."""
        keys = [(tuple(seq), read) for f in features for seq, read in zip(f.sequences, f.read)]
        new = [key for key in dict.fromkeys(keys) if key not in self.states]
        if new:
            input_ids = pad([key[0] for key in new], pad_id)
            attention = pad([[1] * len(key[0]) for key in new], 0)
        else:
            input_ids = attention = torch.zeros((0, 0), dtype=torch.long)
        return {
            "input_ids": input_ids, "attention_mask": attention,
            "labels": torch.tensor([f.label for f in features], dtype=torch.float),
            "n_examples": len(features), "n_tokens": int(attention.sum()),
            "read": torch.tensor([key[1] for key in new], dtype=torch.long), "keys": keys, "new_keys": new,
        }

    def states_of(self, batch: Batch, compute: Callable[[Batch], torch.Tensor]) -> torch.Tensor:
        """The states of every sequence of ``batch``: ``compute`` (the backbone's states at the read
        positions of the batch's new sequences, without a gradient) for those not kept yet."""
        if batch["new_keys"]:
            with torch.no_grad():
                computed = compute(batch)
            for key, state in zip(batch["new_keys"], computed):
                self.states[key] = state.clone()  # not a view that keeps the batch's hidden states alive
        return torch.stack([self.states[key] for key in batch["keys"]])
