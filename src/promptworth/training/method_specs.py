"""Methods as combinations of parts, and the registry of the built-in methods (no torch import:
the CLI, the study checks and the workflow read it).

A method is an *objective* (how labels are scored) with a *tuning* (which parameters train and
how they are added) and the tuning's options:

- objectives: ``prompt`` (the task's template; label words read at the answer slot), ``head`` (a
  new classifier on the backbone), ``null`` (the template with the null verbalizer), ``majority``
  (no model: the evaluation set's most frequent class, LM-BFF's reference row);
- tunings: see :data:`TUNINGS` (``none``: nothing trains, tuning-free prompting);
- extras, how a prompt objective's input or scores change: see :data:`EXTRAS` (``calibrate``;
  ``context``: in-context demonstrations; ``demos``: LM-BFF's sampled demonstrations;
  ``autowords`` and ``autotemplate``: label words or a template found by a search, LM-BFF's, whose
  result file ``promptworth train --search`` applies: :mod:`promptworth.training.search`).

:data:`BUILTINS` names every built-in method, in the order tables and figures show them. A study
may define more inline (``{name: prompt-lora-r4, objective: prompt, tuning: lora, options: {r: 4}}``,
:func:`define`). The training code that gives the parts their behaviour is
:mod:`promptworth.training.methods` (objectives) and :mod:`promptworth.training.tunings` (tunings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from promptworth.errors import PromptworthError

# A method's name: lower-case words joined by '-' (a file name and a Snakemake wildcard).
NAME_PATTERN = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
# The template name a run record gives a template that a search chose (the extra autotemplate).
SEARCHED_TEMPLATE = "search"

OBJECTIVES: dict[str, str] = {
    "prompt": "the task's template; label scores are the label words' log-probabilities at the answer slot",
    "head": "a new classifier on the backbone ([CLS] for masked LMs, the last token for causal LMs)",
    "null": "the task's template with the null verbalizer (null_words)",
    "majority": "no model: every example gets the evaluation set's most frequent class (LM-BFF's reference row)",
}
# Objectives that read labels through a template and label words.
PROMPT_OBJECTIVES = ("prompt", "null")


@dataclass(frozen=True)
class Option:
    """One option of a tuning: an integer or a number in ``[minimum, maximum)`` (None: unbounded),
    or one of ``choices``; a default of None is decided from the model when the method is built."""

    name: str
    kind: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None  # exclusive
    choices: tuple[str, ...] = ()

    def check(self, value: Any, where: str) -> Any:
        if self.choices:
            if value not in self.choices:
                raise PromptworthError(f"{where}: option {self.name} must be one of {', '.join(self.choices)}, got {value!r}")
            return value
        is_int = isinstance(value, int) and not isinstance(value, bool)
        ok = is_int if self.kind is int else (is_int or isinstance(value, float))
        if ok and self.minimum is not None and value < self.minimum:
            ok = False
        if ok and self.maximum is not None and value >= self.maximum:
            ok = False
        if not ok or value != value:  # NaN
            kind = "an integer" if self.kind is int else "a number"
            bounds = (f" >= {self.minimum:g}" if self.minimum is not None else "") + (
                f" and < {self.maximum:g}" if self.maximum is not None else "")
            raise PromptworthError(f"{where}: option {self.name} must be {kind}{bounds}, got {value!r}")
        return self.kind(value)


@dataclass(frozen=True)
class Tuning:
    """Which parameters train. ``training``: default hyperparameters (``TrainConfig`` fields) of
    every method with this tuning, and where they come from (``source``)."""

    name: str
    trains: str
    objectives: tuple[str, ...]
    options: tuple[Option, ...] = ()
    training: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    steps: bool = True  # False: no training step at all (the model is used as it is)
    # True: before its first step the model computes what the pretrained model computes (nothing
    # new, or new parameters that start at a value that changes no output), so a prompt objective
    # can predict with it untrained: at training-set size 0 (MethodSpec.size_zero_problem)
    unchanged_at_start: bool = False

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


# Objectives with parameters to train (majority has none).
TRAINED_OBJECTIVES = ("prompt", "head", "null")
# Where the tunings' default learning rates were chosen (their ``source``).
_CHOSEN_ON = "on SST-2's visible K=16 splits 16-42 and 16-13, 50 steps (config/method-defaults.yaml, reports/method-defaults)"
# Where a soft prompt's vectors or a prefix's keys and values start: the frozen model's own for real
# tokens (the template's words, cycled, where the method has a template; else random vocabulary tokens).
_INIT = Option("init", str, "template", "start from the template's words (cycled) or from random vocabulary tokens",
               choices=("template", "vocab"))

TUNINGS: dict[str, Tuning] = {t.name: t for t in (
    Tuning("full", "every weight", TRAINED_OBJECTIVES, unchanged_at_start=True),
    Tuning(
        "lora", "low-rank updates of the attention projections (PEFT's LoRA; its default modules per "
        "architecture); a new head too", TRAINED_OBJECTIVES,
        options=(
            Option("r", int, 8, "rank of the update", minimum=1),
            Option("alpha", float, 16.0, "scale: the update is multiplied by alpha / r", minimum=0),
            Option("dropout", float, 0.0, "dropout on the update's input", minimum=0, maximum=1),
        ),
        unchanged_at_start=True,  # PEFT starts the update's second factor at zero
        training={"learning_rate": 2e-3},
        source=f"chosen from 1e-4, 5e-4, 2e-3 {_CHOSEN_ON}: mean dev 0.78 (5e-4: 0.75, 1e-4: 0.63); the "
        "largest of the grid, as short training favours; Hu et al. 2021 used 4e-4 to 5e-4 for longer runs",
    ),
    Tuning(
        "bitfit", "bias terms only (linear layers of the backbone without a bias get one, at zero); a new head too", TRAINED_OBJECTIVES,
        unchanged_at_start=True,
        training={"learning_rate": 1e-3},
        source=f"chosen from 3e-4, 1e-3, 3e-3 {_CHOSEN_ON}: mean dev 0.80 (3e-4: 0.77, 3e-3: 0.75); "
        "Ben Zaken et al. 2022 used 1e-4 to 1e-3",
    ),
    Tuning(
        "fixlayers", "every weight but the embeddings and the lowest `layers` layers (LM-BFF's "
        "--fix_layers)", TRAINED_OBJECTIVES,
        options=(Option("layers", int, None, "lower layers frozen (default: half of them)", minimum=0),),
        unchanged_at_start=True,
    ),
    Tuning(
        "softprompt", "only `tokens` vectors placed before the input (the model frozen; Lester et al. 2021)",
        PROMPT_OBJECTIVES,
        options=(Option("tokens", int, 16, "prompt vectors", minimum=1), _INIT),
        training={"learning_rate": 3e-2},
        source=f"chosen from 3e-3, 3e-2, 3e-1 {_CHOSEN_ON}: mean dev 0.83 (3e-3: 0.70, 3e-1: 0.67); "
        "Lester et al. 2021 used 0.3 with Adafactor",
    ),
    Tuning(
        "prefix", "only `tokens` key/value vectors at every layer, which every input token attends to (the "
        "model frozen; Li & Liang 2021, P-tuning v2)", PROMPT_OBJECTIVES,
        options=(Option("tokens", int, 16, "prefix positions per layer", minimum=1), _INIT),
        training={"learning_rate": 1e-2},
        source=f"chosen from 1e-3, 1e-2, 1e-1 {_CHOSEN_ON}: mean dev 0.86 (1e-3: 0.75, 1e-1: 0.52, diverged); "
        "P-tuning v2 (Liu et al. 2022) used 5e-3 to 1e-2",
    ),
    Tuning(
        "ptuning", "every weight, and a prompt encoder (PEFT's: an MLP or an LSTM) that makes `tokens` vectors "
        "placed before the input (P-tuning, Liu et al. 2021)", PROMPT_OBJECTIVES,
        options=(
            Option("tokens", int, 8, "prompt vectors", minimum=1),
            Option("encoder", str, "mlp", "the prompt encoder", choices=("mlp", "lstm")),
        ),
    ),
    Tuning("none", "nothing: the model is used as it is, no training step (tuning-free prompting)",
           ("prompt", "null", "majority"), steps=False, unchanged_at_start=True),
    Tuning(
        "frozen", "only the new head (a probe of the frozen model)", ("head",),
        training={"learning_rate": 1e-2},
        source=f"chosen from 1e-3, 1e-2, 1e-1 {_CHOSEN_ON}: mean dev 0.73 (1e-1: 0.72, 1e-3: 0.64)",
    ),
)}


@dataclass(frozen=True)
class Extra:
    """A part that changes a prompt objective's input or scores, on top of any tuning."""

    name: str
    does: str
    objectives: tuple[str, ...]
    paper: str = ""
    # options of the extra, set like a tuning's (``--option``, a definition's ``options``); their
    # names never repeat a tuning's, so one mapping holds both (tests/test_method_specs.py)
    options: tuple[Option, ...] = ()
    # default hyperparameters (``TrainConfig`` fields) of a method with this extra, over its tuning's
    training: Mapping[str, Any] = field(default_factory=dict)
    excludes: tuple[str, ...] = ()  # extras it does not combine with
    needs_training_rows: bool = False  # it reads the training set (demonstrations, a search over it)

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


