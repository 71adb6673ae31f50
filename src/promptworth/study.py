"""A study's configuration and plan: which splits and which training runs it needs.

The YAML config is checked twice: its shape against ``workflow/schemas/config.schema.yaml``
(types, ranges, unknown keys), then its meaning (task names exist, the splits can be drawn,
compared methods are run). Either failure is one line naming the offending key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Sequence

import jsonschema
import yaml

from promptworth.data.splits import ALL, DEFAULT_DEV_POLICY, DEFAULT_K, DEV_POLICIES, NO_DEV_AT_ZERO, ZERO_SHOT, check_seed
from promptworth.data.tasks import get_task
from promptworth.errors import PromptworthError
from promptworth.methods import registry, specs as method_specs
from promptworth.methods.specs import MethodSpec
from promptworth.training.settings import config_from_mapping

@dataclass(frozen=True)
class SplitsConfig:
    kind: str
    data_seeds: tuple[int, ...]
    sizes: tuple[int | str, ...] = ()
    sizes_by_task: dict[str, tuple[int | str, ...]] = field(default_factory=dict)
    dev_policy: str = DEFAULT_DEV_POLICY
    dev_size: int | None = None
    test_limit: int | None = None
    k: int = DEFAULT_K

    def sizes_for(self, task: str) -> tuple[int | str, ...]:
        if self.kind == "kshot":  # K, and "all" where the study adds the full-data setting
            return self.sizes or (self.k,)
        return self.sizes_by_task.get(task, self.sizes)

    @property
    def train_test_limit(self) -> int | None:
        """The test subset that training runs draw themselves (the same seeded subset a ladder's
        split files hold): LM-BFF's K-shot split files stay byte for byte theirs, whole test set
        included, so a kshot study's runs take ``test_limit`` when they load the split."""
        return self.test_limit if self.kind == "kshot" else None


@dataclass(frozen=True)
class SizeSettings:
    """What changes at one training-set size (a study's ``by_size``), e.g. LM-BFF's full-data row:
    only fine-tuning with a head, one data seed, more steps. Empty: as at every other size."""

    methods: tuple[str, ...] = ()
    data_seeds: tuple[int, ...] = ()
    training: dict[str, Any] = field(default_factory=dict)


# A training job's resources where neither ``resources`` nor ``by_model`` sets them (threads, MB,
# minutes, GPUs).
RESOURCE_DEFAULTS: dict[str, int] = {"threads": 2, "mem_mb": 5000, "runtime": 60, "gpus": 0}


@dataclass(frozen=True)
class ModelSettings:
    """What changes for one backbone of a study (its ``by_model``), e.g. a larger model on a few
    tasks and methods: the tasks and methods it runs, each a subset of the study's (empty: all of
    them), and its training jobs' resources, over the study's ``resources``."""

    tasks: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    resources: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LrGrid:
    """A study's ``lr_grid``: the learning rates to try per method (the others train at their set
    rate), and the pilot runs that try them: at training-set size ``size`` on ``data_seeds`` with
    ``train_seeds`` (empty: the study's first of each). The rule that picks one is
    ``promptworth.training.lr_grid.RULE``."""

    rates: dict[str, tuple[float, ...]]
    size: int | str
    data_seeds: tuple[int, ...] = ()
    train_seeds: tuple[int, ...] = ()


