"""A study's configuration and plan: which splits and which training runs it needs.

The YAML config is checked twice: its shape against ``workflow/schemas/config.schema.yaml``
(types, ranges, unknown keys), then its meaning (task names exist, the splits can be drawn,
compared methods are run). Either failure is one line naming the offending key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from promptworth.backbones.registry import LoadOptions
from promptworth.backbones.resolve import model_label
from promptworth.data.splits import DEFAULT_DEV_POLICY, DEFAULT_K, ZERO_SHOT
from promptworth.data.tasks import TaskSpec
from promptworth.errors import PromptworthError
from promptworth.methods import specs as method_specs
from promptworth.methods.specs import MethodSpec
from promptworth.study.stage import Stage

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
    them), the data seeds it runs on, of those each size draws, and the train seeds, of those each
    task draws (empty: all of them; e.g. a larger model on 3 of the study's 5 data seeds), its
    training jobs' resources, over the study's ``resources``, and how it loads (its ``dtype`` and
    ``trust_remote_code``)."""

    tasks: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    data_seeds: tuple[int, ...] = ()
    train_seeds: tuple[int, ...] = ()
    resources: dict[str, int] = field(default_factory=dict)
    load: LoadOptions = LoadOptions()


@dataclass(frozen=True)
class MethodSettings:
    """What changes for one method of a study (its ``by_method``): the sizes it runs at, of its
    tasks' sizes, the data seeds, of those its size draws, and the train seeds, of those its task
    draws (empty: all of them); the dev policy
    of its splits (None: ``splits.dev_policy``), e.g. true few-shot selection (Perez et al. 2021):
    a dev set as large as the training set, for the method's runs and its lr_grid pilots alike."""

    sizes: tuple[int | str, ...] = ()
    data_seeds: tuple[int, ...] = ()
    train_seeds: tuple[int, ...] = ()
    dev_policy: str | None = None


