"""A training request -> its run record (see docs/contracts.md): the task, the backbone, the method
(with a search's result or the lr_grid's rate applied), the split's rows, :func:`promptworth.training.loop.fit`,
then the record. A run at the rate the lr_grid chose that repeats one of its pilot runs takes over
the pilot's record (:func:`pilot_repeated`)."""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from promptworth.backbones import load
from promptworth.backbones.resolve import weights_sha256
from promptworth.data.rows import rows_sha256
from promptworth.data.split_folder import infer_data_seed, manifest_sha256
from promptworth.data.task_files import find_task
from promptworth.data.tasks import TaskSpec
from promptworth.errors import PromptworthError
from promptworth.files import check_output_file, writable_folder, write_json
from promptworth.methods import search_result
from promptworth.methods.build import build_method
from promptworth.methods.features import Feature
from promptworth.methods.objectives.base import Method
from promptworth.methods.registry import search_kind
from promptworth.methods.specs import MethodSpec, resolve
from promptworth.paths import study_relative
from promptworth.training import lr_grid, predictions as row_predictions, record as records, runtime, setfit_training
from promptworth.training import watch as watching, weights
from promptworth.training.loop import TrainResult, fit
from promptworth.training.outputs import SideOutputs
from promptworth.training.request import RunRequest
from promptworth.training.runtime import (
    describe_device,
    git_commit,
    gpu_peak,
    pick_device,
    process_age_s,
    reset_gpu_peak,
    reset_peak_rss,
    resolve_precision,
    seed_everything,
    tune_allocator,
    versions,
)
from promptworth.training.settings import TrainConfig, epochs_read, examples_read, settings_read


# ---------------------------------------------------------------------------------------------
# A run: load everything, train, describe


def load_rows(task: TaskSpec, split_dir: Path, test_limit: int | None, spec: MethodSpec) -> dict[str, list[dict[str, Any]]]:
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


@dataclass
class _Setup:
    """Everything a run has set up before it trains."""

    task: TaskSpec
    config: TrainConfig
    backbone: load.Backbone
    model_sha256: str
    method: Method
    rows: dict[str, list[dict[str, Any]]]
    features: dict[str, list[Feature]]
    device: torch.device
    precision: str
    searched: dict[str, Any] | None
    lr_cited: dict[str, Any] | None


def _prepare(request: RunRequest) -> _Setup:
    """The task, the backbone and the method (a search's choice or the lr_grid's rate applied), the
    split's rows encoded, the device and precision."""
    if request.threads:
        torch.set_num_threads(request.threads)
    device = pick_device(request.device)  # first: a GPU asked for and absent is an error before any loading
    reset_gpu_peak(device)
    tune_allocator()
    task = find_task(request.task, request.task_files)
    config = request.config
    backbone = load.open_backbone(request.model, request.model_options)
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
    rows = load_rows(task, request.split_dir, request.test_limit, spec)
    method.see_split(rows, request.seed)
    features = {name: encode_rows(method, part) for name, part in rows.items()}
    precision = method.fixed_precision or resolve_precision(config.precision, device)
    return _Setup(task, config, backbone, model_sha256, method, rows, features, device, precision, searched, lr_cited)


def _planned_record(setup: _Setup, request: RunRequest) -> dict[str, Any]:
    """What the record says of the run before it trains: a pilot that says the same is this run."""
    method, rows, config = setup.method, setup.rows, setup.config
    data_seed = request.data_seed if request.data_seed is not None else infer_data_seed(request.split_dir)
    return {
        "schema_version": records.SCHEMA_VERSION,
        "task": setup.task.name,
        "method": method.name,
        "model": setup.backbone.ref.name,
        "model_sha256": setup.model_sha256,
        "model_kind": setup.backbone.kind,
        "model_dtype": setup.backbone.ref.options.dtype,
        "model_hub": setup.backbone.ref.hub.record() if setup.backbone.ref.hub is not None else None,
        "method_parts": method.parts(),
        "search": setup.searched,
        "lr_selection": setup.lr_cited,
        **method.describe(),
        "train_size": len(rows["train"]),
        "dev_size": len(rows["dev"]),
        "test_size": len(rows["test"]),
        "data_seed": data_seed,
        "train_seed": request.seed,
        "split_dir": study_relative(request.split_dir),
        "split_manifest_sha256": manifest_sha256(Path(request.split_dir)),
        "hyperparameters": _hyperparameters(method, config, request.test_limit),
        "device": describe_device(setup.device),
        "precision": setup.precision,
        "versions": versions(),
    }


