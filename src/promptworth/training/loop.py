"""One training loop for every method: batches, the optimizer and its schedule, evaluation, fit.

Protocols: ``steps`` trains for exactly ``max_steps`` optimizer steps (LM-BFF); ``epochs`` trains
``epochs`` passes over the training set, clamped to ``[min_steps, max_steps]`` steps (Le Scao &
Rush). AdamW (no decay on biases and norms), linear warmup then linear decay to zero (``schedule``
constant: no decay), gradient clipping. The dev set is evaluated every ``eval_every`` steps and at
the end; the best state (by the task's primary metric, first best wins) is kept in memory and used
for the test set. With ``patience`` N, training stops early once N dev evaluations in a row have not
beaten the best, but never before ``TrainConfig.patience_from`` (``min_steps_before_patience`` steps,
``min_epochs_before_patience`` passes over the training set); the record's ``stopped`` says which ended
the run ("patience", or "cap": the step budget). With ``budgets``, the test set is also evaluated at each budget B with the best state among
the dev evaluations up to step B: the result of a B-step run (the record's ``budgets``).

Determinism: the train seed seeds torch (head initialisation, dropout), the batch order and the
demonstrations (``Method.see_split``; a method that encodes a training example afresh at each step
does it in ``Method.train_feature``); the same seed on the same machine and thread count gives the
same metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

from promptworth.backbones import flops
from promptworth.data.tasks import TaskSpec
from promptworth.errors import PromptworthError, RunFailed
from promptworth.methods.features import Batch, Feature, to_device
from promptworth.methods.objectives.base import Method
from promptworth.training import engine, evaluation, record as records
from promptworth.training.evaluation import batch_flops
from promptworth.training.runtime import autocast
from promptworth.training.settings import TrainConfig
from promptworth.training.watch import Watch, Watcher, watcher_for


def train_batches(n: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless shuffled batches of row indices; each epoch a new permutation (last batch may be short;
    ``settings.examples_read`` counts what a run of so many steps reads)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


def optimizer_for(model: torch.nn.Module, config: TrainConfig,
                  leave_out: Sequence[torch.nn.Parameter] = ()) -> torch.optim.Optimizer:
    """Fused AdamW over the trained parameters but ``leave_out`` (those the engine updates itself)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad or any(param is other for other in leave_out):
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
class BudgetResult:
    """What a run of ``steps`` steps would have ended with: the best dev evaluation at a step up to
    it and the test metrics of that state. ``reached``: the run trained that far (else it ended
    before, by patience or at its cap, and this is its final result)."""

    steps: int
    best_step: int
    dev_score: float | None
    test: dict[str, float]
    reached: bool
    # the test predictions of that state, one per test row (not in the record's budgets item)
    predictions: list[float] | None = field(default=None, repr=False)

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
    test_predictions: list[float] | None = None  # one per test row, in order (None: no test set)
    levers: dict[str, Any] = field(default_factory=dict)  # what the engine's levers did (engine.set_up)


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


def _check_fit(total: int, config: TrainConfig, dev: Sequence[Feature], test: Sequence[Feature]) -> None:
    """What a run that trains needs of its split besides training rows."""
    if total and config.patience and not dev:
        raise PromptworthError(f"patience {config.patience} needs a dev split to watch; this split's dev set is empty")
    if total and config.budgets and test and not dev:
        raise PromptworthError(f"budgets {', '.join(map(str, config.budgets))} need a dev split to select on; "
                               "this split's dev set is empty")


@dataclass
class _Evaluator:
    """Evaluates dev and test with the model as it is now, and counts what evaluating cost."""

    method: Method
    model: torch.nn.Module
    task: TaskSpec
    config: TrainConfig
    device: torch.device
    precision: str
    shape: flops.ModelShape
    content_free: Sequence[Feature]
    dev: Sequence[Feature]
    test: Sequence[Feature]
    seconds: float = 0.0
    flops_done: int = 0
    curve: list[dict[str, float]] = field(default_factory=list)

    def _evaluate(self, features: Sequence[Feature], where: str) -> evaluation.Evaluation:
        result = evaluation.evaluate(self.method, self.model, features, self.task, self.config, self.device, self.precision,
                          where, self.shape, self.content_free)
        self.seconds += result.seconds
        self.flops_done += result.flops
        return result

    def dev_score(self, step: int) -> float:
        """Evaluate dev now, count its cost and add it to the curve."""
        score = self._evaluate(self.dev, f"dev at step {step}").metrics[self.task.metric]
        self.curve.append({"step": step, "dev_score": score})
        return score

    def test_evaluation(self, where: str) -> evaluation.Evaluation:
        """Evaluate test now: its metrics and its predictions, one per row."""
        return self._evaluate(self.test, where)


