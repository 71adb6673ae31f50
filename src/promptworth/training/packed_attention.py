"""Eager attention that reads a packed row sequence by sequence (engine v5's attention).

A packed training batch (:func:`promptworth.methods.features.pack`) is one row whose positions
restart at each sequence. Read by eager attention as transformers builds it, that row is one
sequence of all the batch's tokens under a block-diagonal mask: its scores, mask and softmax grow
with the square of the row's length (8 sequences of RTE: ~650 tokens, several times the scores of
the same sequences padded): on SmolLM2 the step's largest cost after the linear layers' matmuls.
Here each packed sequence attends to itself only, as in a padded batch: the row's queries, keys
and values are gathered into one padded block per sequence (the batch's padded shape, for
attention alone), and the eager computation (scores, causal mask, softmax in fp32, values) runs
on those blocks; the result is scattered back into the row. The linear layers keep the packed row
(no padded tokens).

A padded batch (one with an attention mask: evaluation) takes the model's own eager attention,
unchanged. Registered in transformers' attention and mask interfaces under :data:`NAME`; its mask
function builds eager's mask where a padding mask is given and none for a packed row (no
whole-row mask is made).
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

NAME = "eager_by_sequence"


def sequence_lengths(position_ids: torch.Tensor) -> list[int]:
    """The lengths of the sequences packed in a row of ``position_ids`` (1, tokens): a sequence
    starts where the positions do not go on by one (as transformers reads a packed row)."""
    positions = position_ids.reshape(-1)
    starts = torch.nonzero(positions[1:] - positions[:-1] != 1).reshape(-1) + 1
    bounds = [0, *starts.tolist(), positions.numel()]
    return [end - start for start, end in zip(bounds[:-1], bounds[1:])]


def _blocks(lengths: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For sequences of ``lengths`` side by side in a row: the row index of each slot of a
    (sequences, longest) block, flattened (a padding slot repeats its sequence's first token);
    which slots are real tokens (sequences, longest); and the flat slots of the row's tokens, in order."""
    width = max(lengths)
    offsets = torch.arange(width, device=device).unsqueeze(0)
    length = torch.tensor(lengths, device=device).unsqueeze(1)
    start = torch.cumsum(length, 0) - length
    real = offsets < length
    index = torch.where(real, start + offsets, start).reshape(-1)
    return index, real, torch.nonzero(real.reshape(-1)).reshape(-1)


def _additive_mask(real: torch.Tensor, sliding_window: int | None, dtype: torch.dtype) -> torch.Tensor:
    """(sequences, 1, width, width): 0 where a query may read a key (causal, a real key, inside
    the sliding window where the layer has one), the dtype's lowest value elsewhere (as eager's)."""
    width = real.shape[1]
    query = torch.arange(width, device=real.device).unsqueeze(1)
    key = torch.arange(width, device=real.device).unsqueeze(0)
    allowed = (key <= query).unsqueeze(0) & real.unsqueeze(1)
    if sliding_window is not None:
        allowed = allowed & (query - key < sliding_window).unsqueeze(0)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=real.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min).unsqueeze(1)


def _model_eager(module: torch.nn.Module) -> Callable[..., tuple[torch.Tensor, Any]]:
    """The eager attention of the transformers model that ``module`` belongs to."""
    return sys.modules[type(module).__module__].eager_attention_forward


def attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
              sliding_window: int | None = None, softcap: float | None = None,
              **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: ``query`` (batch, heads, tokens, head size), ``key`` and
    ``value`` (batch, key heads, tokens, head size); the output (batch, tokens, heads, head size)."""
    position_ids = kwargs.get("position_ids")
    # a batch that :func:`mask` masked, or cached keys (decoding): the model's own eager attention
    if attention_mask is not None or position_ids is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return _model_eager(module)(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                    sliding_window=sliding_window, softcap=softcap, **kwargs)
    if softcap is not None:
        raise ValueError(f"{NAME} does not soft-cap attention scores (softcap={softcap})")
    scaling = module.head_dim ** -0.5 if scaling is None else scaling
    index, real, tokens = _blocks(sequence_lengths(position_ids), query.device)
    groups = query.shape[1] // key.shape[1]

    def blocked(states: torch.Tensor) -> torch.Tensor:  # (1, heads, tokens, size) -> (sequences, heads, width, size)
        return states[0].index_select(1, index).unflatten(1, real.shape).transpose(0, 1)

    q, k, v = blocked(query), blocked(key).repeat_interleave(groups, dim=1), blocked(value).repeat_interleave(groups, dim=1)
    scores = torch.matmul(q, k.transpose(2, 3)) * scaling + _additive_mask(real, sliding_window, q.dtype)
    weights = torch.nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    blocks = torch.matmul(weights, v).transpose(1, 2).flatten(0, 1)  # (sequences x width, heads, size)
    return blocks.index_select(0, tokens).unsqueeze(0), None  # the real slots, in the row's order


def mask(batch_size: int, *args: Any, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor | None:
    """transformers' mask interface: none for one row without a padding mask (a packed row:
    :func:`attention` masks each sequence's block itself), eager's mask for every other batch."""
    if attention_mask is None and batch_size == 1:
        return None
    return eager_mask(batch_size, *args, attention_mask=attention_mask, **kwargs)


def register() -> str:
    """Make :data:`NAME` an attention implementation transformers' models can be set to; its name."""
    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, mask)
    return NAME