@dataclass(frozen=True)
class LrGrid:
    """A study's ``lr_grid``: the learning rates to try per method (the others train at their set
    rate), and the pilot runs that try them: at each training-set size of ``sizes`` (its size
    bands; a config's ``size`` is one) on ``data_seeds`` with ``train_seeds`` (empty: the study's
    first of each). The rule that picks one is ``promptworth.training.lr_grid.RULE``; a run takes
    the rate of its band (``BAND_RULE``); ``extend_at_edge``: a choice at the grid's edge extends
    it once (``EDGE_RULE``)."""

    rates: dict[str, tuple[float, ...]]
    sizes: tuple[int | str, ...]
    data_seeds: tuple[int, ...] = ()
    train_seeds: tuple[int, ...] = ()
    extend_at_edge: bool = False


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
    # per task, the train seeds that replace ``train_seeds`` there (e.g. a second one on one task)
    train_seeds_by_task: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # keyed by str(size): what changes at that training-set size (see SizeSettings)
    by_size: dict[str, "SizeSettings"] = field(default_factory=dict)
    comparisons: tuple[tuple[str, str], ...] = ((method_specs.DEFAULT_TREATMENT, method_specs.DEFAULT_BASELINE),)
    # methods the config defines inline from parts, by name
    defined_methods: dict[str, MethodSpec] = field(default_factory=dict)
    defined_tasks: dict[str, TaskSpec] = field(default_factory=dict)  # its task_files' tasks (get_task(name, these))
    training_by_method: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_dir: str | None = None
    results_dir: str = "results"
    runs_dir: str | None = None
    resources: dict[str, int] = field(default_factory=dict)
    lr_grid: LrGrid | None = None
    # keyed by the model as ``models`` names it: what changes for it (see ModelSettings)
    by_model: dict[str, ModelSettings] = field(default_factory=dict)
    # keyed by a method's name: what changes for it (see MethodSettings)
    by_method: dict[str, MethodSettings] = field(default_factory=dict)
    # the order its runs train in (see Stage; none: one stage of every run)
    stages: tuple[Stage, ...] = ()

    def tasks_for(self, model: str | None = None) -> tuple[str, ...]:
        """The tasks ``model`` runs (where ``by_model`` names tasks for it), in the study's order."""
        chosen = self.by_model[model].tasks if model in self.by_model else ()
        return tuple(task for task in self.tasks if not chosen or task in chosen)

    def methods_for(self, task: str, size: int | str | None = None, model: str | None = None,
                    data_seed: int | None = None) -> tuple[str, ...]:
        """The methods run on ``task`` (at ``size``, where ``by_size`` names methods for it; at size 0,
        the zero-shot point, only those that run untrained (``runs_at_size_zero``); by ``model``, those
        of them that ``by_model`` names for it, none on a data seed its ``by_model`` data seeds leave
        out; at ``size`` and ``data_seed``, those whose ``by_method`` sizes and data seeds name them)."""
        settings = self.by_size.get(str(size))
        methods = settings.methods if settings is not None and settings.methods else self.methods_by_task.get(task, self.methods)
        if size == ZERO_SHOT:  # the zero-shot point: only the methods that run untrained
            methods = tuple(name for name in methods if self.method(name).runs_at_size_zero)
        settings_of_model = self.by_model.get(model or "", ModelSettings())
        if settings_of_model.data_seeds and data_seed is not None and data_seed not in settings_of_model.data_seeds:
            return ()
        chosen = settings_of_model.methods
        return tuple(method for method in methods if (not chosen or method in chosen)
                     and self._method_runs_at(method, size, data_seed))

    def _method_runs_at(self, method: str, size: int | str | None, data_seed: int | None) -> bool:
        """Whether ``by_method`` lets ``method`` run at ``size`` and ``data_seed`` (None: any)."""
        settings = self.by_method.get(method)
        if settings is None:
            return True
        return ((size is None or not settings.sizes or str(size) in map(str, settings.sizes))
                and (data_seed is None or not settings.data_seeds or data_seed in settings.data_seeds))

    def dev_policy_for(self, method: str | None) -> str:
        """The dev policy of a method's splits: its ``by_method`` one, else the study's."""
        settings = self.by_method.get(method) if method is not None else None
        return settings.dev_policy if settings is not None and settings.dev_policy else self.splits.dev_policy

    def template_for(self, task: str, method: str) -> str | None:
        """The template name a run of ``method`` on ``task`` reads: the method's own (a control's),
        else the study's ``templates`` entry (None: the task's first that suits the model)."""
        return self.method(method).template or self.templates.get(task)

    def resources_for(self, model: str) -> dict[str, int]:
        """The resources of ``model``'s training jobs: the defaults, then ``resources``, then its
        ``by_model`` resources."""
        settings = self.by_model.get(model)
        return {**RESOURCE_DEFAULTS, **self.resources, **(settings.resources if settings is not None else {})}

    def load_options_for(self, model: str) -> LoadOptions:
        """How ``model`` loads: its ``by_model`` dtype and trust_remote_code, else the defaults."""
        return self.by_model[model].load if model in self.by_model else LoadOptions()

    def methods_run(self) -> set[str]:
        """Every method the study runs somewhere: ``methods``, ``methods_by_task`` and ``by_size``'s."""
        return set(self.methods).union(*self.methods_by_task.values(), *(b.methods for b in self.by_size.values()))

    def backbone_for(self, model: str, method: str) -> str:
        """What a run of ``method`` trains where the study names ``model``: the method's own backbone
        (SetFit's sentence encoder: :attr:`MethodSpec.backbone`), else ``model``."""
        return self.method(method).backbone or model

    def models_by_label(self) -> dict[str, str]:
        """The study's models, then the methods' own backbones (SetFit's), by their label
        (:func:`model_label`, the folder of their runs' files)."""
        found = {model_label(model): model for model in self.models}
        own = sorted({spec.backbone for spec in map(self.method, self.methods_run()) if spec.backbone})
        return {**found, **{model_label(backbone): backbone for backbone in own if model_label(backbone) not in found}}

    def train_seeds_for(self, task: str, method: str | None = None, model: str | None = None) -> tuple[int, ...]:
        """The train seeds of ``task``'s runs: the task's ``train_seeds_by_task`` entry, else
        ``train_seeds``; of ``method``'s and ``model``'s, those their ``by_method`` and ``by_model``
        train seeds name."""
        chosen = [settings.train_seeds for settings in (self.by_method.get(method or ""), self.by_model.get(model or ""))
                  if settings is not None and settings.train_seeds]
        return tuple(seed for seed in self.train_seeds_by_task.get(task, self.train_seeds)
                     if all(seed in seeds for seeds in chosen))

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

    def lr_band(self, size: int | str) -> int | str:
        """The ``lr_grid``'s pilot size whose choice a run of ``size`` (or its file name's text) trains
        at (``BAND_RULE``)."""
        from promptworth.data.splits import parse_size
        from promptworth.training.lr_grid import nearest_band

        assert self.lr_grid is not None
        return nearest_band(parse_size(size) if isinstance(size, str) else size, self.lr_grid.sizes)

    def lr_bands(self, task: str, method: str, model: str | None = None) -> tuple[int | str, ...]:
        """The ``lr_grid``'s pilot sizes whose choice some run of ``method`` on ``task`` (by
        ``model``) trains at, in the grid's order (empty: none does; then no pilot runs for them)."""
        used = {self.lr_band(size) for size in self.splits.sizes_for(task)
                if self.uses_lr_selection(method, size) and method in self.methods_for(task, size, model)}
        return tuple(band for band in self.lr_grid.sizes if band in used) if self.lr_grid is not None else ()

    def takes_chosen_rate(self, task: str, method: str, model: str | None = None) -> bool:
        """Whether some run of ``method`` on ``task`` (by ``model``) trains at the rate the
        ``lr_grid`` chose (then the grid's pilots run for this model, task and method)."""
        return bool(self.lr_bands(task, method, model))

    def run_training(self, method: str, size: int | str) -> dict[str, Any]:
        """The settings a run passes as flags: :meth:`training_for`, less the learning rate where
        the run takes the rate the ``lr_grid`` chose (``--learning-rate-from``)."""
        settings = self.training_for(method, size)
        if self.uses_lr_selection(method, size):
            settings.pop("learning_rate", None)
        return settings

    def pilot_training(self, method: str, rate: float, size: int | str) -> dict[str, Any]:
        """The settings of a pilot run of the ``lr_grid`` at pilot size ``size``: the method's at that
        size (the runs' own, their minimums before patience included), at ``rate``."""
        return {**self.training_for(method, size), "learning_rate": rate}

    def pilot_rates(self, method: str) -> tuple[float, ...]:
        """Every rate a pilot run of ``method`` may train at: its grid's, and where the grid extends
        at its edge, the rate beyond each edge."""
        from promptworth.training.lr_grid import extension_rate

        assert self.lr_grid is not None
        grid = tuple(sorted(self.lr_grid.rates.get(method, ())))
        if not self.lr_grid.extend_at_edge or not grid:
            return grid
        return grid + tuple(rate for rate in (extension_rate(grid, grid[0]), extension_rate(grid, grid[-1]))
                            if rate is not None)

    def pilot_seeds(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The data seeds and train seeds of the ``lr_grid``'s pilot runs."""
        assert self.lr_grid is not None
        return (self.lr_grid.data_seeds or self.splits.data_seeds[:1], self.lr_grid.train_seeds or self.train_seeds[:1])

    # Where the study's files live (the workflow's rules make them there; promptworth.study.reuse reads them)

    def split_folder(self, task: str, size: int | str, data_seed: int, method: str | None = None) -> str:
        """The split folder of one (task, size, data seed): a ladder's or LM-BFF's K-shot one; for a
        method whose ``by_method`` dev policy is not the study's, ``splits-<policy>/`` holds it."""
        kind = "kshot" if self.splits.kind == "kshot" else "splits"
        policy = self.dev_policy_for(method)
        if policy != self.splits.dev_policy:
            kind = f"splits-{policy}"
        return f"{self.results_dir}/{kind}/{task}/{size}-{data_seed}"

    def run_file(self, run: "Run") -> str:
        """A planned run's record: under ``runs_dir`` when the study reads existing records."""
        if self.runs_dir:
            return f"{self.runs_dir}/{run.model}/{run.task}/{run.method}/{run_name(run.size, run.data_seed, run.train_seed)}.json"
        return run_path(self.results_dir, "runs", ".json", run.model, run.task, run.method, run.size, run.data_seed,
                        run.train_seed)

    def lr_file(self, model: str, task: str, method: str, size: int | str) -> str:
        """The learning rate the ``lr_grid`` chose for a model (its label), task and method, that a
        run of training-set size ``size`` trains at (its band's)."""
        return self.lr_path(model, task, method, self.lr_band(size))

    def lr_path(self, model: str, task: str, method: str, band: int | str, grid_only: bool = False) -> str:
        """The selection file of one size band: ``<results>/lr/<model>/<task>/<method>.json`` for a
        grid of one pilot size (as before bands), ``.../<method>/<band>.json`` for several;
        ``grid_only``: the choice over the grid alone that decides whether it extends (``.grid.json``)."""
        suffix = ".grid.json" if grid_only else ".json"
        if self.lr_grid is None or len(self.lr_grid.sizes) == 1:
            return f"{self.results_dir}/lr/{model}/{task}/{method}{suffix}"
        return f"{self.results_dir}/lr/{model}/{task}/{method}/{band}{suffix}"

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

