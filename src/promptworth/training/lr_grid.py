"""A method's learning rate, chosen from a small grid on dev (LM-BFF's practice); no torch import.

A study's ``lr_grid`` (config/README.md) names methods and the rates to try. Per task and method,
pilot runs (ordinary ``promptworth train`` runs, one per rate, pilot split and train seed) train
at every rate; ``promptworth select-lr`` reads their records, applies :data:`RULE`, the same for
every method, and writes a selection file (:func:`select`, format :data:`FORMAT`, described in
docs/contracts.md). The study's runs of the method train at the chosen rate: ``promptworth train
--learning-rate-from FILE`` reads the file (:func:`apply_selection`) and the run record cites it
(``lr_selection``).

A grid may have pilots at several sizes: each size band chooses its own rate, and a run takes
the band of :data:`BAND_RULE` (:func:`nearest_band`). A grid that extends at its edge
(:data:`EDGE_RULE`) adds one pilot rate beyond the edge its choice fell on (:func:`extension_rate`)
and chooses again over the extended grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from promptworth import __version__
from promptworth.errors import PromptworthError

FORMAT = "promptworth-lr/1"
# Means that agree to this many decimals tie: dev scores are ratios such as 3/5 that floats hold
# only approximately, so (0.5 + 0.7) / 2 and (0.8 + 0.4) / 2 differ in their last bit.
TIE_DECIMALS = 12
RULE = ("the rate with the highest mean dev score over its pilot runs (the same pilot splits and train seeds at "
        f"every rate); means equal to {TIE_DECIMALS} decimals tie, and a tie goes to the smaller rate")


BAND_RULE = ("a run trains at the rate chosen at the pilot size nearest its own training-set size on a log scale "
             "(a size at the geometric mean of two pilot sizes takes the smaller's; all, the whole pool, is larger "
             "than every number)")
# the significant digits of a rate beyond the grid's edge: 1e-5 * (1e-5 / 3e-5) is 3.33e-06, not 3.3333333333333333e-06
EXTENSION_DIGITS = 3
EDGE_RULE = ("a choice at the grid's smallest or largest rate extends the grid once: one rate beyond that edge, at the "
             "ratio of the grid's two rates there (to 3 significant digits), is tried with the same pilot runs, and "
             "the rule chooses again over the extended grid")


def nearest_band(size: int | str, bands: Sequence[int | str]) -> int | str:
    """:data:`BAND_RULE`: the pilot size of ``bands`` nearest ``size`` on a log scale, compared
    exactly (the larger over the smaller of the two sizes, as a fraction); a tie goes to the smaller."""
    from fractions import Fraction

    from promptworth.data.splits import ALL

    numeric = sorted(band for band in bands if band != ALL)
    if size == ALL or not numeric:
        return ALL if ALL in bands else numeric[-1]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise PromptworthError(f"a size band is chosen for a training-set size above 0, not {size!r}")
    return min(numeric, key=lambda band: (Fraction(max(size, band), min(size, band)), band))


def extension_rate(rates: Sequence[float], chosen: float) -> float | None:
    """:data:`EDGE_RULE`: the rate beyond the grid's edge when ``chosen`` is its smallest or largest
    rate (the edge rate times, or over, its ratio to its neighbour), else None."""
    grid = sorted(float(rate) for rate in rates)
    if len(grid) < 2 or chosen not in (grid[0], grid[-1]):
        return None
    edge, neighbour = (grid[0], grid[1]) if chosen == grid[0] else (grid[-1], grid[-2])
    return float(f"{edge * edge / neighbour:.{EXTENSION_DIGITS}g}")


def rate_label(rate: float) -> str:
    """A rate as a file name and a flag spell it: the shortest text that reads back as the same float."""
    return repr(float(rate))


def mean_score(scores: Sequence[float]) -> float:
    """The mean of dev scores as the rule compares it: summed exactly (the order of the runs
    changes nothing) and rounded to :data:`TIE_DECIMALS` decimals."""
    return round(math.fsum(scores) / len(scores), TIE_DECIMALS)


def choose(means: Mapping[float, float]) -> float:
    """:data:`RULE`: the rate with the highest mean dev score; a tie (to :data:`TIE_DECIMALS`) goes to the smaller rate."""
    if not means:
        raise PromptworthError("no learning rate to choose from")
    for rate, value in means.items():
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PromptworthError(f"learning rate {rate_label(rate)}: its mean dev score {value!r} is not a finite number")
    return min(means, key=lambda rate: (-round(means[rate], TIE_DECIMALS), rate))


@dataclass(frozen=True)
class PilotRecord:
    """What the rule reads of one pilot run's record."""

    path: Path
    rate: float
    data_seed: int | None
    train_seed: int
    dev_score: float

    @property
    def key(self) -> tuple[int | None, int]:
        return (self.data_seed, self.train_seed)


