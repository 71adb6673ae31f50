"""One training loop for every method: batches, the optimizer and its schedule, evaluation, fit.

Protocols: ``steps`` trains for exactly ``max_steps`` optimizer steps (LM-BFF); ``epochs`` trains
``epochs`` passes over the training set, clamped to ``[min_steps, max_steps]`` steps (Le Scao &
Rush). AdamW (no decay on biases and norms), linear warmup then linear decay to zero (``schedule``
constant: no decay), gradient clipping. The dev set is evaluated every ``eval_every`` steps and at
the end; the best state (by the task's primary metric, first best wins) is kept in memory and used
for the test set. With ``patience`` N, training stops early once N dev evaluations in a row have not
beaten the best; the record's ``stopped`` says which ended the run ("patience", or "cap": the step
budget). With ``budgets``, the test set is also evaluated at each budget B with the best state among
the dev evaluations up to step B: the result of a B-step run (the record's ``budgets``).

Determinism: the train seed seeds torch (head initialisation, dropout), the batch order and the
demonstrations (``Method.see_split``; a method that encodes a training example afresh at each step
does it in ``Method.train_feature``); the same seed on the same machine and thread count gives the
same metrics.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from promptworth.backbones import flops
from promptworth.data.tasks import TaskSpec
from promptworth.errors import PromptworthError
from promptworth.methods.extras.calibrate import calibrate
from promptworth.methods.features import Batch, Feature, to_device
from promptworth.methods.objectives.base import Method
from promptworth.training import metrics, record as records
from promptworth.training.runtime import autocast
from promptworth.training.settings import TrainConfig


def train_batches(n: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless shuffled batches of row indices; each epoch a new permutation (last batch may be short;
    ``settings.examples_read`` counts what a run of so many steps reads)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


def eval_batches(features: Sequence[Feature], batch_size: int) -> list[list[int]]:
    """Batches of row indices sorted by length (longest first): little padding, OOM shows early."""
    order = sorted(range(len(features)), key=lambda i: -features[i].n_tokens)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def optimizer_for(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [group for group in groups if group["params"]]  # BitFit trains no matrix, LoRA no vector
    # the fused kernel is ~10x faster than the foreach one on CPU (one pass over each tensor)
    return torch.optim.AdamW(groups, lr=config.learning_rate, fused=True)


def linear_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def constant_schedule(optimizer: torch.optim.Optimizer, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The warmup, then the peak rate to the end: no step's rate depends on how long the run is."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (step + 1) / (warmup + 1) if step < warmup else 1.0)


def learning_rate_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of ``config.schedule`` over a run planned for ``total`` steps."""
    warmup = int(config.warmup_ratio * total)
    if config.schedule == "constant":
        return constant_schedule(optimizer, warmup)
    return linear_schedule(optimizer, warmup, total)


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
        scores = calibrate(scores, content_free_scores)
    # argmax over NaN scores picks class 0 and would look like a plausible accuracy
    if not bool(torch.isfinite(scores).all()):
        raise PromptworthError(
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


@dataclass
class BudgetResult:
    """What a run of ``steps`` steps would have ended with: the best dev evaluation at a step up to
    it and the test metrics of that state. ``reached``: the run trained that far (else it ended
    before, by patience or at its cap, and this is its final result)."""

    steps: int
    best_step: int
    dev_score: float | None
    test: dict[str, float]
    reached: bool

    def as_record(self, metric: str) -> dict[str, Any]:
        return {"steps": self.steps, "reached": self.reached, "best_step": self.best_step,
                "dev_score": self.dev_score, "score": self.test.get(metric), "test": self.test}


@dataclass
class TrainResult:
    dev_curve: list[dict[str, float]]
    best_step: int
    dev_score: float | None
    test: dict[str, float]
    steps: int  # taken (fewer than the budget when patience stopped the run)
    budget: int  # the steps the schedule was planned for (TrainConfig.total_steps)
    stopped: str | None  # how training ended (records.STOPPED_*), None when no step is taken
    train_s: float
    eval_s: float
    train_tokens: int
    non_embedding_params: int = 0
    train_flops: int = 0
    eval_flops: int = 0
    losses: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    budgets: list[BudgetResult] | None = None  # None: no budgets asked for, or no test set


class _Snapshot:
    """The best state so far, kept in preallocated CPU buffers (one copy, no reallocation).

    Only what training can change is kept: the trainable parameters (and the buffers, which are
    small). Parameters and buffers are named once each, so tied weights (input and output
    embeddings) are copied once.
    """

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] | None = None

    @staticmethod
    def _tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
        return {**trainable, **dict(model.named_buffers())}

    @torch.no_grad()
    def save(self, model: torch.nn.Module) -> None:
        current = self._tensors(model)
        if self.state is None:
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in current.items()}
        else:
            for k, v in current.items():
                self.state[k].copy_(v)

    @torch.no_grad()
    def restore(self, model: torch.nn.Module) -> None:
        if self.state is not None:
            for k, v in self._tensors(model).items():
                v.copy_(self.state[k])

    @torch.no_grad()
    def swap(self, model: torch.nn.Module) -> None:
        """Exchange the kept state and the model's, tensor by tensor: a second swap puts both back,
        bit for bit, and only one tensor is ever copied aside (never a second copy of the model)."""
        for k, v in self._tensors(model).items():
            aside = v.detach().to("cpu", copy=True)
            v.copy_(self.state[k])
            self.state[k].copy_(aside)


