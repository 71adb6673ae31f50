"""One training loop for every method, and the run record it writes.

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

import contextlib
import dataclasses
import platform
import random
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from promptworth import __version__, paths, records
from promptworth.paths import study_relative
from promptworth.data.split_folder import infer_data_seed, manifest_sha256
from promptworth.data.tasks import TaskSpec, get_task
from promptworth.errors import PromptworthError
from promptworth.backbones import flops, load
from promptworth.backbones.resolve import weights_sha256
from promptworth.training import lr_grid, metrics, search
from promptworth.methods.specs import MethodSpec, resolve
from promptworth.methods.registry import search_kind
from promptworth.methods.features import Batch, Feature, to_device
from promptworth.methods.objectives.base import Method
from promptworth.methods.build import build_method
from promptworth.methods.extras.calibrate import calibrate
from promptworth.training.train_config import TrainConfig
from promptworth.training.workers import process_age_s
from promptworth.methods import search_result


# ---------------------------------------------------------------------------------------------
# Hardware


def cpu_has_fast_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_model_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({cpu_model_name()}, {torch.get_num_threads()} threads)"


def tune_allocator() -> bool:
    """Keep large freed blocks in glibc's heap instead of returning them to the OS.

    Every step frees and reallocates the same big buffers (gradients, the dense embedding
    gradient); by default glibc hands them back with munmap and the next step page-faults them in
    again (~100k faults and ~0.2-0.3 s of system time per SmolLM2 step on 2 cores). Returns
    whether the setting took (False off glibc).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, (1 << 31) - 1))
    except (OSError, AttributeError):
        return False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def reset_peak_rss() -> None:
    """Start the peak memory count afresh (Linux), so that a run in a long-lived worker reports
    its own peak, not that of an earlier run of the same process."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")


def peak_rss_gb() -> float:
    """Peak resident memory since the last :func:`reset_peak_rss` (else since the start)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2  # kB
    except (OSError, ValueError, IndexError):
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return kb / 1024**2 if sys.platform != "darwin" else kb / 1024**3


# ---------------------------------------------------------------------------------------------
# Batching