def _pilot(path: Path, record: Mapping[str, Any], task: str, method: str, size: int | str) -> PilotRecord:
    """One checked record's pilot: of ``task``, ``method`` and a split of ``size``, with a dev score."""
    for key, expected in (("task", task), ("method", method)):
        if record[key] != expected:
            raise PromptworthError(f"{path}: a run of {key} {record[key]!r}, not a pilot run of {expected!r}")
    folder = record.get("split_dir")
    expected_folder = f"{size}-{record['data_seed']}"
    if not isinstance(folder, str) or Path(folder).name != expected_folder:
        raise PromptworthError(f"{path}: its split {folder!r} is not one of size {size} (a folder named {expected_folder})")
    if record["dev_score"] is None:
        raise PromptworthError(f"{path}: the run has no dev score (its split has no dev set): it cannot choose a rate")
    rate = (record.get("hyperparameters") or {}).get("learning_rate")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise PromptworthError(f"{path}: hyperparameters.learning_rate {rate!r} is not a positive learning rate")
    return PilotRecord(Path(path), float(rate), record["data_seed"], record["train_seed"], float(record["dev_score"]))


def _same_settings(records: Mapping[Path, Mapping[str, Any]]) -> None:
    """The pilot runs differ in their learning rate only: the same model and other hyperparameters."""
    first_path, first = next(iter(records.items()))
    for path, record in records.items():
        for key in ("model", "model_sha256", "metric"):
            if record.get(key) != first.get(key):
                raise PromptworthError(f"pilot runs differ in {key}: {record.get(key)!r} in {path}, "
                                       f"{first.get(key)!r} in {first_path}")
        settings, reference = record.get("hyperparameters") or {}, first.get("hyperparameters") or {}
        for key in sorted(set(settings) | set(reference)):
            if key != "learning_rate" and settings.get(key) != reference.get(key):
                raise PromptworthError(f"pilot runs differ in more than the learning rate: hyperparameters.{key} is "
                                       f"{settings.get(key)!r} in {path}, {reference.get(key)!r} in {first_path}")


def _by_rate(pilots: Sequence[PilotRecord], rates: Sequence[float] | None) -> dict[float, list[PilotRecord]]:
    """The pilots per rate, checked: each (rate, data seed, train seed) once, every rate of ``rates``
    and no other, and the same data and train seeds at every rate."""
    grouped: dict[float, list[PilotRecord]] = {}
    seen: dict[tuple[float, int | None, int], Path] = {}
    for pilot in pilots:
        twice = seen.setdefault((pilot.rate, *pilot.key), pilot.path)
        if twice != pilot.path:
            raise PromptworthError(f"the same pilot run twice (learning rate {rate_label(pilot.rate)}, data seed "
                                   f"{pilot.data_seed}, train seed {pilot.train_seed}): {twice} and {pilot.path}")
        grouped.setdefault(pilot.rate, []).append(pilot)
    if rates is not None:
        wanted = {float(rate) for rate in rates}
        stray = sorted(set(grouped) - wanted)
        if stray:
            path = grouped[stray[0]][0].path
            raise PromptworthError(f"{path}: learning rate {rate_label(stray[0])} is not one of the grid's "
                                   f"({', '.join(map(rate_label, sorted(wanted)))})")
        missing = sorted(wanted - set(grouped))
        if missing:
            raise PromptworthError(f"no pilot run at learning rate {rate_label(missing[0])} of the grid")
    keys = {rate: sorted(p.key for p in group) for rate, group in grouped.items()}
    first = min(keys)
    for rate, runs in keys.items():
        if runs != keys[first]:
            raise PromptworthError(f"the pilot runs differ between rates: learning rate {rate_label(rate)} has (data "
                                   f"seed, train seed) {runs}, {rate_label(first)} has {keys[first]}")
    return {rate: sorted(grouped[rate], key=lambda p: p.key) for rate in sorted(grouped)}