@dataclass(frozen=True)
class StudyConfig:
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    # the backbones, as the config names them (a short name, a folder or a hub id), in its order
    models: tuple[str, ...]
    train_seeds: tuple[int, ...]
    splits: SplitsConfig
    training: dict[str, Any]
    templates: dict[str, str] = field(default_factory=dict)
    methods_by_task: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # keyed by str(size): what changes at that training-set size (see SizeSettings)
    by_size: dict[str, "SizeSettings"] = field(default_factory=dict)
    comparisons: tuple[tuple[str, str], ...] = ((method_specs.DEFAULT_TREATMENT, method_specs.DEFAULT_BASELINE),)
    # methods the config defines inline from parts, by name
    defined_methods: dict[str, MethodSpec] = field(default_factory=dict)
    training_by_method: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_dir: str | None = None
    results_dir: str = "results"
    runs_dir: str | None = None
    resources: dict[str, int] = field(default_factory=dict)
    lr_grid: LrGrid | None = None
    # keyed by the model as ``models`` names it: what changes for it (see ModelSettings)
    by_model: dict[str, ModelSettings] = field(default_factory=dict)

    def tasks_for(self, model: str | None = None) -> tuple[str, ...]:
        """The tasks ``model`` runs (where ``by_model`` names tasks for it), in the study's order."""
        chosen = self.by_model[model].tasks if model in self.by_model else ()
        return tuple(task for task in self.tasks if not chosen or task in chosen)

    def methods_for(self, task: str, size: int | str | None = None, model: str | None = None) -> tuple[str, ...]:
        """The methods run on ``task`` (at ``size``, where ``by_size`` names methods for it; at size 0,
        the zero-shot point, only those that run untrained (``runs_at_size_zero``); by ``model``, those
        of them that ``by_model`` names for it)."""
        settings = self.by_size.get(str(size))
        if settings is not None and settings.methods:
            methods = settings.methods
        else:
            methods = self.methods_by_task.get(task, self.methods)
        if size == ZERO_SHOT:  # the zero-shot point: only the methods that run untrained
            methods = tuple(name for name in methods if self.method(name).runs_at_size_zero)
        chosen = self.by_model[model].methods if model in self.by_model else ()
        return tuple(method for method in methods if not chosen or method in chosen)

    def resources_for(self, model: str) -> dict[str, int]:
        """The resources of ``model``'s training jobs: the defaults, then ``resources``, then its
        ``by_model`` resources."""
        settings = self.by_model.get(model)
        return {**RESOURCE_DEFAULTS, **self.resources, **(settings.resources if settings is not None else {})}

    def models_by_label(self) -> dict[str, str]:
        """The study's models by their label (:func:`model_label`, the folder of their runs' files)."""
        return {model_label(model): model for model in self.models}

    def data_seeds_for(self, size: int | str) -> tuple[int, ...]:
        settings = self.by_size.get(str(size))
        return settings.data_seeds if settings is not None and settings.data_seeds else self.splits.data_seeds

    def method(self, name: str) -> MethodSpec:
        """A method of the study: a built-in or one it defines."""
        return method_specs.resolve(name, self.defined_methods)

    def training_for(self, method: str, size: int | str | None = None) -> dict[str, Any]:
        """A run's training settings: the study's ``training``, then the method's own defaults
        (e.g. LoRA's learning rate), then ``training_by_method``, then ``by_size``'s ``training``
        for the run's size; later ones win."""
        settings = self.by_size.get(str(size))
        return {**self.training, **self.method(method).training_defaults(), **self.training_by_method.get(method, {}),
                **(settings.training if settings is not None else {})}

    def budgets(self) -> tuple[int, ...]:
        """Every step budget a run of the study records (``training.budgets`` wherever it is set),
        in increasing order; empty when none does."""
        found = {steps for task in self.tasks for size in self.splits.sizes_for(task)
                 for method in self.methods_for(task, size) for steps in self.training_for(method, size).get("budgets", ())}
        return tuple(sorted(found))

    def uses_lr_selection(self, method: str, size: int | str) -> bool:
        """Whether a run trains at the rate the ``lr_grid`` chose for its method (a run at size 0
        takes no step: no rate to choose; it keeps its set one)."""
        return self.lr_grid is not None and method in self.lr_grid.rates and str(size) != str(ZERO_SHOT)

    def takes_chosen_rate(self, task: str, method: str, model: str | None = None) -> bool:
        """Whether some run of ``method`` on ``task`` (by ``model``) trains at the rate the
        ``lr_grid`` chose (then the grid's pilots run for this model, task and method)."""
        return any(self.uses_lr_selection(method, size) and method in self.methods_for(task, size, model)
                   for size in self.splits.sizes_for(task))

    def run_training(self, method: str, size: int | str) -> dict[str, Any]:
        """The settings a run passes as flags: :meth:`training_for`, less the learning rate where
        the run takes the rate the ``lr_grid`` chose (``--learning-rate-from``)."""
        settings = self.training_for(method, size)
        if self.uses_lr_selection(method, size):
            settings.pop("learning_rate", None)
        return settings

    def pilot_training(self, method: str, rate: float) -> dict[str, Any]:
        """The settings of a pilot run of the ``lr_grid``: the method's at the pilot size, at ``rate``."""
        assert self.lr_grid is not None
        return {**self.training_for(method, self.lr_grid.size), "learning_rate": rate}

    def pilot_seeds(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The data seeds and train seeds of the ``lr_grid``'s pilot runs."""
        assert self.lr_grid is not None
        return (self.lr_grid.data_seeds or self.splits.data_seeds[:1], self.lr_grid.train_seeds or self.train_seeds[:1])

    # Where the study's files live (the workflow's rules make them there; promptworth.expected reads them)

    def split_folder(self, task: str, size: int | str, data_seed: int) -> str:
        """The split folder of one (task, size, data seed): a ladder's or LM-BFF's K-shot one."""
        kind = "kshot" if self.splits.kind == "kshot" else "splits"
        return f"{self.results_dir}/{kind}/{task}/{size}-{data_seed}"

    def run_file(self, run: "Run") -> str:
        """A planned run's record: under ``runs_dir`` when the study reads existing records."""
        if self.runs_dir:
            return f"{self.runs_dir}/{run.model}/{run.task}/{run.method}/{run_name(run.size, run.data_seed, run.train_seed)}.json"
        return run_path(self.results_dir, "runs", ".json", run.model, run.task, run.method, run.size, run.data_seed,
                        run.train_seed)

    def lr_file(self, model: str, task: str, method: str) -> str:
        """The learning rate the ``lr_grid`` chose for a model (its label), task and method."""
        return f"{self.results_dir}/lr/{model}/{task}/{method}.json"

    def pilot_file(self, pilot: "Pilot") -> str:
        """A pilot run's record: at its rate, beside the grid's other rates (``<results>/lr-grid``)."""
        from promptworth.training.lr_grid import rate_label

        return run_path(self.results_dir, "lr-grid", ".json", pilot.model, pilot.task, pilot.method, pilot.size,
                        pilot.data_seed, pilot.train_seed, sub=f"lr-{rate_label(pilot.rate)}/")

    def search_file(self, run: "Run") -> str:
        """The result file of the search a run of a search method applies."""
        return run_path(self.results_dir, "search", ".json", run.model, run.task, run.method, run.size, run.data_seed,
                        run.train_seed)

    def method_args(self, method: str) -> list[str]:
        """``promptworth train`` flags that define a method of the config (none for a built-in)."""
        spec = self.defined_methods.get(method)
        if spec is None:
            return []
        options = [item for key, value in spec.options.items() for item in ("--option", f"{key}={value}")]
        extras = [item for extra in spec.extras for item in ("--extra", extra)]
        return ["--objective", spec.objective, "--tuning", spec.tuning, *options, *extras]


def run_name(size: int | str, data_seed: int | str, train_seed: int | str) -> str:
    """A run's file name (without its suffix): ``<size>-<data seed>-<train seed>``."""
    return f"{size}-{data_seed}-{train_seed}"


def run_path(results_dir: str, folder: str, suffix: str, model: str, task: str, method: str, size: int | str,
             data_seed: int | str, train_seed: int | str, sub: str = "") -> str:
    """Where a thing of one run lives: ``<results>/<folder>/<model>/<task>/<method>/<sub><run><suffix>``."""
    return f"{results_dir}/{folder}/{model}/{task}/{method}/{sub}{run_name(size, data_seed, train_seed)}{suffix}"


@dataclass(frozen=True)
class Run:
    """One training run of the study."""

    model: str  # its label (model_label): the folder of the run's files
    task: str
    method: str
    size: int | str
    data_seed: int
    train_seed: int


@dataclass(frozen=True)
class Pilot:
    """One pilot run of the ``lr_grid``: a run at one of the rates the grid tries."""

    model: str  # its label (model_label), as a Run's
    task: str
    method: str
    size: int | str
    data_seed: int
    train_seed: int
    rate: float


def _is_strict_integer(checker: Any, value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# JSON Schema counts 16.0 as an integer; a size or seed of 16.0 would name other files ("16.0-1")
# than the ones its rules make, so the config's integers must be written as integers.
_StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_strict_integer),
)