def _hyperparameters(method: Method, config: TrainConfig, test_limit: int | None) -> dict[str, Any]:
    """The training settings a record lists: every one, or those a method that trains itself reads."""
    settings = {**dataclasses.asdict(config), "budgets": list(config.budgets)}
    return {**settings_read(method.spec.objective, settings), "test_limit": test_limit}


def _timing(result: TrainResult, wall_s: float, request: RunRequest) -> dict[str, Any]:
    return {
        "wall_s": round(wall_s, 3),
        "train_s": round(result.train_s, 3),
        "eval_s": round(result.eval_s, 3),
        "steps": result.steps,
        "steps_per_s": round(result.steps / result.train_s, 4) if result.train_s else None,
        "tokens_per_s": round(result.train_tokens / result.train_s, 1) if result.train_s else None,
        "peak_rss_gb": round(runtime.peak_rss_gb(), 3),
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
    }


def _finished_record(planned: dict[str, Any], setup: _Setup, result: TrainResult, wall_s: float,
                     request: RunRequest, outputs: dict[str, Any]) -> dict[str, Any]:
    method, metric = setup.method, setup.task.metric
    losses = result.losses
    return {
        **planned,
        # what a method reads of the split while it trains (e.g. the demonstrations it used)
        "method_parts": method.parts(),
        **method.describe(),
        "parameters": method.parameter_count.as_dict(),
        "hyperparameters": {**planned["hyperparameters"], "total_steps": result.budget},
        "dev_curve": result.dev_curve,
        "best_step": result.best_step,
        **_best_read(result, len(setup.rows["train"]), setup.config.batch_size),
        "dev_score": result.dev_score,
        "stopped": result.stopped,
        "metric": metric,
        "test": result.test,
        "score": result.test.get(metric),
        "budgets": [b.as_record(metric) for b in result.budgets] if result.budgets is not None else None,
        "predictions": _predictions(setup, result),
        "train_loss": {"first": losses[0], "last": losses[-1], "mean_last_10": float(np.mean(losses[-10:]))}
        if losses else None,
        "levers": result.levers,
        "timing": {**_timing(result, wall_s, request), **gpu_peak(setup.device)},
        "git_commit": git_commit(),
        **outputs,
    }


def _best_read(result: TrainResult, train_size: int, batch_size: int) -> dict[str, Any]:
    """What the reported checkpoint (the best dev state, at ``best_step``) had read of the training
    set: ``best_examples_read`` (each at least once) and ``best_epochs``; null without a training step."""
    if result.stopped is None:
        return {"best_examples_read": None, "best_epochs": None}
    return {"best_examples_read": examples_read(train_size, result.best_step, batch_size),
            "best_epochs": epochs_read(train_size, result.best_step, batch_size)}


def _predictions(setup: _Setup, result: TrainResult) -> dict[str, Any] | None:
    """Each test row's prediction and gold label, compactly (promptworth.training.predictions); None
    without test rows."""
    if result.test_predictions is None:
        return None
    gold = [feature.label for feature in setup.features["test"]]
    return row_predictions.encode(result.test_predictions, gold, rows_sha256(setup.rows["test"]),
                                  setup.task.is_regression)


def _saved_weights(setup: _Setup, model: Any, result: TrainResult, outputs: SideOutputs) -> dict[str, Any] | None:
    """The record's ``weights``: the trained weights of the reported state (the model holds it once
    fit returns) saved into their partial folder; null when not asked for."""
    if not outputs.weights:
        return None
    if result.stopped is None:  # no training step: nothing trained, the base model is model_sha256's
        return weights.nothing_trained()
    about = {"method": setup.method.name, "model": setup.backbone.ref.name, "model_sha256": setup.model_sha256 or "",
             "best_step": str(result.best_step)}
    return {"folder": outputs.final("weights").name, **weights.save(model, outputs.partial("weights"), about)}


