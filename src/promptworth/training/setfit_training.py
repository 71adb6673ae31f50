"""SetFit's training (the setfit objective), by the setfit package in place of the step loop, to the
same :class:`promptworth.training.loop.TrainResult` the loop gives (so one record follows).

setfit's ``Trainer`` draws ``pairs`` pairs per training example of each kind (same class: label 1,
another class: 0; setfit's ``num_iterations``, from a fixed shuffle of every pair, so the pairs
depend on the training set only), tunes the encoder on them with a cosine-similarity loss (AdamW,
linear warmup and decay, the train seed ordering the batches), then fits the logistic regression
on the tuned encoder's embeddings of the training examples. The steps are the step loop's rule
applied to pairs: ``TrainConfig.total_steps`` of the ``2 x pairs x n`` pairs (the tuning's
defaults: one epoch of them). SetFit selects nothing on dev: dev is scored once, at the end, and
test with the same model.

The settings it reads are :data:`SETTINGS_READ` (a record lists only those); patience, eval_every,
budgets, schedule, precision and max_grad_norm do not apply (no dev evaluation during training;
the schedule is linear, the precision fp32, gradients clipped at setfit's 1.0).

FLOPs (``promptworth.backbones.flops``): both texts of every pair read, forward and backward, and
the forward pass over the training examples that the head is fit on; evaluation the forward pass
over dev and test. The logistic regression and the pooling are no matmul of the transformer and
are not counted. The pairs read are exact for whole epochs (the default); a run cut inside an epoch
counts its pairs read at the epoch's mean cost per pair.
"""

from __future__ import annotations

import contextlib
import math
import sys
import tempfile
import time
import warnings
from typing import Any, Callable, Iterator, Mapping, Sequence

from promptworth.backbones import flops
from promptworth.data.tasks import TaskSpec
from promptworth.methods.features import Feature
from promptworth.methods.objectives.setfit import SetFitMethod
from promptworth.training import metrics, record as records
from promptworth.training.loop import TrainResult
from promptworth.training.settings import SETTINGS_READ_BY_OBJECTIVE, TrainConfig
from promptworth.training.watch import Plan, Watch, Watcher

# The training settings SetFit reads (TrainConfig fields); its record lists these only.
SETTINGS_READ = SETTINGS_READ_BY_OBJECTIVE["setfit"]


def contrastive_pairs(texts: Sequence[str], labels: Sequence[int], pairs: int, max_steps: int,
                      batch_size: int) -> list[tuple[str, str]]:
    """The pairs of texts setfit's ``Trainer`` draws from the training set, in its order (the same
    call as its own, so the FLOP count reads what the training reads)."""
    from setfit.sampler import ContrastiveDataset

    drawn = ContrastiveDataset(list(texts), list(labels), multilabel=False, num_iterations=pairs,
                               max_pairs=max_steps * batch_size)
    return [(pair["sentence_1"], pair["sentence_2"]) for pair in drawn]


def pairs_read(n_pairs: int, batch_size: int, steps: int) -> int:
    """Pairs that ``steps`` steps of ``batch_size`` read, epoch after epoch (the last batch of an epoch short)."""
    per_epoch = math.ceil(n_pairs / batch_size)
    epochs, rest = divmod(steps, per_epoch)
    return epochs * n_pairs + min(rest * batch_size, n_pairs)


def _training_cost(shape: flops.ModelShape, pairs: Sequence[tuple[str, str]], lengths: Mapping[str, int],
                   reads: int, train: Sequence[Feature]) -> tuple[int, int]:
    """Tokens and model FLOPs of the contrastive steps that read ``reads`` pairs, and of embedding
    the training examples for the head."""
    pair_lengths = [lengths[text] for pair in pairs for text in pair]
    share = reads / len(pairs)  # 1.0 for one whole epoch
    tokens = round(sum(pair_lengths) * share)
    steps_flops = flops.BACKWARD_FACTOR * flops.forward_flops(shape, pair_lengths, 0, 0) * share
    head_flops = flops.forward_flops(shape, [len(f.sequences[0]) for f in train], 0, 0)
    return tokens, round(steps_flops) + head_flops


def _arguments(config: TrainConfig, pairs: int, seed: int, steps: int, out_dir: str) -> Any:
    """setfit's ``TrainingArguments`` for the run: its steps exactly, nothing saved or reported."""
    from setfit import TrainingArguments

    return TrainingArguments(
        output_dir=out_dir, save_strategy="no", report_to="none", eval_strategy="no", show_progress_bar=False,
        batch_size=config.batch_size, max_steps=steps, num_iterations=pairs, body_learning_rate=config.learning_rate,
        warmup_proportion=config.warmup_ratio, l2_weight=config.weight_decay, max_length=config.max_length,
        seed=seed, logging_steps=1, logging_first_step=True,
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """While setfit trains: its info logs, transformers' notices, datasets' progress bars and the
    data loader's pin-memory warning off (the run has a progress bar of its own)."""
    import datasets
    import transformers
    from setfit import logging as setfit_logging

    verbosity = setfit_logging.get_verbosity(), transformers.logging.get_verbosity()
    bars = datasets.is_progress_bar_enabled()
    setfit_logging.set_verbosity_warning()
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pin_memory.*")
            yield
    finally:
        setfit_logging.set_verbosity(verbosity[0])
        transformers.logging.set_verbosity(verbosity[1])
        if bars:
            datasets.enable_progress_bars()


def _train(method: SetFitMethod, model: Any, texts: Sequence[str], labels: Sequence[int], config: TrainConfig,
           seed: int, plan: Plan, progress: bool, watch: Watch | None) -> list[float]:
    """Both of setfit's phases on the training texts, for ``plan``'s steps; the contrastive steps'
    losses (each step's loss, as setfit logs it at every step, reported to the watcher with its
    learning rate)."""
    from datasets import Dataset
    from setfit import Trainer
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback

    losses: list[float] = []
    # the examples its steps read are pairs; no dev evaluation while it trains, so no patience
    watcher = Watcher(plan, f"{method.task.name} {method.name}", progress, watch or Watch())
    stopped = None

    class Steps(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, float] | None = None, **_: Any) -> None:
            if logs and "embedding_loss" in logs:
                losses.append(float(logs["embedding_loss"]))
                watcher.step(state.global_step, losses[-1], logs.get("learning_rate"))

    try:
        with tempfile.TemporaryDirectory(prefix="promptworth-setfit-") as out_dir, _quiet():
            arguments = _arguments(config, method.options["pairs"], seed, plan.cap, out_dir)
            trainer = Trainer(model=model, args=arguments,
                              train_dataset=Dataset.from_dict({"text": list(texts), "label": list(labels)}))
            for shown in (ProgressCallback, PrinterCallback):
                trainer.remove_callback(shown)
            trainer.add_callback(Steps())
            trainer.train()
            stopped = records.STOPPED_AT_CAP
    finally:
        watcher.close(stopped)
    return losses