def _beyond_the_edge(pilots: Sequence[PilotRecord], grid: Sequence[float] | None) -> tuple[float, float | None]:
    """:data:`EDGE_RULE` on the pilots: the rate the grid alone chooses, and the rate beyond its
    edge when that choice is at one (None: inside the grid); its pilot runs must be among ``pilots``."""
    if not grid:
        raise PromptworthError("extending the grid at its edge needs the grid's rates (--rates)")
    on_grid = _by_rate([p for p in pilots if p.rate in grid], grid)
    grid_choice = choose({rate: mean_score([p.dev_score for p in group]) for rate, group in on_grid.items()})
    beyond = extension_rate(grid, grid_choice)
    if beyond is not None and not any(p.rate == beyond for p in pilots):
        raise PromptworthError(f"no pilot run at learning rate {rate_label(beyond)}: the grid's choice "
                               f"{rate_label(grid_choice)} is at its edge, and {EDGE_RULE}")
    return grid_choice, beyond


def select(paths: Sequence[Path], task: str, method: str, size: int | str, rates: Sequence[float] | None = None,
           extend_at_edge: bool = False, bands: Sequence[int | str] | None = None) -> dict[str, Any]:
    """The selection file's content: the pilot records at ``paths`` read and checked (runs of
    ``task`` and ``method`` on splits of ``size``, with dev scores, differing only in their rate;
    with ``rates`` exactly those), every rate's dev scores and mean, and the rate :data:`RULE` chooses.
    ``extend_at_edge``: ``rates`` is the grid, extended by :data:`EDGE_RULE` (the pilots at the rate
    beyond its edge given too, where the grid's choice is at one). ``bands``: every pilot size of
    the grid, ``size`` one of them, stated with :data:`BAND_RULE`."""
    from promptworth.files import sha256_file
    from promptworth.training.record import read_record
    from promptworth.paths import study_relative

    if not paths:
        raise PromptworthError("no pilot run records given")
    records = {Path(path): read_record(Path(path)) for path in paths}
    _same_settings(records)
    pilots = [_pilot(path, record, task, method, size) for path, record in records.items()]
    extension: dict[str, Any] | None = None
    if extend_at_edge:
        grid = sorted(float(rate) for rate in rates or ())
        grid_choice, beyond = _beyond_the_edge(pilots, grid)
        extension = {"rule": EDGE_RULE, "grid": grid, "grid_choice": grid_choice, "learning_rate": beyond}
        rates = grid if beyond is None else [*grid, beyond]
    grouped = _by_rate(pilots, rates)
    means = {rate: mean_score([p.dev_score for p in group]) for rate, group in grouped.items()}
    first = next(iter(records.values()))
    return {
        "format": FORMAT,
        "task": task,
        "method": method,
        "model": first["model"],
        "model_sha256": first.get("model_sha256"),
        "size": size,
        "metric": first["metric"],
        "rule": RULE,
        "learning_rate": choose(means),
        "rates": [{"learning_rate": rate, "dev_scores": [p.dev_score for p in group], "mean_dev_score": means[rate]}
                  for rate, group in grouped.items()],
        "runs": [{"file": study_relative(p.path), "sha256": sha256_file(p.path), "learning_rate": p.rate,
                  "data_seed": p.data_seed, "train_seed": p.train_seed, "dev_score": p.dev_score}
                 for group in grouped.values() for p in group],
        **({"extension": extension} if extension is not None else {}),
        **({"bands": {"rule": BAND_RULE, "sizes": list(bands)}} if bands else {}),
        "promptworth_version": __version__,
    }


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_selection(path: Path) -> dict[str, Any]:
    """A selection file as ``promptworth train --learning-rate-from`` reads it, checked: its choice
    follows from its own pilot scores by :data:`RULE`, and every pilot record it cites that is here
    is still the one it read (its sha256). Else one error naming the file and what is wrong."""
    from promptworth.files import sha256_file
    from promptworth.files import read_output

    where = f"--learning-rate-from {path}"
    selection = read_output(path, where, "a learning-rate selection", FORMAT, "promptworth select-lr")
    again = "choose again (promptworth select-lr, or delete it and rerun the study)"
    rates = selection.get("rates")
    if not isinstance(rates, list) or not rates or not all(isinstance(entry, dict) for entry in rates):
        raise PromptworthError(f"{where}: its rates must be a list of each rate's dev scores; {again}")
    means: dict[float, float] = {}
    for entry in rates:
        rate, scores = entry.get("learning_rate"), entry.get("dev_scores")
        if not _finite(rate) or rate <= 0 or rate in means:
            raise PromptworthError(f"{where}: a rate of its grid is {rate!r}, not a positive learning rate given once; "
                                   f"{again}")
        if not isinstance(scores, list) or not scores or not all(map(_finite, scores)):
            raise PromptworthError(f"{where}: the dev scores of learning rate {rate_label(rate)} must be a list of "
                                   f"numbers, got {scores!r}; {again}")
        means[float(rate)] = mean_score(scores)
        if entry.get("mean_dev_score") != means[float(rate)]:
            raise PromptworthError(f"{where}: the mean dev score of learning rate {rate_label(rate)} is "
                                   f"{entry.get('mean_dev_score')!r}, but its dev scores' mean is {means[float(rate)]}; "
                                   f"{again}")
    chosen, rate = choose(means), selection.get("learning_rate")
    if not _finite(rate) or rate <= 0:
        raise PromptworthError(f"{where}: its learning_rate {rate!r} is not a positive number")
    if rate != chosen:
        grid = ", ".join(map(rate_label, means))
        raise PromptworthError(f"{where}: its learning_rate {rate_label(rate)} does not follow from its own pilot "
                               f"scores: the rule chooses {rate_label(chosen)} of the grid ({grid}); {again}")
    if "extension" in selection:
        _check_extension(selection["extension"], means, f"{where}: its extension", again)
    for run in selection.get("runs") or []:
        if not isinstance(run, dict) or not isinstance(run.get("file"), str) or not isinstance(run.get("sha256"), str):
            raise PromptworthError(f"{where}: a pilot run it cites is {run!r}, not a file and its sha256; {again}")
        pilot = Path(run["file"])
        if pilot.is_file() and sha256_file(pilot) != run["sha256"]:
            raise PromptworthError(f"{where}: its pilot run {pilot} has changed since the selection was made (its "
                                   f"sha256 is not the one the selection cites); {again}")
    return selection


