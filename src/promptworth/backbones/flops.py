"""Model FLOPs that a run really does: the work an MFU figure divides by time.

Counted honestly for these methods:

* the matmuls of the transformer blocks: 2 FLOPs per non-embedding weight per token forward
  (the embedding lookup is a gather, no matmul, so embedding parameters count for nothing);
* attention: ``QK^T`` and ``AV``, 2 x 2 x length x hidden FLOPs per token and layer forward
  (the full square, as MFU conventions count it);
* the output layer only where the method computes it: the label words' rows at the answer slot
  (prompt), or a new classifier at one position (head), never the whole vocabulary at every token;
* training = 3 x forward (the backward pass costs twice the forward).

Norms, activations, the loss and the optimizer are not matmuls and are not counted: they are
time the MFU charges to the implementation, as it should.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch

BACKWARD_FACTOR = 3  # forward + backward (2x forward)


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP count needs to know of a backbone."""

    non_embedding_params: int  # weights of the blocks' linear layers (not embeddings, not the LM head)
    layers: int
    hidden: int


def _is_matmul(module: torch.nn.Module) -> bool:
    # Linear, and GPT-2's Conv1D (a linear layer with transposed weights)
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def model_shape(model: torch.nn.Module) -> ModelShape:
    """The shape of a transformers model: the linear layers of its base model (the blocks), its
    layer count and hidden size from its config."""
    base = getattr(model, "base_model", model)
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weights = sum(
        module.weight.numel() for module in base.modules() if _is_matmul(module) and module is not output
    )
    config = model.config
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer")
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd")
    return ModelShape(non_embedding_params=int(weights), layers=int(layers), hidden=int(hidden))


def forward_flops(
    shape: ModelShape, lengths: Sequence[int], output_rows: int, reads: int, input_vectors: int = 0, prefix: int = 0
) -> int:
    """Forward FLOPs of sequences of ``lengths`` real tokens, plus an output layer of
    ``output_rows`` rows applied at ``reads`` positions. ``input_vectors``: vectors placed before
    every sequence (a soft prompt's: they go through the blocks like tokens); ``prefix``: key/value
    positions every token also attends to at every layer."""
    blocks = 0
    for n in lengths:
        n += input_vectors
        blocks += 2 * shape.non_embedding_params * n + 4 * shape.layers * shape.hidden * n * (n + prefix)
    return int(blocks + 2 * shape.hidden * output_rows * reads)


def matmul_peak_gflops(dtype: torch.dtype = torch.bfloat16, size: int = 2048, threads: int = 2, repeats: int = 5) -> float:
    """The reference peak of every MFU figure: a ``size`` x ``size`` matmul in ``dtype`` with
    ``threads`` threads, best of ``repeats`` rounds of 3 (GFLOP/s). The caller's thread count is
    restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        for _ in range(2):
            a @ b
        best = 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(3):
                a @ b
            best = max(best, 3 * 2 * size**3 / (time.perf_counter() - start))
    finally:
        torch.set_num_threads(before)
    return best / 1e9


def matmul_peaks(fast_bf16: bool, threads: int = 2) -> dict[str, float | None]:
    """The 2048² reference peaks of a CPU: fp32, and bf16 where it has fast bf16 (None where it
    emulates bf16 at a few GFLOP/s: measuring it there takes minutes and means nothing)."""
    return {
        "bf16_matmul_2048_gflops": matmul_peak_gflops(torch.bfloat16, 2048, threads) if fast_bf16 else None,
        "fp32_matmul_2048_gflops": matmul_peak_gflops(torch.float32, 2048, threads),
    }