def _evaluate(rows: Mapping[str, Sequence[Mapping[str, Any]]], task: TaskSpec,
              predict: Callable[[Sequence[Mapping[str, Any]]], list[float]]
              ) -> tuple[dict[str, float] | None, dict[str, float], list[float] | None]:
    """Dev's metrics (None without dev), test's metrics and test's predictions (empty and None
    without test) of ``predict``, which gives a prediction a row, in order."""

    def scores(split: str) -> tuple[dict[str, float], list[float]]:
        predicted = predict(rows[split])
        return metrics.compute([float(row["label"]) for row in rows[split]], predicted, task.num_labels), predicted

    dev = scores("dev")[0] if rows["dev"] else None
    test, test_predictions = scores("test") if rows["test"] else ({}, None)
    return dev, test, test_predictions


def _dev_reading(dev: Mapping[str, float] | None, task: TaskSpec, step: int
                 ) -> tuple[list[dict[str, float | None]], float | None]:
    """The dev curve (one point, at ``step``: SetFit scores dev once) and the dev score of ``dev``'s
    metrics; an empty curve and None without dev."""
    if dev is None:
        return [], None
    return [{"step": step, "dev_score": dev[task.metric]}], dev[task.metric]


def _one_class(method: SetFitMethod, model: Any, rows: Mapping[str, Sequence[Mapping[str, Any]]],
               task: TaskSpec) -> TrainResult:
    """A training set of one class: no pair of another class to tune the encoder on and no second
    class for the logistic regression, so the model predicts that class for every row (as any
    classifier that saw one class would), without a step and without reading a text."""
    print(f"[promptworth] method {method.name}: the training set holds one class only ({method.only_class}): "
          "it predicts that class for every row, without a step", file=sys.stderr, flush=True)
    dev, test, test_predictions = _evaluate(rows, task, lambda split: [float(method.only_class)] * len(split))
    dev_curve, dev_score = _dev_reading(dev, task, 0)
    return TrainResult(
        dev_curve=dev_curve, best_step=0, dev_score=dev_score,
        test=test, steps=0, budget=0, stopped=None, train_s=0.0, eval_s=0.0, train_tokens=0,
        non_embedding_params=method.model_shape(model).non_embedding_params, test_predictions=test_predictions,
    )


def fit(method: SetFitMethod, model: Any, rows: Mapping[str, Sequence[Mapping[str, Any]]],
        features: Mapping[str, Sequence[Feature]], task: TaskSpec, config: TrainConfig, seed: int,
        progress: bool = True, watch: Watch | None = None) -> TrainResult:
    """Train ``model`` with setfit (see the module), score dev once and test, count what it cost."""
    if method.only_class is not None:
        return _one_class(method, model, rows, task)
    texts = [method.text(row) for row in rows["train"]]
    labels = [int(row["label"]) for row in rows["train"]]
    epoch_examples = method.spec.epoch_examples(len(texts))
    steps = config.total_steps(epoch_examples)
    start = time.perf_counter()
    losses = _train(method, model, texts, labels, config, seed, Plan(steps, epoch_examples, config.batch_size),
                    progress, watch)
    train_s = time.perf_counter() - start
    method.head_fitted(model)
    start = time.perf_counter()
    dev, test, test_predictions = _evaluate(rows, task, lambda split: method.predict_texts(
        model, [method.text(row) for row in split], config.eval_batch_size).astype(float).tolist())
    eval_s = time.perf_counter() - start
    shape = method.model_shape(model)
    pairs = contrastive_pairs(texts, labels, method.options["pairs"], steps, config.batch_size)
    lengths = {text: len(feature.sequences[0]) for text, feature in zip(texts, features["train"])}
    tokens, train_flops = _training_cost(shape, pairs, lengths, pairs_read(len(pairs), config.batch_size, steps),
                                         features["train"])
    evaluated = [len(f.sequences[0]) for name in ("dev", "test") for f in features[name]]
    dev_curve, dev_score = _dev_reading(dev, task, steps)
    return TrainResult(
        dev_curve=dev_curve, best_step=steps, dev_score=dev_score, test=test, steps=steps, budget=steps,
        stopped=records.STOPPED_AT_CAP, train_s=train_s, eval_s=eval_s, train_tokens=tokens,
        non_embedding_params=shape.non_embedding_params, train_flops=train_flops,
        eval_flops=flops.forward_flops(shape, evaluated, 0, 0), losses=losses, test_predictions=test_predictions,
    )
