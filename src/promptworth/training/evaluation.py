"""Evaluation: predictions and metrics of a method's model on a set of features, in batches sorted
by length, with the method's calibration applied; and the FLOPs of a batch."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from promptworth.backbones import flops
from promptworth.data.tasks import TaskSpec
from promptworth.errors import RunFailed
from promptworth.methods.features import Batch, Feature, to_device
from promptworth.methods.objectives.base import Method
from promptworth.training import metrics
from promptworth.training.runtime import autocast
from promptworth.training.settings import TrainConfig


def eval_batches(features: Sequence[Feature], batch_size: int) -> list[list[int]]:
    """Batches of row indices sorted by length (longest first): little padding, OOM shows early."""
    order = sorted(range(len(features)), key=lambda i: -features[i].n_tokens)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@dataclass
class Evaluation:
    metrics: dict[str, float]
    predictions: list[float]
    seconds: float
    flops: int


def batch_flops(method: Method, shape: flops.ModelShape, batch: Batch) -> int:
    """Forward model FLOPs of one batch (its real tokens and what the method's tuning adds to
    them; see promptworth.backbones.flops)."""
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    return flops.forward_flops(shape, lengths, batch["output_rows"], batch["reads"],
                               method.input_vectors, method.prefix_positions)


def _predict_batch(
    method: Method, model: torch.nn.Module, batch: Batch, where: str, content_free_scores: torch.Tensor | None,
) -> np.ndarray:
    scores = method.scores(model, batch).float()
    if content_free_scores is not None:
        scores = method.rescore(scores, content_free_scores)
    # argmax over NaN scores picks class 0 and would look like a plausible accuracy
    if not bool(torch.isfinite(scores).all()):
        raise RunFailed(
            f"the model's scores on {where} are not finite (NaN or inf): the run diverged; "
            "lower --learning-rate or try --precision fp32"
        )
    return method.predict(scores).cpu().numpy()


@torch.no_grad()
def evaluate(
    method: Method, model: torch.nn.Module, features: Sequence[Feature], task: TaskSpec,
    config: TrainConfig, device: torch.device, precision: str, where: str, shape: flops.ModelShape,
    content_free: Sequence[Feature] = (),
) -> Evaluation:
    """Predictions and metrics on ``features``; ``where`` names the evaluation in errors
    ("dev at step 50", "test"); ``shape`` is the model's, for the FLOP count. With
    ``content_free`` features the scores are calibrated by the model's scores on them (now)."""
    start = time.perf_counter()
    model.eval()
    done = 0
    predictions = np.zeros(len(features), dtype=np.float64)
    # one autocast region for every batch: the weights are cast to bf16 once per evaluation, not
    # once per batch (autocast caches the casts within a region; the numbers are the same)
    with autocast(device, precision):
        reference = None
        if content_free:
            batch = method.collate(list(content_free))
            done += batch_flops(method, shape, batch)
            reference = method.scores(model, to_device(batch, device)).float()
        for indices in eval_batches(features, config.eval_batch_size):
            batch = method.collate([features[i] for i in indices])
            done += batch_flops(method, shape, batch)
            predictions[indices] = _predict_batch(method, model, to_device(batch, device), where, reference)
    gold = [f.label for f in features]
    result = metrics.compute(gold, predictions, None if task.is_regression else task.num_labels)
    return Evaluation(metrics=result, predictions=predictions.tolist(), seconds=time.perf_counter() - start, flops=done)