# YTE, the template engine Snakemake applies to a config file that starts with this key, runs the
# Python in the file; a study config is plain YAML.
YTE_KEY = "__use_yte__"


def schema_file() -> Path:
    """The config schema of the workflow (``workflow/schemas/config.schema.yaml`` of the checkout)."""
    from promptworth.paths import project_root

    return project_root() / "workflow" / "schemas" / "config.schema.yaml"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A study config file, read as plain YAML (never run): one error for a file that cannot be
    read, is not YAML or not a mapping, or asks for YTE templating (which would run its code)."""
    where = f"config file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptworthError(f"{where}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PromptworthError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise PromptworthError(f"{where}: nested too deeply to be a study config") from None
    if not isinstance(config, dict):
        raise PromptworthError(f"{where}: a study config is a mapping of keys (config/README.md), not "
                               f"{type(config).__name__}")
    refuse_yte(config, where)
    return config


def refuse_yte(config: Any, where: str) -> None:
    """A config that asks for YTE templating is refused: YTE evaluates the Python in its keys and
    values (``?if ...``, ``?...``), and a study config must not run code."""
    if isinstance(config, dict) and YTE_KEY in config:
        raise PromptworthError(f"{where}: it asks for YTE templating ({YTE_KEY}), which runs the Python written in "
                               "the file; a study config is plain YAML: remove the key and the templates")


def snakemake_configfiles(command: Sequence[str]) -> list[str]:
    """The config files a Snakemake command line names (``--configfile(s) A B``, ``--configfile=A``)."""
    found: list[str] = []
    taking = False
    for word in command:
        name, eq, value = word.partition("=")
        if name in ("--configfile", "--configfiles"):
            taking = not eq
            found += [value] if eq else []
        elif taking and not word.startswith("-"):
            found.append(word)
        else:
            taking = False
    return found


def check_configfiles(command: Sequence[str]) -> None:
    """Read every config file a Snakemake command line names as plain YAML before Snakemake does
    (:func:`read_config_file`): Snakemake itself would evaluate a YTE config, running its code."""
    for path in snakemake_configfiles(command):
        read_config_file(path)


def validate_config(config: dict[str, Any], schema_path: Path) -> None:
    """Check ``config`` against the JSON schema; raise with the most relevant violation."""
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    # a method's name has one definition, the registry's
    name = method_specs.NAME_PATTERN
    schema["$defs"]["method_name"]["pattern"] = f"^{name}$"
    schema["$defs"]["comparison"]["pattern"] = f"^{name}:{name}$"
    validator = _StrictValidator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        if error.parent is not None and error.parent.validator in ("oneOf", "anyOf"):
            error = error.parent
        if error.validator in ("oneOf", "anyOf") and error.context:
            # A value that fits none of several alternatives: say what each one wanted.
            error.message = " or ".join(sorted({sub.message for sub in error.context}))
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
        raise PromptworthError(f"config{where or ' (top level)'}: {error.message}")


def _same(value: Any) -> Any:
    return value


def _given(config: dict[str, Any], readers: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """The keys ``config`` sets, each read by its reader. Keys it leaves out are not passed, so a
    default lives in one place: the dataclass (the schema checks shapes only)."""
    return {key: read(config[key]) for key, read in readers.items() if key in config}


def load_study(config: dict[str, Any], schema_path: Path | None = None) -> StudyConfig:
    """A ``StudyConfig`` from a config dict (checked against the schema when one is given)."""
    if schema_path is not None:
        validate_config(config, schema_path)
    raw_splits = dict(config["splits"])
    splits = SplitsConfig(
        kind=raw_splits["kind"],
        data_seeds=tuple(raw_splits["data_seeds"]),
        **_given(raw_splits, {
            "sizes": tuple,
            "sizes_by_task": lambda by_task: {task: tuple(sizes) for task, sizes in by_task.items()},
            "dev_policy": str, "dev_size": int, "test_limit": _same, "k": int,
        }),
    )
    names, defined = [], {}
    for i, item in enumerate(config["methods"]):
        if isinstance(item, dict):
            spec = method_specs.define(item, f"config: methods[{i}]")
            defined[spec.name] = spec
            names.append(spec.name)
        else:
            names.append(item)
    model = config["model"]
    study = StudyConfig(
        tasks=tuple(config["tasks"]),
        methods=tuple(names),
        models=(model,) if isinstance(model, str) else tuple(model),
        train_seeds=tuple(config["train_seeds"]),
        splits=splits,
        training=dict(config["training"]),
        defined_methods=defined,
        **_given(config, {
            "templates": dict,
            "methods_by_task": lambda by_task: {task: tuple(methods) for task, methods in by_task.items()},
            "by_size": lambda by_size: {str(size): SizeSettings(**_given(settings, {
                "methods": tuple, "data_seeds": tuple, "training": dict})) for size, settings in by_size.items()},
            "comparisons": lambda texts: tuple(tuple(text.split(":")) for text in texts),
            "data_dir": _same, "results_dir": str, "runs_dir": _same, "resources": dict,
            "training_by_method": lambda by_method: {name: dict(settings) for name, settings in by_method.items()},
            "by_model": lambda by_model: {str(name): ModelSettings(**_given(settings, {
                "tasks": tuple, "methods": tuple, "resources": dict})) for name, settings in by_model.items()},
            "lr_grid": lambda grid: LrGrid(
                rates={name: tuple(rates) for name, rates in grid["rates"].items()}, size=grid["size"],
                **_given(grid, {"data_seeds": tuple, "train_seeds": tuple})),
        }),
    )
    check_study(study)
    return study


def check_study(study: StudyConfig) -> None:
    """What the schema cannot say: names exist, splits can be drawn, comparisons are run."""
    if len(set(study.methods)) != len(study.methods):
        raise PromptworthError("config: methods names a method twice")
    for where, names in (("methods", study.methods), *((f"methods_by_task.{t}", m) for t, m in study.methods_by_task.items()),
                         *((f"by_size.{s}.methods", b.methods) for s, b in study.by_size.items())):
        for method in names:
            try:
                study.method(method)
            except PromptworthError as exc:
                raise PromptworthError(f"config: {where}: {exc}") from None
    for name in study.tasks:
        task = get_task(name)
        if study.splits.kind == "kshot" and task.family != "lmbff":
            raise PromptworthError(f"config: splits.kind kshot is LM-BFF's sampler; {name} is not an LM-BFF task")
        for method in {m for size in study.splits.sizes_for(name) for m in study.methods_for(name, size)}:
            if study.method(method).objective == "null" and not task.null_words:
                raise PromptworthError(f"config: method {method} needs null_words, which task {name} has none of")
        template = study.templates.get(name)
        if template is not None and template not in task.templates:
            raise PromptworthError(
                f"config: templates.{name} is {template!r}, not one of {name}'s templates {list(task.templates)}"
            )
    for key in ("templates", "methods_by_task"):
        for name in getattr(study, key):
            if name not in study.tasks:
                raise PromptworthError(f"config: {key} names task {name!r}, which is not in tasks")
    if study.data_dir is not None and not Path(study.data_dir).expanduser().is_dir():
        raise PromptworthError(f"config: data_dir {study.data_dir!r} is not a folder")
    if study.runs_dir is not None and not Path(study.runs_dir).expanduser().is_dir():
        raise PromptworthError(f"config: runs_dir {study.runs_dir!r} is not a folder")
    results = Path(study.results_dir).expanduser()
    for folder in (results, *results.parents):
        if folder.exists() and not folder.is_dir():
            raise PromptworthError(f"config: results_dir {study.results_dir!r}: {folder} is a file, not a folder")
    splits = study.splits
    if splits.kind == "kshot":
        for size in splits.sizes:
            if size not in (splits.k, ALL):
                raise PromptworthError(f"config: splits.sizes of a kshot study are K ({splits.k}) and 'all' "
                                       f"(the full-data setting), got {size!r}")
        if splits.sizes_by_task:
            raise PromptworthError("config: splits.sizes_by_task is for ladders; a kshot study's sizes are splits.sizes")
    _check_size_zero(study)
    for size, settings in study.by_size.items():
        if not any(size == str(s) for task in study.tasks for s in splits.sizes_for(task)):
            raise PromptworthError(f"config: by_size names size {size!r}, which the study does not train at")
        for seed in settings.data_seeds:
            check_seed(seed, f"config: by_size.{size}.data_seeds item {seed!r}: a seed")
        for method in settings.methods or study.methods:
            try:
                config_from_mapping(study.training_for(method, size))
            except PromptworthError as exc:
                raise PromptworthError(f"config: by_size.{size}.training: {exc}") from None
    if splits.kind == "ladder":
        for name in study.tasks:
            if not splits.sizes_for(name):
                raise PromptworthError(f"config: splits.sizes is empty for task {name}")
        for name in splits.sizes_by_task:
            if name not in study.tasks:
                raise PromptworthError(f"config: splits.sizes_by_task names task {name!r}, which is not in tasks")
        if splits.dev_policy not in DEV_POLICIES:
            raise PromptworthError(f"config: unknown splits.dev_policy {splits.dev_policy!r}")
        if splits.dev_policy == "fixed" and splits.dev_size is None:
            raise PromptworthError("config: splits.dev_policy fixed needs splits.dev_size")
        if splits.dev_policy == "same_as_train" and any(ALL in splits.sizes_for(t) for t in study.tasks):
            raise PromptworthError("config: splits.dev_policy same_as_train cannot be used with size 'all'")
        if splits.dev_policy == "same_as_train" and any(ZERO_SHOT in splits.sizes_for(t) for t in study.tasks):
            raise PromptworthError(f"config: splits.dev_policy: {NO_DEV_AT_ZERO}")
    if splits.kind == "ladder":
        _check_sizes_fit_the_pools(study)
    for key, seeds in (("splits.data_seeds", splits.data_seeds), ("train_seeds", study.train_seeds)):
        for seed in seeds:
            check_seed(seed, f"config: {key} item {seed!r}: a seed")
    try:
        config_from_mapping(study.training)
    except PromptworthError as exc:
        raise PromptworthError(f"config: training: {exc}") from None
    runs = methods_run(study)
    for method in study.training_by_method:
        if method not in runs:
            raise PromptworthError(f"config: training_by_method names method {method!r}, which the study does not run")
        try:
            config_from_mapping(study.training_for(method))
        except PromptworthError as exc:
            raise PromptworthError(f"config: training_by_method.{method}: {exc}") from None
    if study.lr_grid is not None:
        _check_lr_grid(study, study.lr_grid)
    for treatment, baseline in study.comparisons:
        if treatment == baseline:
            raise PromptworthError(f"config: comparison {treatment}:{baseline} compares a method with itself")
        for method in (treatment, baseline):
            if method not in study.methods:
                raise PromptworthError(f"config: comparison {treatment}:{baseline} names method {method!r}, which is not in methods")
    check_models(study)


def methods_run(study: StudyConfig) -> set[str]:
    """Every method the study runs somewhere: ``methods``, ``methods_by_task`` and ``by_size``'s."""
    return set(study.methods).union(*study.methods_by_task.values(), *(b.methods for b in study.by_size.values()))


