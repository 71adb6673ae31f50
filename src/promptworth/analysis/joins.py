"""Which runs a comparison reads (docs/analysis.md, "Which runs a comparison reads"): one train
seed per data seed; a method on a backbone of its own beside the runs of the study model it runs
in place of; and the untrained point a method takes from another. Each rule changes nothing in
results it does not apply to, and says what it did in a note the tables print under them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import pandas as pd

from promptworth.analysis.curves import MODEL, ZERO_SHOT
from promptworth.errors import PromptworthError
from promptworth.methods.registry import OBJECTIVE_BACKBONES
from promptworth.methods.specs import UNTRAINED_POINTS, builtin_methods
from promptworth.study.config import model_label

# the model a run ran on, where a comparison sets it beside another model's runs
BACKBONE = "backbone"
TRAIN_SEED = "train_seed"


@dataclass(frozen=True)
class ComparisonRuns:
    """The runs the comparisons read, and a note for each rule that changed them."""

    frame: pd.DataFrame
    notes: tuple[str, ...] = ()


def words(names: Iterable[object]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    names = [str(name) for name in names]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _ids(results: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """The given columns as text ("" where the table has none or a cell is empty)."""
    return results.reindex(columns=list(columns)).astype(object).fillna("").astype(str)


def first_train_seed(results: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Of each model, task and method, the runs of its first (smallest) train seed: one run per
    data seed, as every task and method has, whichever ran a second train seed (train_seeds.md
    reads that); the note says what was left out ("" where nothing was)."""
    if TRAIN_SEED not in results.columns:
        return results, ""
    ids = _ids(results, (MODEL, "task", "method"))
    seeds = pd.to_numeric(results[TRAIN_SEED], errors="coerce")
    first = seeds.groupby([ids[c] for c in ids.columns]).transform("min")
    kept = seeds.isna() | (seeds == first)
    if kept.all():
        return results, ""
    ran = []
    for (model, task), rows in ids[~kept].groupby([MODEL, "task"], sort=False):
        methods = list(dict.fromkeys(rows["method"]))
        here = ids[MODEL].eq(model) & ids["task"].eq(task) & ids["method"].isin(methods)
        where = f"{task} ({model})" if model else task
        ran.append(f"{words(methods)} on {where} ran train seeds {words(sorted(set(seeds[here].dropna().astype(int))))}")
    firsts = words(sorted(set(first[~kept].astype(int))))
    return results[kept], (f"Train seeds: {'; '.join(ran)}. The table reads train seed {firsts} of each data seed, one "
                           "run per data seed as every other task and method has (train_seeds.md sets the spread "
                           "between train seeds against the spread between data seeds).")


def own_backbone(method: str, objective: object) -> str | None:
    """The backbone a method always runs on (``MethodSpec.backbone``: SetFit's sentence encoder),
    by its objective where the table names it, else a built-in's by name; None: the study's model."""
    if isinstance(objective, str) and objective:
        return OBJECTIVE_BACKBONES.get(objective)
    spec = builtin_methods().get(method)
    return spec.backbone if spec is not None else None


def join_backbones(results: pd.DataFrame, in_place_of: str | None = None) -> tuple[pd.DataFrame, str]:
    """The runs of a method on a backbone of its own, moved to the model it runs in place of
    (``in_place_of``: the study's first model; by default the one other model of the results), so
    that its comparisons pair them with that model's runs on the same task, size and data seed;
    column ``backbone`` keeps the model every run ran on."""
    if MODEL not in results.columns:
        return results, ""
    ids = _ids(results, (MODEL, "method", "objective"))
    own = pd.Series([(backbone := own_backbone(method, objective)) is not None and model_label(backbone) == model
                     for model, method, objective in ids.itertuples(index=False)], index=results.index)
    others = list(dict.fromkeys(ids.loc[~own, MODEL]))
    if not own.any() or not others:
        return results, ""
    moved = list(dict.fromkeys(ids.loc[own, "method"]))
    backbones = list(dict.fromkeys(ids.loc[own, MODEL]))
    if in_place_of is None and len(others) > 1:
        raise PromptworthError(f"{words(moved)} ran on {words(backbones)}, a backbone of its own, and the results hold "
                               f"runs of several models ({', '.join(others)}): give the one it ran in place of, the "
                               "study's first model, with --in-place-of")
    target = in_place_of or others[0]
    if target not in others:
        raise PromptworthError(f"--in-place-of {target!r}: the results hold no runs of that model (models: "
                               f"{', '.join(others)})")
    out = results.assign(**{BACKBONE: ids[MODEL]})
    out.loc[own, MODEL] = target
    return out, (f"{words(moved)} ran on {words(backbones)}, a backbone of its own, once, where the study's first "
                 f"model, {target}, would run it: its comparisons pair its runs with {target}'s on the same task, "
                 f"size and data seed, and their rows name both models, the treatment's first "
                 f"(`{backbones[0]} vs {target}`).")


