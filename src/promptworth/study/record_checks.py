"""Run records checked against what they name: the split folders they trained on (still the same
split), the files they cite (a selection, a search result), one set of weights per model name, and
what the study asks of each run (:mod:`promptworth.study.reuse`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from promptworth.data.split_folder import MANIFEST, manifest_sha256, split_checksums, verify_split
from promptworth.errors import PromptworthError
from promptworth.study.config import StudyConfig
from promptworth.study.planning import plan
from promptworth.study.reuse import Asked, asked, difference


def split_changed(record: Mapping[str, Any]) -> bool:
    """Whether the split folder a record was trained on now holds another split (a folder that
    is gone, or a record that names none, cannot be checked: False)."""
    recorded = record.get("split_manifest_sha256")
    current = manifest_sha256(Path(record["split_dir"])) if record.get("split_dir") else None
    return recorded is not None and current is not None and current != recorded


def _kshot_dir(task_name: str) -> str | None:
    from promptworth.data.tasks import registry  # pulls in `datasets`: only for folders without a manifest

    spec = registry().get(task_name)
    return spec.kshot_dir if spec is not None else None


def split_problem(folder: Path, task_name: str) -> str | None:
    """Why the files of an existing split folder are not what its manifest (or LM-BFF's published
    checksums) says, or None when they are."""
    kshot_dir = None if (folder / MANIFEST).is_file() else _kshot_dir(task_name)
    try:
        verify_split(split_checksums(folder, task_name, kshot_dir))
    except PromptworthError as exc:
        return str(exc)
    return None


def check_splits(records: Mapping[Path, Mapping[str, Any]]) -> None:
    """Every record whose split folder still exists was trained on that folder's current split:
    the same manifest, and files that still match it. Each folder is hashed once."""
    stale = [
        f"{path} ({Path(record['split_dir']) / MANIFEST})" for path, record in records.items() if split_changed(record)
    ]
    if stale:
        raise PromptworthError(
            f"{len(stale)} run record(s) were trained on a split that has changed since, e.g. {stale[0]}; "
            "delete them to retrain them on the current splits"
        )
    problems: dict[tuple[Path, str], str | None] = {}
    for path, record in records.items():
        if not record.get("split_dir") or not Path(record["split_dir"]).is_dir():
            continue  # a folder no longer here cannot be checked
        key = (Path(record["split_dir"]).resolve(), record["task"])
        if key not in problems:
            problems[key] = split_problem(key[0], key[1])
        if problems[key] is not None:
            raise PromptworthError(f"run record {path}: {problems[key]}")


def check_citations(records: Mapping[Path, Mapping[str, Any]], here: bool = True) -> None:
    """The files records cite by sha256 (a learning-rate selection, a search result) are the ones
    they trained with: two records citing one file with two sha256 are an error, and so is (``here``:
    the records were trained in this folder) a citation of a file that is here now with another
    sha256. Each file is hashed once."""
    from promptworth.files import sha256_file

    seen: dict[tuple[str, str], tuple[str, Path]] = {}
    current: dict[str, str | None] = {}
    for path, record in records.items():
        selection = record.get("lr_selection")
        citations = {"lr_selection": (selection, "learning-rate selection"), "search": (record.get("search"), "search result"),
                     # a run that took over the pilot run it repeats cites that pilot's record
                     "lr_selection.pilot": (selection.get("pilot") if isinstance(selection, Mapping) else None,
                                            "pilot run")}
        for key, (cited, what) in citations.items():
            if not isinstance(cited, Mapping) or not isinstance(cited.get("file"), str):
                continue
            if not isinstance(cited.get("sha256"), str):
                raise PromptworthError(f"{path}: key '{key}.sha256' must be a string, got {cited.get('sha256')!r}")
            name, sha = cited["file"], cited["sha256"]
            first = seen.setdefault((key, name), (sha, path))
            if first[0] != sha:
                raise PromptworthError(
                    f"run records cite two versions of the {what} {name}: {first[1]} (sha256 {first[0][:12]}…) and "
                    f"{path} (sha256 {sha[:12]}…); the file changed between their runs: delete the records of the "
                    "older version to train them again")
            if not here:
                continue
            if name not in current:
                current[name] = sha256_file(Path(name)) if Path(name).is_file() else None
            if current[name] is not None and current[name] != sha:
                raise PromptworthError(
                    f"run record {path} cites the {what} {name} with sha256 {sha[:12]}…, but the file now has sha256 "
                    f"{current[name][:12]}… (it changed after the run): delete the record to train it again")


def check_model_weights(records: Mapping[Path, Mapping[str, Any]]) -> None:
    """The records of one model name one set of weights: two ``model_sha256`` under one model are
    two models in one curve (a model converted or built again differently, or another folder of the
    same name)."""
    weights: dict[str, tuple[str, Path]] = {}
    for path, record in records.items():
        sha = record.get("model_sha256")
        if not isinstance(sha, str):
            continue
        first = weights.setdefault(record["model"], (sha, path))
        if first[0] != sha:
            raise PromptworthError(
                f"run records of model {record['model']!r} were trained on different weights: {first[1]} (model_sha256 "
                f"{first[0][:12]}…) and {path} ({sha[:12]}…); keep the records of one of them")


def study_files(files: Sequence[Path], study: StudyConfig) -> tuple[dict[Path, Asked], list[Path]]:
    """The files among ``files`` that are records of the study's runs (what it asks of each), and
    the others (strays: another study's runs, or stray JSON files), both in ``files``' order."""
    planned = {Path(item.record_file).resolve(): item for item in map(lambda run: asked(study, run), plan(study))}
    own = {path: planned[path.resolve()] for path in files if path.resolve() in planned}
    return own, [path for path in files if path.resolve() not in planned]


def check_against_study(records: Mapping[Path, Mapping[str, Any]], asked_for: Mapping[Path, Asked],
                        study: StudyConfig) -> None:
    """Every record is what ``study`` asks of its run (promptworth.study.reuse); else one error
    naming the record and the first key that differs."""
    for path, record in records.items():
        why = difference(study, asked_for[path], record, missing_is_stale=False)
        if why is not None:
            raise PromptworthError(f"run record {path} is not what the study asks for: {why}; delete it (or rerun the "
                                   "study, which trains it again)")