def check_models(study: StudyConfig) -> None:
    """What ``model`` and ``by_model`` must agree on: each model has a folder of its own, by_model
    names models, tasks and methods of the study, and what it leaves out leaves every model, task
    and compared method some runs."""
    labels: dict[str, str] = {}
    for model in study.models:
        check_label(model)
        other = labels.setdefault(model_label(model), model)
        if other != model:
            raise PromptworthError(f"config: model names {other!r} and {model!r}, whose runs would share the "
                                   f"folder {model_label(model)!r}")
    run_somewhere = methods_run(study)
    for model, settings in study.by_model.items():
        if model not in study.models:
            raise PromptworthError(f"config: by_model names model {model!r}, which is not in model")
        for task in settings.tasks:
            if task not in study.tasks:
                raise PromptworthError(f"config: by_model.{model}.tasks names task {task!r}, which is not in tasks")
        for method in settings.methods:
            if method not in run_somewhere:
                raise PromptworthError(f"config: by_model.{model}.methods names method {method!r}, which the study "
                                       "does not run")
    runs = plan(study)
    for model in study.models:
        if not any(run.model == model_label(model) for run in runs):
            raise PromptworthError(f"config: by_model.{model} leaves model {model!r} no runs (none of its methods "
                                   "is run on its tasks)")
    for task in study.tasks:
        if not any(run.task == task for run in runs):
            raise PromptworthError(f"config: by_model leaves task {task!r} to no model")
    for treatment, baseline in study.comparisons:
        for method in (treatment, baseline):
            if not any(run.method == method for run in runs):
                raise PromptworthError(f"config: comparison {treatment}:{baseline}: method {method!r} is run on no "
                                       "task (by_model, methods_by_task or by_size leave it out)")