@dataclass
class _Best:
    """The best dev evaluation so far, its state kept aside, and how many evaluations have not beaten it."""

    step: int
    score: float | None = None
    stale: int = 0
    snapshot: _Snapshot = field(default_factory=_Snapshot)

    def see(self, step: int, score: float, total: int, model: torch.nn.Module) -> None:
        if self.score is None or score > self.score:
            self.score, self.step, self.stale = score, step, 0
            if step != total:
                self.snapshot.save(model)
        else:
            self.stale += 1

    def budget_result(self, step: int, model: torch.nn.Module, evaluator: _Evaluator) -> BudgetResult:
        """At step ``step``, mid-run: test with the best state so far, then train on from this one."""
        if self.step == step:
            tested = evaluator.test_evaluation(f"test at budget {step}")
            return BudgetResult(step, self.step, self.score, tested.metrics, True, tested.predictions)
        self.snapshot.swap(model)
        try:
            at_best = evaluator.test_evaluation(f"test at budget {step}")
        finally:
            self.snapshot.swap(model)
        return BudgetResult(step, self.step, self.score, at_best.metrics, True, at_best.predictions)


@dataclass
class _Steps:
    """What the training steps did: how many, their losses, time, tokens and FLOPs."""

    taken: int = 0
    seconds: float = 0.0
    tokens: int = 0
    flops: int = 0
    losses: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)

    def add(self, step: int, tokens: int, loss: float, seconds: float) -> None:
        self.tokens += tokens
        self.losses.append(loss)
        self.step_seconds.append(seconds)
        self.seconds += seconds
        self.taken = step


def _dev_evaluation(step: int, total: int, config: TrainConfig, model: torch.nn.Module, evaluator: _Evaluator,
                    best: _Best, budgets: list[BudgetResult] | None, watcher: Watcher, patience_from: int) -> bool:
    """Evaluate dev at ``step``, keep the best state, test at a budget; whether patience stops the run
    (only from step ``patience_from`` on: the evaluations before it still count as not beating the best)."""
    score = evaluator.dev_score(step)
    best.see(step, score, total, model)
    watcher.dev(step, score, best.score, best.step, best.stale)
    stop = bool(config.patience) and best.stale >= config.patience and patience_from <= step != total
    # a budget at the run's last step is the final result, evaluated once below
    if budgets is not None and step in config.budgets and step != total and not stop:
        budgets.append(best.budget_result(step, model, evaluator))
    return stop


def _train_step(method: Method, model: torch.nn.Module, batch: Batch, step: int, config: TrainConfig,
                optimizer: torch.optim.Optimizer, scheduler: Any, params: Sequence[torch.nn.Parameter],
                device: torch.device, precision: str, run_engine: engine.RunEngine) -> torch.Tensor:
    """One optimizer step on ``batch``; the loss (an error when it is not finite)."""
    batch = to_device(batch, device)
    with autocast(device, precision):
        loss = method.loss(method.scores(model, batch), batch)
    if not torch.isfinite(loss):
        raise RunFailed(
            f"training loss is {loss.item()} at step {step}: the run diverged; "
            "lower --learning-rate or try --precision fp32"
        )
    run_engine.backward(loss)  # scaled under fp16
    run_engine.step(optimizer, params)  # clipping included
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def _final_budgets(budgets: list[BudgetResult] | None, config: TrainConfig, best: _Best, final: dict[str, float],
                   steps: int) -> list[BudgetResult] | None:
    """The budgets not evaluated on the way (the run's last step, or beyond it) get the final result."""
    if budgets is None:
        return None
    done = {b.steps for b in budgets}
    return budgets + [BudgetResult(b, best.step, best.score, final, reached=b <= steps)
                      for b in config.budgets if b not in done]


def _final_test(budgets: list[BudgetResult] | None, best: _Best,
                evaluator: _Evaluator) -> tuple[dict[str, float], list[float] | None]:
    """The test metrics and predictions of the best state (the model holds it now); empty without a test set."""
    # a budget that tested the best state already has the final result: the same weights, evaluated once
    tested = [b for b in budgets or [] if b.best_step == best.step]
    if tested:
        return tested[0].test, tested[0].predictions
    if not evaluator.test:
        return {}, None
    evaluated = evaluator.test_evaluation("test")
    return evaluated.metrics, evaluated.predictions