def borrow_untrained_points(results: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """For each method of ``UNTRAINED_POINTS`` with runs on a model and task but none at size 0,
    the size-0 runs of the method that is its untrained point there, as its own."""
    sizes = pd.to_numeric(results["train_size"], errors="coerce")
    ids = _ids(results, (MODEL, "task", "method"))
    borrowed, pairs = [], {}
    for method, point in UNTRAINED_POINTS.items():
        for model, task in dict.fromkeys(ids.loc[ids["method"] == method, [MODEL, "task"]].itertuples(index=False)):
            here = ids[MODEL].eq(model) & ids["task"].eq(task) & sizes.eq(ZERO_SHOT)
            runs = results[here & ids["method"].eq(point)]
            if len(runs) and not (here & ids["method"].eq(method)).any():
                borrowed.append(runs.assign(method=method))
                pairs[method] = point
    if not borrowed:
        return results, ""
    said = "; ".join(f"{method}'s size-0 point is {point}'s runs at size 0" for method, point in pairs.items())
    return pd.concat([results, *borrowed], ignore_index=True), (
        f"Untrained points: {said} (the same prompt without demonstrations: in-context learning from no examples); "
        "its curves start there.")


def comparison_runs(results: pd.DataFrame, in_place_of: str | None = None, untrained_points: bool = True
                    ) -> ComparisonRuns:
    """The runs the comparisons, curves and score tables read: the first train seed, methods on
    backbones of their own beside ``in_place_of``'s runs, and (``untrained_points``) the untrained
    points borrowed."""
    frame, seeds = first_train_seed(results)
    frame, backbones = join_backbones(frame, in_place_of)
    frame, points = borrow_untrained_points(frame) if untrained_points else (frame, "")
    return ComparisonRuns(frame, tuple(note for note in (seeds, backbones, points) if note))


def models_cell(runs: pd.DataFrame, treatment: str, baseline: str, model: str) -> str:
    """A comparison's model as its rows name it: ``model``, or where its two methods' runs ran on
    different backbones (one of them its own), both, the treatment's first."""
    if BACKBONE not in runs.columns:
        return model
    ran_on = [list(dict.fromkeys(runs.loc[runs["method"] == method, BACKBONE].astype(str)))
              for method in (treatment, baseline)]
    if not all(ran_on) or ran_on[0] == ran_on[1]:
        return model
    return " vs ".join("/".join(backbones) for backbones in ran_on)


def method_label(runs: pd.DataFrame, method: str, model: str) -> str:
    """A method as a figure names it: with the backbone it ran on where that is not ``model``."""
    if BACKBONE not in runs.columns:
        return method
    ran_on = [b for b in dict.fromkeys(runs.loc[runs["method"] == method, BACKBONE].astype(str)) if b != model]
    return f"{method} ({'/'.join(ran_on)})" if ran_on else method


def joined_models(models: Mapping[tuple, str], methods: Mapping[tuple, str], objectives: Mapping[tuple, str],
                  in_place_of: str | None) -> dict[tuple, str]:
    """:func:`join_backbones` for runs not in a table (the records, by key): each run's model for
    its comparisons."""
    keys = list(models)
    frame = pd.DataFrame({MODEL: [models[k] for k in keys], "method": [methods[k] for k in keys],
                          "objective": [objectives[k] for k in keys]})
    joined, _ = join_backbones(frame, in_place_of)
    return dict(zip(keys, joined[MODEL]))