def _check_lr_grid(study: StudyConfig, grid: LrGrid) -> None:
    """The grid's methods train, and only the grid sets their rate; its pilots can be drawn."""
    for method, rates in grid.rates.items():
        where = f"config: lr_grid.rates.{method}"
        try:
            spec = study.method(method)
        except PromptworthError as exc:
            raise PromptworthError(f"{where}: {exc}") from None
        if not spec.tuning_spec.steps:
            raise PromptworthError(f"{where}: method {method} takes no training step: it has no learning rate to choose")
        if registry.search_kind(spec) is not None:
            raise PromptworthError(f"{where}: method {method} applies a search's result; its pilot runs would need "
                                   "searches of their own, which the grid does not make")
        if not any(study.takes_chosen_rate(task, method) for task in study.tasks):
            raise PromptworthError(f"{where}: the study does not train method {method} (at a size above 0)")
        if "learning_rate" in study.training_by_method.get(method, {}):
            raise PromptworthError(f"config: training_by_method.{method}.learning_rate: the lr_grid chooses {method}'s "
                                   "learning rate; set one or the other")
        for size, settings in study.by_size.items():
            if "learning_rate" in settings.training and method in (settings.methods or study.methods):
                raise PromptworthError(f"config: by_size.{size}.training.learning_rate: the lr_grid chooses {method}'s "
                                       "learning rate; set one or the other")
        for rate in rates:
            try:
                config_from_mapping(study.pilot_training(method, rate))
            except PromptworthError as exc:
                raise PromptworthError(f"{where}: {exc}") from None
    splits = study.splits
    if splits.kind == "kshot" and grid.size not in (splits.k, ALL):
        raise PromptworthError(f"config: lr_grid.size of a kshot study is K ({splits.k}) or 'all', got {grid.size!r}")
    if grid.size == ALL and splits.kind == "ladder" and splits.dev_policy == "same_as_train":
        raise PromptworthError("config: lr_grid.size 'all' cannot be drawn under splits.dev_policy same_as_train")
    for key, seeds in (("data_seeds", grid.data_seeds), ("train_seeds", grid.train_seeds)):
        for seed in seeds:
            check_seed(seed, f"config: lr_grid.{key} item {seed!r}: a seed")