def run(request: RunRequest, outputs: SideOutputs | None = None) -> dict[str, Any]:
    """Train one run and return its record (see docs/contracts.md); nothing is written here but the
    ``outputs`` beside the record, under their partial names (:class:`SideOutputs`, prepared; none
    without a record file, where the training settings must ask for none). A run at the rate the
    lr_grid chose that repeats one of the grid's pilot runs exactly (:func:`pilot_repeated`) takes
    over that pilot's result instead of training the same run a second time, unless it writes
    outputs of its own beside its record."""
    wall_start = time.perf_counter()
    reset_peak_rss()
    outputs = outputs or SideOutputs(None, request.config.metrics, request.config.save_weights)
    setup = _prepare(request)
    planned = _planned_record(setup, request)
    if request.lr_selection is not None and not outputs.kinds():
        repeated = pilot_repeated(request.lr_selection, planned)
        if repeated is not None:
            return repeated
    seed_everything(request.seed)  # before loading: a new head is initialised from this RNG
    features = setup.features
    kind = outputs.metrics
    metrics = None if kind == "none" else watching.open_metrics(kind, outputs.partial(kind))
    watch = watching.Watch(request.progress_every, metrics)
    try:
        model = setup.method.load_model().to(setup.device)
        if setup.method.trains_itself:  # SetFit: the setfit package's training, not the step loop
            result = setfit_training.fit(setup.method, model, setup.rows, features, setup.task, setup.config,
                                         request.seed, progress=request.progress, watch=watch)
        else:
            result = fit(setup.method, model, features["train"], features["dev"], features["test"], setup.task,
                         setup.config, request.seed, setup.device, setup.precision, progress=request.progress,
                         watch=watch)
    finally:
        if metrics is not None:
            metrics.close()
    written = {"step_metrics": outputs.metrics_entry(), "weights": _saved_weights(setup, model, result, outputs)}
    return records.finish(_finished_record(planned, setup, result, time.perf_counter() - wall_start, request, written))


# The record keys a pilot and the run it repeats may differ in: the run cites the selection, and the
# result (what training produced, and when) is the pilot's; hyperparameters.total_steps follows from
# the compared hyperparameters and train_size.
_RESULT_KEYS = {"lr_selection", "git_commit", "parameters", "dev_curve", "best_step", "dev_score", "stopped",
                "metric", "test", "score", "budgets", "predictions", "train_loss", "timing"}


def pilot_repeated(selection: Path, planned: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record of a run whose plan (``planned``: the record's keys known before training)
    equals that of a pilot run the selection file cites, at the chosen rate: the pilot's record,
    citing the selection and the pilot (``lr_selection.pilot``). None when no pilot is this run,
    as when the pilot trained with other settings, another split or other package versions, or
    was made before a key of the record existed (it lacks it)."""
    cited_pilot = lr_grid.pilot_at_choice(selection, planned["data_seed"], planned["train_seed"])
    if cited_pilot is None:
        return None
    pilot = {**records.ABSENT_MEANS, **records.read_record(Path(cited_pilot["file"]))}
    # made before a key was added: not what a run records now (but for the outputs, which it does not take over)
    if any(key.name not in pilot for key in records.KEYS if key.name not in records.OUTPUT_KEYS):
        return None
    settings = {k: v for k, v in pilot.get("hyperparameters", {}).items() if k != "total_steps"}
    if settings != planned["hyperparameters"]:
        return None
    if any(pilot.get(key) != value for key, value in planned.items() if key not in _RESULT_KEYS | {"hyperparameters"}):
        return None
    print(f"the pilot run {cited_pilot['file']} is this run (the same split, seeds, rate and settings): "
          "its result is taken over, nothing trains", file=sys.stderr)
    return records.finish({**pilot, **dict.fromkeys(records.OUTPUT_KEYS),
                           "lr_selection": {**planned["lr_selection"], "pilot": cited_pilot}})


def train_to_file(request: RunRequest, out: Path) -> dict[str, Any]:
    """Train ``request`` and write its record to ``out`` (checked before training: the file must be
    new or an earlier record, its folder writable), and the files beside it that its settings ask for
    (promptworth.training.outputs: moved into place right before the record, removed if the run
    fails); a one-line summary goes to stderr. A run alone and a run on a pool's worker both come here."""
    out = check_output_file(out)
    if request.config.metrics == "tensorboard":
        watching.check_tensorboard()
    outputs = SideOutputs(out, request.config.metrics, request.config.save_weights)
    with writable_folder(out.parent, f"the run record {out.name}"):
        outputs.prepare()
        try:
            record = run(request, outputs)
            outputs.publish()
        except BaseException:
            outputs.discard()
            raise
        write_json(out, record)
    test = ", ".join(f"{k} {v:.4f}" for k, v in record["test"].items())
    early = f", patience stopped it at step {record['timing']['steps']}" if record["stopped"] == records.STOPPED_BY_PATIENCE else ""
    print(
        f"{record['task']} {record['method']} {record['model']} size {record['train_size']}: "
        f"dev {record['dev_score']} (step {record['best_step']}{early}), test {test}; "
        f"{record['timing']['wall_s']:.0f} s -> {out}",
        file=sys.stderr,
    )
    return record