# Content-free inputs of contextual calibration (Zhao et al. 2021, their defaults): every text
# field of a row set to each of them.
CONTENT_FREE = ("N/A", "", "[MASK]")

def _ranking_options(prefix: str, what: str, kept: int, lmbff: tuple[int, int] | None) -> tuple[Option, Option]:
    """The last two steps of a search as options: ``<prefix>_n`` candidates (``what``) kept by
    their zero-shot dev score, the ``<prefix>_finetune`` best of them fine-tuned to choose by dev score."""
    n_ref, tuned_ref = (f" (LM-BFF: {lmbff[0]})", f"LM-BFF: {lmbff[1]}; ") if lmbff else ("", "")
    return (Option(f"{prefix}_n", int, kept, f"{what} kept by zero-shot dev score{n_ref}", minimum=1),
            Option(f"{prefix}_finetune", int, 2, f"best {what} fine-tuned to choose by dev score "
                   f"({tuned_ref}0: the zero-shot best)", minimum=0))


EXTRAS: dict[str, Extra] = {e.name: e for e in (
    Extra("calibrate", "contextual calibration: the label probabilities divided by those of content-free inputs "
          f"({', '.join(repr(s) for s in CONTENT_FREE)}: every text field set to each, the probabilities averaged), "
          "then normalised", PROMPT_OBJECTIVES, paper="Zhao et al. 2021"),
    Extra("context", "in-context learning: up to `demos` training examples (chosen and ordered by the train seed), "
          "each the template with its label word filled in, before the query (a masked LM: after it); whole "
          "demonstrations, the farthest from the query first, are dropped until the input fits max_length", PROMPT_OBJECTIVES,
          paper="GPT-3 (Brown et al. 2020); LM-BFF (Gao et al. 2021)",
          options=(Option("demos", int, 32, "the most demonstrations in context", minimum=1),),
          training={"max_length": 256}, excludes=("demos",), needs_training_rows=True),
    Extra("demos", "LM-BFF's demonstrations: one training example per class (the template with its label word "
          "filled in) beside the input, sampled afresh for each input at each step; dev and test average the "
          "label log-scores over `sets` sampled sets", PROMPT_OBJECTIVES, paper="LM-BFF (Gao et al. 2021)",
          options=(
              Option("filter", str, "sbert", "which training examples may be sampled: all (random) or each class's "
                     "`keep` % most similar to the input by all-MiniLM-L6-v2 embeddings (sbert)",
                     choices=("sbert", "random")),
              Option("keep", int, 50, "sbert filter: the share (%) of each class kept", minimum=1, maximum=101),
              Option("sets", int, 4, "demonstration sets averaged at dev and test (LM-BFF: 16)", minimum=1),
          ),
          training={"max_length": 256}, excludes=("context", "calibrate"), needs_training_rows=True),
    # LM-BFF's searches (Gao et al. 2021, section 5); their reference values are k = n = 100 and the
    # top 10 fine-tuned; the defaults here are sized for a CPU (docs/methods.md)
    Extra("autowords", "label words found by LM-BFF's search (promptworth search): the top words_k words per "
          "class by summed log-probability at the answer slot over the class's training rows, their "
          "assignments pruned to the words_n best by zero-shot dev accuracy, the words_finetune best of them "
          "fine-tuned and the best kept by dev score", ("prompt",), paper="LM-BFF (Gao et al. 2021)",
          options=(Option("words_k", int, 16, "candidate words per class (LM-BFF: 100)", minimum=1),
                   *_ranking_options("words", "assignments", 16, (100, 10))),
          excludes=("autotemplate", "context", "demos"), needs_training_rows=True),
    Extra("autotemplate", "a template found by a search (promptworth search): candidates from a T5 generator "
          "(LM-BFF's, --generator) or, offline, the task's templates with other phrases before the answer "
          "slot; the templates_n best by zero-shot dev score kept, the templates_finetune best fine-tuned and "
          "the best kept by dev score", ("prompt",), paper="LM-BFF (Gao et al. 2021)",
          options=(*_ranking_options("templates", "templates", 8, None),
                   Option("templates_beam", int, 8, "beam width of the T5 generator (LM-BFF: 100)", minimum=1)),
          excludes=("autowords", "context", "demos"), needs_training_rows=True),
)}
# The extras whose method reads a search's result file, and what the search finds.
SEARCH_EXTRAS: dict[str, str] = {"autowords": "words", "autotemplate": "template"}