def _check_sizes_fit_the_pools(study: StudyConfig) -> None:
    """Every size of a ladder (and the lr_grid's pilot size) can be drawn from its task's pool,
    where the data mirror at hand holds the pool (else the split job says so, once it has it)."""
    from promptworth.data.sources import resolve_data_dir
    from promptworth.data.splits import size_problem
    from promptworth.data.rows import load_rows

    try:
        root = resolve_data_dir(study.data_dir)
    except PromptworthError:
        return  # checked above (data_dir), or no mirror yet: the split job downloads it
    splits = study.splits
    for name in study.tasks:
        task = get_task(name)
        if task.pool is None or not (root / task.dir / task.file_name("pool")).is_file():
            continue
        pool_size = len(load_rows(task, "pool", root))
        sizes = [*splits.sizes_for(name), *([study.lr_grid.size] if study.lr_grid is not None else [])]
        for size in dict.fromkeys(sizes):
            problem = size_problem(pool_size, splits.dev_policy, splits.dev_size, size)
            if problem is not None:
                raise PromptworthError(f"config: splits of {name}: {problem}")


def _check_size_zero(study: StudyConfig) -> None:
    """Size 0, the zero-shot point, runs only methods that predict untrained: ``by_size.0`` may
    name no other, and every task with size 0 must run at least one."""
    settings = study.by_size.get(str(ZERO_SHOT))
    for method in settings.methods if settings is not None else ():
        problem = study.method(method).size_zero_problem()
        if problem is not None:
            raise PromptworthError(f"config: by_size.0.methods: method {method} cannot run at size 0: {problem}")
    for task in study.tasks:
        if ZERO_SHOT in study.splits.sizes_for(task) and not study.methods_for(task, ZERO_SHOT):
            names = study.methods_for(task)
            reasons = "; ".join(f"{name}: {study.method(name).size_zero_problem()}" for name in names)
            raise PromptworthError(
                f"config: task {task} has size 0 (the zero-shot point), but none of its methods runs untrained "
                f"({reasons}); size 0 needs a prompt method whose tuning starts as the pretrained model "
                "(e.g. prompt, prompt-lora, prompt-bitfit)")


