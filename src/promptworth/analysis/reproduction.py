"""A study retrained (``promptworth reproduce``, ``make reproduce``) compared with its published records.

Two sets of records are compared, each a study's folder with ``runs/`` (the runs) and ``lr-grid/``
(the pilot runs that chose the learning rates); a record is paired with the one at the same path in
the other set (``runs/<model>/<task>/<method>/<size>-<data seed>-<train seed>.json``).

- **Records.** A pair ran on the same kind of CPU when both records' ``device`` name the same CPU
  model (the thread count aside: it does not change a record) and both trained in the same
  ``precision``. Such a pair must be identical, key for key, but for the keys that differ between
  any two runs of the same code (:data:`promptworth.training.record.VOLATILE_KEYS`: timing, commit,
  the sha256 of files that hold those), where the study kept its files (:data:`WHERE_KEYS`: they follow
  its results folder), what ran it (:data:`MACHINE_KEYS`: device, precision, library versions) and the
  keys the published record does not have (record fields added since it was made). Every pair whose
  score, dev score or best step differ is listed, on any CPU.
- **Advantages.** The advantage table of each set is computed as the study's ``tables`` rule does
  (the study's comparisons, the first one's curves setting the score window) and each row is read
  as the range of advantages it allows (:func:`advantage_range`); two rows agree when their ranges
  overlap (:func:`agreement`).

The sets agree (:attr:`Reproduction.agrees`) when every published record has its reproduction,
every pair on the same kind of CPU is identical, and every advantage row agrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from promptworth.analysis.advantage import AdvantageResult, Comparison
from promptworth.analysis.estimate import AdvantageOptions
from promptworth.training.cpu import read_cpu
from promptworth.training.record import VOLATILE_KEYS, read_record, without_keys

# the folders of a study's results that hold run records
RECORD_FOLDERS = ("runs", "lr-grid")
# where the study kept its files, relative to the folder it ran in (they follow its results folder;
# the files' contents are compared through what the records say of them: split_manifest_sha256, the
# rate chosen, ...): the top-level split_dir, and the ``file`` of a cited selection, pilot or search
WHERE_KEYS = frozenset({"split_dir"})
CITED_FILE = "file"
# what ran the record (top-level keys): the CPU and precision decide how a pair is compared, the
# library versions are reported
MACHINE_KEYS = frozenset({"device", "precision", "versions"})


class Outcome(NamedTuple):
    """What a run ended with: its test score, best dev score and the step they were read at."""

    score: float | None
    dev_score: float | None
    best_step: int | None


@dataclass(frozen=True)
class RunPair:
    """One published record and its reproduction."""

    name: str  # the record's path in its set
    published_kind: str  # the CPU and precision it ran on (:func:`cpu_kind`)
    reproduced_kind: str
    differing: tuple[str, ...]  # the keys compared whose values differ (dotted)
    added: tuple[str, ...]  # keys only the reproduction has (record fields added since): not compared
    published: Outcome
    reproduced: Outcome
    versions: tuple[str, ...]  # the library versions that differ ("torch 2.13.0 -> 2.14.0")

    @property
    def same_kind(self) -> bool:
        return self.published_kind == self.reproduced_kind

    @property
    def identical(self) -> bool:
        return not self.differing

    @property
    def outcome_differs(self) -> bool:
        return self.published != self.reproduced


@dataclass(frozen=True)
class AdvantageAgreement:
    """One advantage row of both sets: the cells as the tables write them, the ranges they allow
    (None: undefined, or absent), whether the ranges overlap and whether each set's number lies in
    the other's range."""

    model: str
    task: str
    comparison: str
    published: str
    reproduced: str
    published_range: tuple[float, float] | None
    reproduced_range: tuple[float, float] | None
    overlap: bool
    points_inside: bool
    agrees: bool
    why: str


@dataclass(frozen=True)
class Reproduction:
    study: str
    published_folder: str
    reproduced_folder: str
    pairs: tuple[RunPair, ...]
    missing: tuple[str, ...]  # published records without a reproduction
    unpublished: tuple[str, ...]  # reproduced records the published set does not have (not compared)
    advantages: tuple[AdvantageAgreement, ...]

    @property
    def same_kind_differing(self) -> tuple[RunPair, ...]:
        return tuple(pair for pair in self.pairs if pair.same_kind and not pair.identical)

    @property
    def agrees(self) -> bool:
        return not self.missing and not self.same_kind_differing and all(row.agrees for row in self.advantages)