def search_kind(spec: "MethodSpec") -> str | None:
    """``words`` or ``template`` for a method that applies a search's result, else None."""
    kinds = [SEARCH_EXTRAS[extra] for extra in spec.extras if extra in SEARCH_EXTRAS]
    return kinds[0] if kinds else None


@dataclass(frozen=True)
class MethodSpec:
    """One method: its name, parts and options (the tuning's; unset ones take their defaults)."""

    name: str
    objective: str
    tuning: str = "full"
    options: Mapping[str, Any] = field(default_factory=dict)
    paper: str = ""
    extras: tuple[str, ...] = ()

    @property
    def tuning_spec(self) -> Tuning:
        return TUNINGS[self.tuning]

    def part_options(self) -> tuple[Option, ...]:
        """The options of the method's parts: its tuning's, then its extras'."""
        return self.tuning_spec.options + tuple(o for extra in self.extras for o in EXTRAS[extra].options)

    def resolved_options(self) -> dict[str, Any]:
        """Every option of the parts: the set ones, else their defaults (None: from the model)."""
        return {o.name: self.options.get(o.name, o.default) for o in self.part_options()}

    def training_defaults(self) -> dict[str, Any]:
        """The method's default hyperparameters (over ``TrainConfig``'s own)."""
        return {**self.tuning_spec.training, **{k: v for e in self.extras for k, v in EXTRAS[e].training.items()}}

    @property
    def strategy(self) -> str:
        """The prompt-learning strategy the method belongs to."""
        if self.objective == "majority":
            return "reference (no model)"
        if not self.tuning_spec.steps:
            return "tuning-free prompting"
        if self.objective == "head":
            return "promptless fine-tuning" if self.tuning != "frozen" else "promptless probe (frozen LM)"
        if self.tuning in ("softprompt", "prefix"):
            return "fixed-LM prompt tuning"
        if self.tuning == "ptuning":
            return "prompt+LM tuning"
        return "fixed-prompt LM tuning"

    def size_zero_problem(self) -> str | None:
        """Why the method cannot run at training-set size 0 (the zero-shot point of a curve), or
        None when it can: a prompt objective (the label words read from the LM head), a tuning
        whose untrained model is the pretrained one, and no extra that reads training rows."""
        if self.objective != "prompt":
            return {"head": "its new head is untrained", "null": "its null verbalizer's words say nothing of the labels",
                    }.get(self.objective, "only the prompt objective reads its labels from the pretrained LM head")
        if not self.tuning_spec.unchanged_at_start:
            return f"its tuning {self.tuning} starts with new, untrained vectors that the model reads"
        needy = [extra for extra in self.extras if EXTRAS[extra].needs_training_rows]
        if needy:
            return f"its extra {needy[0]} reads training rows"
        return None

    @property
    def runs_at_size_zero(self) -> bool:
        """Whether the method predicts at training-set size 0, untrained (see :meth:`size_zero_problem`)."""
        return self.size_zero_problem() is None

    def describe(self) -> dict[str, Any]:
        """What the run record says about the method's parts."""
        return {"objective": self.objective, "tuning": self.tuning, "options": self.resolved_options(),
                "extras": list(self.extras)}