def fit(
    method: Method, model: torch.nn.Module, train: Sequence[Feature], dev: Sequence[Feature],
    test: Sequence[Feature], task: TaskSpec, config: TrainConfig, seed: int,
    device: torch.device, precision: str, progress: bool = True,
) -> TrainResult:
    """Train, select on dev, evaluate test with the best state. A method whose tuning takes no
    step (tuning-free prompting, the majority class) is evaluated once on dev, at step 0. With
    ``config.patience``, training stops after that many dev evaluations in a row without a better
    best dev score; the learning-rate schedule stays the one planned for the whole budget. With
    ``config.budgets`` (and a test set), each budget B also gets the test metrics of the best state
    among the dev evaluations at steps up to B, evaluated right after step B's dev evaluation; a
    budget the run does not reach gets the run's final result."""
    from tqdm.auto import tqdm

    primary = task.metric
    # an empty training set is the zero-shot point (load_rows lets only such a split through)
    total = config.total_steps(len(train)) if method.spec.tuning_spec.steps and train else 0
    if total and config.patience and not dev:
        raise PromptworthError(f"patience {config.patience} needs a dev split to watch; this split's dev set is empty")
    if total and config.budgets and test and not dev:
        raise PromptworthError(f"budgets {', '.join(map(str, config.budgets))} need a dev split to select on; "
                               "this split's dev set is empty")
    content_free = method.content_free()
    if total:
        optimizer = optimizer_for(model, config)
        scheduler = learning_rate_schedule(optimizer, config, total)
    params = [p for p in model.parameters() if p.requires_grad]
    batches = train_batches(len(train), config.batch_size, seed)
    snapshot = _Snapshot()
    curve: list[dict[str, float]] = []
    best_step, best_score = total, None
    steps, stopped = 0, records.STOPPED_AT_CAP if total else None
    stale = 0  # dev evaluations in a row that have not beaten the best
    train_s = eval_s = 0.0
    tokens = train_flops = eval_flops = 0
    shape = method.model_shape(model)
    losses: list[float] = []
    step_seconds: list[float] = []
    interactive = sys.stderr.isatty()  # in a log file: a line every 30 s, not every step
    bar = tqdm(total=total, desc=f"{task.name} {method.name}", file=sys.stderr, disable=not progress,
               leave=interactive, mininterval=0.1 if interactive else 30, ascii=not interactive)

    def dev_score(step: int) -> float:
        """Evaluate dev now, count its cost and add it to the curve."""
        nonlocal eval_s, eval_flops
        result = evaluate(method, model, dev, task, config, device, precision, f"dev at step {step}", shape, content_free)
        eval_s += result.seconds
        eval_flops += result.flops
        curve.append({"step": step, "dev_score": result.metrics[primary]})
        return result.metrics[primary]

    def test_metrics(where: str) -> dict[str, float]:
        """Evaluate test with the model as it is now, and count its cost."""
        nonlocal eval_s, eval_flops
        result = evaluate(method, model, test, task, config, device, precision, where, shape, content_free)
        eval_s += result.seconds
        eval_flops += result.flops
        return result.metrics

    def budget_result(step: int) -> BudgetResult:
        """At step ``step``, mid-run: test with the best state so far, then train on from this one."""
        if best_step == step:
            return BudgetResult(step, best_step, best_score, test_metrics(f"test at budget {step}"), True)
        snapshot.swap(model)
        try:
            metrics_at_best = test_metrics(f"test at budget {step}")
        finally:
            snapshot.swap(model)
        return BudgetResult(step, best_step, best_score, metrics_at_best, True)

    budgets: list[BudgetResult] | None = [] if config.budgets and test else None

    for step in range(1, total + 1):
        start = time.perf_counter()
        model.train()
        batch = method.collate([method.train_feature(train, i, step) for i in next(batches)])
        train_flops += flops.BACKWARD_FACTOR * batch_flops(method, shape, batch)
        batch = to_device(batch, device)
        with autocast(device, precision):
            loss = method.loss(method.scores(model, batch), batch)
        if not torch.isfinite(loss):
            bar.close()
            raise PromptworthError(
                f"training loss is {loss.item()} at step {step}: the run diverged; "
                "lower --learning-rate or try --precision fp32"
            )
        loss.backward()
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += batch["n_tokens"]
        losses.append(float(loss.detach()))
        step_seconds.append(time.perf_counter() - start)
        train_s += step_seconds[-1]
        steps = step
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
        bar.update(1)
        if dev and ((config.eval_every and step % config.eval_every == 0) or step == total):
            score = dev_score(step)
            if best_score is None or score > best_score:
                best_score, best_step, stale = score, step, 0
                if step != total:
                    snapshot.save(model)
            else:
                stale += 1
            bar.set_postfix(loss=f"{losses[-1]:.4f}", dev=f"{score:.4f}", best=f"{best_score:.4f}", refresh=False)
            stop = bool(config.patience) and stale >= config.patience and step != total
            # a budget at the run's last step is the final result, evaluated once below
            if budgets is not None and step in config.budgets and step != total and not stop:
                budgets.append(budget_result(step))
            if stop:
                stopped = records.STOPPED_BY_PATIENCE
                break
    bar.close()
    if total == 0 and dev:  # nothing trains: the model as it is, evaluated once
        best_score = dev_score(0)
    if best_step != steps:
        snapshot.restore(model)
    # a budget that tested the best state already has the final result: the same weights, evaluated once
    tested = [b.test for b in budgets or [] if b.best_step == best_step]
    final = tested[0] if tested else test_metrics("test") if test else {}
    if budgets is not None:  # the budgets not evaluated on the way: the run's last step, or beyond it
        done = {b.steps for b in budgets}
        budgets += [BudgetResult(b, best_step, best_score, final, reached=b <= steps)
                    for b in config.budgets if b not in done]
    return TrainResult(
        dev_curve=curve, best_step=best_step, dev_score=best_score, test=final,
        steps=steps, budget=total, stopped=stopped, train_s=train_s, eval_s=eval_s, train_tokens=tokens,
        non_embedding_params=shape.non_embedding_params, train_flops=train_flops,
        eval_flops=eval_flops, losses=losses,
        step_seconds=step_seconds, budgets=budgets,
    )
