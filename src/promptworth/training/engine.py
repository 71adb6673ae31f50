"""How a run computes, apart from what it trains: the training setting ``engine`` (issue 30's speed levers).

``v2`` is the second edition's pipeline, as it ran: the attention transformers picks (SDPA's CPU
flash kernel for Llama and Gemma), gradient clipping as a pass of its own before the fused AdamW
step, and a frozen backbone's forward pass computed again at every step and every evaluation.

``v3`` takes the levers that pay on the CPUs measured (docs/performance.md):

- **eager attention** where no sequence of the run can be longer than :data:`EAGER_MAX_POSITIONS`
  (its inputs, with a soft prompt's vectors and a prefix's positions): at the study's lengths
  (~25 tokens for SST-2) SDPA's flash kernel costs more than the four small matmuls it replaces,
  its backward most of all; longer runs keep SDPA (eager attention's memory grows with the
  square of the length);
- **clipping inside the optimizer step**: the gradients' norm as before, but the scale is applied
  by the fused AdamW kernel as it reads each gradient (its ``grad_scale``: it divides by
  ``1 / coefficient``) instead of a separate pass that reads and writes every gradient;
- **a frozen backbone's features computed once**: when nothing before the head trains and the
  backbone has no active dropout, each distinct sequence's hidden state at its read position is
  computed the first time a step or an evaluation needs it and kept for the run
  (:meth:`promptworth.methods.objectives.base.Method.keep_frozen_features`).

Each lever is deterministic (the same run twice gives the same record, timing aside, on one CPU
and thread count). Eager attention and the folded clipping round differently in bf16 from v2's
kernels (a v3 run is not v2's run to the last bit); the kept features are the very states v2
computes again (identical in fp32 where the matmuls do not depend on the batch's composition:
tests/test_engine.py). What was left out, and why: docs/performance.md.

A record says which engine made it (``hyperparameters.engine``; a record from before the setting
was made by ``v2``) and what each lever did in that run (``levers``); a study reuses only a record
of the engine it asks for (:mod:`promptworth.study.reuse`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from promptworth.methods.objectives.base import Method
from promptworth.training.settings import ENGINES, TrainConfig

# The longest sequence (positions) a run may have for eager attention to pay (measured on AMD EPYC
# with avx512_bf16 at 25, 128 and 256 tokens: docs/performance.md).
EAGER_MAX_POSITIONS = 160


@dataclass(frozen=True)
class Levers:
    """What an engine does: eager attention up to how many positions (0: never), clipping inside
    the fused optimizer step, a frozen backbone's features kept."""

    eager_up_to: int
    clip_in_optimizer: bool
    keep_frozen_features: bool


LEVERS = {
    "v2": Levers(eager_up_to=0, clip_in_optimizer=False, keep_frozen_features=False),
    "v3": Levers(eager_up_to=EAGER_MAX_POSITIONS, clip_in_optimizer=True, keep_frozen_features=True),
}
assert tuple(LEVERS) == ENGINES


def _attention(model: torch.nn.Module, method: Method, config: TrainConfig, levers: Levers) -> str:
    """Eager attention when the run's longest sequence fits the lever; the implementation used."""
    longest = config.max_length + method.input_vectors + method.prefix_positions
    if longest <= levers.eager_up_to and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    return str(getattr(model.config, "_attn_implementation", None) or "unknown")


def set_up(model: torch.nn.Module, method: Method, config: TrainConfig) -> dict[str, Any]:
    """Apply the levers of ``config.engine`` to a loaded model and its method; what each did in this
    run (the record's ``levers``)."""
    levers = LEVERS[config.engine]
    trains = any(p.requires_grad for p in model.parameters())
    keepable = method.frozen_features(model)
    if keepable and levers.keep_frozen_features:
        method.keep_frozen_features()
    return {
        "attention": _attention(model, method, config, levers),
        "grad_clip": "none" if not (trains and config.max_grad_norm > 0)
        else "in_optimizer" if levers.clip_in_optimizer else "separate_pass",
        "frozen_features": ("kept" if levers.keep_frozen_features else "recomputed") if keepable else "none",
    }


def optimizer_step(optimizer: torch.optim.Optimizer, params: Sequence[torch.nn.Parameter], config: TrainConfig) -> None:
    """Clip the gradients to ``config.max_grad_norm`` (0: no clipping) and take the optimizer step,
    the way ``config.engine`` does it."""
    if config.max_grad_norm <= 0:
        optimizer.step()
        return
    if not LEVERS[config.engine].clip_in_optimizer:
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        return
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    coefficient = torch.clamp(config.max_grad_norm / (total + 1e-6), max=1.0)  # as clip_grad_norm_
    # the fused kernel divides each gradient by grad_scale as it reads it (torch.optim.AdamW, fused)
    optimizer.grad_scale = (1.0 / coefficient).to(torch.float32)
    try:
        optimizer.step()
    finally:
        optimizer.grad_scale = None