def train_batches(n: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless shuffled batches of row indices; each epoch a new permutation (last batch may be short;
    ``train_config.examples_read`` counts what a run of so many steps reads)."""
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


# ---------------------------------------------------------------------------------------------
# The loop


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


# ---------------------------------------------------------------------------------------------
# A run: load everything, train, describe


@dataclass
class RunRequest:
    task: str
    method: str | MethodSpec  # a built-in's name, or a method defined from parts
    split_dir: Path
    model: str
    seed: int
    config: TrainConfig = field(default_factory=TrainConfig)
    template: str | None = None
    data_seed: int | None = None
    test_limit: int | None = None
    threads: int = 0
    progress: bool = True
    # when the process of this run started (POSIX time); None: this process's own start. A
    # pool's worker sets it to its client's start (see promptworth.training.workers)
    started_at: float | None = None
    # the result file of a search (promptworth search) that a search method applies
    search: Path | None = None
    # the lr_grid's selection file (promptworth select-lr): the run trains at the rate it chose
    lr_selection: Path | None = None


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=paths.project_root(), capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str]:
    import datasets
    import transformers

    return {
        "promptworth": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
        "datasets": datasets.__version__, "python": platform.python_version(),
    }


def load_rows(task: str, split_dir: Path, test_limit: int | None, spec: MethodSpec) -> dict[str, list[dict[str, Any]]]:
    """The rows of a split folder for a run of ``spec``. An empty training set is the zero-shot
    point: only a split whose manifest says size 0 may have one, and only a method that runs
    untrained (``MethodSpec.runs_at_size_zero``) may run on it."""
    from promptworth.data.splits import ZERO_SHOT, test_indices
    from promptworth.data.split_folder import load_split, manifest_size

    data = load_split(task, Path(split_dir))
    parts = {name: data[name].to_list() for name in ("train", "dev", "test")}
    if not parts["train"]:
        size = manifest_size(Path(split_dir))
        if size != ZERO_SHOT:
            stated = f"its manifest says size {size!r}" if size is not None else "it has no manifest that says size 0"
            raise PromptworthError(f"the training split of {split_dir} is empty, but {stated}: only a size-0 split "
                                   "(the zero-shot point) may have no training rows")
        problem = spec.size_zero_problem()
        if problem is not None:
            raise PromptworthError(f"{split_dir} is a size-0 split (no training rows): method {spec.name} cannot run "
                                   f"untrained: {problem}")
    if test_limit is not None:
        if test_limit < 1:
            raise PromptworthError(f"--test-limit must be positive, got {test_limit}")
        parts["test"] = [parts["test"][i] for i in test_indices(len(parts["test"]), test_limit)]
    return parts


def encode_rows(method: Method, rows: Sequence[Mapping[str, Any]]) -> list[Feature]:
    return [method.encode(row) for row in rows]


def run(request: RunRequest) -> dict[str, Any]:
    """Train one run and return its record (see docs/contracts.md); nothing is written here. A run
    at the rate the lr_grid chose that repeats one of the grid's pilot runs exactly (:func:`pilot_repeated`)
    takes over that pilot's result instead of training the same run a second time."""
    wall_start = time.perf_counter()
    reset_peak_rss()
    if request.threads:
        torch.set_num_threads(request.threads)
    tune_allocator()
    task = get_task(request.task)
    config = request.config
    backbone = load.open_backbone(request.model)
    spec = resolve(request.method) if isinstance(request.method, str) else request.method
    model_sha256 = weights_sha256(backbone.ref)
    chosen, searched = None, None
    if request.search is not None:
        chosen, searched = search_result.apply_result(request.search, study_relative(request.search), task, spec,
                                               model_sha256, request.split_dir)
    elif search_kind(spec) is not None:
        raise search_result.missing_result_error(spec)
    lr_cited = None
    if request.lr_selection is not None:
        rate, lr_cited = lr_grid.apply_selection(request.lr_selection, study_relative(request.lr_selection), task.name,
                                                 spec.name, backbone.ref.name, model_sha256)
        config = dataclasses.replace(config, learning_rate=rate)
    method = build_method(spec, task, backbone, config.max_length, request.template, chosen)
    rows = load_rows(request.task, request.split_dir, request.test_limit, spec)
    method.see_split(rows, request.seed)
    features = {name: encode_rows(method, part) for name, part in rows.items()}
    device = pick_device()
    precision = resolve_precision(config.precision, device)
    data_seed = request.data_seed if request.data_seed is not None else infer_data_seed(request.split_dir)
    # what the record says of the run before it trains: a pilot that says the same is this run
    planned = {
        "schema_version": records.SCHEMA_VERSION,
        "task": task.name,
        "method": method.name,
        "model": backbone.ref.name,
        "model_sha256": model_sha256,
        "model_kind": backbone.kind,
        "method_parts": method.parts(),
        "search": searched,
        "lr_selection": lr_cited,
        **method.describe(),
        "train_size": len(rows["train"]),
        "dev_size": len(rows["dev"]),
        "test_size": len(rows["test"]),
        "data_seed": data_seed,
        "train_seed": request.seed,
        "split_dir": study_relative(request.split_dir),
        "split_manifest_sha256": manifest_sha256(Path(request.split_dir)),
        "hyperparameters": {**dataclasses.asdict(config), "budgets": list(config.budgets),
                            "test_limit": request.test_limit},
        "device": describe_device(device),
        "precision": precision,
        "versions": versions(),
    }
    if request.lr_selection is not None:
        repeated = pilot_repeated(request.lr_selection, planned)
        if repeated is not None:
            return repeated
    seed_everything(request.seed)  # before loading: a new head is initialised from this RNG
    model = method.load_model().to(device)
    result = fit(
        method, model, features["train"], features["dev"], features["test"], task, config,
        request.seed, device, precision, progress=request.progress,
    )
    wall_s = time.perf_counter() - wall_start
    record = {
        **planned,
        # what a method reads of the split while it trains (e.g. the demonstrations it used)
        "method_parts": method.parts(),
        **method.describe(),
        "parameters": method.parameter_count.as_dict(),
        "hyperparameters": {**planned["hyperparameters"], "total_steps": result.budget},
        "dev_curve": result.dev_curve,
        "best_step": result.best_step,
        "dev_score": result.dev_score,
        "stopped": result.stopped,
        "metric": task.metric,
        "test": result.test,
        "score": result.test.get(task.metric),
        "budgets": [b.as_record(task.metric) for b in result.budgets] if result.budgets is not None else None,
        "train_loss": {"first": result.losses[0], "last": result.losses[-1], "mean_last_10": float(np.mean(result.losses[-10:]))}
        if result.losses else None,
        "timing": {
            "wall_s": round(wall_s, 3),
            "train_s": round(result.train_s, 3),
            "eval_s": round(result.eval_s, 3),
            "steps": result.steps,
            "steps_per_s": round(result.steps / result.train_s, 4) if result.train_s else None,
            "tokens_per_s": round(result.train_tokens / result.train_s, 1) if result.train_s else None,
            "peak_rss_gb": round(peak_rss_gb(), 3),
            # model FLOPs done (promptworth.backbones.flops: non-embedding matmuls, attention, the output
            # rows the method computes; training counts forward and backward)
            "flops": {"train": result.train_flops, "eval": result.eval_flops},
            "non_embedding_params": result.non_embedding_params,
            # the process's whole life so far (interpreter start, imports and model load
            # included), or in a pool's worker the run's share of it
            "process_s": round(time.time() - request.started_at if request.started_at else process_age_s(), 3),
            # trained in a pool's worker: the job's own process (what a Snakemake benchmark measures)
            # was the thin client that waited for it
            "pooled": request.started_at is not None,
            # when it ended (UTC): file times do not survive a git checkout, this does
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        "git_commit": git_commit(),
    }
    return records.finish(record)


# The record keys a pilot and the run it repeats may differ in: the run cites the selection, and the
# result (what training produced, and when) is the pilot's; hyperparameters.total_steps follows from
# the compared hyperparameters and train_size.
_RESULT_KEYS = {"lr_selection", "git_commit", "parameters", "dev_curve", "best_step", "dev_score", "stopped",
                "metric", "test", "score", "budgets", "train_loss", "timing"}


def pilot_repeated(selection: Path, planned: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record of a run whose plan (``planned``: the record's keys known before training)
    equals that of a pilot run the selection file cites, at the chosen rate: the pilot's record,
    citing the selection and the pilot (``lr_selection.pilot``). None when no pilot is this run,
    as when the pilot trained with other settings, another split or other package versions."""
    cited_pilot = lr_grid.pilot_at_choice(selection, planned["data_seed"], planned["train_seed"])
    if cited_pilot is None:
        return None
    pilot = records.read_record(Path(cited_pilot["file"]))
    settings = {k: v for k, v in pilot.get("hyperparameters", {}).items() if k != "total_steps"}
    if settings != planned["hyperparameters"]:
        return None
    if any(pilot.get(key) != value for key, value in planned.items() if key not in _RESULT_KEYS | {"hyperparameters"}):
        return None
    print(f"the pilot run {cited_pilot['file']} is this run (the same split, seeds, rate and settings): "
          "its result is taken over, nothing trains", file=sys.stderr)
    return records.finish({**pilot, "lr_selection": {**planned["lr_selection"], "pilot": cited_pilot}})
