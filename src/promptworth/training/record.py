"""The run record: one JSON file per training run, the contract between training and analysis.

This module is its one definition: the keys a record holds, in order, with their types
(:data:`KEYS`), the schema versions, and the checks. :mod:`promptworth.training.run` builds a record and
passes it through :func:`finish`, which checks it exactly as :mod:`promptworth.analysis.results` checks a
record it reads back (:func:`check`), so that nothing is written that the analysis would refuse.
docs/contracts.md describes every key (a test holds it to :data:`KEYS`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from promptworth.backbones.registry import DTYPES
from promptworth.errors import PromptworthError, RunFailed
from promptworth.files import non_finite_key
from promptworth.training import predictions as row_predictions

SCHEMA_VERSION = 2  # what training writes; 2: the model named by model_sha256, no machine paths
READABLE_VERSIONS = (1, 2)  # what the analysis reads (1: the model's folder in model_path)


@dataclass(frozen=True)
class Key:
    """A top-level key: its JSON type, whether it may be null, and whether a record read back must
    have it (older records lack the keys added since; training always writes every key)."""

    name: str
    kind: str  # int, number, string, object, list
    nullable: bool = False
    needed: bool = False


KEYS: tuple[Key, ...] = (
    Key("schema_version", "int", needed=True),
    Key("task", "string", needed=True),
    Key("method", "string", needed=True),
    Key("model", "string", needed=True),
    Key("model_sha256", "string", nullable=True),
    Key("model_kind", "string"),
    Key("model_dtype", "string"),  # the dtype the weights loaded in (backbones.registry.DTYPES)
    Key("model_hub", "object", nullable=True),  # a hub model's {id, revision, commit} (null: not a hub model)
    Key("method_parts", "object"),
    Key("parameters", "object"),
    Key("template", "string", nullable=True),
    Key("template_name", "string", nullable=True, needed=True),
    Key("verbalizer", "object", nullable=True),
    Key("search", "object", nullable=True),  # the search result a search method applied (null: none)
    Key("lr_selection", "object", nullable=True),  # the lr_grid's choice the run trained at (null: none)
    Key("train_size", "int", needed=True),
    Key("dev_size", "int"),
    Key("test_size", "int"),
    Key("data_seed", "int", nullable=True, needed=True),
    Key("train_seed", "int", needed=True),
    Key("split_dir", "string", nullable=True),
    Key("split_manifest_sha256", "string", nullable=True),
    Key("hyperparameters", "object"),
    Key("dev_curve", "list"),
    Key("best_step", "int", nullable=True, needed=True),
    # what the reported (best dev) checkpoint had read: its examples read at least once, and its passes
    # over the training set (null: the method takes no step; records from before lack them)
    Key("best_examples_read", "int", nullable=True),
    Key("best_epochs", "number", nullable=True),
    Key("dev_score", "number", nullable=True, needed=True),
    Key("stopped", "string", nullable=True),  # one of STOPPED (null: the method takes no step)
    Key("metric", "string", needed=True),
    Key("test", "object", needed=True),
    Key("score", "number", nullable=True, needed=True),
    Key("budgets", "list", nullable=True),  # the result at each step budget (null: none asked for)
    # each test row's prediction and gold label (promptworth.training.predictions; null: no test rows)
    Key("predictions", "object", nullable=True),
    Key("train_loss", "object", nullable=True),  # null: the method takes no training step
    Key("timing", "object", needed=True),
    Key("device", "string"),
    Key("precision", "string"),
    Key("levers", "object"),  # what the engine's levers did in the run (training.engine; older records lack it)
    Key("versions", "object"),
    Key("git_commit", "string", nullable=True),
    # what the run wrote beside the record (promptworth.training.outputs; null: not asked for, and in
    # records made before): every step's metrics (training.metrics), the fine-tuned weights (training.save_weights)
    Key("step_metrics", "object", nullable=True),
    Key("weights", "object", nullable=True),
)
# Keys that differ between two runs of the same code on the same inputs, at any depth: when and how
# long it ran (timing, a search's wall_s), the commit, and the sha256 of the files that hold those
# (a selection cites its pilots' records). tools/same_records.py and promptworth.analysis.reproduction
# compare records without them (:func:`without_keys`).
VOLATILE_KEYS = frozenset({"timing", "git_commit", "wall_s", "sha256"})
# What a key added since means where an older record lacks it (a study compares it so; a pilot made
# before it was added is taken over as if it had it)
ABSENT_MEANS: dict[str, Any] = {"model_dtype": DTYPES[0], "model_hub": None}
OUTPUT_KEYS = ("step_metrics", "weights")
# How a run's training ended (``stopped``; null: the method takes no training step)
STOPPED_BY_PATIENCE = "patience"  # TrainConfig.patience dev evaluations in a row without a better best
STOPPED_AT_CAP = "cap"  # the whole step budget: max_steps, or the epochs protocol's clamped count
STOPPED = (STOPPED_BY_PATIENCE, STOPPED_AT_CAP)
# The numbers of ``timing`` the analysis reads (records from before one was counted lack it).
TIMING_NUMBERS = ("wall_s", "train_s", "steps", "peak_rss_gb", "process_s")
# The keys of each item of ``budgets`` (promptworth.training.loop.BudgetResult)
BUDGET_KEYS = ("steps", "reached", "best_step", "dev_score", "score", "test")


def without_keys(value: Any, keys: frozenset[str] | set[str]) -> Any:
    """``value`` (a record, or any JSON value) without ``keys``, at any depth."""
    if isinstance(value, dict):
        return {k: without_keys(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [without_keys(v, keys) for v in value]
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_KIND_CHECKS = {
    "int": (_is_int, "an integer"),
    "number": (_is_number, "a number"),
    "string": (lambda v: isinstance(v, str), "a string"),
    "object": (lambda v: isinstance(v, dict), "an object"),
    "list": (lambda v: isinstance(v, list), "a list"),
}


def check(record: Any, where: str) -> dict[str, Any]:
    """``record`` if it is a run record the analysis can read, else one error naming ``where``
    (the file) and the key."""
    if not isinstance(record, dict):
        raise PromptworthError(f"{where}: a run record must be a JSON object")
    if "schema_version" not in record:
        raise PromptworthError(f"{where}: missing key 'schema_version' (not a run record?)")
    if record["schema_version"] not in READABLE_VERSIONS:
        raise PromptworthError(
            f"{where}: unknown schema_version {record['schema_version']!r} "
            f"(this promptworth reads {', '.join(map(str, READABLE_VERSIONS))})"
        )
    for key in KEYS:
        if key.name not in record:
            if key.needed:
                raise PromptworthError(f"{where}: missing key {key.name!r}")
            continue
        value = record[key.name]
        if value is None:
            if not key.nullable:
                raise PromptworthError(f"{where}: key {key.name!r} is null")
            continue
        is_kind, kind = _KIND_CHECKS[key.kind]
        if not is_kind(value):
            raise PromptworthError(f"{where}: key {key.name!r} must be {kind}, got {value!r}")
    _check_nested(record, where)
    # json.loads reads NaN, Infinity and 1e999 as floats: a diverged or hand-edited record
    bad = non_finite_key(record)
    if bad is not None:
        raise PromptworthError(f"{where}: key {bad!r} is not a finite number (NaN or infinite)")
    _check_bounds(record, where)
    row_predictions.check(record, where)
    return record


# The values each metric can take (promptworth.training.metrics); a score outside is no score.
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "acc": (0.0, 1.0), "f1": (0.0, 1.0), "macro_f1": (0.0, 1.0),
    "mcc": (-1.0, 1.0), "pearson": (-1.0, 1.0), "spearman": (-1.0, 1.0),
}
# How far a computed metric may stray past its range by rounding (e.g. an mcc of 1.0000000000000002).
METRIC_SLACK = 1e-9
# Counts and times of a record that cannot be negative.
NON_NEGATIVE = ("train_size", "dev_size", "test_size", "data_seed", "train_seed", "best_step", "best_examples_read",
                "best_epochs")


def _check_bounds(record: Mapping[str, Any], where: str) -> None:
    """A record that contradicts itself is refused: a negative count, seed or time, a score
    outside its metric's range, a ``score`` that is not the test score of the record's metric."""
    counts = {key: record.get(key) for key in NON_NEGATIVE}
    counts.update({f"timing.{name}": record["timing"].get(name) for name in TIMING_NUMBERS})
    counts.update({f"parameters.{name}": value for name, value in (record.get("parameters") or {}).items()})
    for key, value in counts.items():
        if _is_number(value) and value < 0:
            raise PromptworthError(f"{where}: key {key!r} cannot be negative, got {value!r}")
    read, size = record.get("best_examples_read"), record["train_size"]
    if _is_int(read) and _is_int(size) and read > size:
        raise PromptworthError(f"{where}: key 'best_examples_read' is {read}, more than the train_size {size} there are")
    metric = record["metric"]
    scores = {f"test.{name}": (name, value) for name, value in record["test"].items()}
    scores["dev_score"] = (metric, record["dev_score"])
    scores.update({f"dev_curve[{i}].dev_score": (metric, point.get("dev_score"))
                   for i, point in enumerate(record.get("dev_curve") or []) if isinstance(point, dict)})
    for i, entry in enumerate(record.get("budgets") or []):
        scores.update({f"budgets[{i}].test.{name}": (name, value) for name, value in entry["test"].items()})
        scores[f"budgets[{i}].dev_score"] = (metric, entry["dev_score"])
        _check_score_is_the_metric(entry["score"], entry["test"], metric, f"budgets[{i}].", where)
    for key, (name, value) in scores.items():
        low, high = METRIC_RANGES.get(name, (-math.inf, math.inf))
        if _is_number(value) and not low - METRIC_SLACK <= value <= high + METRIC_SLACK:
            raise PromptworthError(f"{where}: key {key!r} is {value!r}, outside the range of {name} ({low:g} to {high:g})")
    _check_score_is_the_metric(record["score"], record["test"], metric, "", where)


def _check_score_is_the_metric(score: Any, test: Mapping[str, Any], metric: str, prefix: str, where: str) -> None:
    """``score`` (when not null) is the test score of ``metric``, exactly as training writes it."""
    if score is None:
        return
    if test.get(metric) is None:
        raise PromptworthError(f"{where}: key '{prefix}score' is {score!r}, but '{prefix}test' has no {metric} (the "
                               "record's metric) to be its score")
    if score != test[metric]:
        raise PromptworthError(f"{where}: key '{prefix}score' is {score!r}, but '{prefix}test.{metric}' (the record's "
                               f"metric) is {test[metric]!r}: the score is the test score of the metric")


def _check_nested(record: Mapping[str, Any], where: str) -> None:
    """The nested numbers the analysis reads: test metrics, costs, parameter counts; the parts."""
    timing = record["timing"]
    if "wall_s" not in timing:
        raise PromptworthError(f"{where}: missing key 'timing.wall_s'")
    counted = timing.get("flops")
    if counted is not None and not isinstance(counted, dict):
        raise PromptworthError(f"{where}: key 'timing.flops' must be an object, got {counted!r}")
    numbers = {f"test.{name}": value for name, value in record["test"].items()}
    numbers.update({f"timing.{name}": timing.get(name) for name in TIMING_NUMBERS})
    numbers.update({f"timing.flops.{part}": value for part, value in (counted or {}).items()})
    numbers.update({f"parameters.{name}": value for name, value in (record.get("parameters") or {}).items()})
    numbers.update(_budget_numbers(record.get("budgets") or [], where))
    for key, value in numbers.items():
        if value is not None and not _is_number(value):
            raise PromptworthError(f"{where}: key {key!r} must be a number, got {value!r}")
    if record.get("stopped") is not None and record["stopped"] not in STOPPED:
        raise PromptworthError(f"{where}: key 'stopped' must be one of {', '.join(STOPPED)} or null, got {record['stopped']!r}")
    if record.get("model_dtype", DTYPES[0]) not in DTYPES:
        raise PromptworthError(f"{where}: key 'model_dtype' must be one of {', '.join(DTYPES)}, got {record['model_dtype']!r}")
    hub = record.get("model_hub")
    if hub is not None and not all(isinstance(hub.get(k), str) for k in ("id", "revision", "commit")):
        raise PromptworthError(f"{where}: key 'model_hub' must be an object with an id, revision and commit, got {hub!r}")
    parts = record.get("method_parts")
    if parts is not None and not all(isinstance(parts.get(k), str) for k in ("objective", "tuning")):
        raise PromptworthError(f"{where}: key 'method_parts' must be an object with an objective and a tuning, got {parts!r}")
    _check_outputs(record, where)


def _check_outputs(record: Mapping[str, Any], where: str) -> None:
    """``step_metrics`` and ``weights``, when there: the files they name, each weights file with its sha256."""
    metrics = record.get("step_metrics")
    if metrics is not None and not (metrics.get("format") in ("csv", "tensorboard") and isinstance(metrics.get("path"), str)):
        raise PromptworthError(f"{where}: key 'step_metrics' must be an object with a format (csv or tensorboard) and "
                               f"a path, got {metrics!r}")
    weights = record.get("weights")
    if weights is None:
        return
    files = weights.get("files")
    if (weights.get("parameters") not in ("all", "trained", "none") or not isinstance(files, list)
            or not all(isinstance(item, dict) and isinstance(item.get("file"), str) and _is_int(item.get("bytes"))
                       and isinstance(item.get("sha256"), str) and len(item["sha256"]) == 64 for item in files)
            or not (isinstance(weights.get("folder"), str) if files else weights.get("folder") is None)):
        raise PromptworthError(f"{where}: key 'weights' must be an object with a folder, parameters (all, trained or "
                               f"none) and files (each a file, its bytes and sha256), got {weights!r}")


def _budget_numbers(budgets: list[Any], where: str) -> dict[str, Any]:
    """The numbers of ``budgets`` the analysis reads, by dotted key; an entry of another shape is
    an error."""
    numbers: dict[str, Any] = {}
    for i, entry in enumerate(budgets):
        if (not isinstance(entry, dict) or sorted(entry) != sorted(BUDGET_KEYS)
                or not _is_int(entry["steps"]) or entry["steps"] < 1
                or not isinstance(entry["reached"], bool) or not isinstance(entry["test"], dict)
                or not (entry["best_step"] is None or _is_int(entry["best_step"]))):
            raise PromptworthError(f"{where}: key 'budgets[{i}]' must be an object with {', '.join(BUDGET_KEYS)} "
                                   f"(steps a positive integer, reached true or false, test an object), got {entry!r}")
        if entry["steps"] in [other["steps"] for other in budgets[:i]]:
            raise PromptworthError(f"{where}: key 'budgets[{i}]': budget {entry['steps']} appears twice")
        numbers.update({f"budgets[{i}].score": entry["score"], f"budgets[{i}].dev_score": entry["dev_score"]})
        numbers.update({f"budgets[{i}].test.{name}": value for name, value in entry["test"].items()})
    return numbers


def stopped(record: Mapping[str, Any]) -> str | None:
    """How a checked record's training ended. Records made before the key ran every training step
    of their budget (there was no early stopping): "cap" when they took a step, else null."""
    if "stopped" in record:
        return record["stopped"]
    return STOPPED_AT_CAP if record["timing"].get("steps") else None


def finish(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record training is about to write: every key of :data:`KEYS` and no other, in their
    order, passing the analysis's own check; a NaN or infinite number anywhere is an error."""
    bad = non_finite_key(dict(record))
    if bad is not None:  # e.g. a loss that overflowed; JSON would carry a number that means nothing
        raise RunFailed(f"the run produced a non-finite number (NaN or inf) at {bad}; no record is written")
    names = [key.name for key in KEYS]
    missing, unknown = [n for n in names if n not in record], sorted(set(record) - set(names))
    if missing or unknown:  # a programming error: the writer and this definition disagree
        raise AssertionError(f"run record keys differ from records.KEYS: missing {missing}, unknown {unknown}")
    if record["schema_version"] != SCHEMA_VERSION:
        raise AssertionError(f"training writes schema_version {SCHEMA_VERSION}, not {record['schema_version']!r}")
    return check({name: record[name] for name in names}, "the run record")


def read_record(path: Path) -> dict[str, Any]:
    """One run record, read and checked (:func:`promptworth.training.record.check`)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptworthError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise PromptworthError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:
        raise PromptworthError(f"{path}: nested too deeply to be a run record") from None
    return check(record, str(path))
