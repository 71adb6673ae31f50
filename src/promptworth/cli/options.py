"""Every option set of the command line, defined once (the only module that adds arguments).

An option set is a function that returns its options; the verb table (:mod:`promptworth.cli.verbs`)
names the sets each verb takes. The sets are built only for the verb being parsed, so that
``promptworth train`` never imports what an analysis verb's choices need (pandas).

The conventions every verb keeps (``tests/test_cli_conventions.py`` checks them over the verb
table; ``docs/contributing.md``, "Adding a verb"): ``--out FILE`` is always a file and a folder
option is ``--...-dir FOLDER`` (``--out-dir`` for the one a verb writes); a list is one option
followed by its values, space-separated (``nargs``); a renamed option keeps its old name as a
deprecated alias (:class:`RenamedFlag`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from promptworth.methods import registry, specs
from promptworth.training import devices
from promptworth.training.settings import TrainConfig, config_from_mapping, flag_of


@dataclass(frozen=True)
class Opt:
    """One argument: its flags (or its name, for a positional) and ``add_argument``'s keywords;
    ``group``: the title of the argument group it is listed under in ``--help``."""

    flags: tuple[str, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    group: str | None = None


OptionSet = Callable[[], tuple[Opt, ...]]


def add_options(parser: argparse.ArgumentParser, options: tuple[Opt, ...]) -> None:
    groups: dict[str, argparse._ArgumentGroup] = {}
    for option in options:
        if option.group is not None and option.group not in groups:
            groups[option.group] = parser.add_argument_group(option.group)
        target = parser if option.group is None else groups[option.group]
        target.add_argument(*option.flags, **option.kwargs)


def opt(*flags: str, group: str | None = None, **kwargs: Any) -> Opt:
    return Opt(flags, kwargs, group)


FILE, FOLDER = "FILE", "FOLDER"


class RenamedFlag(argparse.Action):
    """An option with its old name as a second flag (``old``): given under the old name, it works
    and says on stderr that the name is deprecated."""

    def __init__(self, option_strings: list[str], dest: str, old: str, **kwargs: Any) -> None:
        self.old = old
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if option_string == self.old:
            print(f"promptworth: warning: {parser.prog} {self.old} is the old name of {self.option_strings[0]}, "
                  f"deprecated: write {self.option_strings[0]}", file=sys.stderr)
        setattr(namespace, self.dest, values)


# ---------------------------------------------------------------------------------------------
# Argument types


def training_size(text: str) -> int | str:
    """A training-set size argument (imports the splits module only when it is given)."""
    from promptworth.data.splits import parse_size

    return parse_size(text)


def option_value(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# ---------------------------------------------------------------------------------------------
# Sets shared by several verbs


def version() -> tuple[Opt, ...]:
    from promptworth import __version__

    return (opt("--version", action="version", version=f"promptworth {__version__}"),)


def out(help: str, required: bool = True, default: Path | None = None) -> OptionSet:
    """``--out FILE``: the file the verb writes."""
    kwargs: dict[str, Any] = {"type": Path, "metavar": FILE, "help": help}
    kwargs.update({"required": True} if required else {} if default is None else {"default": default})
    return lambda: (opt("--out", **kwargs),)


def out_dir(help: str, required: bool = True, renamed_from_out: bool = False) -> OptionSet:
    """``--out-dir FOLDER``: the folder the verb writes; ``renamed_from_out``: for a verb whose
    folder was ``--out`` before, that name still works (deprecated)."""
    kwargs: dict[str, Any] = {"type": Path, "metavar": FOLDER, "dest": "out_dir", "help": help}
    kwargs.update({"required": True} if required else {})
    if renamed_from_out:
        return lambda: (opt("--out-dir", "--out", action=RenamedFlag, old="--out", **kwargs),)
    return lambda: (opt("--out-dir", **kwargs),)


def data_dir() -> tuple[Opt, ...]:
    return (opt("--data-dir", type=Path, metavar=FOLDER,
                help="data mirror (default: $PROMPTWORTH_DATA or the download cache)"),)


def json_output() -> tuple[Opt, ...]:
    """``--json``: every verb that prints a result takes it (the verb table adds it)."""
    return (opt("--json", action="store_true",
                help="print the result as one JSON document on stdout (nothing else goes there)"),)


def task_files() -> tuple[Opt, ...]:
    """``--task-files FILE ...``: task files whose tasks join the built-in ones (a study's ``task_files``)."""
    return (opt("--task-files", nargs="+", type=Path, default=[], metavar="FILE",
                help="task files: tasks of your own, in the registry's format, that join the built-in ones "
                     "(docs/own-task.md)"),)


def results() -> tuple[Opt, ...]:
    """The results table an analysis verb reads."""
    return (opt("results", type=Path, metavar="RESULTS_CSV"),)


def model_filter() -> tuple[Opt, ...]:
    return (opt("--model", help="only runs of this model (the 'model' column)"),)


def in_place_of() -> tuple[Opt, ...]:
    """The study model a method on a backbone of its own (SetFit) is compared beside."""
    return (opt("--in-place-of", metavar="MODEL",
                help="the model whose runs a method with a backbone of its own (SetFit) is compared with: the "
                     "study's first model, in whose place it ran (default: the one other model of the runs)"),)


def pair() -> tuple[Opt, ...]:
    """The two methods one comparison sets against each other."""
    return (opt("--treatment", default=specs.DEFAULT_TREATMENT, help="method whose worth is measured (default: %(default)s)"),
            opt("--baseline", default=specs.DEFAULT_BASELINE, help="method it is compared with (default: %(default)s)"))


def comparisons(note: str = "") -> OptionSet:
    help = f"default: {' '.join(specs.DEFAULT_COMPARISONS)} (those whose methods are in the results){note}"
    return lambda: (opt("--comparisons", nargs="+", metavar="TREATMENT:BASELINE", help=help),)


def records() -> tuple[Opt, ...]:
    """The run records a verb reads itself, and the study they must belong to."""
    return (
        opt("paths", nargs="+", type=Path, metavar="RUN_JSON_OR_DIR",
            help="run records, or folders searched recursively for *.json"),
        opt("--study", metavar="CONFIG", help="a study config (YAML; or the config as JSON, as the workflow "
            "passes it): read only the study's runs among the paths, each of which must be what the study asks "
            "for (its settings, split, learning-rate selection and search); the others are named in a warning"),
        opt("--strays", choices=("warn", "error"), default="warn", help="with --study, files that are not "
            "records of the study's runs: a warning (default) or an error"),
    )


def confidence() -> tuple[Opt, ...]:
    """The confidence level of the intervals."""
    return (opt("--confidence", type=float, default=0.95, help="of the intervals (default: %(default)s)"),)


def tables_and_figures_dirs() -> tuple[Opt, ...]:
    """A verb that writes tables and a figure: the folder of each."""
    return (opt("--tables-dir", type=Path, required=True, metavar=FOLDER, help="folder of the tables"),
            opt("--figures-dir", type=Path, required=True, metavar=FOLDER, help="folder of the figure"))


def intervals() -> tuple[Opt, ...]:
    """The confidence level of the intervals and the bootstrap's resamples."""
    return (
        *confidence(),
        opt("--resamples", type=int, default=2000,
            help="bootstrap resamples: all distinct ones when there are no more, else this many random "
                 "draws (default: %(default)s)"),
    )


def advantage() -> tuple[Opt, ...]:
    """How the data advantage is estimated (:class:`promptworth.analysis.estimate.AdvantageOptions`)."""
    from promptworth.analysis.curves import REDUCTIONS, WINDOWS, X_SCALES
    from promptworth.analysis.estimate import INTERVALS

    return (
        opt("--reduction", choices=REDUCTIONS, default="mean",
            help="runs -> one score per size (default: %(default)s; Le Scao & Rush: max)"),
        opt("--interval", choices=INTERVALS, default="bootstrap",
            help="bootstrap: a confidence interval over data seeds; loo: Le Scao & Rush's "
                 "leave-one-run-out std (default: %(default)s)"),
        *intervals(),
        opt("--ladder", choices=("matched", "own"), default="matched",
            help="matched: only the sizes every compared method ran; own: each curve on its own sizes "
                 "(default: %(default)s)"),
        opt("--x-scale", choices=X_SCALES, default="linear",
            help="interpolate in raw or log size (default: %(default)s, as published)"),
        opt("--window", choices=WINDOWS, default="overlap",
            help="score window: shared range or union range with clamping (default: %(default)s)"),
        opt("--levels", type=int, default=1000, help="score levels in the window (default: %(default)s)"),
        opt("--window-from", metavar="A:B",
            help="methods whose curves set the window (default: the two compared); "
                 "prompt:head reproduces the paper's null-verbalizer numbers"),
        *model_filter(),
        *in_place_of(),
    )


# ---------------------------------------------------------------------------------------------
# A run: what `train` and `search` share


def run() -> tuple[Opt, ...]:
    """The task, the method (a built-in, or one defined from parts), the split, the model."""
    from promptworth.backbones.registry import MINILM, OFFLINE_MODELS, PACKAGED_MODELS, SMOLLM2

    return (
        opt("--task", required=True, help="task name: a built-in task's (promptworth tasks) or one of --task-files'"),
        *task_files(),
        opt("--method", required=True,
            help=f"a built-in method ({', '.join(specs.builtin_methods())}; promptworth methods), "
                 "or the name of a method defined by --objective, --tuning and --option"),
        opt("--objective", choices=tuple(registry.OBJECTIVES), help="define the method --method from parts: its objective"),
        opt("--tuning", choices=tuple(registry.TUNINGS),
            help="define the method --method from parts: its tuning (default full)"),
        opt("--option", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
            help="options of the tuning or extras of a method defined from parts, e.g. r=4 alpha=8"),
        opt("--extra", nargs="+", action="extend", default=[], choices=tuple(registry.EXTRAS), metavar="EXTRA",
            help=f"extra parts of a method defined from parts ({', '.join(registry.EXTRAS)})"),
        opt("--split-dir", type=Path, required=True, metavar=FOLDER, help="split folder (ours or LM-BFF's <K>-<seed>)"),
        opt("--model", help=f"a folder, a pinned hub model <id>@<revision> (fetched first: promptworth prefetch), an "
            f"offline backbone ({', '.join(OFFLINE_MODELS)}) or a packaged one ({', '.join(PACKAGED_MODELS)}); default: "
            f"the method's own backbone (setfit: {MINILM}), else {SMOLLM2}"),
        *model_loading(),
        opt("--seed", type=int, required=True, help="train seed: head init, dropout, batch order"),
        opt("--template", help="template name from the registry (default: the first that suits the model)"),
        opt("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"),
        opt("--device", type=devices.parse_device, default=devices.AUTO, help=f"where it trains: {devices.DEVICE_HELP}"),
        opt("--no-progress", action="store_true", help="no progress bar"),
    )


def trust_remote_code() -> tuple[Opt, ...]:
    return (opt("--trust-remote-code", action="store_true",
                help="let a model with code of its own (config.json's auto_map, *.py files) run it (default: refused)"),)


def model_loading() -> tuple[Opt, ...]:
    """How the model loads (:class:`promptworth.backbones.registry.LoadOptions`)."""
    from promptworth.backbones.registry import DTYPES

    return (opt("--model-dtype", choices=DTYPES, default=DTYPES[0],
                help="the dtype the model's weights load and train in (default: %(default)s); bf16 or fp16 halve the "
                     "memory (fp16 has no loss scaling here: prefer bf16); the record's model_dtype"),
            *trust_remote_code())


def load_options(args: argparse.Namespace) -> Any:
    """The :class:`promptworth.backbones.registry.LoadOptions` of :func:`model_loading`'s flags."""
    from promptworth.backbones.registry import LoadOptions

    return LoadOptions(dtype=args.model_dtype, trust_remote_code=args.trust_remote_code)


TRAINING_GROUP = "training (a method may set its own defaults: promptworth methods)"


def training() -> tuple[Opt, ...]:
    """One flag per :class:`TrainConfig` field (``--learning-rate`` ...). A flag not given is None:
    the method's default, else the class's (:func:`config_from_args`)."""
    found = []
    for f in fields(TrainConfig):
        kind = f.metadata.get("parse") or {"int": int, "float": float, "str": str}[f.type]
        shown = f.metadata.get("shown", f.default)
        kwargs: dict[str, Any] = {"type": kind, "default": None,
                                  "dest": f.name, "help": f"{f.metadata.get('help', '')} (default {shown})"}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if f.metadata.get("list"):  # space-separated values, each read by the field's parse
            kwargs.update(nargs="+", metavar=f.name.upper().rstrip("S"))
        if f.metadata.get("switch"):  # --save-weights alone is on; --save-weights false, as the workflow writes it
            kwargs.update(nargs="?", const=True, metavar="true|false")
        found.append(Opt((flag_of(f.name),), kwargs, TRAINING_GROUP))
    return tuple(found)


def config_from_args(args: argparse.Namespace, method_defaults: Mapping[str, Any] | None = None) -> TrainConfig:
    """The flags given, else the method's defaults, else :class:`TrainConfig`'s."""
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
    for name, value in given.items():
        if isinstance(value, list):  # a list flag: each value parsed to a tuple of items
            given[name] = tuple(item for parsed in value for item in parsed)
    return config_from_mapping({**(method_defaults or {}), **given})
