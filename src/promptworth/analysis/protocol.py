"""Whether the runs kept the training protocol (protocol.md, protocol.csv), from their records: per
model, task and method, how the runs ended (patience, the cap), whether patience stopped one before
it had read its training set once, whether the reported checkpoint had read it all, the minimums
patience waited for, and which CPUs and precisions made the records. docs/analysis.md says how to read it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from promptworth.analysis.joins import words
from promptworth.analysis.results import method_parts
from promptworth.analysis.table_format import markdown
from promptworth.training import record as records
from promptworth.training.settings import examples_read, selects_on_dev

FACT_COLUMNS = ("model", "task", "method", "trained", "can_stop", "patience", "cap", "before_epoch", "best_read_less",
                "min_epochs", "min_steps", "device", "precision")
PROTOCOL_COLUMNS = ("model", "task", "method", "runs", "trained", "can_stop", "patience", "cap", "cap_share",
                    "patience_before_epoch", "best_read_less", "min_epochs_before_patience",
                    "min_steps_before_patience", "devices", "precisions")
CAP_LIMIT = 0.05  # the third edition's protocol: at most 5 % of the runs end at the cap


def run_facts(record: Mapping[str, Any]) -> dict[str, Any]:
    """What one record says of the protocol. A run trained when it took a step; patience could stop
    it when its objective selects on dev (SetFit's does not: it ends at its cap); before one epoch:
    stopped by patience before its ceil(train_size / batch_size)-th step. A record made before
    ``best_examples_read`` gets it from its best step."""
    settings = record.get("hyperparameters") or {}
    size, batch, steps = int(record["train_size"]), settings.get("batch_size"), record["timing"].get("steps")
    stopped = records.stopped(record)
    best_read = record.get("best_examples_read")
    if best_read is None and stopped is not None and record.get("best_step") is not None and batch:
        best_read = examples_read(size, int(record["best_step"]), int(batch))
    can_stop = stopped is not None and selects_on_dev(method_parts(record).get("objective", ""))
    return {"model": record["model"], "task": record["task"], "method": record["method"],
            "trained": stopped is not None, "can_stop": can_stop,
            "patience": stopped == records.STOPPED_BY_PATIENCE, "cap": stopped == records.STOPPED_AT_CAP,
            "before_epoch": bool(stopped == records.STOPPED_BY_PATIENCE and batch and steps is not None
                                 and steps < math.ceil(size / batch)),
            "best_read_less": stopped is not None and best_read is not None and best_read < size,
            # what patience waited for (a setting a record lacks: 0, as the study compares it)
            "min_epochs": settings.get("min_epochs_before_patience", 0) if can_stop else None,
            "min_steps": settings.get("min_steps_before_patience", 0) if can_stop else None,
            "device": record.get("device") or "unrecorded", "precision": record.get("precision") or "unrecorded"}


def counted(values: Iterable[Any]) -> str:
    """``bf16 (40), fp32 (10)``: each value with how many runs have it, most first."""
    counts = pd.Series([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))])
    ordered = sorted(counts.value_counts(sort=False).items(), key=lambda item: (-item[1], str(item[0])))
    return ", ".join(f"{value:g} ({n})" if isinstance(value, float) else f"{value} ({n})" for value, n in ordered)


def protocol_frames(run_records: Mapping[Path, Mapping[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the table: a row per model, task and method in the records' order; a row per run)."""
    facts = pd.DataFrame([run_facts(record) for record in run_records.values()], columns=list(FACT_COLUMNS))
    rows = []
    for (model, task, method), runs in facts.groupby(["model", "task", "method"], sort=False):
        trained = int(runs["trained"].sum())
        rows.append({"model": model, "task": task, "method": method, "runs": len(runs), "trained": trained,
                     "can_stop": int(runs["can_stop"].sum()), "patience": int(runs["patience"].sum()),
                     "cap": int(runs["cap"].sum()),
                     "cap_share": runs["cap"].sum() / trained if trained else math.nan,
                     "patience_before_epoch": int(runs["before_epoch"].sum()),
                     "best_read_less": int(runs["best_read_less"].sum()),
                     "min_epochs_before_patience": counted(runs["min_epochs"]),
                     "min_steps_before_patience": counted(runs["min_steps"]),
                     "devices": counted(runs["device"]), "precisions": counted(runs["precision"])})
    return pd.DataFrame(rows, columns=list(PROTOCOL_COLUMNS)), facts


def protocol_notes(facts: pd.DataFrame) -> str:
    """The totals a reading quotes: the share at the cap among the runs patience could stop, the
    runs stopped before one epoch, the checkpoints that had not read every example, the machines."""
    trained, can = facts[facts["trained"]], facts[facts["can_stop"]]
    never = list(dict.fromkeys(trained.loc[~trained["can_stop"], "method"]))
    share = f"{100 * can['cap'].sum() / len(can):.1f} %" if len(can) else "–"
    verdict = "within" if len(can) and can["cap"].sum() / len(can) <= CAP_LIMIT else "over"
    lines = [
        f"{len(facts)} runs, {len(trained)} of which trained (took a step); patience could stop {len(can)} of them"
        + (f" (not {words(never)}'s, which select nothing on dev and end at their cap)" if never else "") + ": "
        f"{int(can['patience'].sum())} stopped by patience, {int(can['cap'].sum())} at the cap ({share}, {verdict} the "
        f"third edition's limit of {100 * CAP_LIMIT:.0f} %).",
        f"Stopped by patience before they had read their training set once: {int(facts['before_epoch'].sum())} "
        "(the third edition's protocol, min_epochs_before_patience 1, allows none). Reported a checkpoint that "
        "had read fewer examples than the training set (best_examples_read < train_size): "
        f"{int(facts['best_read_less'].sum())} (allowed: patience waits for an epoch, but the best dev score may "
        "come before it).",
        f"Made on: {counted(facts['device'])}; in {counted(facts['precision'])}.",
    ]
    return "".join(f"\n{line}\n" for line in lines)


def protocol_markdown(frame: pd.DataFrame, facts: pd.DataFrame) -> str:
    header = ["model", "task", "method", "runs", "trained", "by patience", "at the cap", "patience < 1 epoch",
              "best read < size", "min epochs / steps", "devices", "precisions"]
    rows = [[str(r.model), str(r.task), str(r.method), str(r.runs), str(r.trained), str(r.patience),
             f"{r.cap} ({100 * r.cap_share:.0f} %)" if r.trained else "–", str(r.patience_before_epoch),
             str(r.best_read_less), f"{r.min_epochs_before_patience or '–'} / {r.min_steps_before_patience or '–'}",
             r.devices, r.precisions] for r in frame.itertuples()]
    return markdown(header, rows) + protocol_notes(facts)
