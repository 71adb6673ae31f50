"""What a run writes beside its record, named after it (no torch import): with ``training.metrics``
``<record>.metrics.csv`` or the folder ``<record>.tensorboard/``, with ``training.save_weights`` the
folder ``<record>.weights/`` (``<record>``: the record's file name without ``.json``).

While the run trains they have partial names (``….partial``), so that an earlier run's files stay
whole until the new record takes its place (a TensorBoard pointed at the results folder finds the
partial event files too); they are moved into place right before the record is written, and removed
when the run fails: a failed run leaves nothing beside the record either. A record names them
relative to its own folder (``step_metrics.path``, ``weights.folder``), so they move with it (the
workflow moves a stale record's along into ``stale/``: :func:`beside`).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from promptworth.errors import PromptworthError

PARTIAL = ".partial"
WEIGHTS_FILE = "weights.safetensors"
# The name of each kind of output after the record's stem, and which files an earlier one of its
# own holds (what may be replaced: never a folder holding anything else)
_SUFFIXES = {"csv": ".metrics.csv", "tensorboard": ".tensorboard", "weights": ".weights"}
_OWN_FILES: dict[str, Callable[[str], bool]] = {
    "tensorboard": lambda name: "tfevents" in name,
    "weights": lambda name: name == WEIGHTS_FILE,
}


def output_path(record: Path, kind: str) -> Path:
    """Where the output ``kind`` (csv, tensorboard, weights) of the record ``record`` goes."""
    record = Path(record)
    return record.with_name(record.stem + _SUFFIXES[kind])


def beside(record: Path) -> list[Path]:
    """The outputs of ``record`` that exist beside it, of every kind."""
    return [path for kind in _SUFFIXES if (path := output_path(record, kind)).exists()]


def move_beside(record: Path, folder: Path) -> None:
    """Move the outputs beside ``record`` into ``folder`` (where the record goes), in place of older ones there."""
    for path in beside(record):
        target = Path(folder) / path.name
        _remove(target)
        os.replace(path, target)


def outputs_problem(record: Mapping[str, Any], record_file: Path, asked: Mapping[str, Any],
                    missing_is_stale: bool) -> str | None:
    """How a record falls short of the outputs a study asks for (``asked``: its ``metrics`` and
    ``save_weights``, off when absent), or None: it names them (``step_metrics``, ``weights``; null
    where not asked for, and in records made before them) and, where a missing file counts, they
    are still beside it. A record that wrote more than is asked for is what the study asks for."""
    metrics = asked.get("metrics", "none")
    wanted = {"step_metrics": (metrics != "none", "path", f"training.metrics {metrics}"),
              "weights": (bool(asked.get("save_weights")), "folder", "training.save_weights")}
    for key, (asks, name, setting) in wanted.items():
        found = record.get(key)
        if not asks:
            continue
        if not isinstance(found, Mapping) or (key == "step_metrics" and found.get("format") != metrics):
            shown = "absent" if key not in record else json.dumps(found)
            return f"{key} is {shown} in the record, the study asks for {setting}"
        where = Path(record_file).parent / str(found[name])
        if missing_is_stale and found.get(name) is not None and not where.exists():
            return f"its {key} {where} is gone (it is made again)"
    return None


def _replace_problem(final: Path, kind: str) -> str | None:
    """Why ``final`` may not be replaced by a new output of ``kind``: only an earlier one of its own may."""
    if final.is_symlink() or (final.exists() and (final.is_dir() != (kind in _OWN_FILES))):
        return f"{final} exists and is not an earlier {kind} output of a run (move it away)"
    if final.is_dir():
        foreign = sorted(item.name for item in final.iterdir() if not item.is_file() or not _OWN_FILES[kind](item.name))
        if foreign:
            return f"{final} holds {foreign[0]!r}, which no run wrote there (move it away)"
    return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@dataclass(frozen=True)
class SideOutputs:
    """The outputs a run of ``record`` writes beside it: ``metrics`` (training.metrics), ``weights``
    (training.save_weights). Without a record file (None) there is nowhere to write them: asking for
    any is an error."""

    record: Path | None
    metrics: str = "none"
    weights: bool = False

    def __post_init__(self) -> None:
        if self.record is None and self.kinds():
            raise PromptworthError("training settings metrics and save_weights write files beside the run's record: "
                                   "give the run a record file (promptworth train --out)")

    def kinds(self) -> list[str]:
        return [kind for kind in (self.metrics, "weights" if self.weights else "none") if kind != "none"]

    def final(self, kind: str) -> Path:
        assert self.record is not None, "no record file: no outputs"
        return output_path(self.record, kind)

    def partial(self, kind: str) -> Path:
        final = self.final(kind)
        return final.with_name(final.name + PARTIAL)

    def prepare(self) -> None:
        """Before training: each final name free or an earlier output of its own (else one error now,
        not after hours of training); a partial one left by a run that was killed is removed."""
        problems = [problem for kind in self.kinds() if (problem := _replace_problem(self.final(kind), kind))]
        if problems:
            raise PromptworthError(f"cannot write the run's outputs beside its record: {problems[0]}")
        for kind in self.kinds():
            _remove(self.partial(kind))
            if kind in _OWN_FILES:
                self.partial(kind).mkdir(parents=True)

    def publish(self) -> None:
        """Move every partial output into place (an earlier one there is replaced; an empty folder,
        as the weights of a run that trained nothing, goes)."""
        for kind in self.kinds():
            final, partial = self.final(kind), self.partial(kind)
            _remove(final)
            if partial.is_dir() and not any(partial.iterdir()):
                partial.rmdir()
            else:
                os.replace(partial, final)

    def discard(self) -> None:
        """The run failed: its partial outputs go."""
        for kind in self.kinds():
            _remove(self.partial(kind))

    def metrics_entry(self) -> dict[str, Any] | None:
        """The record's ``step_metrics``: the format and the file or folder, relative to the record's folder."""
        if self.metrics == "none":
            return None
        return {"format": self.metrics, "path": self.final(self.metrics).name}