def _optimization(model: torch.nn.Module, config: TrainConfig, total: int,
                  run_engine: engine.RunEngine) -> tuple[torch.optim.Optimizer | None, Any]:
    """The optimizer and its schedule of a run of ``total`` steps (none without a step)."""
    if not total:
        return None, None
    optimizer = optimizer_for(model, config, run_engine.leave_out())
    return optimizer, learning_rate_schedule(optimizer, config, total)


def fit(
    method: Method, model: torch.nn.Module, train: Sequence[Feature], dev: Sequence[Feature],
    test: Sequence[Feature], task: TaskSpec, config: TrainConfig, seed: int,
    device: torch.device, precision: str, progress: bool = True, watch: Watch | None = None,
) -> TrainResult:
    """Train, select on dev, evaluate test with the best state. A method whose tuning takes no
    step (tuning-free prompting, the majority class) is evaluated once on dev, at step 0. With
    ``config.patience``, training stops after that many dev evaluations in a row without a better
    best dev score, at step ``config.patience_from(len(train))`` at the earliest; the learning-rate schedule stays the one planned for the whole budget. With
    ``config.budgets`` (and a test set), each budget B also gets the test metrics of the best state
    among the dev evaluations at steps up to B, evaluated right after step B's dev evaluation; a
    budget the run does not reach gets the run's final result. ``watch``: progress lines and per-step metrics (training.watch)."""
    # an empty training set is the zero-shot point (load_rows lets only such a split through)
    total = config.total_steps(len(train)) if method.spec.tuning_spec.steps and train else 0
    _check_fit(total, config, dev, test)
    run_engine = engine.set_up(model, method, config, precision)
    content_free = method.content_free()
    optimizer, scheduler = _optimization(model, config, total, run_engine)
    params = [p for p in model.parameters() if p.requires_grad]
    batches = train_batches(len(train), config.batch_size, seed)
    best, done = _Best(step=total), _Steps()
    stopped = records.STOPPED_AT_CAP if total else None
    shape = method.model_shape(model)
    evaluator = _Evaluator(method, model, task, config, device, precision, shape, content_free, dev, test)
    watcher = watcher_for(total, len(train), config, f"{task.name} {method.name}", progress, watch)
    budgets: list[BudgetResult] | None = [] if config.budgets and test else None
    for step in range(1, total + 1):
        start = time.perf_counter()
        model.train()
        batch = method.collate([method.train_feature(train, i, step) for i in next(batches)])
        done.flops += flops.BACKWARD_FACTOR * batch_flops(method, shape, batch)  # the real tokens' FLOPs
        batch = run_engine.training_batch(batch)  # packed where the engine packs
        rate = optimizer.param_groups[0]["lr"]  # the rate this step takes (before the schedule moves it)
        try:
            loss = _train_step(method, model, batch, step, config, optimizer, scheduler, params, device, precision,
                               run_engine)
        except PromptworthError:
            watcher.close()
            raise
        done.add(step, batch["n_tokens"], float(loss.detach()), time.perf_counter() - start)
        watcher.step(step, done.losses[-1], rate)
        if dev and ((config.eval_every and step % config.eval_every == 0) or step == total):
            if _dev_evaluation(step, total, config, model, evaluator, best, budgets, watcher,
                               config.patience_from(len(train))):
                stopped = records.STOPPED_BY_PATIENCE
                break
    if total == 0 and dev:  # nothing trains: the model as it is, evaluated once
        best.score = evaluator.dev_score(0)
        watcher.dev(0, best.score, best.score, 0, 0)
    watcher.close(stopped)
    if best.step != done.taken:
        best.snapshot.restore(model)
    final, predictions = _final_test(budgets, best, evaluator)
    return TrainResult(
        dev_curve=evaluator.curve, best_step=best.step, dev_score=best.score, test=final, test_predictions=predictions,
        steps=done.taken, budget=total, stopped=stopped, train_s=done.seconds, eval_s=evaluator.seconds,
        train_tokens=done.tokens, non_embedding_params=shape.non_embedding_params, train_flops=done.flops,
        eval_flops=evaluator.flops_done, losses=done.losses, step_seconds=done.step_seconds,
        budgets=_final_budgets(budgets, config, best, final, done.taken), levers=run_engine.levers,
    )