def plan(study: StudyConfig) -> list[Run]:
    """Every training run of the study, in a stable order: model by model, in the config's order."""
    return [
        Run(model_label(model), task, method, size, data_seed, train_seed)
        for model in study.models
        for task in study.tasks_for(model)
        for size in study.splits.sizes_for(task)
        for data_seed in study.data_seeds_for(size)
        for method in study.methods_for(task, size, model)
        for train_seed in study.train_seeds
    ]


def pilots(study: StudyConfig) -> list[Pilot]:
    """Every pilot run of the study's ``lr_grid`` (none without one), in a stable order: per model
    and task, each method of the grid that trains on it at a size above 0, at each rate."""
    if study.lr_grid is None:
        return []
    data_seeds, train_seeds = study.pilot_seeds()
    return [
        Pilot(model_label(model), task, method, study.lr_grid.size, data_seed, train_seed, rate)
        for model in study.models
        for task in study.tasks_for(model)
        for method, rates in study.lr_grid.rates.items()
        if study.takes_chosen_rate(task, method, model)
        for rate in rates
        for data_seed in data_seeds
        for train_seed in train_seeds
    ]


def _run_timing(record_file: Path) -> tuple[float, bool] | None:
    """What a finished run took (its process time, else its wall time) and whether it took a
    training step, if its record says."""
    try:
        timing = json.loads(record_file.read_text(encoding="utf-8")).get("timing", {})
        seconds, steps = timing.get("process_s") or timing.get("wall_s"), timing.get("steps")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        return None
    return float(seconds), isinstance(steps, int) and steps > 0