# ---------------------------------------------------------------------------------------------
# Records


def record_files(folder: Path) -> dict[str, Path]:
    """The run records of a study's results ``folder`` (its :data:`RECORD_FOLDERS`), by their path in it."""
    found = {}
    for sub in RECORD_FOLDERS:
        for path in sorted((folder / sub).rglob("*.json")):
            found[path.relative_to(folder).as_posix()] = path
    return found


def cpu_kind(record: Mapping[str, Any]) -> str:
    """The kind of CPU a record ran on and its precision: ``AMD EPYC, bf16`` (a device that is not
    a CPU as the record names it)."""
    device = record.get("device")
    cpu = read_cpu(device) if isinstance(device, str) else None
    machine = cpu[0] if cpu else device if isinstance(device, str) else "device not recorded"
    return f"{machine}, {record.get('precision') or 'precision not recorded'}"


def differing_keys(published: Any, reproduced: Any, prefix: str = "") -> tuple[list[str], list[str]]:
    """(the dotted keys whose values differ, the keys only ``reproduced`` has), objects compared key
    by key, anything else as a whole; a key ``published`` has and ``reproduced`` lacks differs."""
    if not (isinstance(published, dict) and isinstance(reproduced, dict)):
        return ([prefix.rstrip(".") or "(the record)"] if published != reproduced else []), []
    differ: list[str] = []
    added = [f"{prefix}{key}" for key in reproduced if key not in published]
    for key, value in published.items():
        if key not in reproduced:
            differ.append(f"{prefix}{key} (absent in the reproduction)")
            continue
        inner_differ, inner_added = differing_keys(value, reproduced[key], f"{prefix}{key}.")
        differ += inner_differ
        added += inner_added
    return differ, added


def outcome(record: Mapping[str, Any]) -> Outcome:
    return Outcome(record.get("score"), record.get("dev_score"), record.get("best_step"))


def version_changes(published: Mapping[str, Any], reproduced: Mapping[str, Any]) -> tuple[str, ...]:
    before, after = published.get("versions") or {}, reproduced.get("versions") or {}
    return tuple(f"{name} {before.get(name, '-')} -> {after.get(name, '-')}"
                 for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name))


def compared(record: Mapping[str, Any]) -> dict[str, Any]:
    """What of a record a reproduction must repeat: all but the volatile keys and cited files' paths
    (at any depth), where its split was and what ran it (top level)."""
    kept = without_keys(dict(record), VOLATILE_KEYS | {CITED_FILE})
    return {key: value for key, value in kept.items() if key not in WHERE_KEYS | MACHINE_KEYS}


def pair(name: str, published: Mapping[str, Any], reproduced: Mapping[str, Any]) -> RunPair:
    differ, added = differing_keys(compared(published), compared(reproduced))
    return RunPair(name, cpu_kind(published), cpu_kind(reproduced), tuple(differ), tuple(added),
                   outcome(published), outcome(reproduced), version_changes(published, reproduced))


def compare_records(published: Path, reproduced: Path) -> tuple[list[RunPair], list[str], list[str]]:
    """(the pairs, the published records without a reproduction, the reproduced records not published)."""
    before, after = record_files(published), record_files(reproduced)
    pairs = [pair(name, read_record(path), read_record(after[name])) for name, path in before.items() if name in after]
    return pairs, [name for name in before if name not in after], [name for name in after if name not in before]


# ---------------------------------------------------------------------------------------------
# Advantages


def advantage_range(row: AdvantageResult) -> tuple[float, float] | None:
    """The advantages a row allows: its interval (the bootstrap's, or the estimate ± the
    leave-one-out std; the estimate alone without either); for a bound, from the bound (or the
    interval's nearer end, if it reaches further) to infinity on the side the bound opens to:
    ``> N`` and ``≥ N`` [min(N, lower), inf], ``< -N`` and ``≤ -N`` [-inf, max(-N, upper)].
    None: undefined."""
    if row.bound_kind in ("more_than", "at_least"):
        return (row.bound if math.isnan(row.lower) else min(row.bound, row.lower)), math.inf
    if row.bound_kind in ("less_than", "at_most"):
        return -math.inf, (row.bound if math.isnan(row.upper) else max(row.bound, row.upper))
    if math.isnan(row.advantage):
        return None
    if not (math.isnan(row.lower) or math.isnan(row.upper)):
        return row.lower, row.upper
    if not math.isnan(row.std):
        return row.advantage - row.std, row.advantage + row.std
    return row.advantage, row.advantage


