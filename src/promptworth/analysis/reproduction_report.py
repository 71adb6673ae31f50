"""The report of a reproduction (:mod:`promptworth.analysis.reproduction`): ``reproduction.md`` for
people, ``reproduction.json`` for machines (``format: promptworth-reproduce/1``; docs/reproducing.md
describes both), and the lines ``promptworth reproduce`` prints."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable

from promptworth.analysis.reproduction import AdvantageAgreement, Outcome, Reproduction, RunPair

FORMAT = "promptworth-reproduce/1"
SHOWN = 20  # names listed before "and N more"


def _listed(names: Iterable[str]) -> str:
    names = list(names)
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(f"`{name}`" for name in names[:SHOWN]) + more


def _kinds(kinds: Iterable[str]) -> str:
    return " and ".join(f"`{kind}` ({count})" for kind, count in sorted(Counter(kinds).items())) or "none"


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def why_not(rep: Reproduction) -> list[str]:
    """Why the sets do not agree, one reason a line (none: they agree)."""
    reasons = []
    if rep.missing:
        reasons.append(f"{len(rep.missing)} published record(s) have no reproduction")
    if rep.same_kind_differing:
        reasons.append(f"{len(rep.same_kind_differing)} record(s) on the same kind of CPU are not identical")
    off = [row for row in rep.advantages if not row.agrees]
    if off:
        reasons.append(f"{len(off)} advantage(s) disagree: " + ", ".join(f"{r.comparison} ({r.model}, {r.task})"
                                                                         for r in off[:SHOWN]))
    return reasons


def verdict(rep: Reproduction) -> str:
    if rep.agrees:
        return "the reproduction agrees with the published records"
    return "the reproduction does not agree with the published records: " + "; ".join(why_not(rep))


def _change(before: Any, after: Any, digits: int) -> str:
    shown = [("–" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)) for v in (before, after)]
    if before == after:
        return shown[0]
    delta = f" ({after - before:+.{digits}f})" if isinstance(before, (int, float)) and isinstance(after, (int, float)) else ""
    return f"{shown[0]} → {shown[1]}{delta}"


def run_rows(pairs: Iterable[RunPair]) -> list[list[str]]:
    """The table rows of the pairs that differ: in score, dev score or best step, or (on the same
    kind of CPU) in any key compared."""
    rows = []
    for p in pairs:
        if not (p.outcome_differs or (p.same_kind and p.differing)):
            continue
        others = [key for key in p.differing if key.split(".")[0] not in Outcome._fields]
        rows.append([f"`{p.name}`", "same" if p.same_kind else f"{p.published_kind} → {p.reproduced_kind}",
                     _change(p.published.score, p.reproduced.score, 4),
                     _change(p.published.dev_score, p.reproduced.dev_score, 4),
                     _change(p.published.best_step, p.reproduced.best_step, 0),
                     ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")])
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _records_section(rep: Reproduction) -> list[str]:
    same = [p for p in rep.pairs if p.same_kind]
    added = sorted({key for p in rep.pairs for key in p.added})
    versions = Counter(change for p in rep.pairs for change in p.versions)
    lines = ["## Records", "",
             f"- {len(rep.pairs) + len(rep.missing)} published records, {len(rep.pairs) + len(rep.unpublished)} "
             f"reproduced: {_count(len(rep.pairs), 'pair')}, {len(rep.missing)} without a reproduction, "
             f"{len(rep.unpublished)} not published (not compared).",
             f"- CPU and precision: published {_kinds(p.published_kind for p in rep.pairs)}; reproduced "
             f"{_kinds(p.reproduced_kind for p in rep.pairs)}.",
             f"- On the same kind of CPU (must be identical): {_count(len(same), 'pair')}, "
             f"{sum(p.identical for p in same)} identical, {len(rep.same_kind_differing)} not.",
             f"- On another kind of CPU (differences expected; the advantages decide): "
             f"{_count(len(rep.pairs) - len(same), 'pair')}, "
             f"{sum(p.outcome_differs for p in rep.pairs if not p.same_kind)} with another score, dev score or best step."]
    if versions:
        lines.append("- Library versions that differ: " + "; ".join(f"{c} ({n} records)" for c, n in versions.items()) + ".")
    if added:
        lines.append(f"- Keys only the reproduced records have (added to the record since; not compared): {_listed(added)}.")
    if rep.missing:
        lines.append(f"- Without a reproduction: {_listed(rep.missing)}.")
    rows = run_rows(rep.pairs)
    lines += ["", "### Runs that differ", ""]
    lines += _table(["record", "CPU", "score", "dev score", "best step", "other keys that differ"], rows) if rows \
        else ["None: every pair has the same score, dev score and best step."]
    return lines


def _advantage_rows(rows: Iterable[AdvantageAgreement]) -> list[list[str]]:
    yes = {True: "yes", False: "no"}
    return [[r.comparison, r.model, r.task, r.published, r.reproduced, yes[r.overlap], yes[r.points_inside],
             f"{yes[r.agrees]} ({r.why})"] for r in rows]


HOW_TO_READ = (
    "How to read it: a pair of records on the same kind of CPU (the CPU model in `device`, the `precision`) "
    "must be identical but for the keys that differ between any two runs (timing, git_commit, the sha256 of files "
    "that hold those), where the study kept its files (split_dir, a cited file's path), what ran it (device, "
    "precision, versions) and keys the published record does not have. An advantage row allows the range of its "
    "interval (a bound: from the bound on, to infinity); two rows agree when their ranges overlap "
    "(docs/reproducing.md).")


def markdown(rep: Reproduction, note: str = "") -> str:
    lines = [f"# Reproducing the published study `{rep.study}`", "",
             f"Published records: `{rep.published_folder}`; reproduced: `{rep.reproduced_folder}`.", "",
             f"**Verdict: {verdict(rep)}.**", ""]
    if note:
        lines += [note, ""]
    lines += _records_section(rep)
    lines += ["", "## Advantages", ""]
    lines += _table(["comparison", "model", "task", "published", "reproduced", "ranges overlap",
                     "each number in the other's range", "agree"], _advantage_rows(rep.advantages)) \
        if rep.advantages else ["No advantage to compare (neither set has runs of both methods of a comparison)."]
    return "\n".join([*lines, "", HOW_TO_READ, ""])


def _number(value: float | None) -> float | str | None:
    """JSON-ready: inf as the text "inf" / "-inf" (JSON has none), NaN as null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def as_json(rep: Reproduction, note: str = "") -> dict[str, Any]:
    def outcome(o: Outcome) -> dict[str, Any]:
        return {key: _number(value) for key, value in o._asdict().items()}

    pairs = [{"record": p.name, "published_kind": p.published_kind, "reproduced_kind": p.reproduced_kind,
              "same_kind": p.same_kind, "identical": p.identical, "differing": list(p.differing),
              "published": outcome(p.published), "reproduced": outcome(p.reproduced),
              "versions": list(p.versions)} for p in rep.pairs]
    advantages = [{"comparison": r.comparison, "model": r.model, "task": r.task, "published": r.published,
                   "reproduced": r.reproduced,
                   "published_range": None if r.published_range is None else [_number(v) for v in r.published_range],
                   "reproduced_range": None if r.reproduced_range is None else [_number(v) for v in r.reproduced_range],
                   "overlap": r.overlap, "points_inside": r.points_inside, "agrees": r.agrees, "why": r.why}
                  for r in rep.advantages]
    return {"format": FORMAT, "study": rep.study, "published": rep.published_folder,
            "reproduced": rep.reproduced_folder, "agrees": rep.agrees, "why_not": why_not(rep), "note": note,
            "added_keys": sorted({key for p in rep.pairs for key in p.added}),
            "missing": list(rep.missing), "unpublished": list(rep.unpublished), "pairs": pairs,
            "advantages": advantages}