def plan_summary(study: StudyConfig, record_files: Sequence[Path], at_once: int,
                 stale: Collection[str] = ()) -> str:
    """What a study is about to do, for the start of its workflow: its tasks and methods, its runs
    and how many are still to train, and an estimate from the runs already finished (their median
    time, ``at_once`` side by side), where there are some: from those that trained when there are
    any, since a zero-shot run only evaluates and would make the estimate far too short. A record
    in ``stale`` (not what the study asks for: promptworth.expected) trains again."""
    done = [path for path in record_files if path.is_file() and str(path) not in stale]
    left = len(record_files) - len(done)
    lines = [
        f"[promptworth] plan: {len(study.tasks)} task(s) ({', '.join(study.tasks)}), "
        f"{len(study.methods)} method(s), {', '.join(study.models)}",
        f"[promptworth] {len(record_files)} runs: {len(done)} finished, {left} to train",
    ]
    if study.lr_grid is not None:
        lines.append(f"[promptworth] learning-rate grid: {len(pilots(study))} pilot runs choose the rate of "
                     f"{', '.join(study.lr_grid.rates)} on dev first")
    timings = [t for t in map(_run_timing, done) if t is not None]
    trained = sorted(seconds for seconds, took_steps in timings if took_steps)
    seconds, which = (trained, "finished ones that trained") if trained else (sorted(s for s, _ in timings), "finished ones")
    if left and seconds:
        median, at_once = seconds[len(seconds) // 2], max(1, at_once)
        lines.append(f"[promptworth] estimate: ~{left * median / at_once / 60:.0f} min ({left} runs x {median:.0f} s, "
                     f"the median of the {which}, {at_once} at a time)")
    elif left:
        lines.append("[promptworth] estimate: none yet (no finished run of this study to time)")
    return "\n".join(lines)


# A model's label names the folder of its runs' files: a name, never a path ('..', '', '.x').
LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def check_label(model: str) -> str:
    """The label of ``model`` (:func:`model_label`) if it can name a folder of its own under
    ``runs/``; else one error naming the model."""
    label = model_label(model)
    if not LABEL_PATTERN.fullmatch(label) or label.endswith("."):
        raise PromptworthError(
            f"config: model {model!r} would name its runs' folder {label!r}: a model's label (its short name, its "
            "folder's name, or its hub id with '/' as '--') must be a name of letters, digits and . _ + - that starts "
            "with a letter or digit; name the model's folder itself (e.g. resources/models/my-model)")
    return label


def model_label(model: str) -> str:
    """A file-name-safe label of a model: its short name, folder name, or hub id with '/' -> '--'.

    A folder is recognised by its spelling (leading '.', '/' or '~', or two or more '/'), not by
    its existence, so that the label stays the same before and after the workflow builds it.
    """
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or Path(model).is_dir():
        return Path(model).expanduser().name
    return model.replace("/", "--")
