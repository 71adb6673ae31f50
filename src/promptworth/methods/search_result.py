"""A search's result file (``promptworth search``): read, checked against the run, applied (the label words or template it chose, and what the record cites of it)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from promptworth.data.split_folder import manifest_sha256
from promptworth.data.tasks import TaskSpec
from promptworth.errors import PromptworthError
from promptworth.files import read_output, sha256_file
from promptworth.methods.registry import search_kind
from promptworth.methods.specs import MethodSpec
from promptworth.methods.templates import Chosen


# What a result file says it is (a reader checks it).
FORMAT = "promptworth-search/1"


def apply_result(path: Path, file_name: str, task: TaskSpec, spec: MethodSpec, model_sha256: str | None,
                 split_dir: Path) -> tuple[Chosen, dict[str, Any]]:
    """What the result file at ``path`` chose, checked against the run (the same task, method,
    model and split), and what the run record says of it (``search``; the file as ``file_name``)."""
    kind = search_kind(spec)
    if kind is None:
        raise PromptworthError(f"--search {path}: method {spec.name} applies no search (it has no extra autowords "
                               "or autotemplate)")
    result = read_result(path, task)
    expected = {"kind": kind, "task": task.name, "method": spec.name, "model_sha256": model_sha256,
                "split_manifest_sha256": manifest_sha256(Path(split_dir))}
    for key, value in expected.items():
        if result.get(key) != value:
            raise PromptworthError(f"--search {path}: its {key} is {result.get(key)!r}, this run's {value!r}: "
                                   "search again for this run (promptworth search)")
    chosen = Chosen(label_words=result["label_words"]) if kind == "words" else Chosen(template=result["template"])
    # the search's own time is part of the run's cost (lmbff-table adds it to the row's CPU time)
    cited = {"file": file_name, "sha256": sha256_file(Path(path)), "kind": kind, "wall_s": result["wall_s"],
             **({"label_words": result["label_words"]} if kind == "words" else {"template": result["template"]})}
    return chosen, cited


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _label_words(value: Any, task: TaskSpec) -> bool:
    """Whether ``value`` gives each label of ``task`` one word of its own (distinct words)."""
    return (isinstance(value, dict) and sorted(value) == sorted(task.labels)
            and all(isinstance(word, str) and word.strip() for word in value.values())
            and len(set(value.values())) == len(value))


def read_result(path: Path, task: TaskSpec) -> dict[str, Any]:
    """A search result file as ``promptworth train --search`` reads it, checked: its choice (label
    words for each label of ``task``, or a template), its time and its ranked candidates are
    there and of their types, and the choice is the one its candidates' scores make (the rule of
    :func:`_choose`). Else one error naming the file and the key."""
    where = f"--search {path}"
    result = read_output(path, where, "a search result", FORMAT, "promptworth search")
    again = "search again (promptworth search, or delete it and rerun the study)"
    kind = result.get("kind")
    choice = "label_words" if kind == "words" else "template"
    if kind not in ("words", "template"):
        raise PromptworthError(f"{where}: its kind is {kind!r}, not words or template; {again}")
    if kind == "words" and not _label_words(result.get("label_words"), task):
        raise PromptworthError(f"{where}: its label_words must give each label of {task.name} ({', '.join(task.labels)}) "
                               f"a word of its own, got {result.get('label_words')!r}; {again}")
    if kind == "template" and not (isinstance(result.get("template"), str) and result["template"].strip()):
        raise PromptworthError(f"{where}: its template must be a template string, got {result.get('template')!r}; {again}")
    if not _number(result.get("wall_s")) or result["wall_s"] < 0:
        raise PromptworthError(f"{where}: its wall_s must be the search's time in seconds, got "
                               f"{result.get('wall_s')!r}; {again}")
    candidates = result.get("candidates")
    if (not isinstance(candidates, list) or not candidates
            or not all(isinstance(c, dict) and choice in c and _number(c.get("zero_shot_dev"))
                       and (c.get("finetuned_dev") is None or _number(c["finetuned_dev"])) for c in candidates)):
        raise PromptworthError(f"{where}: its candidates must be a list of ranked {choice} with their dev scores "
                               f"(zero_shot_dev, finetuned_dev); {again}")
    tuned = sum(c.get("finetuned_dev") is not None for c in candidates)
    best = max(candidates[:max(1, tuned)], key=lambda c: c["finetuned_dev"] if tuned else c["zero_shot_dev"])
    if best[choice] != result[choice]:
        raise PromptworthError(f"{where}: its {choice} {result[choice]!r} is not the one its candidates' scores "
                               f"choose ({best[choice]!r}); {again}")
    return result


def missing_result_error(spec: MethodSpec) -> PromptworthError:
    """The error of a run of a search method without its result file."""
    return PromptworthError(
        f"method {spec.name} trains with searched {search_kind(spec)}: make the search's file first with "
        f"`promptworth search` (the same --task, --method, --split-dir, --model and --seed, and --out FILE) "
        "and pass it with --search FILE"
    )