def _check_extension(extension: Any, means: Mapping[float, float], where: str, again: str) -> None:
    """A selection's ``extension`` follows from its own pilot scores by :data:`EDGE_RULE`: the grid
    chooses its ``grid_choice``, and the rates compared are the grid and, where that choice is at
    its edge, exactly the rate beyond it."""
    grid = extension.get("grid") if isinstance(extension, dict) else None
    if not isinstance(grid, list) or not all(_finite(rate) and rate in means for rate in grid):
        raise PromptworthError(f"{where} must name its grid, rates whose dev scores it holds, got {extension!r}; {again}")
    grid_choice = choose({rate: means[rate] for rate in grid})
    beyond = extension_rate(grid, grid_choice)
    expected = {"grid_choice": grid_choice, "learning_rate": beyond}
    found = {key: extension.get(key) for key in expected}
    if found != expected or sorted(means) != sorted([*grid, *([beyond] if beyond is not None else [])]):
        raise PromptworthError(f"{where} says {found}, but its pilot scores say {expected} over the rates "
                               f"{', '.join(map(rate_label, sorted(means)))}; {again}")


def apply_selection(path: Path, file_name: str, task: str, method: str, model: str,
                    model_sha256: str | None) -> tuple[float, dict[str, Any]]:
    """The rate a selection file chose (:func:`read_selection`), checked against the run (the same
    task, method and model), and what the run record says of it (``lr_selection``; the file as
    ``file_name``)."""
    from promptworth.files import sha256_file

    where = f"--learning-rate-from {path}"
    selection = read_selection(path)
    expected = {"task": task, "method": method, "model": model, "model_sha256": model_sha256}
    for key, value in expected.items():
        if selection.get(key) != value:
            raise PromptworthError(f"{where}: its {key} is {selection.get(key)!r}, this run's {value!r}: choose "
                                   "the rate for this run's task, method and model (promptworth select-lr)")
    rate = float(selection["learning_rate"])
    return rate, {"file": file_name, "sha256": sha256_file(Path(path)), "learning_rate": rate}


def pilot_at_choice(path: Path, data_seed: int | None, train_seed: int) -> dict[str, str] | None:
    """The pilot run a selection file cites at its chosen rate with these seeds, as the selection
    cites it ({file, sha256}), when its record is still the one the selection read (the same
    sha256); else None. Its file is relative to the study's folder, as the selection wrote it."""
    from promptworth.files import sha256_file

    selection = read_selection(path)
    for run in selection.get("runs") or []:
        if (run.get("learning_rate") == selection.get("learning_rate") and run.get("data_seed") == data_seed
                and run.get("train_seed") == train_seed):
            pilot = Path(run["file"])
            if pilot.is_file() and sha256_file(pilot) == run["sha256"]:
                return {"file": run["file"], "sha256": run["sha256"]}
    return None