BUILTINS: tuple[MethodSpec, ...] = (
    MethodSpec("prompt", "prompt", paper="LM-BFF (Gao et al. 2021), PET (Schick & Schütze 2021)"),
    MethodSpec("head", "head", paper="Devlin et al. 2019"),
    MethodSpec("null", "null", paper="Le Scao & Rush 2021"),
    MethodSpec("prompt-lora", "prompt", "lora", paper="Hu et al. 2021"),
    MethodSpec("head-lora", "head", "lora", paper="Hu et al. 2021"),
    MethodSpec("prompt-bitfit", "prompt", "bitfit", paper="Ben Zaken et al. 2022"),
    MethodSpec("head-bitfit", "head", "bitfit", paper="Ben Zaken et al. 2022"),
    MethodSpec("prompt-fixlayers", "prompt", "fixlayers", paper="LM-BFF (Gao et al. 2021), --fix_layers"),
    MethodSpec("head-probe", "head", "frozen", paper="linear probing (Alain & Bengio 2016)"),
    MethodSpec("softprompt", "prompt", "softprompt", paper="Lester et al. 2021"),
    MethodSpec("prefix", "prompt", "prefix", paper="Li & Liang 2021; P-tuning v2 (Liu et al. 2022)"),
    MethodSpec("ptuning", "prompt", "ptuning", paper="Liu et al. 2021 (P-tuning)"),
    MethodSpec("prompt-demo", "prompt", extras=("demos",), paper="LM-BFF (Gao et al. 2021), demonstrations"),
    # tuning-free: LM-BFF's reference rows
    MethodSpec("majority", "majority", "none", paper="LM-BFF (Gao et al. 2021), its reference row"),
    MethodSpec("zeroshot", "prompt", "none", paper="LM-BFF (Gao et al. 2021); GPT-3 (Brown et al. 2020)"),
    MethodSpec("zeroshot-calibrated", "prompt", "none", extras=("calibrate",), paper="Zhao et al. 2021"),
    MethodSpec("icl", "prompt", "none", extras=("context",), paper="GPT-3 (Brown et al. 2020); LM-BFF (Gao et al. 2021)"),
    # searched label words and templates (their result files: promptworth search)
    MethodSpec("prompt-autowords", "prompt", extras=("autowords",), paper="LM-BFF (Gao et al. 2021), automatic label words"),
    MethodSpec("prompt-autotemplate", "prompt", extras=("autotemplate",), paper="LM-BFF (Gao et al. 2021), automatic templates"),
)


