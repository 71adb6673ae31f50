"""How a run computes, apart from what it trains: the training setting ``engine`` (issue 30's speed levers).

``v2`` is the second edition's pipeline, as it ran: the attention transformers picks (SDPA's CPU
flash kernel for Llama and Gemma), gradient clipping as a pass of its own before the fused AdamW
step, a frozen backbone's forward pass computed again at every step and every evaluation, and a
trained embedding's dense gradient with AdamW over its whole table.

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
  (:meth:`promptworth.methods.objectives.base.Method.keep_frozen_features`);
- **a trained embedding updated on the rows its gradients touched**: the embedding's gradient is
  sparse (its rows), and AdamW updates the rows some step has touched
  (:class:`promptworth.training.sparse_rows.SparseRows`; exact with weight decay 0, the lever is
  off with weight decay): no dense gradient of the whole table, no clipping or AdamW pass over rows
  that cannot move.

``v4`` takes v3's levers and one more:

- **training batches packed without padding**: a batch's sequences side by side in one row, whose
  ``position_ids`` restart at each sequence (:func:`promptworth.methods.features.pack`), which
  transformers' causal models read as separate sequences (each attends to itself only). A padded
  batch of the study's tasks is 1.5-1.8x its real tokens at batch 8 (benchmarks/padding.py), and a
  step's matmuls grow with its tokens. Only on the causal model types whose packed reading is
  tested (:data:`PACKABLE_MODEL_TYPES`), for a method that adds nothing before the input (a soft
  prompt, a prefix) and keeps no frozen features; evaluation keeps its padded batches sorted by
  length (little padding there).

``v5`` takes v4's levers and one more:

- **a packed row's attention sequence by sequence**: read by eager attention as transformers
  builds it, a packed row is one long sequence under a block-diagonal mask, whose scores, mask
  and softmax grow with the square of the batch's tokens (RTE's rows: the step's largest cost
  after the linear layers' matmuls, on SmolLM2); :mod:`promptworth.training.packed_attention`
  computes each sequence's eager attention on its own block, as in a padded batch, and leaves the
  linear layers packed. Where a run packs and eager attention applies; evaluation's padded
  batches take the model's eager attention as before.

Each lever is deterministic (the same run twice gives the same record, timing aside, on one CPU
and thread count). Eager attention and the folded clipping round differently from v2's kernels,
and the sparse embedding gradient sums a token's repeats in another order (a v3 run is not v2's run
to the last bit); the kept features are the very states v2 computes again, and the rows' AdamW the
very update of the dense one (tests/test_engine.py). What was left out, and why: docs/performance.md.

Under fp16 (a GPU without bf16: precision fp16), the loss is scaled (``torch.amp.GradScaler``) so
that small gradients survive fp16, and a step whose gradients overflowed is skipped; the scaler
takes the fused kernel's ``grad_scale`` for itself, so clipping is a pass of its own and the
embedding's update dense there, whatever the engine (the record's ``levers`` say so).

A record says which engine made it (``hyperparameters.engine``; a record from before the setting
was made by ``v2``) and what each lever did in that run (``levers``); a study reuses only a record
of the engine it asks for (:mod:`promptworth.study.reuse`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch

from promptworth.methods.features import Batch, pack
from promptworth.methods.objectives.base import Method
from promptworth.training import packed_attention
from promptworth.training.settings import ENGINES, TrainConfig
from promptworth.training.sparse_rows import SparseRows

# The longest sequence (positions) a run may have for eager attention to pay (measured on AMD EPYC
# with avx512_bf16 at 25 to 256 tokens: training steps gain, evaluations break even: docs/performance.md).
EAGER_MAX_POSITIONS = 256

# Causal model types whose transformers code reads a packed row (position_ids that restart at each
# sequence, no attention mask, no cache) as separate sequences: each tested against the same
# sequences padded (tests/test_engine.py). Rotary positions: a sequence's positions are its own.
PACKABLE_MODEL_TYPES = frozenset({"llama", "gemma3_text"})


@dataclass(frozen=True)
class Levers:
    """What an engine does: eager attention up to how many positions (0: never), clipping inside
    the fused optimizer step, a frozen backbone's features kept, a trained embedding's AdamW on
    the rows its gradients touched, training batches packed without padding."""

    eager_up_to: int
    clip_in_optimizer: bool
    keep_frozen_features: bool
    sparse_embedding: bool
    pack_batches: bool = False
    attend_by_sequence: bool = False

    def __post_init__(self) -> None:
        if self.sparse_embedding and not self.clip_in_optimizer:
            raise ValueError("the embedding's rows are clipped inside the fused kernel, as the other weights: "
                             "sparse_embedding needs clip_in_optimizer")
        if self.attend_by_sequence and not (self.pack_batches and self.eager_up_to > 0):
            raise ValueError("attention sequence by sequence is eager attention over packed rows: "
                             "attend_by_sequence needs pack_batches and eager_up_to")


LEVERS = {
    "v2": Levers(eager_up_to=0, clip_in_optimizer=False, keep_frozen_features=False, sparse_embedding=False),
    "v3": Levers(eager_up_to=EAGER_MAX_POSITIONS, clip_in_optimizer=True, keep_frozen_features=True,
                 sparse_embedding=True),
    "v4": Levers(eager_up_to=EAGER_MAX_POSITIONS, clip_in_optimizer=True, keep_frozen_features=True,
                 sparse_embedding=True, pack_batches=True),
    "v5": Levers(eager_up_to=EAGER_MAX_POSITIONS, clip_in_optimizer=True, keep_frozen_features=True,
                 sparse_embedding=True, pack_batches=True, attend_by_sequence=True),
}
assert tuple(LEVERS) == ENGINES


def _attention(model: torch.nn.Module, method: Method, config: TrainConfig, levers: Levers, packs: bool) -> str:
    """Eager attention when the run's longest sequence fits the lever, sequence by sequence over
    packed rows where the run packs and the engine takes that lever; the implementation used
    ("none": the model is no transformers model, e.g. the majority class's)."""
    if not hasattr(model, "set_attn_implementation"):
        return "none"
    if config.max_length + method.input_vectors + method.prefix_positions <= levers.eager_up_to:
        model.set_attn_implementation(packed_attention.register() if packs and levers.attend_by_sequence else "eager")
    return str(model.config._attn_implementation)


def _packs(model: torch.nn.Module, method: Method, levers: Levers, kept: bool) -> bool:
    """Whether the run's training batches are packed: the lever, a causal model type whose packed
    reading is tested, nothing added before the input, no frozen features kept (their batches are
    the kept states')."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return (levers.pack_batches and method.backbone.kind == "causal" and model_type in PACKABLE_MODEL_TYPES
            and method.input_vectors == 0 and method.prefix_positions == 0 and not kept)


def _sparse_rows(model: torch.nn.Module, config: TrainConfig, levers: Levers) -> SparseRows | None:
    """The trained input embedding's rows optimizer, where the lever may take it: AdamW without
    weight decay (with it, every row moves every step), beside other trained weights (whose
    optimizer's schedule it follows)."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if not (levers.sparse_embedding and isinstance(embedding, torch.nn.Embedding) and embedding.weight.requires_grad
            and config.weight_decay == 0 and embedding.max_norm is None):
        return None
    if not any(p.requires_grad and p is not embedding.weight for p in model.parameters()):
        return None
    embedding.sparse = True  # its backward gives the rows it read (a tied output layer: methods read it so too)
    return SparseRows(embedding.weight, betas=(0.9, 0.999), eps=1e-8)  # torch.optim.AdamW's defaults


@dataclass
class RunEngine:
    """The levers as set up for one run: what each did (the record's ``levers``), and how its
    optimizer steps."""

    config: TrainConfig
    levers: dict[str, str]
    rows: SparseRows | None = None
    scaler: torch.amp.GradScaler | None = None  # fp16's loss scaling (None: another precision)
    packs: bool = False  # training batches packed without padding (methods.features.pack)

    def training_batch(self, batch: Batch) -> Batch:
        """A collated training batch as this run's steps take it: packed without padding where the
        engine packs (after the batch's FLOPs are counted: they are its real tokens')."""
        return pack(batch) if self.packs else batch

    def backward(self, loss: torch.Tensor) -> None:
        """The gradients of ``loss`` (scaled under fp16)."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def leave_out(self) -> list[torch.nn.Parameter]:
        """The parameters the fused optimizer does not hold (:meth:`step` updates them)."""
        return [self.rows.weight] if self.rows is not None else []

    def step(self, optimizer: torch.optim.Optimizer, params: Sequence[torch.nn.Parameter]) -> None:
        """Clip the gradients of ``params`` (every trained parameter) to ``max_grad_norm`` (0: no
        clipping) and take the optimizer step, the way the engine does it."""
        config = self.config
        if self.scaler is not None:  # the gradients unscaled, clipped, and the step skipped where they overflowed
            self.scaler.unscale_(optimizer)
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            self.scaler.step(optimizer)
            self.scaler.update()
            return
        if not LEVERS[config.engine].clip_in_optimizer:
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            return
        dense = [p.grad for p in params if p.grad is not None and not any(p is q for q in self.leave_out())]
        rows = self.rows.gradient() if self.rows is not None else None
        scale = None
        if config.max_grad_norm > 0:
            norms = [torch.nn.utils.get_total_norm(dense, norm_type=2.0)] if dense else []
            norms += [torch.linalg.vector_norm(rows[1])] if rows is not None else []
            total = torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())
            coefficient = torch.clamp(config.max_grad_norm / (total + 1e-6), max=1.0)  # as clip_grad_norm_
            scale = (1.0 / coefficient).to(torch.float32)  # the fused kernel divides each gradient by it
        optimizer.grad_scale = scale
        try:
            optimizer.step()
        finally:
            optimizer.grad_scale = None
        if rows is not None:
            self.rows.step(rows[0], rows[1], float(optimizer.param_groups[0]["lr"]), scale)


def set_up(model: torch.nn.Module, method: Method, config: TrainConfig, precision: str = "fp32") -> RunEngine:
    """Apply the levers of ``config.engine`` to a loaded model and its method, for a run in
    ``precision`` (fp16: loss scaling, without the levers that need the fused kernel's
    ``grad_scale``): the run's engine, which says what each lever did in this run (the record's ``levers``)."""
    levers = LEVERS[config.engine]
    trains = any(p.requires_grad for p in model.parameters())
    scaled = trains and precision == "fp16"
    if scaled:
        levers = dataclasses.replace(levers, clip_in_optimizer=False, sparse_embedding=False)
    keepable = method.frozen_features(model)
    kept = keepable and levers.keep_frozen_features
    if kept:
        method.keep_frozen_features()
    packs = trains and _packs(model, method, levers, kept)
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    embedding_trains = isinstance(embedding, torch.nn.Module) and any(p.requires_grad for p in embedding.parameters())
    rows = _sparse_rows(model, config, levers) if trains else None
    described = {
        "attention": _attention(model, method, config, levers, packs),
        "grad_clip": "none" if not (trains and config.max_grad_norm > 0)
        else "in_optimizer" if levers.clip_in_optimizer else "separate_pass",
        "frozen_features": ("kept" if levers.keep_frozen_features else "recomputed") if keepable else "none",
        "embedding_update": "none" if not embedding_trains else "touched_rows" if rows is not None else "dense",
    }
    if levers.pack_batches:  # an engine without the lever (v2, v3) has its records' levers as they were
        described["training_batches"] = "none" if not trains else "packed" if packs else "padded"
    # on the device the model trains on (a CPU's scaler: the same logic, for the tests)
    scaler = torch.amp.GradScaler(next(p for p in model.parameters() if p.requires_grad).device.type) if scaled else None
    return RunEngine(config, described, rows, scaler, packs)