def point(row: AdvantageResult) -> float:
    """A row's number: the estimate, or the bound."""
    return row.bound if row.bound_kind else row.advantage


def agreement(published: AdvantageResult | None, reproduced: AdvantageResult | None) -> AdvantageAgreement:
    """Two rows agree when the ranges they allow (:func:`advantage_range`) overlap, or both are
    undefined; a row only the reproduction has (a comparison the published set has not run yet)
    is not compared, one only the published set has does not agree. ``points_inside`` (reported,
    not required): each row's number lies in the other's range."""
    from promptworth.analysis.table_format import format_advantage

    first = published or reproduced
    assert first is not None
    ranges = [advantage_range(row) if row is not None else None for row in (published, reproduced)]
    cells = [format_advantage(row) if row is not None else "not run" for row in (published, reproduced)]
    overlap = inside = False
    if published is None or reproduced is None:
        agrees = published is None
        why = "not published: not compared" if agrees else "the reproduction has no runs of this comparison"
    elif ranges[0] is None or ranges[1] is None:
        agrees = ranges[0] is None and ranges[1] is None
        why = "undefined in both" if agrees else \
            f"undefined in the {'published' if ranges[0] is None else 'reproduced'} records only"
    else:
        (lo_p, hi_p), (lo_r, hi_r) = ranges  # type: ignore[misc]
        overlap = max(lo_p, lo_r) <= min(hi_p, hi_r)
        inside = lo_p <= point(reproduced) <= hi_p and lo_r <= point(published) <= hi_r
        agrees, why = overlap, "the ranges overlap" if overlap else "the ranges do not overlap"
    return AdvantageAgreement(first.model, first.task, f"{first.treatment} vs {first.baseline}", cells[0], cells[1],
                              ranges[0], ranges[1], overlap, inside, agrees, why)


def advantage_rows(folder: Path, comparisons: Sequence[Comparison],
                   here: bool = True) -> dict[tuple[str, str, str], AdvantageResult]:
    """The advantage table of the runs in ``folder/runs``, as the study's ``tables`` rule computes it
    (the first comparison's curves set every comparison's score window), by (model, task,
    comparison); only the rows whose methods both ran (a comparison missing a method has none).
    ``here``: the records were trained in this checkout (a published set was not: the splits its
    records name by relative path may be another study's now), as in :func:`~promptworth.analysis.results.read_records`."""
    from promptworth.analysis.results import collect
    from promptworth.analysis.tables import advantage_results

    if not comparisons or not any((folder / "runs").rglob("*.json")):
        return {}
    table = collect([folder / "runs"], here=here)
    present = set(table["method"].astype(str))
    window = (comparisons[0].treatment, comparisons[0].baseline)
    usable = [c for c in comparisons if {c.treatment, c.baseline, *window} <= present]
    results = advantage_results(table, usable, AdvantageOptions(window_from=window)) if usable else []
    return {(r.model, r.task, f"{r.treatment} vs {r.baseline}"): r for r in results
            if r.n_runs_treatment > 0 and r.n_runs_baseline > 0}


def compare_advantages(published: Path, reproduced: Path,
                       comparisons: Sequence[Comparison]) -> list[AdvantageAgreement]:
    before, after = advantage_rows(published, comparisons, here=False), advantage_rows(reproduced, comparisons)
    keys = list(dict.fromkeys([*before, *after]))
    return [agreement(before.get(key), after.get(key)) for key in keys]


def reproduction(study: str, published: Path, reproduced: Path, comparisons: Sequence[Comparison]) -> Reproduction:
    """Every record and advantage of the ``published`` set against the ``reproduced`` one."""
    pairs, missing, unpublished = compare_records(published, reproduced)
    return Reproduction(study, published.as_posix(), reproduced.as_posix(), tuple(pairs), tuple(missing),
                        tuple(unpublished), tuple(compare_advantages(published, reproduced, comparisons)))
