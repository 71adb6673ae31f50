"""Whether a run record on disk is the run a study asks for (no torch import).

A record is reused only when it is what the study asks for now, not because its file exists: the
same task, method and parts, model, training-set size, seeds and training settings, trained on the
study's current split, at the rate of the study's current learning-rate selection and with its
current search result (each cited file checked against the sha256 the record cites). The study
is compared with the record itself, not with Snakemake's memory of the job (``.snakemake/`` of one
working folder): another working folder, a clone or a changed config see the same answer.

The workflow names a record that differs, moves it aside (:func:`set_aside`, into
``<results_dir>/stale/``) and so trains it again; ``promptworth aggregate --study`` refuses it,
naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from promptworth.errors import PromptworthError
from promptworth.study.config import Pilot, Run, StudyConfig
from promptworth.study.planning import extension_pilots, pilots, plan
from promptworth.training.outputs import move_beside, outputs_problem

# A value a record may lack: records from before a key existed are compared on the keys they have.
_ABSENT = object()


@dataclass(frozen=True)
class Asked:
    """What a study asks of one run's record: ``values`` by dotted key, and the files the run
    reads whose sha256 the record cites (None: the run reads none)."""

    run: Run | Pilot
    record_file: Path
    values: dict[str, Any]
    split_folder: Path | None  # None: no split folder to check the record against
    selection: Path | None = None  # the lr_grid's selection file whose rate the run trains at
    search: Path | None = None  # the search result file the run applies
    outputs: Mapping[str, Any] = field(default_factory=dict)  # training.metrics, save_weights: outputs_problem


def asked(study: StudyConfig, run: Run | Pilot) -> Asked:
    """What ``study`` asks of the record of ``run`` (a run of the study, or a pilot run of its lr_grid)."""
    from promptworth.study import tiny_variant as fast
    from promptworth.methods.registry import search_kind
    from promptworth.backbones.resolve import hub_model, record_name
    from promptworth.training.settings import config_from_mapping, settings_read

    spec = study.method(run.method)
    is_pilot = isinstance(run, Pilot)
    settings = study.pilot_training(run.method, run.rate, run.size) if is_pilot else study.run_training(run.method, run.size)
    config, test_limit = config_from_mapping(settings), study.splits.train_test_limit
    if not study.runs_dir:  # the tiny variant shrinks what a study trains, not records it only reads
        config, test_limit = fast.train_settings(config, test_limit)
    hyperparameters = {**settings_read(spec.objective, {**dataclasses.asdict(config), "budgets": list(config.budgets)}),
                       "test_limit": test_limit}
    chosen = not is_pilot and study.uses_lr_selection(run.method, run.size)
    if chosen:  # the selection file's rate, checked below
        del hyperparameters["learning_rate"]
    model = study.models_by_label()[run.model]
    hub = hub_model(model)
    values: dict[str, Any] = {
        "task": run.task, "method": run.method, "model": record_name(model),
        "model_dtype": study.load_options_for(model).dtype, **({"model_hub.revision": hub.revision} if hub else {}),
        "data_seed": run.data_seed, "train_seed": run.train_seed,
        # a ladder's size is its training rows (a K-shot split holds K per class)
        **({"train_size": run.size} if isinstance(run.size, int) and study.splits.kind == "ladder" else {}),
        **{f"method_parts.{key}": value for key, value in spec.describe().items()},
        **{f"hyperparameters.{key}": value for key, value in hyperparameters.items()},
    }
    if not chosen:
        values["lr_selection"] = None
    own = study.by_method.get(run.method)
    if own is not None and own.dev_policy is not None and isinstance(run.size, int):
        # a dev policy of the method's own (its rows are new): the dev set's size says which policy drew it
        values["dev_size"] = study.splits.dev_size if own.dev_policy == "fixed" else run.size
    searched = search_kind(spec) is not None
    if not searched:
        values["search"] = None
    record_file = Path(study.pilot_file(run) if is_pilot else study.run_file(run))
    outputs = {"metrics": config.metrics, "save_weights": config.save_weights}
    if study.runs_dir and fast.enabled():
        # the tiny variant writes its own small splits, selections and searches under results/fast/:
        # not the files the records it reads were trained on, so only the records' values are checked
        return Asked(run=run, record_file=record_file, values=values, split_folder=None, outputs=outputs)
    return Asked(
        run=run, record_file=record_file, values=values, outputs=outputs,
        split_folder=Path(study.split_folder(run.task, run.size, run.data_seed, run.method)),
        selection=Path(study.lr_file(run.model, run.task, run.method, run.size)) if chosen else None,
        search=Path(study.search_file(run)) if searched and not is_pilot else None,
    )


def _setting_default(key: str, record: Mapping[str, Any]) -> Any:
    """What ``record``, lacking ``key``, ran with: a key added since, what its absence means
    (``ABSENT_MEANS``), or, in a record that has its settings, a training setting's default
    (``hyperparameters.<field of TrainConfig>``: every setting was added with a default that keeps
    training as it was before it); else absent."""
    from dataclasses import MISSING, fields

    from promptworth.training.record import ABSENT_MEANS
    from promptworth.training.settings import TrainConfig

    if key in ABSENT_MEANS:
        return ABSENT_MEANS[key]
    section, _, name = key.partition(".")
    if section != "hyperparameters" or not isinstance(record.get("hyperparameters"), Mapping):
        return _ABSENT
    default = next((f.default for f in fields(TrainConfig) if f.name == name), MISSING)
    return _ABSENT if default is MISSING else default


def _lookup(record: Mapping[str, Any], key: str) -> Any:
    node: Any = record
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _same(found: Any, wanted: Any) -> bool:
    """Whether a record's value is the one asked for; an option the method resolves from the
    model (None asked) takes any value, an option of a record it lacks its default."""
    if isinstance(wanted, Mapping):
        if not isinstance(found, Mapping):
            return False
        return all(value is None or _same(found.get(key, value), value) for key, value in wanted.items())
    if isinstance(wanted, (list, tuple)):
        return isinstance(found, (list, tuple)) and list(found) == list(wanted)
    if isinstance(wanted, bool) or isinstance(found, bool):
        return found is wanted
    return found == wanted


def _shown(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def _template_problem(study: StudyConfig, run: Run, record: Mapping[str, Any]) -> str | None:
    """The template a prompt method's record names is the one the study asks for: the method's own,
    else the config's ``templates`` entry, else the task's first that suits the model (a searched one
    is the search's)."""
    from promptworth.data.tasks import get_task
    from promptworth.methods.templates import SEARCHED_TEMPLATE
    from promptworth.methods.templates import task_template

    found = record.get("template_name")
    if found is None or found == SEARCHED_TEMPLATE or record.get("model_kind") not in ("mlm", "causal"):
        return None
    wanted = study.template_for(run.task, run.method) or task_template(get_task(run.task, study.defined_tasks), None, record["model_kind"])[0]
    if found != wanted:
        return f"template_name is {found!r} in the record, the study asks for {wanted!r}"
    return None


def _citation_problem(record: Mapping[str, Any], key: str, cited_file: Path, what: str,
                      missing_is_stale: bool) -> str | None:
    """The record cites ``cited_file`` (under ``key``: {file, sha256}) as it is now."""
    from promptworth.files import sha256_file

    citation = record.get(key)
    if not isinstance(citation, Mapping) or not isinstance(citation.get("sha256"), str):
        return f"{key} is {_shown(citation)} in the record, the study's run applies {what} {cited_file}"
    if not cited_file.is_file():
        return f"its {what} {cited_file} is gone (it is made again)" if missing_is_stale else None
    now = sha256_file(cited_file)
    if citation["sha256"] != now:
        return (f"{key}.sha256 is {citation['sha256'][:12]}… in the record, but its {what} {cited_file} now has "
                f"sha256 {now[:12]}… (it changed after the run)")
    return None


def difference(study: StudyConfig, asked_for: Asked, record: Mapping[str, Any], missing_is_stale: bool) -> str | None:
    """How a checked record differs from what the study asks of it (the first key that differs),
    or None when it is the run asked for. ``missing_is_stale``: a cited file that is gone counts as
    a difference (the workflow makes it again; ``aggregate`` cannot check what is not there)."""
    from promptworth.data.split_folder import manifest_sha256

    for key, wanted in asked_for.values.items():
        found = _lookup(record, key)
        default = _setting_default(key, record) if found is _ABSENT else _ABSENT
        if default is not _ABSENT:
            # a key added since the record was written: it ran as the key's absence means
            if not _same(default, wanted):
                return f"{key} is absent in the record (its default {_shown(default)}), the study asks for {_shown(wanted)}"
            continue
        if found is _ABSENT and (wanted is None or key.startswith(("method_parts.", "hyperparameters."))):
            continue  # a record from before the key (null: before the part existed): compared on the keys it has
        if found is _ABSENT or not _same(found, wanted):
            shown = "absent" if found is _ABSENT else _shown(found)
            return f"{key} is {shown} in the record, the study asks for {_shown(wanted)}"
    problem = (_template_problem(study, asked_for.run, record)
               or outputs_problem(record, asked_for.record_file, asked_for.outputs, missing_is_stale))
    if problem is not None:
        return problem
    folder = asked_for.split_folder
    current = manifest_sha256(folder) if folder is not None and folder.is_dir() else None
    if current is not None and record.get("split_manifest_sha256") not in (None, current):
        return (f"split_manifest_sha256 is {record['split_manifest_sha256'][:12]}… in the record, but the split "
                f"{folder} now has manifest sha256 {current[:12]}… (it was written again since)")
    if asked_for.selection is not None:
        problem = _citation_problem(record, "lr_selection", asked_for.selection, "learning-rate selection",
                                    missing_is_stale)
        if problem is not None:
            return problem
        if asked_for.selection.is_file():
            rate = _selection_rate(asked_for.selection)
            found = _lookup(record, "hyperparameters.learning_rate")
            if found != rate:
                return (f"hyperparameters.learning_rate is {_shown(found)} in the record, the study's selection "
                        f"{asked_for.selection} chose {_shown(rate)}")
    if asked_for.search is not None:
        problem = _citation_problem(record, "search", asked_for.search, "search result", missing_is_stale)
        if problem is not None:
            return problem
    return None


def _selection_rate(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("learning_rate")
    except (OSError, ValueError, AttributeError):
        return None


def _stale(study: StudyConfig, runs: Iterable[Run | Pilot], outdated: Mapping[str, str]) -> dict[str, str]:
    """The runs of ``runs`` whose record exists but is not what the study asks for, by record
    file: why (a record that cannot be read is one too; so is one at the rate of a selection
    that ``outdated`` says is made again)."""
    from promptworth.training.record import read_record

    stale: dict[str, str] = {}
    for run in runs:
        asked_for = asked(study, run)
        if not asked_for.record_file.is_file():
            continue
        if asked_for.selection is not None and str(asked_for.selection) in outdated:
            stale[str(asked_for.record_file)] = (f"its learning-rate selection {asked_for.selection} is made again "
                                                 f"({outdated[str(asked_for.selection)]})")
            continue
        try:
            record = read_record(asked_for.record_file)
        except PromptworthError as exc:
            stale[str(asked_for.record_file)] = str(exc)
            continue
        why = difference(study, asked_for, record, missing_is_stale=True)
        if why is not None:
            stale[str(asked_for.record_file)] = why
    return stale


def _citing_selections(study: StudyConfig, pilot: Pilot) -> list[Path]:
    """The selection files that may cite ``pilot``: its band's, and for a rate of the grid of a grid
    that extends at its edge, the choice over the grid alone too."""
    final = Path(study.lr_path(pilot.model, pilot.task, pilot.method, pilot.size))
    assert study.lr_grid is not None
    if study.lr_grid.extend_at_edge and pilot.rate in study.lr_grid.rates[pilot.method]:
        return [final, Path(study.lr_path(pilot.model, pilot.task, pilot.method, pilot.size, grid_only=True))]
    return [final]


def outdated_selections(study: StudyConfig, stale_pilots: Mapping[str, str]) -> dict[str, str]:
    """The lr_grid's selection files that exist but are made again, by file: why. A selection is
    made again when one of its pilot runs trains again, or when a pilot record it cites is not the
    one it read (its sha256 differs)."""
    from promptworth.files import sha256_file
    from promptworth.paths import study_relative

    outdated: dict[str, str] = {}
    for pilot in [*pilots(study), *extension_pilots(study)]:
        pilot_file = study.pilot_file(pilot)
        for selection in _citing_selections(study, pilot):
            if not selection.is_file() or str(selection) in outdated:
                continue
            if pilot_file in stale_pilots:
                outdated[str(selection)] = f"its pilot run {pilot_file} trains again"
                continue
            try:
                runs = json.loads(selection.read_text(encoding="utf-8"))["runs"]
                cited = {study_relative(run["file"]): run["sha256"] for run in runs}
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not a readable selection: select-lr's reader says so when the run reads it
            sha = cited.get(study_relative(pilot_file))
            if sha is not None and Path(pilot_file).is_file() and sha256_file(Path(pilot_file)) != sha:
                outdated[str(selection)] = f"its pilot run {pilot_file} changed after the selection was made"
    return outdated


@dataclass(frozen=True)
class Reuse:
    """What a study reuses and what it makes again: the stale records by file (why), pilots and
    runs alike, the selection files that are made again, and the results table when it no longer
    holds the runs there are (why; None: it does, or it is made anyway)."""

    stale: dict[str, str]
    selections: dict[str, str]
    table: tuple[str, str] | None = None


def reuse(study: StudyConfig) -> Reuse:
    """Every record of the study's runs and pilot runs that exists but is not what the study asks
    for (the workflow trains it again), and the selections that are made again. A study that
    reads existing records (``runs_dir``) trains nothing (aggregate checks its records): only its
    table is made again when a record was deleted since (:func:`outdated_table`)."""
    if study.runs_dir:
        return Reuse(stale={}, selections={}, table=outdated_table(study))
    stale_pilots = _stale(study, [*pilots(study), *extension_pilots(study)], {})
    selections = outdated_selections(study, stale_pilots)
    return Reuse(stale={**stale_pilots, **_stale(study, plan(study), selections)}, selections=selections)


def outdated_table(study: StudyConfig) -> tuple[str, str] | None:
    """With ``runs_dir``: ``<results>/runs.csv`` and why it is made again when it holds another
    number of runs than there are records of the study's runs (one was deleted since: a file
    that is gone is nothing Snakemake can see); else None."""
    import csv

    table = Path(study.results_dir) / "runs.csv"
    if not table.is_file():
        return None
    try:
        with open(table, encoding="utf-8", newline="") as handle:
            rows = sum(1 for _ in csv.reader(handle)) - 1
    except (OSError, UnicodeDecodeError, csv.Error):
        return None  # aggregate writes it again if it must; read_table says what is wrong with it
    records = sum(Path(study.run_file(run)).is_file() for run in plan(study))
    if rows == records:
        return None
    return str(table), f"it holds {rows} runs, runs_dir {records} records of the study's runs (one deleted since?)"


def stale_folder(study: StudyConfig) -> Path:
    """Where the workflow moves the records (and selections) it trains again: ``<results>/stale``."""
    return Path(study.results_dir) / "stale"


def stale_summary(found: Reuse, shown: int = 5) -> str:
    """The lines the workflow prints about the records it trains again and the table it makes
    again (empty: none)."""
    lines = [f"[promptworth] {found.table[0]} is made again: {found.table[1]}"] if found.table else []
    if not found.stale:
        return "\n".join(lines)
    lines += [f"[promptworth] {len(found.stale)} run record(s) are not what the study asks for; they train again "
             "(each is moved to the results' stale/ folder first; not in a dry run):"]
    lines += [f"[promptworth]   {path}: {why}" for path, why in list(found.stale.items())[:shown]]
    if len(found.stale) > shown:
        lines.append(f"[promptworth]   … and {len(found.stale) - shown} more")
    return "\n".join(lines)


def set_aside(found: Reuse, study: StudyConfig) -> list[Path]:
    """Move every stale record and every selection made again into :func:`stale_folder`, under
    its path in the results folder (an older copy there is replaced), so that the study trains
    and chooses them again: Snakemake makes what is missing. Nothing is deleted. The moved files."""
    results, moved = Path(study.results_dir), []
    for name in [*found.stale, *found.selections, *([found.table[0]] if found.table else [])]:
        path = Path(name)
        if not path.is_file():
            continue
        try:
            target = stale_folder(study) / path.relative_to(results)
            target.parent.mkdir(parents=True, exist_ok=True)
            move_beside(path, target.parent)  # a record's metrics and weights go with it
            os.replace(path, target)
        except (OSError, ValueError) as exc:
            raise PromptworthError(f"cannot move the stale record {path} aside into {stale_folder(study)}: "
                                   f"{getattr(exc, 'strerror', None) or exc}") from None
        moved.append(target)
    return moved
