"""Methods as combinations of parts, and the registry of the built-in methods (no torch import:
the CLI, the study checks and the workflow read it).

A method is an *objective* (how labels are scored) with a *tuning* (which parameters train and
how they are added) and the tuning's options:

- objectives: ``prompt`` (the task's template; label words read at the answer slot), ``head`` (a
  new classifier on the backbone), ``null`` (the template with the null verbalizer), ``misleading``
  (the template with misleading label words), ``majority`` (no model: the evaluation set's most
  frequent class, LM-BFF's reference row), ``setfit`` (a logistic regression on a sentence encoder
  tuned on pairs; its own backbone, :attr:`MethodSpec.backbone`);
- tunings: see :data:`TUNINGS` (``none``: nothing trains, tuning-free prompting);
- extras, how a prompt objective's input or scores change: see :data:`EXTRAS` (``calibrate``;
  ``context``: in-context demonstrations; ``demos``: LM-BFF's sampled demonstrations;
  ``autowords`` and ``autotemplate``: label words or a template found by a search, LM-BFF's, whose
  result file ``promptworth train --search`` applies: :mod:`promptworth.training.search`).

:data:`BUILTINS` names every built-in method, in the order tables and figures show them. A study
may define more inline (``{name: prompt-lora-r4, objective: prompt, tuning: lora, options: {r: 4}}``,
:func:`define`). A prompt method may name its own template (``template``: one of the task's templates
or control templates, e.g. ``irrelevant``), which every run of it reads whatever template the study or
``--template`` chooses for the task's other prompt methods. The training code that gives the parts their behaviour is
:mod:`promptworth.methods.objectives` (objectives) and :mod:`promptworth.methods.tunings` (tunings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from promptworth.errors import PromptworthError
from promptworth.methods.parts import Option, Tuning
from promptworth.methods.registry import EXTRAS, OBJECTIVE_BACKBONES, OBJECTIVES, TUNINGS, WORDS_KEYS

# A method's name: lower-case words joined by '-' (a file name and a Snakemake wildcard).
NAME_PATTERN = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"


@dataclass(frozen=True)
class MethodSpec:
    """One method: its name, parts and options (the tuning's; unset ones take their defaults)."""

    name: str
    objective: str
    tuning: str = "full"
    options: Mapping[str, Any] = field(default_factory=dict)
    paper: str = ""
    extras: tuple[str, ...] = ()
    # the task template (registry name) every run of the method reads; None: the run's (--template,
    # a study's templates, else the task's first that suits the model)
    template: str | None = None

    @property
    def tuning_spec(self) -> Tuning:
        return TUNINGS[self.tuning]

    def part_options(self) -> tuple[Option, ...]:
        """The options of the method's parts: its tuning's, then its extras'."""
        return self.tuning_spec.options + tuple(o for extra in self.extras for o in EXTRAS[extra].options)

    def resolved_options(self) -> dict[str, Any]:
        """Every option of the parts: the set ones, else their defaults (None: from the model)."""
        return {o.name: self.options.get(o.name, o.default) for o in self.part_options()}

    def epoch_examples(self, train_size: int) -> int:
        """What an epoch of the method's training steps reads on ``train_size`` training examples:
        those examples, or where its tuning trains on pairs (the ``pairs`` option: SetFit's
        contrastive tuning) that many pairs of each kind (same class, other class) per example."""
        pairs = self.resolved_options().get("pairs")
        return train_size if pairs is None else 2 * int(pairs) * train_size

    def training_defaults(self) -> dict[str, Any]:
        """The method's default hyperparameters (over ``TrainConfig``'s own)."""
        return {**self.tuning_spec.training, **{k: v for e in self.extras for k, v in EXTRAS[e].training.items()}}

    @property
    def backbone(self) -> str | None:
        """The backbone the method always runs on (a short name: SetFit's sentence encoder), whatever
        model a study names; None: the study's model."""
        return OBJECTIVE_BACKBONES.get(self.objective)

    @property
    def strategy(self) -> str:
        """The prompt-learning strategy the method belongs to."""
        if self.objective == "majority":
            return "reference (no model)"
        if self.objective == "setfit":
            return "promptless contrastive fine-tuning (sentence encoder)"
        if not self.tuning_spec.steps:
            return "tuning-free prompting"
        if self.objective == "head":
            return "promptless fine-tuning" if self.tuning != "frozen" else "promptless probe (frozen LM)"
        if self.tuning in ("softprompt", "prefix"):
            return "fixed-LM prompt tuning"
        if self.tuning == "ptuning":
            return "prompt+LM tuning"
        return "fixed-prompt LM tuning"

    def run_template(self, requested: str | None) -> str | None:
        """The template name a run of the method reads: its own, else ``requested`` (the run's
        --template); a clear error when both are given and differ."""
        if self.template is None or requested in (None, self.template):
            return self.template or requested
        raise PromptworthError(f"method {self.name} reads the task's template {self.template!r} (its definition); "
                               f"the run asks for template {requested!r}: leave --template out")

    def size_zero_problem(self) -> str | None:
        """Why the method cannot run at training-set size 0 (the zero-shot point of a curve), or
        None when it can: an objective that reads its label words from the LM head (prompt, and
        misleading: its words point the wrong way, which is what its zero-shot point shows), a
        tuning whose untrained model is the pretrained one, and no extra that reads training rows."""
        if self.objective not in ("prompt", "misleading"):
            return {"head": "its new head is untrained", "null": "its null verbalizer's words say nothing of the labels",
                    "setfit": "its logistic-regression head is fit on the training examples",
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
    # the third edition's rows (new built-ins go last, each with a colour appended to
    # promptworth.analysis.plots.LATER_BUILTIN_COLOURS: published figures keep their styles)
    # controls on the prompt's meaning: the task's control template `irrelevant`, its misleading_words
    MethodSpec("prompt-irrelevant", "prompt", template="irrelevant", paper="Webson & Pavlick 2022, irrelevant templates"),
    MethodSpec("prompt-misleading", "misleading", paper="Webson & Pavlick 2022, reversed targets"),
    MethodSpec("icl-calibrated", "prompt", "none", extras=("context", "calibrate"),
               paper="Zhao et al. 2021; Mosbach et al. 2023 compare it with fine-tuning"),
    # the few-shot baseline without a prompt: a sentence encoder tuned on pairs, and a logistic regression
    MethodSpec("setfit", "setfit", "contrastive", paper="SetFit (Tunstall et al. 2022)"),
)


# The untrained point (size 0) of a method that cannot run untrained, where another method is that
# point: in-context learning with no demonstrations is the zero-shot prompt it adds them to (the
# analysis starts the first one's curves at the second's size-0 runs: docs/analysis.md).
UNTRAINED_POINTS: dict[str, str] = {"icl": "zeroshot", "icl-calibrated": "zeroshot-calibrated"}

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
    extras: Any = (), template: Any = None,
) -> MethodSpec:
    """A method from its parts, checked: the parts exist and combine, the options are the tuning's,
    a template (a name of the task registry's) only for a prompt objective."""
    where = f"{where}: method {name}" if where else f"method {name}"
    if objective not in OBJECTIVES:
        raise PromptworthError(f"{where}: unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    if tuning not in TUNINGS:
        raise PromptworthError(f"{where}: unknown tuning {tuning!r}; known: {', '.join(TUNINGS)}")
    spec = TUNINGS[tuning]
    if objective not in spec.objectives:
        raise PromptworthError(f"{where}: tuning {tuning} does not combine with objective {objective} "
                               f"(only with {', '.join(spec.objectives)})")
    if template is not None and (not isinstance(template, str) or not template):
        raise PromptworthError(f"{where}: template must be a template's name in the task registry, got {template!r}")
    if template is not None and objective not in WORDS_KEYS:
        raise PromptworthError(f"{where}: objective {objective} reads no template; only {', '.join(WORDS_KEYS)} do")
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
    return MethodSpec(name, objective, tuning, checked, extras=tuple(extras), template=template)


def define(definition: Mapping[str, Any], where: str = "method") -> MethodSpec:
    """A method defined inline (a study's ``methods`` item): ``{name, objective, tuning, options,
    extras, template}``; its name must not be a built-in's."""
    unknown = sorted(set(definition) - {"name", "objective", "tuning", "options", "extras", "template"})
    if unknown:
        raise PromptworthError(f"{where}: unknown key {unknown[0]!r} (a method has name, objective, tuning, options, "
                               "extras, template)")
    name = check_name(definition.get("name"), where)
    if name in builtin_methods():
        raise PromptworthError(f"{where}: {name} is a built-in method; give the new method another name")
    return make_spec(name, definition.get("objective"), definition.get("tuning", "full"), definition.get("options"), where,
                     definition.get("extras", ()), definition.get("template"))


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