# What the analysis compares when told nothing else: treatment:baseline.
DEFAULT_TREATMENT, DEFAULT_BASELINE = "prompt", "head"
DEFAULT_COMPARISONS = ("prompt:head", "null:head", "prompt:null")


def builtin_methods() -> dict[str, MethodSpec]:
    """Every built-in method by name, in the registry's order."""
    return {spec.name: spec for spec in BUILTINS}


def check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise PromptworthError(f"{where}: a method name is lower-case words joined by '-' (e.g. prompt-lora-r4), got {name!r}")
    return name


def make_spec(
    name: str, objective: Any, tuning: Any, options: Mapping[str, Any] | None = None, where: str = "",
    extras: Any = (),
) -> MethodSpec:
    """A method from its parts, checked: the parts exist and combine, the options are the tuning's."""
    where = f"{where}: method {name}" if where else f"method {name}"
    if objective not in OBJECTIVES:
        raise PromptworthError(f"{where}: unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    if tuning not in TUNINGS:
        raise PromptworthError(f"{where}: unknown tuning {tuning!r}; known: {', '.join(TUNINGS)}")
    spec = TUNINGS[tuning]
    if objective not in spec.objectives:
        raise PromptworthError(f"{where}: tuning {tuning} does not combine with objective {objective} "
                               f"(only with {', '.join(spec.objectives)})")
    if options is not None and not isinstance(options, Mapping):
        raise PromptworthError(f"{where}: options must be a mapping of option names to values, got {options!r}")
    if isinstance(extras, str) or not isinstance(extras, (list, tuple)):
        raise PromptworthError(f"{where}: extras must be a list of extra parts, got {extras!r}")
    for extra in extras:
        if extra not in EXTRAS:
            raise PromptworthError(f"{where}: unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
        if objective not in EXTRAS[extra].objectives:
            raise PromptworthError(f"{where}: extra {extra} does not combine with objective {objective} "
                                   f"(only with {', '.join(EXTRAS[extra].objectives)})")
    if len(set(extras)) != len(extras):
        raise PromptworthError(f"{where}: an extra is named twice in {list(extras)}")
    for extra in extras:
        clash = [other for other in EXTRAS[extra].excludes if other in extras]
        if clash:
            raise PromptworthError(f"{where}: extra {extra} does not combine with extra {clash[0]}")
    owners = [(f"tuning {tuning}", spec)] + [(f"extra {e}", EXTRAS[e]) for e in extras]
    checked = {}
    for key, value in (options or {}).items():
        option = next((o for _, part in owners if (o := part.option(key)) is not None), None)
        if option is None:
            known = "; ".join(f"{who}: {', '.join(o.name for o in part.options) or 'none'}" for who, part in owners)
            raise PromptworthError(f"{where}: {key!r} is not an option of its parts ({known})")
        checked[key] = option.check(value, where)
    return MethodSpec(name, objective, tuning, checked, extras=tuple(extras))


def define(definition: Mapping[str, Any], where: str = "method") -> MethodSpec:
    """A method defined inline (a study's ``methods`` item): ``{name, objective, tuning, options}``;
    its name must not be a built-in's."""
    unknown = sorted(set(definition) - {"name", "objective", "tuning", "options", "extras"})
    if unknown:
        raise PromptworthError(f"{where}: unknown key {unknown[0]!r} (a method has name, objective, tuning, options, extras)")
    name = check_name(definition.get("name"), where)
    if name in builtin_methods():
        raise PromptworthError(f"{where}: {name} is a built-in method; give the new method another name")
    return make_spec(name, definition.get("objective"), definition.get("tuning", "full"), definition.get("options"), where,
                     definition.get("extras", ()))


def resolve(name: str, defined: Mapping[str, MethodSpec] | None = None) -> MethodSpec:
    """The method ``name``: a built-in, or one of ``defined``; a clear error otherwise."""
    known = {**builtin_methods(), **(defined or {})}
    if name not in known:
        raise PromptworthError(f"unknown method {name!r}; known methods: {', '.join(known)}")
    return known[name]


def display_order(names: list[str]) -> list[str]:
    """``names`` in the registry's order (others after, as given)."""
    order = {name: i for i, name in enumerate(builtin_methods())}
    return sorted(names, key=lambda n: order.get(n, len(order)))


def table_order(names: list[str]) -> list[str]:
    """``names`` as table columns: the default baseline first (LM-BFF's tables start with
    fine-tuning), then the registry's order."""
    return sorted(display_order(names), key=lambda n: n != DEFAULT_BASELINE)
